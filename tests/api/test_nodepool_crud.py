"""Nodepool create/get/update/patch/delete over real Redis: generation, resource_version,
ETag and If-Match, merge-patch semantics, and names freed by renames and deletes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import API, MERGE_PATCH, assert_error, create_nodepool, update_body
from tests.conftest import USER, seed_nodepool_body
from tests.support.deletion import confirm_deletion, delete_nodepool


async def outbox_length(redis: Redis, settings: Settings) -> int:
    return int(await redis.xlen(settings.names.outbox))


async def test_create_returns_generation_1_and_etag(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    response = await api.post(
        f"{API}/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    assert response.status_code == 201
    body = response.json()
    assert body["generation"] == 1
    assert body["cluster_id"] == cluster["id"]
    assert body["created_by"] == "user@example.com"
    assert body["created_at"] == body["updated_at"]
    assert response.headers["ETag"] == f'"{body["resource_version"]}"'
    assert body["status"]["phase"] == "Pending"
    assert body["status"]["health"] == "Unknown"
    assert body["status"]["reason"] == "NoControllers"


async def test_scale_increments_generation(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=update_body(), headers=USER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["generation"], body["spec"]["nodeCount"]) == (2, 6)
    assert body["resource_version"] != nodepool["resource_version"]
    assert response.headers["ETag"] == f'"{body["resource_version"]}"'
    assert body["created_at"] == nodepool["created_at"]
    assert body["updated_at"] > nodepool["updated_at"]


async def test_identical_put_changes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    same = {"name": nodepool["name"], "spec": nodepool["spec"]}
    events = await outbox_length(redis, settings)
    response = await api.put(url, json=same, headers=USER)
    assert response.status_code == 200
    assert response.json() == nodepool  # same generation, resource_version and updated_at
    assert await outbox_length(redis, settings) == events
    assert (await api.get(url, headers=USER)).json() == nodepool


async def test_each_spec_change_is_one_generation_and_one_event(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    events = await outbox_length(redis, settings)
    for count in (4, 5, 6):
        await api.put(url, json=update_body(node_count=count), headers=USER)
    stored = (await api.get(url, headers=USER)).json()
    assert stored["generation"] == 4
    assert await outbox_length(redis, settings) == events + 3


async def test_rename_alone_keeps_the_generation_and_frees_the_old_name(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    renamed = await api.put(url, json={"name": "renamed", "spec": nodepool["spec"]}, headers=USER)
    body = renamed.json()
    assert (body["name"], body["generation"]) == ("renamed", 1)
    assert body["resource_version"] != nodepool["resource_version"]
    await create_nodepool(api, nodepool["cluster_id"], nodepool["name"])  # old name is free
    taken = await api.post(
        f"{API}/nodepools", json=seed_nodepool_body(nodepool["cluster_id"], "renamed"), headers=USER
    )
    assert_error(taken, 409, "CONFLICT")


# ---- merge patch ---------------------------------------------------------------------------


async def patch(
    api: httpx.AsyncClient, nodepool_id: str, body: Any, **headers: str
) -> httpx.Response:
    return await api.patch(
        f"{API}/nodepools/{nodepool_id}", json=body, headers={**USER, **MERGE_PATCH, **headers}
    )


async def test_patch_merges_nested_members_and_keeps_the_rest(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await patch(api, nodepool["id"], {"spec": {"platform": {"gcp": {"diskSize": 200}}}})
    body = response.json()
    gcp = body["spec"]["platform"]["gcp"]
    assert gcp == {**nodepool["spec"]["platform"]["gcp"], "diskSize": 200}
    assert body["spec"]["autoscaling"] == nodepool["spec"]["autoscaling"]
    assert body["generation"] == 2


async def test_patch_null_removes_a_member(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = (
        await patch(api, nodepool["id"], {"spec": {"autoscaling": None, "nodeCount": 20}})
    ).json()
    assert "autoscaling" not in body["spec"]
    assert body["spec"]["nodeCount"] == 20


async def test_patch_replaces_lists_whole(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    zones = {"spec": {"platform": {"gcp": {"zones": ["us-central1-c"]}}}}
    body = (await patch(api, nodepool["id"], zones)).json()
    assert body["spec"]["platform"]["gcp"]["zones"] == ["us-central1-c"]


async def test_patch_can_rename(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    body = (await patch(api, nodepool["id"], {"name": "renamed"})).json()
    assert (body["name"], body["generation"]) == ("renamed", 1)


async def test_empty_or_identical_patch_changes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    assert (await patch(api, nodepool["id"], {})).json() == nodepool
    same = {"spec": {"nodeCount": nodepool["spec"]["nodeCount"]}}
    assert (await patch(api, nodepool["id"], same)).json() == nodepool


async def test_patch_accepts_a_charset_parameter(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.patch(
        f"{API}/nodepools/{nodepool['id']}",
        content=b'{"spec": {"nodeCount": 4}}',
        headers={**USER, "Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text


# ---- If-Match ---------------------------------------------------------------------------------


def forms_of(resource_version: str) -> list[str]:
    return [
        f'"{resource_version}"',
        resource_version,
        f'W/"{resource_version}"',
        "*",
        f'"nope", "{resource_version}"',
    ]


@pytest.mark.parametrize("form", range(5), ids=["quoted", "bare", "weak", "star", "list"])
async def test_matching_if_match_lets_the_write_through(
    api: httpx.AsyncClient, nodepool: dict[str, Any], form: int
) -> None:
    if_match = forms_of(nodepool["resource_version"])[form]
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}",
        json=update_body(),
        headers={**USER, "If-Match": if_match},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_stale_if_match_is_409_and_changes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], method: str
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    stale = nodepool["resource_version"]
    await api.put(url, json=update_body(node_count=4), headers=USER)  # someone else's write
    current = (await api.get(url, headers=USER)).json()
    body = {"spec": {"nodeCount": 9}} if method == "PATCH" else update_body(node_count=9)
    headers = {**USER, **MERGE_PATCH, "If-Match": f'"{stale}"'}
    response = await api.request(
        method, url, json=None if method == "DELETE" else body, headers=headers
    )
    error = assert_error(response, 409, "CONFLICT")
    assert error["message"] == "NodePool has changed since you read it"
    assert (await api.get(url, headers=USER)).json() == current


async def test_delete_with_current_if_match_deletes(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    headers = {**USER, "If-Match": f'"{nodepool["resource_version"]}"'}
    response = await api.delete(f"{API}/nodepools/{nodepool['id']}", headers=headers)
    assert response.status_code == 204


# ---- delete ----------------------------------------------------------------------------------


async def test_delete_is_204_then_404_once_its_controllers_confirm(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    assert (await api.delete(url, headers=USER)).status_code == 204
    await confirm_deletion(api, f"nodepools/{nodepool['id']}")
    assert_error(await api.get(url, headers=USER), 404, "NOT_FOUND")
    assert_error(await api.delete(url, headers=USER), 404, "NOT_FOUND")
    assert_error(await api.put(url, json=update_body(), headers=USER), 404, "NOT_FOUND")


async def test_a_deleted_name_can_be_reused(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    await delete_nodepool(api, nodepool["id"])
    again = await create_nodepool(api, nodepool["cluster_id"], nodepool["name"])
    assert again["id"] != nodepool["id"]
    assert again["generation"] == 1
    listing = (await api.get(f"{API}/nodepools", headers=USER)).json()
    assert [n["id"] for n in listing["nodepools"]] == [again["id"]]
