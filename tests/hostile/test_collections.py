"""Huge arrays and strings, wrong types and unicode edge cases: a 400 naming the field (or 413),
never a 500; and the limits themselves are exact (the maximum is accepted)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared_models.specs import MAX_ACCELERATORS, MAX_LABELS, MAX_TAINTS, MAX_ZONES
from shared_models.status import MAX_CONDITIONS, MAX_METADATA_KEYS
from shared_models.strict_json import MAX_OBJECT_KEYS
from tests.api.conftest import assert_error, aws_cluster_body, aws_nodepool_body
from tests.conftest import USER, controller_headers
from tests.hostile.conftest import API, JSON

GCP = "spec.platform.gcp"
Edit = Callable[[dict[str, Any]], None]


def gcp(**fields: Any) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        body["spec"]["platform"]["gcp"].update(fields)

    return edit


def zones(count: int) -> list[str]:
    """Distinct zones of us-central1 (letters, then letter pairs)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    names = [*letters, *(a + b for a in letters for b in letters)]
    return [f"us-central1-{z}" for z in names[:count]]


def taints(count: int) -> list[dict[str, str]]:
    return [{"key": f"k{i}", "effect": "NoSchedule"} for i in range(count)]


def accelerators(count: int) -> list[dict[str, Any]]:
    return [{"type": f"nvidia-t{i}", "count": 1} for i in range(count)]


# (what, edit of the seed nodepool body, field the 400 names). Bodies far larger still (60,000
# labels, 20,000 taints) are refused before validation: test_body_bounds.py.
TOO_MUCH: list[tuple[str, Edit, str]] = [
    ("one zone too many", gcp(zones=zones(MAX_ZONES + 1)), f"{GCP}.zones"),
    (
        "one label too many",
        gcp(labels={f"k{i}": "v" for i in range(MAX_LABELS + 1)}),
        f"{GCP}.labels",
    ),
    ("one taint too many", gcp(taints=taints(MAX_TAINTS + 1)), f"{GCP}.taints"),
    (
        "one accelerator too many",
        gcp(accelerators=accelerators(MAX_ACCELERATORS + 1)),
        f"{GCP}.accelerators",
    ),
    ("a 900 kB machine type", gcp(machineType="n" * 900_000), f"{GCP}.machineType"),
    ("a 900 kB label value", gcp(labels={"k": "v" * 900_000}), f"{GCP}.labels.k"),
    ("a 300-character label key", gcp(labels={"a" * 300: "v"}), f"{GCP}.labels.{'a' * 64}..."),
    ("a 900 kB name", lambda b: b.update(name="n" * 900_000), "name"),
]
# Wrong JSON types where the spec has others.
WRONG_TYPES: list[tuple[str, Edit, str]] = [
    ("nodeCount as a string", lambda b: b["spec"].update(nodeCount="3"), "spec.nodeCount"),
    ("nodeCount as a boolean", lambda b: b["spec"].update(nodeCount=True), "spec.nodeCount"),
    ("nodeCount as a float", lambda b: b["spec"].update(nodeCount=3.0), "spec.nodeCount"),
    ("nodeCount beyond 64 bits", lambda b: b["spec"].update(nodeCount=2**70), "spec.nodeCount"),
    ("zones as an object", gcp(zones={"us-central1-a": True}), f"{GCP}.zones"),
    ("zones as a string", gcp(zones="us-central1-a"), f"{GCP}.zones"),
    ("a zone as a number", gcp(zones=[1]), f"{GCP}.zones[0]"),
    ("labels as a list", gcp(labels=["a=b"]), f"{GCP}.labels"),
    ("a label value as a number", gcp(labels={"a": 1}), f"{GCP}.labels.a"),
    ("spec as a list", lambda b: b.update(spec=[]), "spec"),
    ("name as null", lambda b: b.update(name=None), "name"),
    ("name as an object", lambda b: b.update(name={"en": "x"}), "name"),
    ("autoscaling as a string", lambda b: b["spec"].update(autoscaling="on"), "spec.autoscaling"),
    ("preemptible as a string", gcp(preemptible="true"), f"{GCP}.preemptible"),
]
# Unicode that looks like a valid name or label but is not one.
UNICODE: list[tuple[str, Edit, str]] = [
    ("Cyrillic homoglyph in the name", lambda b: b.update(name="pr\u043educti\u043en"), "name"),
    ("zero-width space in the name", lambda b: b.update(name="pool\u200b"), "name"),
    ("combining accent in the name", lambda b: b.update(name="poe\u0301l"), "name"),
    ("NUL in the name", lambda b: b.update(name="pool\u0000"), "name"),
    ("fullwidth digits in a zone", gcp(zones=["us-central\uff11-a"]), f"{GCP}.zones[0]"),
    (
        "right-to-left override in a label",
        gcp(labels={"team": "abc\u202edef"}),
        f"{GCP}.labels.team",
    ),
    ("emoji label key", gcp(labels={"\U0001f680": "v"}), f"{GCP}.labels.\U0001f680"),
    ("line separator in a machine type", gcp(machineType="n1\u2028x"), f"{GCP}.machineType"),
]
CASES = TOO_MUCH + WRONG_TYPES + UNICODE


@pytest.mark.parametrize(("edit", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_spec_is_400_naming_the_field(
    api: httpx.AsyncClient, nodepool: dict[str, Any], edit: Edit, field: str
) -> None:
    body = {
        "name": "another",
        "cluster_id": nodepool["cluster_id"],
        "spec": copy.deepcopy(nodepool["spec"]),
    }
    edit(body)
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    # A label key's own errors are located at the key (".[key]" follows it).
    assert any(f["field"].startswith(field) for f in error["fields"]), error
    assert len(response.content) < 32_768  # a huge input is not echoed back


@pytest.mark.parametrize(
    "edit",
    [
        gcp(zones=zones(MAX_ZONES)),
        gcp(labels={f"k{i}": "v" for i in range(MAX_LABELS)}),
        gcp(taints=taints(MAX_TAINTS)),
        gcp(accelerators=accelerators(MAX_ACCELERATORS)),
    ],
    ids=["zones", "labels", "taints", "accelerators"],
)
async def test_the_maximum_itself_is_accepted(
    api: httpx.AsyncClient, nodepool: dict[str, Any], edit: Edit
) -> None:
    body = {"name": nodepool["name"], "spec": copy.deepcopy(nodepool["spec"])}
    edit(body)
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=body, headers=USER)
    assert response.status_code == 200, response.text


async def test_aws_user_data_is_bounded_and_kept_byte_exact(api: httpx.AsyncClient) -> None:
    cluster = (await api.post(f"{API}/clusters", json=aws_cluster_body(), headers=USER)).json()
    body = aws_nodepool_body(cluster["id"])
    exotic = '#!/bin/sh\n\u0000\u2028\U0001f680 "quoted" \\ é\n' * 100
    body["spec"]["platform"]["aws"]["userData"] = exotic
    created = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert created.status_code == 201, created.text
    read = await api.get(f"{API}/nodepools/{created.json()['id']}", headers=USER)
    assert read.json()["spec"]["platform"]["aws"]["userData"] == exotic
    body["name"] = "too-much"
    body["spec"]["platform"]["aws"]["userData"] = "x" * 16_385
    too_long = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert "spec.platform.aws.userData" in {
        f["field"] for f in assert_error(too_long, 400, "VALIDATION_ERROR")["fields"]
    }


def report(**fields: Any) -> dict[str, Any]:
    return {"controller_name": "gcp-nodepool-controller", "observed_generation": 1, **fields}


STATUS_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "one condition too many",
        report(conditions=[{"type": f"C{i}", "status": "True"} for i in range(MAX_CONDITIONS + 1)]),
        "conditions",
    ),
    (
        "one metadata key too many",
        report(metadata={f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}),
        "metadata",
    ),
    (
        "a 5 kB condition message",
        report(conditions=[{"type": "Ready", "status": "True", "message": "m" * 5000}]),
        "conditions[0].message",
    ),
    ("a 5 kB last_error", report(last_error="e" * 5000), "last_error"),
    ("generation as a string", report(observed_generation="1"), "observed_generation"),
    ("generation beyond 64 bits", report(observed_generation=2**70), "observed_generation"),
    ("conditions as an object", report(conditions={"Ready": "True"}), "conditions"),
    (
        "a homoglyph controller name",
        report(controller_name="gcp-nodep\u043e\u043el-controller"),
        "controller_name",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"), [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES]
)
async def test_hostile_status_report_is_400_naming_the_field(
    api: httpx.AsyncClient, nodepool: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}/status", json=body, headers=controller_headers()
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert field in {f["field"] for f in error["fields"]}, error


async def test_unicode_metadata_round_trips_exactly(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    metadata = {
        "note": '\u0000\u2028\U0001f680 é "q" \\',
        "\u00e9t\u00e9": ["\ufeff", "\U0010ffff"],
    }
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}/status",
        json=report(metadata=metadata),
        headers=controller_headers(),
    )
    assert response.status_code == 200, response.text
    status = await api.get(f"{API}/nodepools/{nodepool['id']}/status", headers=USER)
    assert status.json()["controller_status"][0]["metadata"] == metadata


async def test_a_body_over_the_limit_is_413_before_anything_parses_it(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = b'{"name": "' + b"n" * (2 * 1024 * 1024) + b'"}'
    response = await api.post(f"{API}/nodepools", content=body, headers={**USER, **JSON})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_thousands_of_errors_get_a_bounded_answer(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = {
        "name": "p",
        "cluster_id": nodepool["cluster_id"],
        "spec": copy.deepcopy(nodepool["spec"]),
    }
    # As many bad labels as one object may hold (more are refused before validation).
    labels = {f"{'-' * 300}{i}": "v" for i in range(MAX_OBJECT_KEYS)}
    body["spec"]["platform"]["gcp"]["labels"] = labels
    request = httpx.Request("POST", "http://api", json=body)
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert len(error["fields"]) == 20
    assert error["message"].endswith("errors, the first 20 listed")
    assert len(response.content) < 32_768 < len(request.content)


async def test_an_error_about_a_huge_key_does_not_send_the_key_back(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = {
        "name": "p",
        "cluster_id": nodepool["cluster_id"],
        "spec": copy.deepcopy(nodepool["spec"]),
    }
    body["spec"]["platform"]["gcp"]["labels"] = {"k" * 900_000: "v"}
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert len(response.content) < 2048
