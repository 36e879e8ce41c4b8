"""The rules clusters and nodepools share (cls_core/services/resources.py), called directly."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from cls_core.errors import Conflict, NotFound, QuotaExceeded
from cls_core.services.clusters import ClusterService
from cls_core.services.common import Preconditions
from cls_core.services.nodepools import NodePoolService
from cls_core.services.status import StatusService
from cls_core.store import RedisStore
from cls_runtime.settings import Settings
from shared_models.resources import ClusterUpdate, NodePoolCreate, NodePoolUpdate
from tests.conftest import gcp_cluster_body, seed_nodepool_body
from tests.services.conftest import (
    OTHER,
    OWNER,
    new_cluster,
    new_nodepool,
    outbox_types,
    overtaking,
)
from tests.support.deletion import confirm_in_service, finish_cluster_deletions

NO_PRECONDITIONS = Preconditions()
CHOSEN_ID = "6f1c1f5e-3b5a-4c47-9d59-0c1f0e8f7a11"


async def test_a_cluster_of_another_project_is_not_found(clusters: ClusterService) -> None:
    cluster = await new_cluster(clusters)
    with pytest.raises(NotFound, match="Cluster not found"):
        await clusters.get(OTHER, cluster.id)
    with pytest.raises(NotFound):
        await clusters.get_view(OTHER, cluster.id)


async def test_a_nodepool_of_another_project_is_not_found_on_reads_and_writes(
    clusters: ClusterService, nodepools: NodePoolService
) -> None:
    pool = await new_nodepool(nodepools, (await new_cluster(clusters)).id)
    with pytest.raises(NotFound, match="NodePool not found"):
        await nodepools.get(OTHER, pool.id)
    with pytest.raises(NotFound):
        await nodepools.status_view(OTHER, pool.id)
    with pytest.raises(NotFound):
        await nodepools.delete(OTHER, pool.id, NO_PRECONDITIONS, dry_run=False)
    assert (await nodepools.get(OWNER, pool.id)).rv == pool.rv


async def test_an_identical_replace_changes_nothing_not_even_the_resource_version(
    clusters: ClusterService, redis: Redis, settings: Settings
) -> None:
    cluster = await new_cluster(clusters)
    same = ClusterUpdate.model_validate(gcp_cluster_body())
    replaced = await clusters.replace(OWNER, cluster.id, same, NO_PRECONDITIONS, dry_run=False)
    assert replaced.rv == cluster.rv
    assert await outbox_types(redis, settings) == ["cluster.created"]


async def test_a_spec_change_is_the_next_generation_and_publishes_an_update(
    clusters: ClusterService, nodepools: NodePoolService, redis: Redis, settings: Settings
) -> None:
    pool = await new_nodepool(nodepools, (await new_cluster(clusters)).id)
    body = seed_nodepool_body(pool.cluster_id, "workers")
    body["spec"]["nodeCount"] = 5
    update = NodePoolUpdate.model_validate(body)
    replaced = await nodepools.replace(OWNER, pool.id, update, NO_PRECONDITIONS, dry_run=False)
    assert (replaced.generation, replaced.doc["spec"]["nodeCount"]) == (2, 5)
    assert replaced.rv != pool.rv
    stored = await nodepools.get(OWNER, pool.id)
    assert (stored.generation, stored.rv) == (2, replaced.rv)
    assert (await outbox_types(redis, settings))[-1] == "nodepool.updated"


async def test_a_rename_keeps_the_generation_and_publishes_nothing(
    clusters: ClusterService, redis: Redis, settings: Settings
) -> None:
    cluster = await new_cluster(clusters)
    renamed = ClusterUpdate.model_validate(gcp_cluster_body("renamed"))
    replaced = await clusters.replace(OWNER, cluster.id, renamed, NO_PRECONDITIONS, dry_run=False)
    assert (replaced.name, replaced.generation) == ("renamed", 1)
    assert (await clusters.get(OWNER, cluster.id)).name == "renamed"
    assert await outbox_types(redis, settings) == ["cluster.created"]


async def test_a_cluster_name_is_unique_per_project(clusters: ClusterService) -> None:
    first = await new_cluster(clusters, "taken")
    with pytest.raises(Conflict, match="Cluster with name 'taken' already exists") as refused:
        await new_cluster(clusters, "taken")
    assert first.id in refused.value.details


async def test_a_nodepool_name_is_unique_in_its_cluster_only(
    clusters: ClusterService, nodepools: NodePoolService
) -> None:
    one, two = await new_cluster(clusters, "one"), await new_cluster(clusters, "two")
    await new_nodepool(nodepools, one.id, "workers")
    with pytest.raises(Conflict, match="already exists in cluster"):
        await new_nodepool(nodepools, one.id, "workers")
    assert (await new_nodepool(nodepools, two.id, "workers")).cluster_id == two.id


async def test_a_rename_onto_a_taken_name_is_refused_and_changes_nothing(
    clusters: ClusterService,
) -> None:
    await new_cluster(clusters, "taken")
    cluster = await new_cluster(clusters, "mine")
    onto = ClusterUpdate.model_validate(gcp_cluster_body("taken"))
    with pytest.raises(Conflict):
        await clusters.replace(OWNER, cluster.id, onto, NO_PRECONDITIONS, dry_run=False)
    assert (await clusters.get(OWNER, cluster.id)).rv == cluster.rv


async def test_a_dry_run_create_judges_and_writes_nothing(
    clusters: ClusterService, redis: Redis, settings: Settings
) -> None:
    cluster = await new_cluster(clusters)
    body = NodePoolCreate.model_validate(seed_nodepool_body(cluster.id))
    judged = await clusters.nodepools.create(OWNER, body, None, True)
    assert await clusters.store.cluster_nodepool_ids(cluster.id) == []
    assert await outbox_types(redis, settings) == ["cluster.created"]
    assert judged.name == "production-workers"  # type: ignore[union-attr]


@pytest.mark.settings_update(max_nodepools_per_cluster=1)
async def test_the_nodepool_quota_counts_per_cluster(
    clusters: ClusterService, nodepools: NodePoolService
) -> None:
    one, two = await new_cluster(clusters, "one"), await new_cluster(clusters, "two")
    await new_nodepool(nodepools, one.id, "a")
    with pytest.raises(QuotaExceeded, match="at most 1 nodepools per cluster"):
        await new_nodepool(nodepools, one.id, "b")
    await new_nodepool(nodepools, two.id, "a")


async def test_a_delete_publishes_the_next_generation_and_frees_the_name_once_purged(
    clusters: ClusterService,
    nodepools: NodePoolService,
    status: StatusService,
    redis: Redis,
    settings: Settings,
) -> None:
    cluster = await new_cluster(clusters)
    pool = await new_nodepool(nodepools, cluster.id)
    await nodepools.delete(OWNER, pool.id, NO_PRECONDITIONS, dry_run=False)
    await confirm_in_service(status, await nodepools.get(OWNER, pool.id))
    with pytest.raises(NotFound):
        await nodepools.get(OWNER, pool.id)
    entries: Any = await redis.xrange(settings.names.outbox)
    fields = entries[-1][1]
    assert (fields["rk"].startswith("nodepool.deleted."), fields["gen"]) == (True, "2")
    assert (await new_nodepool(nodepools, cluster.id)).name == pool.name


async def test_a_deleted_clusters_id_is_never_created_again(clusters: ClusterService) -> None:
    cluster = await new_cluster(clusters, id=CHOSEN_ID)
    await clusters.delete(OWNER, cluster.id, NO_PRECONDITIONS, dry_run=False, forced_reason="t")
    with pytest.raises(Conflict, match="Cluster id is not available"):
        await new_cluster(clusters, "again", id=CHOSEN_ID)


async def test_a_forced_cluster_delete_removes_its_nodepools_first(
    clusters: ClusterService, nodepools: NodePoolService, redis: Redis, settings: Settings
) -> None:
    cluster = await new_cluster(clusters)
    pools = [await new_nodepool(nodepools, cluster.id, f"p{i}") for i in range(3)]
    with pytest.raises(Conflict, match="Cluster still has nodepools"):
        await clusters.delete(OWNER, cluster.id, NO_PRECONDITIONS, dry_run=False)
    await clusters.delete(OWNER, cluster.id, NO_PRECONDITIONS, dry_run=False, forced_reason="t")
    await finish_cluster_deletions(settings)
    for pool in pools:
        with pytest.raises(NotFound):
            await nodepools.get(OWNER, pool.id)
    # The cluster's event first (its deletion accepted), then its nodepools' (the cascade).
    assert (await outbox_types(redis, settings))[-4:] == [
        "cluster.deleted",
        *["nodepool.deleted"] * 3,
    ]


@pytest.mark.settings_update(max_nodepools_per_cluster=1)
async def test_a_nodepool_create_overtaken_at_the_last_free_place_is_refused(
    clusters: ClusterService,
    nodepools: NodePoolService,
    store: RedisStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another create commits between this create's decision and its commit: the quota is
    # counted in the transaction, so it still sees the place taken (no timing involved).
    cluster = await new_cluster(clusters)
    overtake = overtaking(store, monkeypatch, lambda: new_nodepool(nodepools, cluster.id, "a"))
    with pytest.raises(QuotaExceeded):
        await new_nodepool(nodepools, cluster.id, "b")
    assert await store.cluster_nodepool_ids(cluster.id) == [(await overtake).id]


@pytest.mark.settings_update(max_clusters_per_project=1)
async def test_a_cluster_create_overtaken_at_the_last_free_place_is_refused(
    clusters: ClusterService, store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The owner's personal project exists already, so the next transaction is the create's.
    await clusters.projects.ensure_personal(OWNER)
    overtake = overtaking(store, monkeypatch, lambda: new_cluster(clusters, "first"))
    with pytest.raises(QuotaExceeded):
        await new_cluster(clusters, "second")
    first = await overtake
    listed = await clusters.list(OWNER, platform=None, phase=None, limit=10, offset=0)
    assert listed[0] == 1 and first.id in listed[1]
