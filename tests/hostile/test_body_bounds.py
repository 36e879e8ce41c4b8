"""Bounded work per bad body (issue 12): a body of far more keys or items than any valid document
is refused before it is validated, on every JSON route; a body within those bounds but full of
errors has only the errors the response lists converted; the largest valid documents still pass.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import orjson
import pytest

from bench.bodies import largest_gcp_lists
from cls_core.errors import MAX_FIELD_ERRORS
from shared_models.specs import MAX_ZONES
from shared_models.status import MAX_CONDITIONS, MAX_METADATA_KEYS
from shared_models.strict_json import MAX_ITEMS, MAX_KEYS, MAX_OBJECT_KEYS
from tests.api.conftest import assert_error, azure_cluster_body, azure_nodepool_body
from tests.conftest import USER, controller_headers
from tests.hostile.conftest import API, JSON, JSON_ROUTES, ROUTE_IDS, JsonRoute, trouble
from tests.hostile.test_json_bodies import snapshot

GCP = "spec.platform.gcp"


def keys(count: int, prefix: str = "k") -> dict[str, int]:
    return {f"{prefix}{i}": 0 for i in range(count)}


def refused(response: httpx.Response) -> str:
    """The 400 of a body refused before validation: one error, on the body; its message."""
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert [f["field"] for f in error["fields"]] == ["body"], error
    message: str = error["fields"][0]["message"]
    assert message.startswith("request body refused: "), message
    return message


@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
async def test_seventy_thousand_keys_are_refused_on_every_json_route_and_write_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], route: JsonRoute, app_logs: Any
) -> None:
    before = await snapshot(api, nodepool)
    body = {**route.body(nodepool), **keys(70_000)}
    response = await api.request(
        route.method, route.url(nodepool), content=orjson.dumps(body), headers=route.headers()
    )
    message = refused(response)
    assert f"keys in all, more than the {MAX_KEYS} allowed" in message
    assert await snapshot(api, nodepool) == before
    assert trouble(app_logs) == []


def gcp_body(nodepool: dict[str, Any], **gcp: Any) -> dict[str, Any]:
    spec = copy.deepcopy(nodepool["spec"])
    spec["platform"]["gcp"].update(gcp)
    return {"name": "another", "cluster_id": nodepool["cluster_id"], "spec": spec}


async def test_an_object_of_too_many_keys_is_refused_naming_it(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = gcp_body(nodepool, labels={f"k{i}": "v" for i in range(MAX_OBJECT_KEYS + 1)})
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert refused(response) == (
        f"request body refused: {GCP}.labels has {MAX_OBJECT_KEYS + 1} keys, more than the "
        f"{MAX_OBJECT_KEYS} allowed in one object"
    )


async def test_a_status_report_of_seventy_thousand_metadata_keys_is_refused(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    report = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": 1,
        "metadata": keys(70_000),
    }
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}/status", json=report, headers=controller_headers()
    )
    assert "keys in all" in refused(response)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param({"zones": ["us-central1-a"] * 50_000}, id="fifty-thousand-zones"),
        pytest.param(
            {"taints": [{"key": f"k{i}", "effect": "NoSchedule"} for i in range(20_000)]},
            id="twenty-thousand-taints",
        ),
    ],
)
async def test_huge_arrays_are_refused_before_validation(
    api: httpx.AsyncClient, nodepool: dict[str, Any], edit: dict[str, Any]
) -> None:
    response = await api.post(f"{API}/nodepools", json=gcp_body(nodepool, **edit), headers=USER)
    message = refused(response)
    assert f"more than the {MAX_ITEMS} array items" in message or "keys in all" in message


async def test_ten_thousand_conditions_are_refused_before_validation(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    report = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": 1,
        "conditions": [{"type": "Ready", "status": "True"}] * 10_000,
    }
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}/status", json=report, headers=controller_headers()
    )
    assert "keys in all" in refused(response)


async def test_two_hundred_thousand_azure_zones_are_refused(api: httpx.AsyncClient) -> None:
    cluster = (await api.post(f"{API}/clusters", json=azure_cluster_body(), headers=USER)).json()
    body = azure_nodepool_body(cluster["id"])
    body["spec"]["platform"]["azure"]["availabilityZones"] = ["x"] * 200_000
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert f"more than the {MAX_ITEMS} array items" in refused(response)


async def test_azure_zones_are_bounded_like_every_list(api: httpx.AsyncClient) -> None:
    # Within the body bounds, a long list of bad zones is one error, not one per zone.
    cluster = (await api.post(f"{API}/clusters", json=azure_cluster_body(), headers=USER)).json()
    body = azure_nodepool_body(cluster["id"])
    body["spec"]["platform"]["azure"]["availabilityZones"] = ["x"] * 5_000
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert [f["field"] for f in error["fields"]] == ["spec.platform.azure.availabilityZones"]
    assert f"at most {MAX_ZONES} items" in error["details"]


# Bodies validated by FastAPI (POST, PUT), by the nodepool service (merge patch) and by the
# report parser the ingester shares (status).
@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
async def test_only_the_errors_listed_are_converted(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    route: JsonRoute,
    conversions: list[str],
) -> None:
    body = route.body(nodepool)
    unknown = MAX_OBJECT_KEYS - len(body) - 2  # passes the key bounds: each is an error
    if route.method == "PATCH":
        body = {"spec": {**body["spec"], **keys(unknown, "x")}}
    else:
        body = {**body, **keys(unknown, "x")}
    response = await api.request(
        route.method, route.url(nodepool), content=orjson.dumps(body), headers=route.headers()
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert len(error["fields"]) == MAX_FIELD_ERRORS
    assert error["message"] == (
        f"Validation failed: {unknown} errors, the first {MAX_FIELD_ERRORS} listed"
    )
    assert len(conversions) == MAX_FIELD_ERRORS


async def test_the_largest_valid_nodepool_is_accepted(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = gcp_body(nodepool, **largest_gcp_lists(), diskType="pd-ssd", preemptible=True)
    body["spec"]["autoscaling"] = {
        "enabled": True,
        "minNodes": 1,
        "maxNodes": 10,
        "targetCPUUtilization": 70,
        "targetMemoryUtilization": 80,
        "scaleDownDelay": "10m",
        "scaleUpDelay": "1m",
    }
    body["spec"]["nodeCount"] = 3
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert response.status_code == 201, response.text
    assert (
        response.json()["spec"]["platform"]["gcp"]["taints"]
        == body["spec"]["platform"]["gcp"]["taints"]
    )


async def test_the_largest_valid_status_report_is_accepted(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    condition = {
        "lastTransitionTime": "2025-10-17T10:30:00Z",
        "status": "True",
        "reason": "r" * 128,
        "message": "m: a, b" * 580,
    }
    report = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": 1,
        "conditions": [{**condition, "type": f"C{i}"} for i in range(MAX_CONDITIONS)],
        "metadata": {
            f"m{i}": {"nodes": [{"name": f"n{j}", "ready": True} for j in range(10)]}
            for i in range(MAX_METADATA_KEYS)
        },
        "last_error": "e" * 4096,
    }
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}/status",
        content=orjson.dumps(report),
        headers={**controller_headers(), **JSON},
    )
    assert response.status_code == 200, response.text
