"""Idempotency-Key on POST creates: a retry returns the first result (201 once, then 200 with the
same body), never a duplicate or a 409; another request on the same key is a 409."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from cls_core.services.idempotency import Replayed, claim_key
from cls_core.services.nodepools import NodePoolService
from cls_core.store import RedisStore
from cls_core.store.redis_store import connect_redis
from cls_runtime.settings import Settings
from shared_models.resources import NodePoolCreate
from tests.api.conftest import API, assert_error
from tests.conftest import OTHER_USER, USER, gcp_cluster_body, seed_nodepool_body

Create = Callable[[httpx.AsyncClient, dict[str, Any], dict[str, str]], Awaitable[httpx.Response]]


def created_kind(path: str) -> str:
    return "cluster" if path == "/clusters" else "nodepool"


# (path, body for it given the fixture cluster)
CREATES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("/clusters", lambda cluster: gcp_cluster_body("second")),
    ("/nodepools", lambda cluster: seed_nodepool_body(cluster["id"], "pool")),
    ("/clusters/{cl}/nodepools", lambda cluster: seed_nodepool_body(cluster["id"], "pool")),
]
CREATE_IDS = [path for path, _ in CREATES]


def keyed(key: str, user: dict[str, str] = USER) -> dict[str, str]:
    return {**user, "Idempotency-Key": key}


async def events(redis: Redis, settings: Settings, event_type: str) -> list[dict[str, str]]:
    entries: Any = await redis.xrange(settings.names.outbox)
    return [fields for _, fields in entries if fields["rk"].startswith(event_type + ".")]


async def listed(api: httpx.AsyncClient, kind: str) -> int:
    total: int = (await api.get(f"{API}/{kind}s", headers=USER)).json()["total"]
    return total


@pytest.mark.parametrize(("path", "make_body"), CREATES, ids=CREATE_IDS)
async def test_a_retried_create_returns_the_first_result_with_200(
    api: httpx.AsyncClient,
    cluster: dict[str, Any],
    redis: Redis,
    settings: Settings,
    path: str,
    make_body: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    url, body = API + path.format(cl=cluster["id"]), make_body(cluster)
    first = await api.post(url, json=body, headers=keyed("retry-1"))
    again = await api.post(url, json=body, headers=keyed("retry-1"))
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Location"] == first.headers["Location"]
    kind = created_kind(path)
    assert len(await events(redis, settings, f"{kind}.created")) == (2 if kind == "cluster" else 1)
    assert await listed(api, kind) == (2 if kind == "cluster" else 1)


async def test_the_replay_is_the_first_result_even_after_the_resource_changed(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"], "pool")
    first = (await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))).json()
    patched = await api.patch(
        f"{API}/nodepools/{first['id']}", json={"spec": {"nodeCount": 5}}, headers=USER
    )
    assert patched.json()["generation"] == 2
    again = await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    assert (again.status_code, again.json()) == (200, first)


async def test_the_replay_survives_the_deletion_of_what_it_created(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"], "pool")
    first = (await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))).json()
    deleted = await api.delete(f"{API}/clusters/{cluster['id']}?force=true", headers=USER)
    assert deleted.status_code == 202
    again = await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    assert (again.status_code, again.json()) == (200, first)


async def test_whitespace_and_key_order_do_not_make_another_request(
    api: httpx.AsyncClient,
) -> None:
    body = gcp_cluster_body("tidy")
    first = await api.post(f"{API}/clusters", json=body, headers=keyed("k"))
    reordered = orjson.dumps(dict(reversed(list(body.items()))), option=orjson.OPT_INDENT_2)
    again = await api.post(
        f"{API}/clusters",
        content=reordered,
        headers={**keyed("k"), "Content-Type": "application/json"},
    )
    assert (first.status_code, again.status_code) == (201, 200)


async def test_the_same_key_with_another_body_is_409_and_creates_nothing(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    first = await api.post(f"{API}/clusters", json=gcp_cluster_body("one"), headers=keyed("k"))
    other = await api.post(f"{API}/clusters", json=gcp_cluster_body("two"), headers=keyed("k"))
    error = assert_error(other, 409, "CONFLICT")
    assert "Idempotency-Key" in error["message"]
    assert first.json()["id"] in error["details"]
    assert await listed(api, "cluster") == 1
    assert len(await events(redis, settings, "cluster.created")) == 1


async def test_the_same_key_on_another_route_is_409(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"], "pool")
    created = await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    assert created.status_code == 201
    elsewhere = await api.post(
        f"{API}/clusters/{cluster['id']}/nodepools", json=body, headers=keyed("k")
    )
    assert_error(elsewhere, 409, "CONFLICT")
    assert await listed(api, "nodepool") == 1


async def test_keys_belong_to_their_caller(api: httpx.AsyncClient) -> None:
    mine = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=keyed("k"))
    theirs = await api.post(
        f"{API}/clusters", json=gcp_cluster_body(), headers=keyed("k", OTHER_USER)
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["created_by"] == "other@example.com"


@pytest.mark.parametrize(("path", "make_body"), CREATES, ids=CREATE_IDS)
async def test_concurrent_retries_with_one_key_create_exactly_once(
    api: httpx.AsyncClient,
    cluster: dict[str, Any],
    redis: Redis,
    settings: Settings,
    path: str,
    make_body: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    url, body = API + path.format(cl=cluster["id"]), make_body(cluster)
    responses = await asyncio.gather(
        *(api.post(url, json=body, headers=keyed("storm")) for _ in range(20))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({r.content for r in responses}) == 1
    kind = created_kind(path)
    assert len(await events(redis, settings, f"{kind}.created")) == (2 if kind == "cluster" else 1)


async def test_a_race_lost_on_the_key_inside_the_transaction_is_a_replay(
    api: httpx.AsyncClient, cluster: dict[str, Any], settings: Settings
) -> None:
    # Both retries looked the key up before either committed: the transaction decides.
    store = RedisStore(connect_redis(settings.redis_url), settings.names)
    try:
        service = NodePoolService(store, settings)
        body = NodePoolCreate.model_validate(seed_nodepool_body(cluster["id"], "pool"))
        claims = [await claim_key(store, "user@example.com", "k", "same", 60) for _ in range(2)]
        created = await service.create("user@example.com", body, None, False, claims[0])
        with pytest.raises(Replayed) as replay:
            await service.create("user@example.com", body, None, False, claims[1])
        assert replay.value.body == created.view()
    finally:
        await store.redis.aclose()
    assert await listed(api, "nodepool") == 1


async def test_a_failed_create_stores_no_key(api: httpx.AsyncClient) -> None:
    bad = gcp_cluster_body("Not_A_Name")
    assert_error(
        await api.post(f"{API}/clusters", json=bad, headers=keyed("k")), 400, "VALIDATION_ERROR"
    )
    good = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=keyed("k"))
    assert good.status_code == 201, good.text


async def test_a_dry_run_neither_uses_nor_consumes_the_key(api: httpx.AsyncClient) -> None:
    body = gcp_cluster_body()
    for _ in range(2):
        dry = await api.post(f"{API}/clusters?dryRun=true", json=body, headers=keyed("k"))
        assert dry.status_code == 201, dry.text
    assert await listed(api, "cluster") == 0
    real = await api.post(f"{API}/clusters", json=body, headers=keyed("k"))
    dry_after = await api.post(f"{API}/clusters?dryRun=true", json=body, headers=keyed("k"))
    assert (real.status_code, dry_after.status_code) == (201, 409)  # the name is now taken


async def test_the_key_is_kept_for_the_configured_time(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=keyed("k"))
    ttl_ms = await redis.pttl(settings.names.idempotency("user@example.com", "k"))
    assert settings.idempotency_ttl * 1000 - 60_000 < ttl_ms <= settings.idempotency_ttl * 1000


@pytest.mark.parametrize(
    "key", [b"", b"has space", b"x" * 256, "clé".encode(), b"tab\there"], ids=repr
)
async def test_a_malformed_key_is_400_naming_the_header(api: httpx.AsyncClient, key: bytes) -> None:
    headers = [(b"X-User-Email", USER["X-User-Email"].encode()), (b"Idempotency-Key", key)]
    response = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["fields"][0]["field"] == "Idempotency-Key"
    assert await listed(api, "cluster") == 0


async def test_openapi_documents_the_header_and_the_replay(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for path in ("/api/v1/clusters", "/api/v1/nodepools", "/api/v1/clusters/{clusterId}/nodepools"):
        post = paths[path]["post"]
        assert "Idempotency-Key" in {p["name"] for p in post["parameters"]}, path
        assert {"200", "201"} <= set(post["responses"]), path
