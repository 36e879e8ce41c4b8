"""The OpenAPI document is complete enough to generate a client: every route, its parameters,
request and response schemas, its headers, and the error envelope it really sends (never
FastAPI's 422 body)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from api_service.app import create_app
from shared_models.errors import ErrorCode

ENVELOPE = "#/components/schemas/ErrorEnvelope"
USER_ERRORS = {"400", "401", "403", "404", "503", "default"}
WRITE_ERRORS = {"409", "413"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = create_app().openapi()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def api_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [op for op in operations(spec) if op[0].startswith("/api/v1")]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield str(value)
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def param(operation: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in operation["parameters"] if p["name"] == name)
    return found


def test_every_route_is_documented(spec: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in operations(spec)}
    for route in create_app().routes:
        if isinstance(route, APIRoute):
            for method in route.methods or set():
                assert (route.path, method) in documented


def test_every_operation_has_a_unique_id(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))


def test_every_success_response_has_a_schema(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        # A create with an Idempotency-Key also answers 200: the replay; a GET with waitFor
        # also answers 204 (waitFor=Deleted).
        names = {p["name"] for p in operation.get("parameters", [])}
        expected = 2 if names & {"Idempotency-Key", "waitFor"} else 1
        assert len(successes) == expected, (path, method)
        for code, response in successes.items():
            if code == "204":
                assert "content" not in response
                continue
            media = "text/plain" if path == "/metrics" else "application/json"
            schema = response["content"][media]["schema"]
            assert schema.get("$ref") or schema.get("type"), (path, method)


def test_every_api_operation_documents_the_error_envelope(spec: dict[str, Any]) -> None:
    for path, method, operation in api_operations(spec):
        responses = operation["responses"]
        expected = USER_ERRORS | (WRITE_ERRORS if method in ("POST", "PUT", "PATCH") else set())
        assert expected <= set(responses), (path, method)
        for code in expected:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ENVELOPE}, (path, method, code)


def test_no_framework_validation_error_is_documented(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        assert "422" not in operation["responses"], (path, method)
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])


def test_error_envelope_schema_lists_every_code(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["ErrorEnvelope"]["required"] == ["error"]
    assert set(schemas["ErrorBody"]["required"]) >= {"code", "message"}
    assert set(schemas["ErrorCode"]["enum"]) == {c.value for c in ErrorCode}


def test_writes_document_their_request_body(spec: dict[str, Any]) -> None:
    bodies = {
        ("/api/v1/clusters", "POST"): "ClusterCreate",
        ("/api/v1/clusters/{id}", "PUT"): "ClusterUpdate",
        ("/api/v1/nodepools", "POST"): "NodePoolCreate",
        ("/api/v1/clusters/{clusterId}/nodepools", "POST"): "NodePoolCreate",
        ("/api/v1/nodepools/{id}", "PUT"): "NodePoolUpdate",
    }
    for (path, method), model in bodies.items():
        content = spec["paths"][path][method.lower()]["requestBody"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}


def test_merge_patch_body_is_documented(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/api/v1/nodepools/{id}"]["patch"]["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/merge-patch+json"]["schema"]
    assert set(schema["properties"]) == {"name", "cluster_id", "spec"}
    assert schema["additionalProperties"] is False


def test_resource_schemas_name_every_field_of_the_guide(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    fields = {"id", "name", "generation", "resource_version", "spec", "status"}
    fields |= {"created_at", "updated_at", "created_by"}
    assert set(schemas["NodePool"]["required"]) == fields | {"cluster_id"}
    assert set(schemas["Cluster"]["required"]) == fields | {"project_id"}
    assert set(schemas["NodePoolList"]["required"]) == {"nodepools", "total", "limit", "offset"}
    assert schemas["NodePoolSpec"]["additionalProperties"] is False


def test_list_parameters_are_documented_with_their_bounds(spec: dict[str, Any]) -> None:
    listing = spec["paths"]["/api/v1/nodepools"]["get"]
    limit = param(listing, "limit")["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 50)
    assert param(listing, "offset")["schema"]["minimum"] == 0
    assert param(listing, "status")["schema"]["anyOf"][0] == {"$ref": "#/components/schemas/Phase"}
    assert param(listing, "health")["schema"]["anyOf"][0] == {"$ref": "#/components/schemas/Health"}
    assert param(listing, "cluster_id")["in"] == "query"


def test_identity_and_preconditions_are_documented(spec: dict[str, Any]) -> None:
    for path, method, operation in api_operations(spec):
        if path.endswith("/status") and method == "PUT":
            assert param(operation, "Authorization")["in"] == "header"
            continue
        assert param(operation, "X-User-Email")["in"] == "header", (path, method)
        if path.startswith("/api/v1/projects"):
            continue  # a project and its members have no spec: no precondition, no dry run
        if method in ("PUT", "PATCH", "DELETE"):
            assert param(operation, "If-Match")["in"] == "header", (path, method)
        if method in ("POST", "PUT", "PATCH"):
            assert param(operation, "dryRun")["in"] == "query", (path, method)


def test_etag_and_location_headers_are_documented(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    for path, method in [("/api/v1/nodepools/{id}", m) for m in ("get", "put", "patch")]:
        assert "ETag" in paths[path][method]["responses"]["200"]["headers"]
    for path in ("/api/v1/nodepools", "/api/v1/clusters", "/api/v1/clusters/{clusterId}/nodepools"):
        assert {"ETag", "Location"} <= set(paths[path]["post"]["responses"]["201"]["headers"])


def test_the_operation_header_is_documented_on_every_write(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    writes = [
        ("/api/v1/nodepools", "post", "201"),
        ("/api/v1/clusters", "post", "201"),
        ("/api/v1/clusters/{clusterId}/nodepools", "post", "201"),
        ("/api/v1/nodepools/{id}", "put", "200"),
        ("/api/v1/nodepools/{id}", "patch", "200"),
        ("/api/v1/nodepools/{id}", "delete", "204"),
        ("/api/v1/clusters/{id}", "put", "200"),
        ("/api/v1/clusters/{id}", "delete", "202"),
    ]
    for path, method, status in writes:
        headers = paths[path][method]["responses"][status]["headers"]
        assert "X-Operation-Id" in headers, (path, method)
    assert (
        "X-Operation-Id"
        not in paths["/api/v1/nodepools/{id}"]["get"]["responses"]["200"]["headers"]
    )


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for ref in set(refs(spec)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_operations_endpoints_have_schemas(spec: dict[str, Any]) -> None:
    ready = spec["paths"]["/ready"]["get"]["responses"]
    assert set(ready) == {"200", "503"}
    assert spec["paths"]["/health"]["get"]["responses"]["200"]["content"]


async def test_docs_and_the_document_are_served(api: httpx.AsyncClient) -> None:
    docs = await api.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    served = await api.get("/openapi.json")
    assert served.status_code == 200
    assert set(served.json()["paths"]) == set(create_app().openapi()["paths"])
