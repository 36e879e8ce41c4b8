"""Reads send each resource's JSON as rendered by its last write (its view, a key of its own).

They must always show the current resource: after spec and status writes, for clusters too, and
even when a record has no view (stored before views had keys of their own). A deleted resource
leaves no view behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import MERGE_PATCH, create_nodepool
from tests.conftest import USER, controller_headers
from tests.support.deletion import delete_nodepool, finish_cluster_deletions

SCALED = {
    "name": "production-workers",
    "spec": {
        "platform": {"type": "gcp", "gcp": {"machineType": "n1-standard-4", "diskSize": 100}},
        "nodeCount": 6,
    },
}
READY_REPORT = {
    "controller_name": "gcp-nodepool-controller",
    "observed_generation": 2,
    "conditions": [{"type": "Ready", "status": "True", "reason": "NodesReady"}],
}


async def _get_and_listed(api: httpx.AsyncClient, nodepool_id: str) -> tuple[Any, Any]:
    got = await api.get(f"/api/v1/nodepools/{nodepool_id}", headers=USER)
    assert got.status_code == 200, got.text
    page = (await api.get("/api/v1/nodepools", headers=USER)).json()
    listed = next(item for item in page["nodepools"] if item["id"] == nodepool_id)
    return got, listed


async def test_get_and_list_show_the_spec_and_status_of_the_last_writes(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    path = f"/api/v1/nodepools/{nodepool['id']}"
    scaled = await api.put(path, json=SCALED, headers=USER)
    assert scaled.status_code == 200, scaled.text
    reported = await api.put(f"{path}/status", json=READY_REPORT, headers=controller_headers())
    assert reported.status_code == 200, reported.text
    got, listed = await _get_and_listed(api, nodepool["id"])
    body = got.json()
    assert body == listed
    assert body["generation"] == 2 and body["spec"]["nodeCount"] == 6
    assert body["status"]["phase"] == "Ready"
    assert body["resource_version"] != scaled.json()["resource_version"]
    assert got.headers["ETag"] == f'"{body["resource_version"]}"'
    assert got.headers["content-type"] == "application/json"


async def test_list_page_keeps_its_envelope(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    page = await api.get("/api/v1/nodepools?limit=10&offset=0", headers=USER)
    assert page.status_code == 200
    assert page.json() == {"nodepools": [nodepool], "total": 1, "limit": 10, "offset": 0}


async def test_record_without_a_view_is_assembled_from_its_fields(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    await redis.delete(settings.names.view("nodepool", nodepool["id"]))
    got, listed = await _get_and_listed(api, nodepool["id"])
    assert got.json() == listed == nodepool
    assert got.headers["ETag"] == f'"{nodepool["resource_version"]}"'


async def test_every_write_stores_the_view_a_get_answers(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    path = f"/api/v1/nodepools/{nodepool['id']}"
    view_key = settings.names.view("nodepool", nodepool["id"])
    writes: list[Callable[[], Awaitable[httpx.Response]]] = [  # spec, name alone, status
        lambda: api.put(path, json=SCALED, headers=USER),
        lambda: api.patch(path, json={"name": "renamed"}, headers={**USER, **MERGE_PATCH}),
        lambda: api.put(f"{path}/status", json=READY_REPORT, headers=controller_headers()),
    ]
    seen = nodepool
    for write in writes:
        response = await write()
        assert response.status_code == 200, response.text
        got = (await api.get(path, headers=USER)).json()
        assert got["resource_version"] != seen["resource_version"]  # the write is shown
        assert orjson.loads(await redis.get(view_key) or "null") == got
        seen = got


async def test_a_deleted_resource_leaves_no_view(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    names = settings.names
    other = await create_nodepool(api, nodepool["cluster_id"], "other")
    await delete_nodepool(api, nodepool["id"])
    assert await redis.exists(names.view("nodepool", nodepool["id"])) == 0
    assert await redis.exists(names.view("nodepool", other["id"])) == 1
    cascade = await api.delete(
        f"/api/v1/clusters/{nodepool['cluster_id']}?force=true", headers=USER
    )
    assert cascade.status_code == 202, cascade.text
    await finish_cluster_deletions(settings)
    views = [names.view("nodepool", other["id"]), names.view("cluster", nodepool["cluster_id"])]
    assert await redis.exists(*views) == 0


async def test_a_page_leaves_out_a_resource_deleted_after_its_id_was_read(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    created = [await create_nodepool(api, cluster["id"], f"np-{i}") for i in range(3)]
    # As a delete between the page's two reads leaves it: the id listed, its keys gone.
    gone = created[1]["id"]
    await redis.delete(
        settings.names.record("nodepool", gone), settings.names.view("nodepool", gone)
    )
    page = await api.get("/api/v1/nodepools?limit=10", headers=USER)
    assert page.status_code == 200, page.text
    assert page.json()["nodepools"] == [created[0], created[2]]
    assert page.json()["total"] == 3


async def test_cluster_get_and_list_show_the_last_status(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    report = {**READY_REPORT, "controller_name": "gcp-cluster-controller", "observed_generation": 1}
    headers = controller_headers("gcp-cluster-controller")
    put = await api.put(f"/api/v1/clusters/{cluster['id']}/status", json=report, headers=headers)
    assert put.status_code == 200, put.text
    got = (await api.get(f"/api/v1/clusters/{cluster['id']}", headers=USER)).json()
    listed = (await api.get("/api/v1/clusters", headers=USER)).json()["clusters"]
    assert listed == [got]
    assert got["status"]["phase"] == "Ready"
    assert got["resource_version"] != cluster["resource_version"]


async def test_a_page_mixing_current_and_unrendered_views_lists_each_in_order(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    created = [await create_nodepool(api, cluster["id"], f"np-{i}") for i in range(3)]
    await redis.delete(settings.names.view("nodepool", created[1]["id"]))
    page = await api.get("/api/v1/nodepools?limit=10", headers=USER)
    assert page.status_code == 200, page.text
    assert page.json()["nodepools"] == created
