"""Scaling recomputes the aggregate from the reports read with the nodepool (one round trip)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import USER, controller_headers


async def test_scaling_a_ready_nodepool_makes_it_progressing(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    path = f"/api/v1/nodepools/{nodepool['id']}"
    report = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "NodesReady"}],
    }
    ready = await api.put(f"{path}/status", json=report, headers=controller_headers())
    assert ready.json()["status"]["phase"] == "Ready"
    scaled_body = {"name": nodepool["name"], "spec": {**nodepool["spec"], "nodeCount": 5}}
    scaled = await api.put(path, json=scaled_body, headers=USER)
    assert scaled.status_code == 200, scaled.text
    # Reports exist, only for an older generation: Progressing, not Pending/NoControllers.
    assert scaled.json()["generation"] == 2
    assert scaled.json()["status"]["phase"] == "Progressing"
