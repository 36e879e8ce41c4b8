"""What clients of the original system send and expect: spec-only updates (no name) and a
cluster DELETE that answers with a JSON body."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import API, assert_error, update_body
from tests.conftest import USER, gcp_cluster_body


async def test_a_nodepool_put_without_name_keeps_the_name_and_replaces_the_spec(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    spec_only = {"spec": update_body(node_count=4)["spec"]}
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=spec_only, headers=USER)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["name"], updated["generation"]) == (nodepool["name"], 2)
    assert updated["spec"] == spec_only["spec"]


async def test_a_cluster_put_without_name_keeps_the_name(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    spec = {**cluster["spec"], "release": {"version": "1.31"}}
    response = await api.put(f"{API}/clusters/{cluster['id']}", json={"spec": spec}, headers=USER)
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["generation"]) == (cluster["name"], 2)


async def test_a_put_with_name_still_renames(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}", json=update_body("renamed"), headers=USER
    )
    assert response.json()["name"] == "renamed"


async def test_a_merge_patch_cannot_remove_the_name(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    headers = {**USER, "Content-Type": "application/merge-patch+json"}
    response = await api.patch(
        f"{API}/nodepools/{nodepool['id']}", json={"name": None}, headers=headers
    )
    assert assert_error(response, 400, "VALIDATION_ERROR")["details"] == "name cannot be removed"


async def test_cluster_delete_answers_202_with_the_cluster(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    response = await api.delete(f"{API}/clusters/{cluster['id']}", headers=USER)
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    # The cluster as its deletion was accepted: phase Deleting, at the deletion generation.
    deleting = response.json()
    assert deleting["id"] == cluster["id"]
    assert deleting["status"]["phase"] == "Deleting"
    assert deleting["generation"] == cluster["generation"] + 1
    assert response.headers["ETag"] == f'"{deleting["resource_version"]}"'


async def test_the_cluster_region_stays_immutable_on_a_spec_only_put(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    spec = gcp_cluster_body()["spec"]
    spec["platform"]["gcp"]["region"] = "us-west1"
    response = await api.put(f"{API}/clusters/{cluster['id']}", json={"spec": spec}, headers=USER)
    assert "immutable" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
