"""Cluster create/get/update/delete: a chosen id, generation on spec changes, and delete that
refuses while nodepools exist unless ?force=true, which removes them too (with their events,
in the same atomic write)."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from shared_models.projects import personal_project_id
from tests.api.conftest import API, SEED_CLUSTER_ID, assert_error, create_nodepool
from tests.conftest import USER, gcp_cluster_body
from tests.support.deletion import finish_cluster_deletions, purge_cluster
from tests.support.resources import create_cluster


async def outbox(redis: Redis, settings: Settings) -> list[dict[str, str]]:
    """The fields of every event waiting in the outbox, oldest first."""
    entries = await redis.xrange(settings.names.outbox) or []
    return [{str(k): str(v) for k, v in (fields or {}).items()} for _, fields in entries]


async def test_create_with_the_guides_id(api: httpx.AsyncClient) -> None:
    created = await create_cluster(api, gcp_cluster_body("seed", id=SEED_CLUSTER_ID))
    assert created["id"] == SEED_CLUSTER_ID
    assert set(created) == {
        "id",
        "name",
        "project_id",
        "generation",
        "resource_version",
        "spec",
        "status",
        "created_at",
        "updated_at",
        "created_by",
    }
    assert created["project_id"] == personal_project_id(USER["X-User-Email"])
    fetched = await api.get(f"{API}/clusters/{SEED_CLUSTER_ID}", headers=USER)
    assert fetched.json() == created
    assert fetched.headers["ETag"] == f'"{created["resource_version"]}"'


async def test_create_without_an_id_gets_a_fresh_uuid(api: httpx.AsyncClient) -> None:
    first = await create_cluster(api, gcp_cluster_body("one"))
    second = await create_cluster(api, gcp_cluster_body("two"))
    assert first["id"] != second["id"]
    assert first["status"]["phase"] == "Pending"


async def test_put_changing_the_spec_increments_generation(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = gcp_cluster_body()
    body["spec"]["release"] = {"version": "1.31.0"}
    response = await api.put(f"{API}/clusters/{cluster['id']}", json=body, headers=USER)
    assert response.status_code == 200, response.text
    assert (response.json()["generation"], response.json()["spec"]) == (2, body["spec"])


async def test_identical_put_changes_nothing(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    response = await api.put(
        f"{API}/clusters/{cluster['id']}", json=gcp_cluster_body(), headers=USER
    )
    assert response.json() == cluster


async def test_stale_if_match_on_cluster_put_and_delete_is_409(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    url = f"{API}/clusters/{cluster['id']}"
    stale = {**USER, "If-Match": '"0000000000000000"'}
    assert_error(await api.put(url, json=gcp_cluster_body("x"), headers=stale), 409, "CONFLICT")
    assert_error(await api.delete(url, headers=stale), 409, "CONFLICT")
    assert (await api.get(url, headers=USER)).json() == cluster


async def test_delete_of_an_empty_cluster_is_202_and_frees_the_name_once_purged(
    api: httpx.AsyncClient, cluster: dict[str, Any], settings: Settings
) -> None:
    url = f"{API}/clusters/{cluster['id']}"
    await purge_cluster(api, settings, cluster["id"])
    assert_error(await api.get(url, headers=USER), 404, "NOT_FOUND")
    await create_cluster(api)  # the same name again


async def test_delete_is_409_while_nodepools_exist(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/clusters/{nodepool['cluster_id']}"
    error = assert_error(await api.delete(url, headers=USER), 409, "CONFLICT")
    assert error["message"] == "Cluster still has nodepools"
    assert "force=true" in error["details"]
    assert (await api.get(url, headers=USER)).status_code == 200
    assert (await api.get(f"{API}/nodepools/{nodepool['id']}", headers=USER)).status_code == 200


async def test_forced_delete_removes_the_nodepools_with_their_events(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    pools = [await create_nodepool(api, cluster["id"], f"pool-{i}") for i in range(3)]
    before = await outbox(redis, settings)
    response = await api.delete(f"{API}/clusters/{cluster['id']}?force=true", headers=USER)
    assert response.status_code == 202
    await finish_cluster_deletions(settings)
    for pool in pools:
        assert_error(await api.get(f"{API}/nodepools/{pool['id']}", headers=USER), 404, "NOT_FOUND")
    assert (await api.get(f"{API}/nodepools", headers=USER)).json()["total"] == 0
    assert (await api.get(f"{API}/clusters", headers=USER)).json()["total"] == 0
    new_events = (await outbox(redis, settings))[len(before) :]
    routing_keys = sorted(event["rk"] for event in new_events)
    assert routing_keys == ["cluster.deleted.gcp"] + ["nodepool.deleted.gcp"] * 3
    assert {event["res"] for event in new_events} == {cluster["id"]} | {p["id"] for p in pools}


async def test_names_are_free_again_after_a_forced_delete(
    api: httpx.AsyncClient, nodepool: dict[str, Any], settings: Settings
) -> None:
    await purge_cluster(api, settings, nodepool["cluster_id"], force=True)
    cluster = await create_cluster(api)
    await create_nodepool(api, cluster["id"], nodepool["name"])
