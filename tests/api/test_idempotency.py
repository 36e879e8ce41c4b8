"""Idempotency-Key on POST creates: a retry answers with what the first request created (201
once, then 200 with the resource as it is now), never a duplicate or a 409; another request on
the same key is a 409. A key holds only what a replay needs, and goes with its resource."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from api_service.routes.idempotency import fingerprint_of
from cls_core.services.access import Caller
from cls_core.services.idempotency import IdempotentCreate, Replay, claim_key
from cls_core.services.nodepools import NodePoolService
from cls_core.store import NodePoolRecord, RedisStore
from cls_runtime.settings import Settings
from shared_models.resources import NodePoolCreate
from tests.api.conftest import (
    API,
    SHORT_TTL,
    assert_error,
    largest_nodepool,
    recorded_commands,
    script_runs,
)
from tests.conftest import OTHER_USER, USER, gcp_cluster_body, matching_keys, seed_nodepool_body
from tests.support.deletion import delete_nodepool, finish_cluster_deletions, purge_cluster
from tests.support.resources import create_cluster

Create = Callable[[httpx.AsyncClient, dict[str, Any], dict[str, str]], Awaitable[httpx.Response]]

CALLER = Caller(USER["X-User-Email"])

FORCE = "?force=true&reason=test"


def created_kind(path: str) -> str:
    return "cluster" if path == "/clusters" else "nodepool"


# (path, body for it given the fixture cluster)
CREATES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("/clusters", lambda cluster: gcp_cluster_body("second")),
    ("/nodepools", lambda cluster: seed_nodepool_body(cluster["id"], "pool")),
    ("/clusters/{cl}/nodepools", lambda cluster: seed_nodepool_body(cluster["id"], "pool")),
]
CREATE_IDS = [path for path, _ in CREATES]


# A key of the length most clients send (a UUID): the key's name counts in its memory.
UUID_KEY = "0b6f8e2c-3f1d-4d6a-9a57-1c2e5b7d9f00"


def keyed(key: str, user: dict[str, str] = USER) -> dict[str, str]:
    return {**user, "Idempotency-Key": key}


async def stored_keys(redis: Redis, settings: Settings) -> list[str]:
    """The idempotency keys stored in the test's namespace, anyone's."""
    return await matching_keys(redis, settings.names.idempotency("*", "*"))


async def store_old_format_key(
    redis: Redis,
    settings: Settings,
    key: str,
    resource: dict[str, Any],
    path: str,
    body: dict[str, Any],
) -> None:
    """A key as the API stored them before keys were deleted with their resource: the whole
    first response, alive for the TTL whatever happens to the resource."""
    fingerprint = fingerprint_of("POST", path, orjson.dumps(body))
    value = {"fingerprint": fingerprint, "kind": "nodepool", "body": resource}
    name = settings.names.idempotency(USER["X-User-Email"], key)
    await redis.set(name, orjson.dumps(value), px=60_000)


async def events(redis: Redis, settings: Settings, event_type: str) -> list[dict[str, str]]:
    entries: Any = await redis.xrange(settings.names.outbox)
    return [fields for _, fields in entries if fields["rk"].startswith(event_type + ".")]


async def listed(api: httpx.AsyncClient, kind: str) -> int:
    total: int = (await api.get(f"{API}/{kind}s", headers=USER)).json()["total"]
    return total


@pytest.mark.parametrize(("path", "make_body"), CREATES, ids=CREATE_IDS)
async def test_a_retried_create_answers_200_with_the_resource_and_creates_nothing(
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
    assert again.headers["content-type"] == "application/json"
    kind = created_kind(path)
    assert len(await events(redis, settings, f"{kind}.created")) == (2 if kind == "cluster" else 1)
    assert await listed(api, kind) == (2 if kind == "cluster" else 1)


async def test_the_replay_is_the_resource_as_it_is_now(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"], "pool")
    first = (await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))).json()
    patched = await api.patch(
        f"{API}/nodepools/{first['id']}", json={"spec": {"nodeCount": 5}}, headers=USER
    )
    assert patched.json()["generation"] == 2
    again = await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    now = await api.get(f"{API}/nodepools/{first['id']}", headers=USER)
    assert (again.status_code, again.json()) == (200, now.json())
    assert again.json()["spec"]["nodeCount"] == 5
    assert again.headers["ETag"] == now.headers["ETag"] != f'"{first["resource_version"]}"'
    assert again.headers["Location"] == f"/api/v1/nodepools/{first['id']}"


async def test_once_the_nodepool_is_deleted_its_key_creates_again(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"], "pool")
    first = (await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))).json()
    await delete_nodepool(api, first["id"])  # and confirmed: purged
    again = await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    assert again.status_code == 201, again.text
    assert again.json()["id"] != first["id"]
    assert await listed(api, "nodepool") == 1


async def test_once_the_cluster_is_deleted_its_key_creates_again(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    body = gcp_cluster_body("keyed")
    first = (await api.post(f"{API}/clusters", json=body, headers=keyed("k"))).json()
    await purge_cluster(api, settings, first["id"])
    again = await api.post(f"{API}/clusters", json=body, headers=keyed("k"))
    assert again.status_code == 201, again.text
    assert again.json()["id"] != first["id"]


async def test_a_forced_cluster_delete_deletes_the_keys_of_its_nodepools(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    for i in range(3):
        body = seed_nodepool_body(cluster["id"], f"pool-{i}")
        created = await api.post(f"{API}/nodepools", json=body, headers=keyed(f"k{i}"))
        assert created.status_code == 201, created.text
    assert len(await stored_keys(redis, settings)) == 3
    deleted = await api.delete(f"{API}/clusters/{cluster['id']}?force=true", headers=USER)
    assert deleted.status_code == 202, deleted.text
    await finish_cluster_deletions(settings)
    assert await stored_keys(redis, settings) == []


async def test_a_dry_run_delete_keeps_the_key(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"], "pool")
    first = (await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))).json()
    dry = await api.delete(f"{API}/nodepools/{first['id']}?dryRun=true", headers=USER)
    assert dry.status_code == 204
    again = await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    assert (again.status_code, again.json()["id"]) == (200, first["id"])


async def test_once_the_time_is_up_the_key_is_free(
    short_ttl_api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    api = short_ttl_api
    first = await api.post(f"{API}/clusters", json=gcp_cluster_body("one"), headers=keyed("k"))
    assert first.status_code == 201, first.text
    await asyncio.sleep(SHORT_TTL + 0.1)
    assert await stored_keys(redis, settings) == []
    other = await api.post(f"{API}/clusters", json=gcp_cluster_body("two"), headers=keyed("k"))
    assert other.status_code == 201, other.text  # not "already used for a different request"


async def test_deleting_a_resource_keeps_its_key_once_the_key_created_another(
    short_ttl_api: httpx.AsyncClient,
) -> None:
    api = short_ttl_api
    old = await api.post(f"{API}/clusters", json=gcp_cluster_body("old"), headers=keyed("k"))
    await asyncio.sleep(SHORT_TTL + 0.1)
    new = await api.post(f"{API}/clusters", json=gcp_cluster_body("new"), headers=keyed("k"))
    assert (old.status_code, new.status_code) == (201, 201)
    deleted = await api.delete(f"{API}/clusters/{old.json()['id']}", headers=USER)
    assert deleted.status_code == 202
    again = await api.post(f"{API}/clusters", json=gcp_cluster_body("new"), headers=keyed("k"))
    assert (again.status_code, again.json()["id"]) == (200, new.json()["id"])


async def test_the_stored_key_holds_only_the_fingerprint_kind_and_id(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    body = largest_nodepool(cluster["id"], "largest")
    created = await api.post(f"{API}/nodepools", json=body, headers=keyed(UUID_KEY))
    assert created.status_code == 201, created.text
    stored = await redis.get(settings.names.idempotency(USER["X-User-Email"], UUID_KEY))
    assert stored is not None
    entry = orjson.loads(stored)
    assert set(entry) == {"fp", "kind", "id"}
    assert (entry["kind"], entry["id"]) == ("nodepool", created.json()["id"])
    assert len(stored) < 160


async def test_the_stored_key_is_under_512_bytes_in_redis(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    body = largest_nodepool(cluster["id"], "largest")
    created = await api.post(f"{API}/nodepools", json=body, headers=keyed(UUID_KEY))
    assert created.status_code == 201, created.text
    assert len(created.content) > 20_000  # what each key used to hold
    key = settings.names.idempotency(USER["X-User-Email"], UUID_KEY)
    used = await redis.memory_usage(key, samples=0)
    assert used is not None and used < 512, used


async def test_creates_and_deletes_in_a_loop_leave_no_keys_behind(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    for i in range(10):
        body = largest_nodepool(cluster["id"], f"loop-{i}")
        created = await api.post(f"{API}/nodepools", json=body, headers=keyed(f"np-{i}"))
        assert created.status_code == 201, created.text
        gone = await api.delete(f"{API}/nodepools/{created.json()['id']}{FORCE}", headers=USER)
        assert gone.status_code == 204
        body = gcp_cluster_body(f"loop-{i}")
        created = await api.post(f"{API}/clusters", json=body, headers=keyed(f"cl-{i}"))
        assert created.status_code == 201, created.text
        gone = await api.delete(f"{API}/clusters/{created.json()['id']}{FORCE}", headers=USER)
        assert gone.status_code == 202
    assert await stored_keys(redis, settings) == []


async def test_the_key_is_deleted_in_the_transaction_that_deletes_its_resource(
    private_api: httpx.AsyncClient, private_client: Redis, private_settings: Settings
) -> None:
    cluster = await create_cluster(private_api)
    body = seed_nodepool_body(cluster["id"], "pool")
    created = await private_api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    key = private_settings.names.idempotency(USER["X-User-Email"], "k")
    async with recorded_commands(private_client) as seen:
        # Forced: purged by the DELETE itself (else by the last confirmation's transaction).
        url = f"{API}/nodepools/{created.json()['id']}{FORCE}"
        gone = await private_api.delete(url, headers=USER)
    assert gone.status_code == 204
    record = private_settings.names.record("nodepool", created.json()["id"])
    writes = [
        [command.split()[1] for command in run if command.split()[0].upper() == "DEL"]
        for _, run in script_runs(seen)
    ]
    [deleted] = [run for run in writes if record in run]
    assert key in deleted


async def test_a_key_of_the_old_format_replays_while_its_resource_exists(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    body = seed_nodepool_body(cluster["id"], "pool")
    created = (await api.post(f"{API}/nodepools", json=body, headers=USER)).json()
    await store_old_format_key(redis, settings, "k", created, f"{API}/nodepools", body)
    again = await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    assert (again.status_code, again.json()["id"]) == (200, created["id"])


async def test_a_key_of_the_old_format_creates_again_once_its_resource_is_gone(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    body = seed_nodepool_body(cluster["id"], "pool")
    created = (await api.post(f"{API}/nodepools", json=body, headers=USER)).json()
    await store_old_format_key(redis, settings, "k", created, f"{API}/nodepools", body)
    await delete_nodepool(api, created["id"])
    again = await api.post(f"{API}/nodepools", json=body, headers=keyed("k"))
    assert again.status_code == 201, again.text
    assert again.json()["id"] != created["id"]


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
    api: httpx.AsyncClient, cluster: dict[str, Any], settings: Settings, store: RedisStore
) -> None:
    # Both retries looked the key up before either committed: the transaction decides.
    service = NodePoolService(store, settings)
    body = NodePoolCreate.model_validate(seed_nodepool_body(cluster["id"], "pool"))
    first = await claim_key(store, service.access, CALLER, "k", "same", 60)
    second = await claim_key(store, service.access, CALLER, "k", "same", 60)
    assert isinstance(first, IdempotentCreate) and isinstance(second, IdempotentCreate)
    created = await service.create(CALLER, body, None, False, first)
    replay = await service.create(CALLER, body, None, False, second)
    assert isinstance(created, NodePoolRecord) and isinstance(replay, Replay)
    assert orjson.loads(replay.body) == created.view()
    assert replay.resource_version == created.rv
    assert await listed(api, "nodepool") == 1


async def test_a_race_lost_on_a_key_whose_resource_is_gone_creates(
    api: httpx.AsyncClient,
    cluster: dict[str, Any],
    redis: Redis,
    settings: Settings,
    store: RedisStore,
) -> None:
    # The key was free when looked up, and holds a deleted resource's entry at commit time.
    body = seed_nodepool_body(cluster["id"], "pool")
    gone = (await api.post(f"{API}/nodepools", json=body, headers=USER)).json()
    await delete_nodepool(api, gone["id"])
    service = NodePoolService(store, settings)
    claim = await claim_key(store, service.access, CALLER, "k", "same", 60)
    assert isinstance(claim, IdempotentCreate)
    await store_old_format_key(redis, settings, "k", gone, f"{API}/nodepools", body)
    created = await service.create(CALLER, NodePoolCreate.model_validate(body), None, False, claim)
    assert isinstance(created, NodePoolRecord)
    assert created.id != gone["id"]
    assert await listed(api, "nodepool") == 1
    stored = await redis.get(settings.names.idempotency("user@example.com", "k"))
    assert stored is not None and orjson.loads(stored)["id"] == created.id


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
        replay = post["responses"]["200"]
        assert {"Idempotent-Replayed", "ETag", "Location"} <= set(replay["headers"]), path
        assert "as it is now" in replay["description"], path
