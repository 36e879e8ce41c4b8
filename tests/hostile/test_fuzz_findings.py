"""What the OpenAPI fuzzer (test_fuzz_openapi.py) found, one focused test each: the document
said less than the API enforces (so a client generated from it sent what the API refuses), or
the API answered otherwise than the document says."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest

from api_service.app import create_app
from tests.api.conftest import assert_error
from tests.conftest import USER, controller_headers, gcp_cluster_body, seed_nodepool_body

API = "/api/v1"
SEED_ID = "550e8400-e29b-41d4-a716-446655440000"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = create_app().openapi()
    return document


def validator(spec: dict[str, Any], component: str) -> Any:
    """A JSON Schema validator for one component of the document (references resolved)."""
    root = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    return jsonschema_rs.validator_for(root)


def id_parameters(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in ("id", "clusterId", "cluster_id", "project_id"):
                    found.append((f"{method.upper()} {path}", parameter["name"], parameter))
    return found


def test_every_id_parameter_is_documented_as_the_uuid_the_api_requires(
    spec: dict[str, Any],
) -> None:
    parameters = id_parameters(spec)
    # 27 path ids, the cluster_id filter and the two project_id filters
    assert len(parameters) == 30
    for operation, name, parameter in parameters:
        schema = parameter["schema"]
        assert schema.get("format") == "uuid", (operation, name)
        check = jsonschema_rs.validator_for(schema)
        assert check.is_valid(SEED_ID) and check.is_valid(SEED_ID.upper()), (operation, name)
        assert not check.is_valid("0") and not check.is_valid(""), (operation, name)


@pytest.mark.parametrize("component", ["NodePoolPlatform", "ClusterPlatform"])
def test_platform_is_documented_as_a_one_of_selected_by_type(
    spec: dict[str, Any], component: str
) -> None:
    schema = spec["components"]["schemas"][component]
    variants = schema["oneOf"]
    assert [v["properties"]["type"]["const"] for v in variants] == ["gcp", "aws", "azure"]
    for variant in variants:
        platform = variant["properties"]["type"]["const"]
        assert variant["required"] == ["type", platform]
        assert variant["additionalProperties"] is False


NODEPOOL_PLATFORMS: list[tuple[dict[str, Any], bool]] = [
    ({"type": "gcp", "gcp": {"machineType": "n1-standard-4"}}, True),
    # The other blocks may be null: the API treats null as absent.
    ({"type": "gcp", "gcp": {"machineType": "n1-standard-4"}, "aws": None}, True),
    # What the fuzzer sent first: a type without its block.
    ({"type": "aws", "aws": None, "azure": None, "gcp": None}, False),
    ({"type": "gcp"}, False),
    (
        {"type": "gcp", "gcp": {"machineType": "n1-standard-4"}, "aws": {"instanceType": "m5"}},
        False,
    ),
]


@pytest.mark.parametrize(("platform", "valid"), NODEPOOL_PLATFORMS)
async def test_the_documented_platform_schema_accepts_exactly_what_the_api_accepts(
    spec: dict[str, Any], api: httpx.AsyncClient, platform: dict[str, Any], valid: bool
) -> None:
    assert validator(spec, "NodePoolPlatform").is_valid(platform) is valid
    cluster = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
    body = seed_nodepool_body(cluster.json()["id"])
    body["spec"]["platform"] = platform
    response = await api.post(f"{API}/nodepools?dryRun=true", json=body, headers=USER)
    assert response.status_code == (201 if valid else 400), response.text


@pytest.mark.parametrize(
    ("component", "field", "value"),
    [
        ("Autoscaling", "scaleDownDelay", ""),
        ("Autoscaling", "scaleUpDelay", "10x"),
        ("DNS", "baseDomain", ""),
        ("DNS", "baseDomain", "Example.com"),
    ],
)
def test_syntax_rules_checked_by_validators_are_in_the_document(
    spec: dict[str, Any], component: str, field: str, value: str
) -> None:
    schema = spec["components"]["schemas"][component]["properties"][field]
    schema = schema["anyOf"][0] if "anyOf" in schema else schema
    assert "pattern" in schema
    assert not jsonschema_rs.validator_for(schema).is_valid(value)


def test_observed_generation_is_documented_with_its_64_bit_bound(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/api/v1/nodepools/{id}/status"]["put"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]["properties"]["observed_generation"]
    assert (schema["minimum"], schema["maximum"]) == (1, 2**63 - 1)


async def test_a_report_beyond_64_bit_generations_is_400(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 2**63}
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}/status", json=report, headers=controller_headers()
    )
    assert_error(response, 400, "VALIDATION_ERROR")


async def test_a_malformed_idempotency_key_is_400_on_a_dry_run_too(api: httpx.AsyncClient) -> None:
    headers = {**USER, "Idempotency-Key": "has a space"}
    response = await api.post(
        f"{API}/clusters?dryRun=true", json=gcp_cluster_body(), headers=headers
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "Idempotency-Key" in error["details"]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (f"/clusters/{SEED_ID}", "GET, PUT, DELETE"),
        (f"/nodepools/{SEED_ID}", "GET, PUT, PATCH, DELETE"),
        (f"/nodepools/{SEED_ID}/status", "GET, PUT"),
        (f"/clusters/{SEED_ID}/status", "GET, PUT"),
        ("/clusters", "GET, POST"),
        ("/nodepools", "GET, POST"),
        (f"/clusters/{SEED_ID}/nodepools", "GET, POST"),
    ],
)
async def test_a_405_allow_header_lists_every_method_of_the_path(
    api: httpx.AsyncClient, path: str, allowed: str
) -> None:
    response = await api.options(API + path, headers=USER)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == allowed
