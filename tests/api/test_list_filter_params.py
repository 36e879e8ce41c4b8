"""The status/health list filters are checked by the route (declared as strings for speed)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import USER


async def test_unknown_phase_is_a_400_naming_the_filter_and_its_choices(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/api/v1/nodepools?status=Bogus", headers=USER)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["fields"] == [
        {
            "field": "status",
            "message": "status: Input should be 'Pending', 'Progressing', 'Ready' or 'Failed'",
        }
    ]


async def test_unknown_health_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/nodepools?health=Fine", headers=USER)
    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "health"


async def test_filters_select_by_phase_and_health(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    pending = await api.get("/api/v1/nodepools?status=Pending&health=Unknown", headers=USER)
    ready = await api.get("/api/v1/nodepools?status=Ready", headers=USER)
    assert [p["id"] for p in pending.json()["nodepools"]] == [nodepool["id"]]
    assert ready.json()["total"] == 0


async def test_cluster_list_checks_its_phase_filter(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    assert (await api.get("/api/v1/clusters?status=Nope", headers=USER)).status_code == 400
    pending = await api.get("/api/v1/clusters?status=Pending", headers=USER)
    assert [c["id"] for c in pending.json()["clusters"]] == [cluster["id"]]


async def test_openapi_lists_the_filter_choices(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    params = schema["paths"]["/api/v1/nodepools"]["get"]["parameters"]
    status = next(p for p in params if p["name"] == "status")
    assert status["schema"]["enum"] == ["Pending", "Progressing", "Ready", "Failed"]
