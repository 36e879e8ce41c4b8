"""Bodies that lenient JSON parsers would misread: every JSON route answers a 400 in the
envelope, writes nothing, and logs nothing alarming (no RecursionError, no traceback)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from shared_models.strict_json import MAX_DEPTH
from tests.api.conftest import assert_error
from tests.conftest import USER
from tests.hostile.conftest import API, JSON, JSON_ROUTES, ROUTE_IDS, JsonRoute, trouble


def with_repeated_key(body: dict[str, Any], key: str, value: Any) -> bytes:
    """``body`` as JSON with ``key`` written twice at the top: first ``value``, then its own."""
    first = orjson.dumps({key: value})[1:-1]
    return b"{" + first + b"," + orjson.dumps(body)[1:]


async def snapshot(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> list[Any]:
    """What a write could change: the nodepool, its cluster, their statuses, the lists."""
    reads = [
        f"/nodepools/{nodepool['id']}",
        f"/clusters/{nodepool['cluster_id']}",
        f"/nodepools/{nodepool['id']}/status",
        f"/clusters/{nodepool['cluster_id']}/status",
        "/nodepools",
        "/clusters",
    ]
    return [(await api.get(API + path, headers=USER)).json() for path in reads]


@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
async def test_a_repeated_key_is_400_and_writes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], route: JsonRoute, app_logs: Any
) -> None:
    body = route.body(nodepool)
    key = next(iter(body))
    before = await snapshot(api, nodepool)
    response = await api.request(
        route.method,
        route.url(nodepool),
        content=with_repeated_key(body, key, body[key]),
        headers=route.headers(),
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["fields"][0]["field"] == "body"
    assert f"duplicate key '{key}'" in error["details"]
    assert await snapshot(api, nodepool) == before
    assert trouble(app_logs) == []


async def test_a_value_smuggled_in_a_repeated_nested_key_is_refused(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    # The auditor reads nodeCount 3; a last-key-wins parser would store 1000.
    body = orjson.dumps(
        {"name": "smuggler", "cluster_id": nodepool["cluster_id"], "spec": {"nodeCount": 3}}
    ).replace(
        b'"nodeCount":3',
        b'"nodeCount":3,"nodeCount":1000,"platform":' + orjson.dumps(nodepool["spec"]["platform"]),
    )
    response = await api.post(f"{API}/nodepools", content=body, headers={**USER, **JSON})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "duplicate key 'nodeCount'" in error["details"]


async def test_a_repeated_key_inside_a_list_item_is_refused(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    spec = {**nodepool["spec"]}
    spec["platform"]["gcp"]["taints"] = [{"key": "a", "effect": "NoSchedule"}]
    body = orjson.dumps({"name": nodepool["name"], "spec": spec}).replace(
        b'{"key":"a",', b'{"key":"a","key":"b",'
    )
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}", content=body, headers={**USER, **JSON}
    )
    assert "duplicate key 'key'" in assert_error(response, 400, "VALIDATION_ERROR")["details"]


async def test_repeating_a_key_in_different_objects_is_fine(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    # "type" appears in platform and in each accelerator, "key" in each taint: not repeats.
    spec = {**nodepool["spec"]}
    spec["platform"]["gcp"]["accelerators"] = [{"type": "nvidia-t4", "count": 1}]
    spec["platform"]["gcp"]["taints"] = [
        {"key": "a", "effect": "NoSchedule"},
        {"key": "b", "effect": "NoExecute"},
    ]
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}",
        json={"name": nodepool["name"], "spec": spec},
        headers=USER,
    )
    assert response.status_code == 200, response.text


# One level over the guard's own limit (which the parsers behind it would take), and far beyond
# what any parser takes (orjson stops at 1024, json.loads at the recursion limit).
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 10_000])
@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("opener", [b"[", b'{"a":'], ids=["arrays", "objects"])
async def test_nesting_over_the_limit_is_400_without_a_recursion_error(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    route: JsonRoute,
    opener: bytes,
    levels: int,
    app_logs: Any,
) -> None:
    closer = b"]" if opener == b"[" else b"}"
    body = opener * levels + b"1" + closer * levels
    response = await api.request(
        route.method, route.url(nodepool), content=body, headers=route.headers()
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "nested deeper than" in error["details"]
    assert trouble(app_logs) == []


async def test_nesting_within_the_limit_reaches_validation(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    # 20 levels of metadata are JSON the guard lets through; the report's own rule refuses it.
    report = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": 1,
        "metadata": {"deep": orjson.loads(b"[" * 20 + b"]" * 20)},
    }
    route = JSON_ROUTES[6]
    response = await api.put(route.url(nodepool), json=report, headers=route.headers())
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["fields"][0]["field"] == "metadata"


LENIENT_ONLY: list[tuple[str, bytes, bytes]] = [
    ("NaN", b'"nodeCount":3', b'"nodeCount":NaN'),
    ("Infinity", b'"nodeCount":3', b'"nodeCount":-Infinity'),
    ("number overflowing a double", b'"nodeCount":3', b'"nodeCount":1e400'),
    ("lone surrogate", b'"name":"another-pool"', b'"name":"\\ud800"'),
]


@pytest.mark.parametrize(
    ("old", "new"), [c[1:] for c in LENIENT_ONLY], ids=[c[0] for c in LENIENT_ONLY]
)
async def test_json_only_a_lenient_parser_takes_is_400(
    api: httpx.AsyncClient, nodepool: dict[str, Any], old: bytes, new: bytes
) -> None:
    route = JSON_ROUTES[2]
    body = orjson.dumps(route.body(nodepool)).replace(old, new)
    assert new in body
    response = await api.post(route.url(nodepool), content=body, headers=route.headers())
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["fields"][0]["field"] == "body"


async def test_a_byte_order_mark_is_400(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    route = JSON_ROUTES[2]
    body = b"\xef\xbb\xbf" + orjson.dumps(route.body(nodepool))
    response = await api.post(route.url(nodepool), content=body, headers=route.headers())
    assert "byte order mark" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
