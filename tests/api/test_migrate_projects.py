"""Resources stored before projects existed (cls_core/services/migrate_projects.py): the
migration moves each into its creator's personal project, and the API then answers for it
exactly as for a resource created in that project. Old records are made here by rewriting new
ones back into the layout of the release before projects (``store_as_before_projects``)."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from cls_core.services.migrate_projects import migrate_to_projects
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, Txn
from cls_runtime.settings import Settings
from shared_models.names import Kind
from shared_models.projects import personal_project_id
from tests.api.conftest import API, create_nodepool
from tests.conftest import OTHER_USER, USER, gcp_cluster_body, matching_keys
from tests.support.resources import create_cluster

EMAIL = USER["X-User-Email"]


async def store_as_before_projects(store: RedisStore, kind: Kind, resource_id: str) -> None:
    """Rewrite a record as the release before projects stored it: ``owner`` (the creator's
    email) instead of ``project``, indexes and names keyed by the email, no project_id."""
    names = store.names
    record: ClusterRecord | NodePoolRecord | None = (
        await store.get_cluster(resource_id)
        if kind == "cluster"
        else await store.get_nodepool(resource_id)
    )
    assert record is not None
    doc: Any = {k: v for k, v in record.doc.items() if k != "project_id"}
    old = record.with_changes(project_id=EMAIL, doc=doc)
    txn = Txn()
    old.put(txn, names)
    txn.hdel(names.record(kind, resource_id), "project")
    txn.hset(names.record(kind, resource_id), {"owner": EMAIL})
    txn.move_in_indexes(record.index_keys(names), old.index_keys(names), record.seq, record.id)
    if kind == "cluster":
        txn.hdel(names.cluster_names(record.project_id), record.name)
        txn.hset(names.cluster_names(EMAIL), {record.name: record.id})
    await store.run(txn)


async def forget_personal_project(redis: Redis, settings: Settings) -> None:
    """The release before projects had none: remove what its first use wrote."""
    names = settings.names
    project_id = personal_project_id(EMAIL)
    await redis.delete(
        names.project(project_id),
        names.project_members(project_id),
        names.user_projects(EMAIL),
        names.project_names(EMAIL),
    )


async def readings(api: httpx.AsyncClient, ids: dict[str, str]) -> list[Any]:
    paths = [f"/clusters/{ids['cl']}", f"/nodepools/{ids['np']}", "/clusters", "/nodepools"]
    return [(await api.get(API + path, headers=USER)).json() for path in paths]


async def made_old(
    api: httpx.AsyncClient, store: RedisStore, redis: Redis, settings: Settings
) -> tuple[dict[str, str], list[Any]]:
    """A cluster and a nodepool stored as before projects, and what the API answered for them
    before they were rewritten."""
    cluster = await create_cluster(api)
    nodepool = await create_nodepool(api, cluster["id"])
    ids = {"cl": cluster["id"], "np": nodepool["id"]}
    before = await readings(api, ids)
    await store_as_before_projects(store, "cluster", ids["cl"])
    await store_as_before_projects(store, "nodepool", ids["np"])
    await forget_personal_project(redis, settings)
    return ids, before


async def test_migrated_resources_read_exactly_as_before_the_rewrite(
    api: httpx.AsyncClient, store: RedisStore, redis: Redis, settings: Settings
) -> None:
    ids, before = await made_old(api, store, redis, settings)
    report = await migrate_to_projects(redis, settings)
    assert report.moved == {"cluster": 1, "nodepool": 1} and not report.raced
    assert await readings(api, ids) == before


async def test_migration_leaves_no_index_or_name_keyed_by_the_email(
    api: httpx.AsyncClient, store: RedisStore, redis: Redis, settings: Settings
) -> None:
    await made_old(api, store, redis, settings)
    assert await matching_keys(redis, f"{settings.namespace}:idx:*:{EMAIL}:*")
    await migrate_to_projects(redis, settings)
    assert await matching_keys(redis, f"{settings.namespace}:idx:*:{EMAIL}:*") == []
    assert await redis.hlen(settings.names.cluster_names(EMAIL)) == 0
    projects = (await api.get(f"{API}/projects", headers=USER)).json()["projects"]
    assert [p["personal"] for p in projects] == [True]


async def test_migrated_resources_stay_invisible_to_other_users(
    api: httpx.AsyncClient, store: RedisStore, redis: Redis, settings: Settings
) -> None:
    ids, _ = await made_old(api, store, redis, settings)
    await migrate_to_projects(redis, settings)
    foreign = await api.get(f"{API}/clusters/{ids['cl']}", headers=OTHER_USER)
    assert foreign.status_code == 404
    assert (await api.get(f"{API}/nodepools", headers=OTHER_USER)).json()["total"] == 0


async def test_running_the_migration_again_changes_nothing(
    api: httpx.AsyncClient, store: RedisStore, redis: Redis, settings: Settings
) -> None:
    ids, before = await made_old(api, store, redis, settings)
    await migrate_to_projects(redis, settings)
    again = await migrate_to_projects(redis, settings)
    assert again.moved == {"cluster": 0, "nodepool": 0} and again.already == 2
    assert await readings(api, ids) == before


async def test_a_migrated_cluster_keeps_its_name_reserved_in_its_project(
    api: httpx.AsyncClient, store: RedisStore, redis: Redis, settings: Settings
) -> None:
    await made_old(api, store, redis, settings)
    await migrate_to_projects(redis, settings)
    again = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
    assert again.status_code == 409, again.text
