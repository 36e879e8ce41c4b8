"""Every operation refuses a query parameter it does not document, with a 400 naming it: a typo
(``?dryrun=true``) or a feature this API does not have (``?labelSelector=``) must never be read as
if it were absent, which could turn a call meant to be safe into one that acts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from api_service.app import create_app
from api_service.routing import ApiRoute, documented_query_names
from cls_runtime.settings import Settings
from tests.api.conftest import API, assert_error, update_body
from tests.api.test_dry_run import footprint
from tests.conftest import USER, seed_nodepool_body


def unknown_named(response: httpx.Response, name: str) -> None:
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["message"] == "Unknown query parameter"
    assert [f["field"] for f in error["fields"]] == [name]
    assert "unknown query parameter" in error["details"]


@pytest.mark.parametrize("name", ["dryrun", "DRYRUN", "dry_run"])
async def test_a_miscased_dry_run_on_delete_is_refused_and_deletes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings, name: str
) -> None:
    before = await footprint(redis, settings)
    url = f"{API}/nodepools/{nodepool['id']}?{name}=true"
    unknown_named(await api.delete(url, headers=USER), name)
    assert await footprint(redis, settings) == before
    assert (await api.get(f"{API}/nodepools/{nodepool['id']}", headers=USER)).status_code == 200


async def test_a_misspelt_force_on_cluster_delete_is_refused(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/clusters/{nodepool['cluster_id']}?forse=true"
    unknown_named(await api.delete(url, headers=USER), "forse")


@pytest.mark.parametrize(
    "query", ["continue=x", "page_token=x", "labelSelector=env%3Dprod", "fieldSelector=a"]
)
async def test_list_features_this_api_lacks_are_refused(
    api: httpx.AsyncClient, nodepool: dict[str, Any], query: str
) -> None:
    name = query.split("=")[0]
    unknown_named(await api.get(f"{API}/nodepools?{query}", headers=USER), name)
    unknown_named(await api.get(f"{API}/clusters?{query}", headers=USER), name)


async def test_a_get_of_one_resource_refuses_a_query(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}?pretty=1"
    unknown_named(await api.get(url, headers=USER), "pretty")
    url = f"{API}/nodepools/{nodepool['id']}/status?verbose=1"
    unknown_named(await api.get(url, headers=USER), "verbose")


async def test_writes_refuse_an_unknown_parameter_and_write_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    before = await footprint(redis, settings)
    url = f"{API}/nodepools/{nodepool['id']}?validateOnly=true"
    unknown_named(await api.put(url, json=update_body(node_count=4), headers=USER), "validateOnly")
    body = seed_nodepool_body(nodepool["cluster_id"], "second")
    response = await api.post(f"{API}/nodepools?validate_only=true", json=body, headers=USER)
    unknown_named(response, "validate_only")
    assert await footprint(redis, settings) == before


async def test_every_unknown_parameter_is_named(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.get(f"{API}/nodepools?limit=5&pretty=1&sort=name", headers=USER)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert sorted(f["field"] for f in error["fields"]) == ["pretty", "sort"]


async def test_documented_parameters_still_work(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    query = f"limit=5&offset=0&status=Pending&health=Unknown&cluster_id={nodepool['cluster_id']}"
    response = await api.get(f"{API}/nodepools?{query}", headers=USER)
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1


async def test_operations_outside_the_api_refuse_unknown_parameters_too(
    api: httpx.AsyncClient,
) -> None:
    unknown_named(await api.get("/health?verbose=1"), "verbose")


def test_every_route_refuses_what_its_openapi_operation_does_not_document() -> None:
    """The allowed names are the document's query parameters, operation by operation."""
    app = create_app(Settings())
    document = app.openapi()
    for route in app.routes:
        if not isinstance(route, ApiRoute):
            continue
        for method in route.methods or ():
            operation = document["paths"][route.path][method.lower()]
            documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert set(documented_query_names(route)) == documented, (method, route.path)


def test_every_api_route_uses_the_checking_route_class() -> None:
    app = create_app(Settings())
    api_routes = [r for r in app.routes if getattr(r, "path", "").startswith(("/api/", "/health"))]
    assert api_routes
    assert all(isinstance(r, ApiRoute) for r in api_routes)
