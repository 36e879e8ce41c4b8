"""Nodepool create/get/update/delete over real Redis."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import USER, seed_nodepool_body


async def test_create_returns_generation_1_and_etag(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    response = await api.post(
        "/api/v1/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    assert response.status_code == 201
    body = response.json()
    assert body["generation"] == 1
    assert body["cluster_id"] == cluster["id"]
    assert body["created_by"] == "user@example.com"
    assert response.headers["ETag"] == f'"{body["resource_version"]}"'
    assert body["status"]["phase"] == "Pending"
    assert body["status"]["reason"] == "NoControllers"


async def test_scale_increments_generation(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    scaled = {
        "name": "production-workers",
        "spec": {
            "platform": {"type": "gcp", "gcp": {"machineType": "n1-standard-4", "diskSize": 100}},
            "nodeCount": 6,
        },
    }
    response = await api.put(f"/api/v1/nodepools/{nodepool['id']}", json=scaled, headers=USER)
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == 2
    assert response.json()["spec"]["nodeCount"] == 6
