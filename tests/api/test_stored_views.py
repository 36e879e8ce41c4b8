"""Reads send each resource's JSON as rendered by its last write (the record's ``view``).

They must always show the current resource: after spec and status writes, for clusters too, and
even when a record has no current view (written by code that did not render it).
"""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import create_nodepool
from tests.conftest import USER, controller_headers

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
    key = settings.names.record("nodepool", nodepool["id"])
    await redis.hdel(key, "view", "view_rv")
    got, listed = await _get_and_listed(api, nodepool["id"])
    assert got.json() == listed == nodepool


async def test_view_older_than_the_record_is_never_sent(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    # A write that changed the record without rendering its view: the view must not be sent.
    key = settings.names.record("nodepool", nodepool["id"])
    await redis.hset(key, "rv", "0123456789abcdef")
    got, listed = await _get_and_listed(api, nodepool["id"])
    assert got.json()["resource_version"] == listed["resource_version"] == "0123456789abcdef"
    assert got.headers["ETag"] == '"0123456789abcdef"'


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
    await redis.hdel(settings.names.record("nodepool", created[1]["id"]), "view", "view_rv")
    page = await api.get("/api/v1/nodepools?limit=10", headers=USER)
    assert page.status_code == 200, page.text
    assert page.json()["nodepools"] == created
