"""A nodepool create, replace or patch validates against a snapshot of its cluster taken by an
earlier request (cls_core/services/cluster_snapshots.py); whatever happened to the cluster since,
the write answers as if it had read the cluster afresh."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import (
    API,
    MERGE_PATCH,
    assert_error,
    create_nodepool,
    recorded_commands,
    update_body,
)
from tests.conftest import USER, gcp_cluster_body, seed_nodepool_body
from tests.support.deletion import purge_cluster
from tests.support.resources import create_cluster

CLUSTER_ID = "7d1f0c2e-9a4b-4c3d-8e5f-6a7b8c9d0e1f"


def nodepool_in(cluster_id: str, name: str, zone: str) -> dict[str, Any]:
    body = seed_nodepool_body(cluster_id, name)
    body["spec"]["platform"]["gcp"]["zones"] = [zone]
    return body


async def create_regional_cluster(api: httpx.AsyncClient, region: str) -> dict[str, Any]:
    body = gcp_cluster_body("snapshots", id=CLUSTER_ID)
    body["spec"]["platform"]["gcp"]["region"] = region
    response = await api.post(f"{API}/clusters", json=body, headers=USER)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_after_the_cluster_changed_is_created(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    await create_nodepool(api, cluster["id"], "first")  # the snapshot
    renamed = {"name": "renamed", "spec": cluster["spec"]}
    response = await api.put(f"{API}/clusters/{cluster['id']}", json=renamed, headers=USER)
    assert response.status_code == 200, response.text
    assert response.json()["resource_version"] != cluster["resource_version"]

    created = await create_nodepool(api, cluster["id"], "second")
    assert created["cluster_id"] == cluster["id"]


async def test_create_after_the_cluster_was_deleted_is_not_found(
    api: httpx.AsyncClient, cluster: dict[str, Any], settings: Settings
) -> None:
    await create_nodepool(api, cluster["id"], "first")
    await purge_cluster(api, settings, cluster["id"], force=True)

    response = await api.post(
        f"{API}/nodepools", json=seed_nodepool_body(cluster["id"], "second"), headers=USER
    )
    assert_error(response, 404, "NOT_FOUND")


async def test_a_deleted_cluster_id_is_never_recreated_under_a_snapshot(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """A snapshot can never meet a new cluster under an old id: the id is retired."""
    await create_regional_cluster(api, "us-central1")
    await create_nodepool(api, CLUSTER_ID, body=nodepool_in(CLUSTER_ID, "old", "us-central1-a"))
    await purge_cluster(api, settings, CLUSTER_ID, force=True)
    body = gcp_cluster_body("snapshots", id=CLUSTER_ID)
    response = await api.post(f"{API}/clusters", json=body, headers=USER)
    assert assert_error(response, 409, "CONFLICT")["message"] == "Cluster id is not available"
    response = await api.post(
        f"{API}/nodepools", json=nodepool_in(CLUSTER_ID, "stale", "us-central1-a"), headers=USER
    )
    assert_error(response, 404, "NOT_FOUND")


async def test_a_dry_run_after_the_cluster_changed_writes_nothing(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    await create_nodepool(api, cluster["id"], "first")
    renamed = {"name": "renamed", "spec": cluster["spec"]}
    response = await api.put(f"{API}/clusters/{cluster['id']}", json=renamed, headers=USER)
    assert response.status_code == 200, response.text

    body = seed_nodepool_body(cluster["id"], "dry")
    response = await api.post(f"{API}/nodepools?dryRun=true", json=body, headers=USER)
    assert response.status_code in (200, 201), response.text
    listed = await api.get(f"{API}/clusters/{cluster['id']}/nodepools", headers=USER)
    assert [np["name"] for np in listed.json()["nodepools"]] == ["first"]


async def test_a_replace_after_the_cluster_changed_is_applied(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    nodepool = await create_nodepool(api, cluster["id"])  # the snapshot
    renamed = {"name": "renamed", "spec": cluster["spec"]}
    response = await api.put(f"{API}/clusters/{cluster['id']}", json=renamed, headers=USER)
    assert response.status_code == 200, response.text

    path = f"{API}/nodepools/{nodepool['id']}"
    response = await api.put(path, json=update_body(node_count=8), headers=USER)
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == 2
    assert (await api.get(path, headers=USER)).json()["spec"]["nodeCount"] == 8


async def test_a_patch_with_a_snapshot_reads_only_the_rv_of_its_cluster(
    private_api: httpx.AsyncClient, private_client: Redis, private_settings: Settings
) -> None:
    cluster = await create_cluster(private_api)
    nodepool = await create_nodepool(private_api, cluster["id"])  # the snapshot
    async with recorded_commands(private_client) as seen:
        response = await private_api.patch(
            f"{API}/nodepools/{nodepool['id']}",
            json={"spec": {"nodeCount": 4}},
            headers={**USER, **MERGE_PATCH},
        )
    assert response.status_code == 200, response.text
    cluster_key = private_settings.names.record("cluster", cluster["id"])
    touched = [command for _, command in seen if command.split()[1:2] == [cluster_key]]
    assert [command.split() for command in touched] == [["HGET", cluster_key, "rv"]], touched
