"""?dryRun=true on create, PUT, PATCH and DELETE: every check runs (body, parent, ownership,
name uniqueness, preconditions, nodepools left in a cluster) and the answer is what a real write
would answer, but nothing is written: no record, no index entry, no name reservation, no outbox
event. A dryRun that is not a boolean is a 400, never read as "no"."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import (
    API,
    MERGE_PATCH,
    assert_error,
    create_nodepool,
    error_fields,
    update_body,
)
from tests.conftest import OTHER_USER, USER, gcp_cluster_body, matching_keys, seed_nodepool_body
from tests.support.resources import create_cluster

NO_SUCH_ID = "0f0f0f0f-0000-4000-8000-000000000000"


async def footprint(redis: Redis, settings: Settings) -> tuple[int, int, int]:
    """(outbox events, reconcile entries, keys) of the test's namespace."""
    names = settings.names
    keys = await matching_keys(redis, f"{settings.namespace}:*")
    return await redis.xlen(names.outbox), await redis.zcard(names.reconcile_due), len(keys)


@pytest.mark.parametrize("form", ["POST /nodepools", "POST /clusters/{cl}/nodepools"])
async def test_dry_run_create_answers_201_and_writes_nothing(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings, form: str
) -> None:
    before = await footprint(redis, settings)
    url = API + form.split()[1].format(cl=cluster["id"]) + "?dryRun=true"
    response = await api.post(url, json=seed_nodepool_body(cluster["id"]), headers=USER)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["generation"], answer["cluster_id"]) == (1, cluster["id"])
    assert answer["status"]["phase"] == "Pending"
    assert response.headers["ETag"] == f'"{answer["resource_version"]}"'
    assert await footprint(redis, settings) == before
    assert (await api.get(f"{API}/nodepools/{answer['id']}", headers=USER)).status_code == 404
    assert (await api.get(f"{API}/nodepools", headers=USER)).json()["total"] == 0
    # The name was not reserved.
    await create_nodepool(api, cluster["id"])


async def test_dry_run_create_checks_the_parent_cluster(api: httpx.AsyncClient) -> None:
    body = seed_nodepool_body(NO_SUCH_ID)
    response = await api.post(f"{API}/nodepools?dryRun=true", json=body, headers=USER)
    assert assert_error(response, 404, "NOT_FOUND")["message"] == "Cluster not found"


async def test_dry_run_create_checks_ownership(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"])
    response = await api.post(f"{API}/nodepools?dryRun=true", json=body, headers=OTHER_USER)
    assert_error(response, 404, "NOT_FOUND")


async def test_dry_run_create_checks_name_uniqueness(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = seed_nodepool_body(nodepool["cluster_id"])
    response = await api.post(f"{API}/nodepools?dryRun=true", json=body, headers=USER)
    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == f"existing nodepool id: {nodepool['id']}"


async def test_dry_run_create_validates_the_body(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"])
    body["spec"]["nodeCount"] = 50
    response = await api.post(f"{API}/nodepools?dryRun=true", json=body, headers=USER)
    assert error_fields(response) == {"spec.nodeCount"}


async def test_dry_run_cluster_create_writes_nothing_but_checks_names_and_ids(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    before = await footprint(redis, settings)
    response = await api.post(f"{API}/clusters?dryRun=true", json=gcp_cluster_body(), headers=USER)
    assert response.status_code == 201, response.text
    assert await footprint(redis, settings) == before
    assert (await api.get(f"{API}/clusters", headers=USER)).json()["total"] == 0
    existing = await create_cluster(api)
    taken_name = await api.post(
        f"{API}/clusters?dryRun=true", json=gcp_cluster_body(), headers=USER
    )
    assert_error(taken_name, 409, "CONFLICT")
    taken_id = await api.post(
        f"{API}/clusters?dryRun=true", json=gcp_cluster_body("x", id=existing["id"]), headers=USER
    )
    assert_error(taken_id, 409, "CONFLICT")


async def test_dry_run_put_answers_the_new_version_and_changes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    before = await footprint(redis, settings)
    response = await api.put(f"{url}?dryRun=true", json=update_body("renamed", 7), headers=USER)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["name"], answer["generation"], answer["spec"]["nodeCount"]) == ("renamed", 2, 7)
    assert answer["resource_version"] != nodepool["resource_version"]
    assert (await api.get(url, headers=USER)).json() == nodepool
    assert await footprint(redis, settings) == before
    # The old name is still the nodepool's, the new one still free.
    await create_nodepool(api, nodepool["cluster_id"], "renamed")


async def test_dry_run_patch_answers_the_merged_result_and_changes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    before = await footprint(redis, settings)
    response = await api.patch(
        f"{url}?dryRun=true", json={"spec": {"nodeCount": 9}}, headers={**USER, **MERGE_PATCH}
    )
    assert response.status_code == 200, response.text
    assert response.json()["spec"] == {**nodepool["spec"], "nodeCount": 9}
    assert (await api.get(url, headers=USER)).json() == nodepool
    assert await footprint(redis, settings) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_dry_run_update_checks_if_match(
    api: httpx.AsyncClient, nodepool: dict[str, Any], method: str
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}?dryRun=true"
    body = update_body(node_count=4) if method == "PUT" else {"spec": {"nodeCount": 4}}
    stale = {**USER, **MERGE_PATCH, "If-Match": '"0000000000000000"'}
    assert_error(await api.request(method, url, json=body, headers=stale), 409, "CONFLICT")
    fresh = {**stale, "If-Match": f'"{nodepool["resource_version"]}"'}
    assert (await api.request(method, url, json=body, headers=fresh)).status_code == 200


async def test_dry_run_rename_checks_name_uniqueness(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    other = await create_nodepool(api, nodepool["cluster_id"], "other")
    url = f"{API}/nodepools/{other['id']}?dryRun=true"
    response = await api.put(url, json=update_body("production-workers"), headers=USER)
    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == f"existing nodepool id: {nodepool['id']}"


async def test_dry_run_cluster_put_changes_nothing(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    url = f"{API}/clusters/{cluster['id']}"
    body = gcp_cluster_body("renamed")
    body["spec"]["release"] = {"version": "1.31"}
    response = await api.put(f"{url}?dryRun=true", json=body, headers=USER)
    assert (response.status_code, response.json()["generation"]) == (200, 2)
    assert (await api.get(url, headers=USER)).json() == cluster


async def test_dry_run_false_writes(api: httpx.AsyncClient, cluster: dict[str, Any]) -> None:
    url = f"{API}/nodepools?dryRun=false"
    created = await api.post(url, json=seed_nodepool_body(cluster["id"]), headers=USER)
    fetched = await api.get(f"{API}/nodepools/{created.json()['id']}", headers=USER)
    assert fetched.status_code == 200


async def test_dry_run_nodepool_delete_answers_204_and_deletes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    before = await footprint(redis, settings)
    response = await api.delete(f"{url}?dryRun=true", headers=USER)
    assert response.status_code == 204, response.text
    assert (await api.get(url, headers=USER)).json() == nodepool
    assert await footprint(redis, settings) == before


async def test_dry_run_nodepool_delete_checks_ownership_and_if_match(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}?dryRun=true"
    assert_error(await api.delete(url, headers=OTHER_USER), 404, "NOT_FOUND")
    stale = {**USER, "If-Match": '"0000000000000000"'}
    assert_error(await api.delete(url, headers=stale), 409, "CONFLICT")


async def test_dry_run_forced_cluster_delete_deletes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    url = f"{API}/clusters/{nodepool['cluster_id']}"
    cluster = (await api.get(url, headers=USER)).json()
    before = await footprint(redis, settings)
    response = await api.delete(f"{url}?force=true&dryRun=true", headers=USER)
    assert response.status_code == 202, response.text
    # What the real one would answer: the cluster entering phase Deleting.
    answered = response.json()
    assert answered["status"]["phase"] == "Deleting"
    assert answered["generation"] == cluster["generation"] + 1
    assert "deletion_timestamp" in answered
    assert await footprint(redis, settings) == before
    assert (await api.get(url, headers=USER)).json() == cluster
    fetched = await api.get(f"{API}/nodepools/{nodepool['id']}", headers=USER)
    assert fetched.json() == nodepool


async def test_dry_run_cluster_delete_checks_nodepools_left_without_force(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/clusters/{nodepool['cluster_id']}?dryRun=true"
    error = assert_error(await api.delete(url, headers=USER), 409, "CONFLICT")
    assert error["message"] == "Cluster still has nodepools"


async def test_dry_run_cluster_delete_checks_ownership_and_if_match(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    url = f"{API}/clusters/{cluster['id']}?dryRun=true"
    assert_error(await api.delete(url, headers=OTHER_USER), 404, "NOT_FOUND")
    stale = {**USER, "If-Match": '"0000000000000000"'}
    assert_error(await api.delete(url, headers=stale), 409, "CONFLICT")


@pytest.mark.parametrize("value", ["bogus", "", "2", "truee"])
@pytest.mark.parametrize(
    "target", ["DELETE nodepool", "DELETE cluster", "PUT nodepool", "POST nodepools"]
)
async def test_an_invalid_dry_run_value_is_400_and_writes_nothing(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    redis: Redis,
    settings: Settings,
    value: str,
    target: str,
) -> None:
    method, kind = target.split()
    url = {
        "nodepool": f"{API}/nodepools/{nodepool['id']}",
        "cluster": f"{API}/clusters/{nodepool['cluster_id']}",
        "nodepools": f"{API}/nodepools",
    }[kind]
    body = {"PUT": update_body(node_count=4), "POST": seed_nodepool_body(nodepool["cluster_id"])}
    before = await footprint(redis, settings)
    response = await api.request(
        method,
        f"{url}?force=true&dryRun={value}" if kind == "cluster" else f"{url}?dryRun={value}",
        json=body.get(method),
        headers=USER,
    )
    assert error_fields(response) == {"dryRun"}
    assert await footprint(redis, settings) == before
