"""PUT .../status answers the same document a GET .../status returns right after it.

The PUT builds its answer from what the apply path read and wrote, without reading again; these
tests hold that answer to what is really stored.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import controller_headers, gcp_cluster_body


def _report(generation: int, ready: bool, message: str) -> dict[str, Any]:
    return {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": generation,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": "2025-10-17T10:30:00Z",
                "reason": "NodesReady" if ready else "Provisioning",
                "message": message,
            }
        ],
        "metadata": {"active_nodes": 3},
    }


async def _put_then_get(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    put = await api.put(path, json=body, headers=controller_headers())
    assert put.status_code == 200, put.text
    got = await api.get(path, headers=headers)
    assert got.status_code == 200, got.text
    return put.json(), got.json()


async def test_applied_report_answer_matches_the_stored_status(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    path = f"/api/v1/nodepools/{nodepool['id']}/status"
    user = {"X-User-Email": nodepool["created_by"]}
    put, got = await _put_then_get(api, path, _report(1, True, "all ready"), user)
    assert put == got
    assert put["status"]["phase"] == "Ready"
    assert [c["controller_name"] for c in put["controller_status"]] == ["gcp-nodepool-controller"]


async def test_unchanged_report_answer_matches_the_stored_status(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    path = f"/api/v1/nodepools/{nodepool['id']}/status"
    user = {"X-User-Email": nodepool["created_by"]}
    first, _ = await _put_then_get(api, path, _report(1, False, "starting"), user)
    again, got = await _put_then_get(api, path, _report(1, False, "starting"), user)
    assert again == got == first


async def test_cluster_report_answer_matches_the_stored_status(api: httpx.AsyncClient) -> None:
    headers = {"X-User-Email": "user@example.com"}
    created = await api.post("/api/v1/clusters", json=gcp_cluster_body(), headers=headers)
    path = f"/api/v1/clusters/{created.json()['id']}/status"
    body = {**_report(1, True, "cluster ready"), "controller_name": "gcp-cluster-controller"}
    put = await api.put(path, json=body, headers=controller_headers("gcp-cluster-controller"))
    assert put.status_code == 200, put.text
    got = await api.get(path, headers=headers)
    assert put.json() == got.json()
    assert put.json()["cluster_id"] == created.json()["id"]
