"""Redis going away and coming back, with a redis-server of the test's own (PrivateRedis):
every request answers 503 UNAVAILABLE in the envelope meanwhile, /ready says not ready,
/health stays up, and the same app serves again, data intact, once Redis is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.api.conftest import API, MERGE_PATCH, assert_error, create_nodepool, update_body
from tests.conftest import USER, seed_nodepool_body
from tests.support.redis_server import PrivateRedis
from tests.support.resources import create_cluster

Request = Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[httpx.Response]]

# Every kind of request, given the nodepool created before the outage.
REQUESTS: dict[str, Request] = {
    "get": lambda api, np: api.get(f"{API}/nodepools/{np['id']}", headers=USER),
    "list": lambda api, np: api.get(f"{API}/nodepools?status=Pending", headers=USER),
    "list in cluster": lambda api, np: api.get(
        f"{API}/clusters/{np['cluster_id']}/nodepools", headers=USER
    ),
    "status": lambda api, np: api.get(f"{API}/nodepools/{np['id']}/status", headers=USER),
    "create": lambda api, np: api.post(
        f"{API}/nodepools", json=seed_nodepool_body(np["cluster_id"], "new"), headers=USER
    ),
    "create dry run": lambda api, np: api.post(
        f"{API}/nodepools?dryRun=true",
        json=seed_nodepool_body(np["cluster_id"], "new"),
        headers=USER,
    ),
    "put": lambda api, np: api.put(
        f"{API}/nodepools/{np['id']}", json=update_body(node_count=8), headers=USER
    ),
    "patch": lambda api, np: api.patch(
        f"{API}/nodepools/{np['id']}",
        json={"spec": {"nodeCount": 8}},
        headers={**USER, **MERGE_PATCH},
    ),
    "delete": lambda api, np: api.delete(f"{API}/nodepools/{np['id']}", headers=USER),
    "cluster get": lambda api, np: api.get(f"{API}/clusters/{np['cluster_id']}", headers=USER),
    "cluster list": lambda api, np: api.get(f"{API}/clusters", headers=USER),
    "cluster delete": lambda api, np: api.delete(
        f"{API}/clusters/{np['cluster_id']}?force=true", headers=USER
    ),
}

# An unreachable Redis must fail fast, not hang the request.
FAIL_FAST_SECONDS = 3.0
RECOVERY_SECONDS = 15.0
# A server that accepts but never answers costs the client's socket timeout (5 s), no more.
FROZEN_SECONDS = 8.0


@pytest.fixture
async def before_outage(private_api: httpx.AsyncClient) -> dict[str, Any]:
    cluster = await create_cluster(private_api)
    return await create_nodepool(private_api, cluster["id"])


@pytest.mark.parametrize("stop", ["stop", "kill"])
async def test_every_request_is_503_unavailable_while_redis_is_down(
    private_api: httpx.AsyncClient,
    private_redis: PrivateRedis,
    before_outage: dict[str, Any],
    stop: str,
) -> None:
    getattr(private_redis, stop)()
    for name, request in REQUESTS.items():
        started = time.monotonic()
        response = await request(private_api, before_outage)
        assert time.monotonic() - started < FAIL_FAST_SECONDS, name
        error = assert_error(response, 503, "UNAVAILABLE")
        assert response.headers["Retry-After"], name
        assert "redis" not in error["message"].lower()  # no internals in the message


async def test_ready_is_503_while_redis_is_down_and_health_stays_ok(
    private_api: httpx.AsyncClient, private_redis: PrivateRedis
) -> None:
    assert (await private_api.get("/ready")).status_code == 200
    private_redis.stop()
    not_ready = await private_api.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["code"] == "UNAVAILABLE"
    assert not_ready.json()["checks"]["redis"] != "ok"
    assert (await private_api.get("/health")).json() == {"status": "ok"}


async def wait_until_served(api: httpx.AsyncClient, url: str) -> None:
    """Poll until the app serves ``url`` again (the reconnect is the client's, lazily)."""
    async with asyncio.timeout(RECOVERY_SECONDS):
        while True:
            if (await api.get(url, headers=USER)).status_code == 200:
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("stop", ["stop", "kill"])
async def test_the_same_app_recovers_with_data_intact_when_redis_returns(
    private_api: httpx.AsyncClient,
    private_redis: PrivateRedis,
    before_outage: dict[str, Any],
    stop: str,
) -> None:
    url = f"{API}/nodepools/{before_outage['id']}"
    getattr(private_redis, stop)()
    assert_error(await private_api.get(url, headers=USER), 503, "UNAVAILABLE")
    failed_write = await private_api.put(url, json=update_body(node_count=8), headers=USER)
    assert_error(failed_write, 503, "UNAVAILABLE")
    private_redis.start()
    await wait_until_served(private_api, url)
    # What was written before the outage is there; the write that failed left no trace.
    assert (await private_api.get(url, headers=USER)).json() == before_outage
    assert (await private_api.get("/ready")).status_code == 200
    # Reads and writes (including the Lua scripts, reloaded into the new server) work again.
    scaled = await private_api.put(url, json=update_body(node_count=8), headers=USER)
    assert (scaled.status_code, scaled.json()["generation"]) == (200, 2)
    created = await private_api.post(
        f"{API}/nodepools",
        json=seed_nodepool_body(before_outage["cluster_id"], "after-outage"),
        headers=USER,
    )
    assert created.status_code == 201, created.text
    listing = (await private_api.get(f"{API}/nodepools", headers=USER)).json()
    assert listing["total"] == 2


async def test_requests_in_flight_when_redis_dies_get_503_not_a_hang(
    private_api: httpx.AsyncClient, private_redis: PrivateRedis, before_outage: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{before_outage['id']}"
    requests = [private_api.get(url, headers=USER) for _ in range(20)]
    killer = asyncio.get_running_loop().run_in_executor(None, private_redis.kill)
    responses = await asyncio.wait_for(asyncio.gather(*requests), FAIL_FAST_SECONDS * 3)
    await killer
    assert {r.status_code for r in responses} <= {200, 503}
    for response in (r for r in responses if r.status_code == 503):
        assert_error(response, 503, "UNAVAILABLE")


async def test_a_frozen_redis_gives_503_after_the_socket_timeout_not_a_hang(
    private_api: httpx.AsyncClient, private_redis: PrivateRedis, before_outage: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{before_outage['id']}"
    assert private_redis.process is not None
    pid = private_redis.process.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        started = time.monotonic()
        response = await private_api.get(url, headers=USER)
        assert time.monotonic() - started < FROZEN_SECONDS
        assert_error(response, 503, "UNAVAILABLE")
    finally:
        os.kill(pid, signal.SIGCONT)
    await wait_until_served(private_api, url)


async def test_after_a_restart_no_request_fails_on_a_connection_to_the_old_server(
    private_api: httpx.AsyncClient, private_redis: PrivateRedis, before_outage: dict[str, Any]
) -> None:
    """Every pooled connection dies with the server; each must be replaced on use, not fail the
    request that draws it once Redis is back."""
    url = f"{API}/nodepools/{before_outage['id']}"
    wave = 24  # concurrent requests: as many pooled connections
    filled = await asyncio.gather(*(private_api.get(url, headers=USER) for _ in range(wave)))
    assert {r.status_code for r in filled} == {200}
    private_redis.stop()
    private_redis.start()  # returns once the new server answers
    after = await asyncio.gather(*(private_api.get(url, headers=USER) for _ in range(wave)))
    assert [r.status_code for r in after] == [200] * wave, after[0].text
    scaled = await private_api.put(url, json=update_body(node_count=8), headers=USER)
    assert scaled.status_code == 200, scaled.text


@pytest.mark.parametrize("name", sorted(REQUESTS))
async def test_every_request_succeeds_after_redis_lost_its_scripts(
    private_api: httpx.AsyncClient,
    private_client: Redis,
    before_outage: dict[str, Any],
    name: str,
) -> None:
    # A restarted or failed-over Redis has none of the Lua scripts the API loaded: each script
    # call must load its script again and run, not fail with NOSCRIPT.
    await private_client.script_flush()
    response = await REQUESTS[name](private_api, before_outage)
    assert response.status_code < 300, response.text
