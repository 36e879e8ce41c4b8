"""Every error code, each in the envelope {"error": {"code", "message", "details"}}.

``assert_error`` also checks that nothing of a framework's own error body leaks through
(FastAPI's {"detail": ...}, Starlette's plain-text 404/405/500).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import (
    API,
    JSON,
    MERGE_PATCH,
    assert_error,
    error_fields,
    serve,
    update_body,
)
from tests.conftest import USER, controller_headers, gcp_cluster_body, seed_nodepool_body
from tests.support.resources import create_cluster

ONE_MIB = 1024 * 1024
NO_SUCH_ID = "0f0f0f0f-0000-4000-8000-000000000000"

# (method, path, JSON body) of every user endpoint; {np} and {cl} are existing ids.
USER_ENDPOINTS: list[tuple[str, str, Any]] = [
    ("POST", "/clusters", gcp_cluster_body("another")),
    ("GET", "/clusters", None),
    ("GET", "/clusters/{cl}", None),
    ("PUT", "/clusters/{cl}", gcp_cluster_body()),
    ("DELETE", "/clusters/{cl}", None),
    ("GET", "/clusters/{cl}/status", None),
    ("POST", "/clusters/{cl}/nodepools", "nodepool"),
    ("GET", "/clusters/{cl}/nodepools", None),
    ("POST", "/nodepools", "nodepool"),
    ("GET", "/nodepools", None),
    ("GET", "/nodepools/{np}", None),
    ("PUT", "/nodepools/{np}", update_body()),
    ("PATCH", "/nodepools/{np}", {"spec": {"nodeCount": 4}}),
    ("DELETE", "/nodepools/{np}", None),
    ("GET", "/nodepools/{np}/status", None),
]
ENDPOINT_IDS = [f"{m} {p}" for m, p, _ in USER_ENDPOINTS]


async def call(
    api: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any,
    nodepool: dict[str, Any],
    headers: dict[str, str],
) -> httpx.Response:
    url = API + path.format(np=nodepool["id"], cl=nodepool["cluster_id"])
    if body == "nodepool":
        body = seed_nodepool_body(nodepool["cluster_id"], "second-pool")
    if method == "PATCH":
        headers = {**headers, **MERGE_PATCH}
    return await api.request(method, url, json=body, headers=headers)


# ---- 401 / 403 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), USER_ENDPOINTS, ids=ENDPOINT_IDS)
async def test_every_user_endpoint_needs_x_user_email(
    api: httpx.AsyncClient, nodepool: dict[str, Any], method: str, path: str, body: Any
) -> None:
    response = await call(api, method, path, body, nodepool, {})
    assert_error(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("email", ["", "   ", "user", "user@", "@example.com", "a b@example.com"])
async def test_a_header_that_is_not_an_email_is_401(api: httpx.AsyncClient, email: str) -> None:
    response = await api.get(f"{API}/nodepools", headers={"X-User-Email": email})
    assert_error(response, 401, "UNAUTHORIZED")


# An address of exactly 254 characters (the most RFC 5321 allows), each part within its own
# limit: a 64-character local part, 63-character domain labels.
LONGEST_EMAIL = "u" * 64 + "@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 57 + ".com"


async def test_an_email_of_254_characters_is_accepted_and_one_more_is_401(
    api: httpx.AsyncClient,
) -> None:
    assert len(LONGEST_EMAIL) == 254
    response = await api.get(f"{API}/nodepools", headers={"X-User-Email": LONGEST_EMAIL})
    assert response.status_code == 200, response.text
    too_long = LONGEST_EMAIL.replace("c" * 57, "c" * 58)  # still an email, one character over
    assert len(too_long) == 255
    response = await api.get(f"{API}/nodepools", headers={"X-User-Email": too_long})
    assert_error(response, 401, "UNAUTHORIZED")


async def test_401_comes_before_validating_the_path_id(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{API}/nodepools/not-a-uuid")
    assert_error(response, 401, "UNAUTHORIZED")


async def test_401_comes_before_validating_query_and_body(api: httpx.AsyncClient) -> None:
    assert_error(await api.get(f"{API}/nodepools?limit=0"), 401, "UNAUTHORIZED")
    assert_error(await api.post(f"{API}/nodepools", json={"x": 1}), 401, "UNAUTHORIZED")


async def test_email_is_case_insensitive(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    shouting = {"X-User-Email": "USER@Example.COM"}
    response = await api.get(f"{API}/nodepools/{nodepool['id']}", headers=shouting)
    assert response.status_code == 200


async def test_with_auth_disabled_a_request_without_email_is_served(
    settings: Settings, redis: Redis
) -> None:
    async with serve(settings.model_copy(update={"auth_disabled": True})) as api:
        created = await api.post(f"{API}/clusters", json=gcp_cluster_body())
        assert created.status_code == 201, created.text
        assert created.json()["created_by"] == "anonymous@localhost"
        listed = await api.get(f"{API}/clusters")
        assert listed.json()["total"] == 1


@pytest.mark.parametrize(("method", "path", "body"), USER_ENDPOINTS, ids=ENDPOINT_IDS)
async def test_controller_token_on_a_user_endpoint_is_403(
    api: httpx.AsyncClient, nodepool: dict[str, Any], method: str, path: str, body: Any
) -> None:
    headers = {**USER, **controller_headers()}
    response = await call(api, method, path, body, nodepool, headers)
    assert_error(response, 403, "FORBIDDEN")


async def test_user_email_on_a_status_write_is_403(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 1}
    response = await api.put(f"{API}/nodepools/{nodepool['id']}/status", json=report, headers=USER)
    assert_error(response, 403, "FORBIDDEN")


# ---- 404 / 405 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/nope", "/api/v2/nodepools", f"/api/v1/nodepools/{NO_SUCH_ID}/x"]
)
async def test_unknown_route_is_404_in_the_envelope(api: httpx.AsyncClient, path: str) -> None:
    assert_error(await api.get(path, headers=USER), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "path",
    ["/api/v1/clusters/", "/api/v1/nodepools/", f"/api/v1/clusters/{NO_SUCH_ID}/nodepools/"],
)
async def test_a_trailing_slash_is_404_never_a_redirect(api: httpx.AsyncClient, path: str) -> None:
    # Starlette's redirect to the path without the slash built its Location from the Host header.
    response = await api.get(path, headers={**USER, "Host": "elsewhere.example"})
    assert_error(response, 404, "NOT_FOUND")
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/nodepools/{NO_SUCH_ID}"),
        ("PUT", f"/nodepools/{NO_SUCH_ID}"),
        ("PATCH", f"/nodepools/{NO_SUCH_ID}"),
        ("DELETE", f"/nodepools/{NO_SUCH_ID}"),
        ("GET", f"/nodepools/{NO_SUCH_ID}/status"),
    ],
)
async def test_unknown_nodepool_is_the_guides_404(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    body = update_body() if method in ("PUT", "PATCH") else None
    headers = {**USER, **MERGE_PATCH} if method == "PATCH" else USER
    response = await api.request(method, API + path, json=body, headers=headers)
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "NOT_FOUND", "message": "NodePool not found", "details": ""}
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/clusters/{NO_SUCH_ID}", None),
        ("PUT", f"/clusters/{NO_SUCH_ID}", gcp_cluster_body()),
        ("DELETE", f"/clusters/{NO_SUCH_ID}", None),
        ("GET", f"/clusters/{NO_SUCH_ID}/status", None),
        ("GET", f"/clusters/{NO_SUCH_ID}/nodepools", None),
        ("POST", f"/clusters/{NO_SUCH_ID}/nodepools", seed_nodepool_body(NO_SUCH_ID)),
        ("POST", "/nodepools", seed_nodepool_body(NO_SUCH_ID)),
    ],
)
async def test_unknown_cluster_is_404(
    api: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    response = await api.request(method, API + path, json=body, headers=USER)
    assert assert_error(response, 404, "NOT_FOUND")["message"] == "Cluster not found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/nodepools/{NO_SUCH_ID}"),
        ("PATCH", f"/clusters/{NO_SUCH_ID}"),
        ("PUT", "/nodepools"),
    ],
)
async def test_wrong_method_is_405_in_the_envelope_with_allow(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await api.request(method, API + path, headers=USER)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    # Every method of the path, not only the first matching route's (Starlette's own 405).
    assert (
        response.headers["Allow"]
        == {
            "/nodepools/": "GET, PUT, PATCH, DELETE",
            "/clusters/": "GET, PUT, DELETE",
            "/nodepools": "GET, POST",
        }[path.removesuffix(NO_SUCH_ID)]
    )


# ---- 400: bodies ----------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes, dict[str, str], str]] = [
    ("truncated JSON", b'{"name": "x",', JSON, "body"),
    ("trailing garbage", b'{"name": "x"} x', JSON, "body"),
    ("single quotes", b"{'name': 'x'}", JSON, "body"),
    ("empty body", b"", JSON, "body"),
    ("JSON array", b"[1, 2]", JSON, "body"),
    ("JSON string", b'"pool"', JSON, "body"),
    ("JSON null", b"null", JSON, "body"),
    ("invalid UTF-8", b'{"name": "\xff"}', JSON, "body"),
    ("nested too deeply", b"[" * 100_000, JSON, "body"),
    ("no Content-Type", b'{"name": "x"}', {}, "Content-Type"),
    ("form Content-Type", b'{"name": "x"}', {"Content-Type": "text/plain"}, "Content-Type"),
]


@pytest.mark.parametrize(
    ("content", "headers", "field"),
    [row[1:] for row in BAD_BODIES],
    ids=[row[0] for row in BAD_BODIES],
)
@pytest.mark.parametrize("target", ["POST /nodepools", "PUT /nodepools/{id}", "POST /clusters"])
async def test_unusable_body_is_400_naming_it(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    target: str,
    content: bytes,
    headers: dict[str, str],
    field: str,
) -> None:
    method, path = target.split()
    url = API + path.format(id=nodepool["id"])
    response = await api.request(method, url, content=content, headers={**USER, **headers})
    assert error_fields(response) == {field}


@pytest.mark.parametrize(
    ("content", "headers", "field"),
    [
        (b'{"spec": ', MERGE_PATCH, "body"),
        (b"", MERGE_PATCH, "body"),
        (b"[1]", MERGE_PATCH, "body"),
        (b'"x"', MERGE_PATCH, "body"),
        (b"[" * 5000, MERGE_PATCH, "body"),
        (b'{"name": "\xff"}', MERGE_PATCH, "body"),
        (b'{"spec": {"nodeCount": 4}}', {}, "Content-Type"),
        (b'{"spec": {"nodeCount": 4}}', {"Content-Type": "text/plain"}, "Content-Type"),
    ],
    ids=["truncated", "empty", "array", "string", "too deep", "invalid UTF-8", "none", "text"],
)
async def test_unusable_merge_patch_is_400_naming_it(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    content: bytes,
    headers: dict[str, str],
    field: str,
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    response = await api.patch(url, content=content, headers={**USER, **headers})
    assert error_fields(response) == {field}


async def test_patch_accepts_plain_json_content_type(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    response = await api.patch(url, json={"spec": {"nodeCount": 4}}, headers=USER)
    assert response.status_code == 200, response.text


# ---- 400: query parameters and path ids ---------------------------------------------------

BAD_QUERIES: list[tuple[str, str, str]] = [
    ("/nodepools", "limit=0", "limit"),
    ("/nodepools", "limit=101", "limit"),
    ("/nodepools", "limit=-5", "limit"),
    ("/nodepools", "limit=ten", "limit"),
    ("/nodepools", "limit=1.5", "limit"),
    ("/nodepools", "limit=", "limit"),
    ("/nodepools", "offset=-1", "offset"),
    ("/nodepools", "offset=abc", "offset"),
    ("/nodepools", "offset=99999999999999999999999", "offset"),
    ("/nodepools", "status=ready", "status"),
    ("/nodepools", "status=Unknown", "status"),
    ("/nodepools", "health=Sick", "health"),
    ("/nodepools", "cluster_id=abc", "cluster_id"),
    ("/nodepools", "cluster_id=*", "cluster_id"),
    ("/clusters/{cl}/nodepools", "limit=0", "limit"),
    ("/clusters/{cl}/nodepools", "status=Done", "status"),
    ("/clusters/{cl}/nodepools", "health=%FF", "health"),
    ("/clusters", "limit=1000", "limit"),
    ("/clusters", "offset=-3", "offset"),
    ("/clusters", "platform=oracle", "platform"),
    ("/clusters", "status=Healthy", "status"),
]


@pytest.mark.parametrize(
    ("path", "query", "field"), BAD_QUERIES, ids=[f"{p}?{q}" for p, q, _ in BAD_QUERIES]
)
async def test_bad_query_parameter_is_400_naming_it(
    api: httpx.AsyncClient, cluster: dict[str, Any], path: str, query: str, field: str
) -> None:
    url = f"{API}{path.format(cl=cluster['id'])}?{query}"
    assert error_fields(await api.get(url, headers=USER)) == {field}


@pytest.mark.parametrize(
    ("method", "path", "query", "field"),
    [
        ("POST", "/nodepools", "dryRun=perhaps", "dryRun"),
        ("PUT", "/nodepools/{np}", "dryRun=2", "dryRun"),
        ("DELETE", "/clusters/{cl}", "force=yes-please", "force"),
    ],
)
async def test_bad_flag_is_400_naming_it(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    method: str,
    path: str,
    query: str,
    field: str,
) -> None:
    url = API + path.format(np=nodepool["id"], cl=nodepool["cluster_id"]) + "?" + query
    body = update_body() if method == "PUT" else seed_nodepool_body(nodepool["cluster_id"], "x")
    response = await api.request(
        method, url, json=None if method == "DELETE" else body, headers=USER
    )
    assert error_fields(response) == {field}


BAD_IDS = [
    "123",
    "not-a-uuid",
    NO_SUCH_ID + "0",
    NO_SUCH_ID[:-1],
    "%20",
    NO_SUCH_ID + "%0A",
    "a" * 300,
]
ID_ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/nodepools/{bad}", "id"),
    ("PUT", "/nodepools/{bad}", "id"),
    ("PATCH", "/nodepools/{bad}", "id"),
    ("DELETE", "/nodepools/{bad}", "id"),
    ("GET", "/nodepools/{bad}/status", "id"),
    ("GET", "/clusters/{bad}", "id"),
    ("PUT", "/clusters/{bad}", "id"),
    ("DELETE", "/clusters/{bad}", "id"),
    ("GET", "/clusters/{bad}/status", "id"),
    ("GET", "/clusters/{bad}/nodepools", "clusterId"),
    ("POST", "/clusters/{bad}/nodepools", "clusterId"),
]


@pytest.mark.parametrize(
    ("method", "path", "field"), ID_ROUTES, ids=[f"{m} {p}" for m, p, _ in ID_ROUTES]
)
async def test_malformed_path_id_is_400_naming_it(
    api: httpx.AsyncClient, method: str, path: str, field: str
) -> None:
    headers = {**USER, **MERGE_PATCH} if method == "PATCH" else USER
    for bad in BAD_IDS:
        response = await api.request(method, API + path.format(bad=bad), json={}, headers=headers)
        assert error_fields(response) == {field}, bad


async def test_path_id_in_capitals_names_the_same_nodepool(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.get(f"{API}/nodepools/{nodepool['id'].upper()}", headers=USER)
    assert response.json()["id"] == nodepool["id"]


# ---- 409 --------------------------------------------------------------------------------


async def test_duplicate_cluster_name_is_409_naming_the_existing_id(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    response = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
    error = assert_error(response, 409, "CONFLICT")
    assert error["message"] == "Cluster with name 'demo' already exists"
    assert error["details"] == f"existing cluster id: {cluster['id']}"


async def test_taken_cluster_id_is_409(api: httpx.AsyncClient, cluster: dict[str, Any]) -> None:
    body = gcp_cluster_body("another", id=cluster["id"])
    assert_error(await api.post(f"{API}/clusters", json=body, headers=USER), 409, "CONFLICT")


async def test_rename_onto_a_taken_name_is_409_naming_its_owner(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    other = await api.post(
        f"{API}/nodepools", json=seed_nodepool_body(nodepool["cluster_id"], "other"), headers=USER
    )
    url = f"{API}/nodepools/{other.json()['id']}"
    response = await api.put(url, json=update_body("production-workers"), headers=USER)
    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == f"existing nodepool id: {nodepool['id']}"


# ---- 413 ---------------------------------------------------------------------------------


def oversized_nodepool(cluster_id: str, size: int = 2 * ONE_MIB) -> dict[str, Any]:
    body = seed_nodepool_body(cluster_id)
    body["spec"]["platform"]["gcp"]["labels"] = {"big": "x" * size}
    return body


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/nodepools"),
        ("PUT", "/nodepools/{np}"),
        ("PATCH", "/nodepools/{np}"),
        ("POST", "/clusters"),
    ],
)
async def test_body_over_1_mib_with_content_length_is_413(
    api: httpx.AsyncClient, nodepool: dict[str, Any], method: str, path: str
) -> None:
    url = API + path.format(np=nodepool["id"])
    body = oversized_nodepool(nodepool["cluster_id"])
    response = await api.request(method, url, json=body, headers={**USER, **JSON})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_chunked_body_over_1_mib_is_413(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.post(
        f"{API}/nodepools", content=chunks(ONE_MIB + 1), headers={**USER, **JSON}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_body_of_exactly_1_mib_is_read(api: httpx.AsyncClient) -> None:
    # A megabyte of whitespace is within the limit: it is parsed (and is not JSON).
    response = await api.post(f"{API}/nodepools", content=b" " * ONE_MIB, headers={**USER, **JSON})
    assert error_fields(response) == {"body"}


async def test_oversized_bodies_are_413_on_the_running_service(
    running_api: str, redis: Redis
) -> None:
    async with httpx.AsyncClient(base_url=running_api, timeout=10) as client:
        cluster = await create_cluster(client)
        body = oversized_nodepool(cluster["id"])
        declared = await client.post(f"{API}/nodepools", json=body, headers=USER)
        assert_error(declared, 413, "PAYLOAD_TOO_LARGE")
        chunked = await client.post(
            f"{API}/nodepools", content=chunks(2 * ONE_MIB), headers={**USER, **JSON}
        )
        assert_error(chunked, 413, "PAYLOAD_TOO_LARGE")
        # The service is still serving afterwards.
        assert (await client.get(f"{API}/nodepools", headers=USER)).status_code == 200


# ---- 500 -----------------------------------------------------------------------------------


async def test_unexpected_failure_is_500_internal_in_the_envelope(
    settings: Settings, redis: Redis
) -> None:
    async with serve(settings, raise_app_exceptions=False) as api:
        cluster = await create_cluster(api)
        # A record no code path can read: the error must still leave in the envelope. (Without
        # its view, a read assembles the resource from ``doc``.)
        await redis.hset(settings.names.record("cluster", cluster["id"]), "doc", "{not json")
        await redis.delete(settings.names.view("cluster", cluster["id"]))
        response = await api.get(f"{API}/clusters/{cluster['id']}", headers=USER)
    error = assert_error(response, 500, "INTERNAL")
    assert "not json" not in response.text  # internals are logged, not returned
    assert error["message"] == "Internal error"
