"""A cluster's forced deletion survives a SIGKILL of ``python -m event_jobs`` mid-cascade: the
work still to do is in Redis, and the next process finishes it, leaving nothing behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from cls_core.services.clusters import ClusterService
from cls_core.services.common import Preconditions
from cls_core.services.nodepools import NodePoolService
from cls_core.services.projects import ProjectService
from cls_core.store import ClusterRecord, RedisStore
from cls_runtime.settings import Settings
from shared_models.resources import ClusterCreate, NodePoolCreate
from tests.conftest import gcp_cluster_body, seed_nodepool_body
from tests.events.conftest import EventsProcesses
from tests.services.conftest import OWNER

POOLS = 200
PATIENCE = 60.0
# Small batches, so that the kill lands mid-cascade; a short lock, so the next one leads soon.
SLOW_CASCADE = {"CLS_DELETION_BATCH_SIZE": "2", "CLS_LEADER_LOCK_TTL": "1"}


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


@pytest.mark.settings_update(max_nodepools_per_cluster=POOLS)
async def test_a_cascade_killed_with_its_process_is_finished_by_the_next_one(
    settings: Settings, store: RedisStore, redis: Redis, events_processes: EventsProcesses
) -> None:
    nodepools = NodePoolService(store, settings)
    clusters = ClusterService(store, settings, nodepools, ProjectService(store, settings))
    cluster = await clusters.create(OWNER, ClusterCreate.model_validate(gcp_cluster_body()), False)
    assert isinstance(cluster, ClusterRecord)
    cluster_id = cluster.id
    for name in range(POOLS):
        body = NodePoolCreate.model_validate(seed_nodepool_body(cluster_id, f"p{name}"))
        await nodepools.create(OWNER, body, None, False)
    names = settings.names
    members = names.cluster_nodepools(cluster_id)

    first = await events_processes.start(**SLOW_CASCADE)
    await clusters.delete(OWNER, cluster_id, Preconditions(), False, forced_reason="sigkill")

    async def started() -> bool:
        return int(await redis.zcard(members)) < POOLS - 20

    await until(started, "the cascade never started")
    first.kill()  # SIGKILL: mid-cascade, no lock released
    left = int(await redis.zcard(members))
    assert 0 < left < POOLS
    assert await redis.hexists(names.deleting_clusters, cluster_id)

    await events_processes.start(**SLOW_CASCADE)

    async def purged() -> bool:
        return not await redis.exists(names.record("cluster", cluster_id))

    await until(purged, "the next process did not finish the cascade")
    assert await redis.zcard(members) == 0
    assert not await redis.hexists(names.deleting_clusters, cluster_id)
    leftovers = [key async for key in redis.scan_iter(f"{names.namespace}:nodepool:*", count=1000)]
    assert leftovers == []
    assert await redis.exists(names.tombstone("cluster", cluster_id))
