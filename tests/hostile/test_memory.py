"""Memory stays bounded whatever the body: Python allocations (tracemalloc) while the app serves
one hostile request, on top of what was allocated before it."""

from __future__ import annotations

import os
import tracemalloc
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import USER
from tests.hostile.conftest import API, JSON

MB = 1024 * 1024


async def peak_while(api: httpx.AsyncClient, body: bytes) -> tuple[int, int]:
    """(status, peak bytes allocated beyond those held when the request started)."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        response = await api.post(f"{API}/nodepools", content=body, headers={**USER, **JSON})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return response.status_code, peak - start


async def test_a_megabyte_of_garbage_costs_a_few_megabytes(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    status, peak = await peak_while(api, os.urandom(MB - 16))
    assert status == 400
    assert peak < 6 * MB, f"{peak / MB:.1f} MB"


async def test_a_huge_upload_is_refused_without_being_held(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    status, peak = await peak_while(api, os.urandom(32 * MB))
    assert status == 413
    assert peak < 2 * MB, f"{peak / MB:.1f} MB"


def hostile_json(cluster_id: str) -> dict[str, bytes]:
    """Bodies just under the limit that parse into as many objects as they can."""
    spec = {"platform": {"type": "gcp", "gcp": {"machineType": "n1"}}, "nodeCount": 1}
    body = {"name": "p", "cluster_id": cluster_id, "spec": spec}

    def with_gcp(**fields: Any) -> bytes:
        edited = orjson.loads(orjson.dumps(body))
        edited["spec"]["platform"]["gcp"].update(fields)
        return orjson.dumps(edited)

    return {
        "numbers": b"[" + b",".join([b"0"] * (MB // 2 - 8)) + b"]",
        "empty objects": b"[" + b",".join([b"{}"] * (MB // 3 - 8)) + b"]",
        "zones": with_gcp(zones=["us-central1-a"] * 60_000),
        "labels": with_gcp(labels={f"k{i}": "v" for i in range(75_000)}),
        "NUL bytes": b"\x00" * (MB - 16),
    }


@pytest.mark.parametrize("kind", ["numbers", "empty objects", "zones", "labels", "NUL bytes"])
async def test_a_megabyte_of_hostile_json_stays_within_a_bounded_multiple(
    api: httpx.AsyncClient, nodepool: dict[str, Any], kind: str
) -> None:
    body = hostile_json(nodepool["cluster_id"])[kind]
    assert len(body) <= MB
    status, peak = await peak_while(api, body)
    assert status == 400
    # Parsing expands JSON into objects (up to ~25x for the worst shapes): bounded because the
    # body is; a limit raised tenfold would raise this tenfold too.
    assert peak < 40 * MB, f"{peak / MB:.1f} MB"
