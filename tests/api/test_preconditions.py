"""Writes without a precondition are last-writer-wins; a precondition that no longer holds is
the only 409 a write gets for the state of the resource.

``If-Match`` compares the resource_version (every write moves it, status reports included);
``If-Generation-Match`` compares the generation (only spec changes move it), so a client's
read-modify-write of the spec is not broken by controllers reporting meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_core.services import common
from cls_core.store import RedisStore, Txn
from cls_runtime.settings import Settings
from tests.api.conftest import API, MERGE_PATCH, assert_error, create_nodepool, update_body
from tests.conftest import USER, api_client, controller_headers, gcp_cluster_body
from tests.support.deletion import finish_cluster_deletions


async def report(api: httpx.AsyncClient, nodepool: dict[str, Any], tick: int) -> None:
    """A controller's report that changes something (so it is written, and moves the rv)."""
    body = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": nodepool["generation"],
        "conditions": [{"type": "Ready", "status": "False", "reason": "Provisioning"}],
        "metadata": {"tick": tick},
    }
    url = f"{API}/nodepools/{nodepool['id']}/status"
    response = await api.put(url, json=body, headers=controller_headers())
    assert response.status_code == 200, response.text


def generation_match(view: dict[str, Any]) -> dict[str, str]:
    return {**USER, "If-Generation-Match": str(view["generation"])}


async def test_if_generation_match_survives_a_status_report_in_between(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    await report(api, nodepool, 1)  # the rv moved, the generation did not
    url = f"{API}/nodepools/{nodepool['id']}"
    stale_rv = {**USER, "If-Match": f'"{nodepool["resource_version"]}"'}
    assert_error(
        await api.put(url, json=update_body(node_count=4), headers=stale_rv), 409, "CONFLICT"
    )
    response = await api.put(
        url, json=update_body(node_count=4), headers=generation_match(nodepool)
    )
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == 2


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_a_stale_if_generation_match_is_409_and_writes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], method: str
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    changed = (await api.put(url, json=update_body(node_count=5), headers=USER)).json()
    body = update_body(node_count=4) if method == "PUT" else {"spec": {"nodeCount": 4}}
    headers = {**generation_match(nodepool), **MERGE_PATCH}
    response = await api.request(
        method, url, json=body if method != "DELETE" else None, headers=headers
    )
    error = assert_error(response, 409, "CONFLICT")
    assert error["message"] == "NodePool spec has changed since you read it"
    assert error["details"] == "If-Generation-Match 1 does not match generation 2"
    assert (await api.get(url, headers=USER)).json() == changed


async def test_if_generation_match_guards_cluster_writes(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    url = f"{API}/clusters/{cluster['id']}"
    stale = {**USER, "If-Generation-Match": "2"}
    assert_error(await api.put(url, json=gcp_cluster_body("x"), headers=stale), 409, "CONFLICT")
    assert_error(await api.delete(url, headers=stale), 409, "CONFLICT")
    fresh = generation_match(cluster)
    assert (await api.put(url, json=gcp_cluster_body("x"), headers=fresh)).status_code == 200


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5"])
async def test_an_invalid_if_generation_match_is_400(
    api: httpx.AsyncClient, nodepool: dict[str, Any], value: str
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    headers = {**USER, "If-Generation-Match": value}
    response = await api.put(url, json=update_body(node_count=4), headers=headers)
    assert_error(response, 400, "VALIDATION_ERROR")


async def test_fifty_unconditional_puts_all_succeed(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    responses = await asyncio.gather(
        *(api.put(url, json=update_body(node_count=n % 9), headers=USER) for n in range(50))
    )
    assert [r.status_code for r in responses] == [200] * 50


async def test_unconditional_puts_from_two_replicas_all_succeed(
    settings: Settings, redis: Redis, nodepool: dict[str, Any]
) -> None:
    """Two API processes' worth of writers (each app has its own per-resource turns), racing
    each other and a controller's reports: every write lands, last writer wins."""
    url = f"{API}/nodepools/{nodepool['id']}"
    async with (
        api_client(settings, relay_events=False) as one,
        api_client(settings, relay_events=False) as two,
    ):
        writes = [
            client.put(url, json=update_body(node_count=n % 9), headers=USER)
            for n in range(20)
            for client in (one, two)
        ]
        reports = [report(one, nodepool, tick) for tick in range(20)]
        responses = (await asyncio.gather(*writes, *reports))[: len(writes)]
    assert [r.status_code for r in responses if r is not None] == [200] * len(writes)


async def test_a_write_that_keeps_losing_races_is_503_with_retry_after_not_409(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer gets in between every read and its guarded write."""
    monkeypatch.setattr(common, "WRITE_RETRY_SECONDS", 0.3)
    record_key = settings.names.record("nodepool", nodepool["id"])
    guarded_write = RedisStore.run

    async def always_beaten(store: RedisStore, txn: Txn, dry_run: bool = False) -> None:
        await redis.hset(record_key, "rv", uuid.uuid4().hex[:16])
        await guarded_write(store, txn, dry_run)

    monkeypatch.setattr(RedisStore, "run", always_beaten)
    url = f"{API}/nodepools/{nodepool['id']}"
    response = await api.put(url, json=update_body(node_count=4), headers=USER)
    assert_error(response, 503, "UNAVAILABLE")
    assert response.headers["Retry-After"] == "1"


async def test_a_forced_cluster_delete_finishes_while_controllers_keep_reporting(
    api: httpx.AsyncClient, cluster: dict[str, Any], settings: Settings
) -> None:
    pools = [await create_nodepool(api, cluster["id"], f"pool-{i}") for i in range(40)]
    stop = asyncio.Event()

    async def controller(offset: int) -> None:
        tick = offset
        while not stop.is_set():
            for pool in pools[offset::3]:
                with contextlib.suppress(AssertionError):  # 404 once deleted
                    await report(api, pool, tick)
            tick += 3

    reporters = [asyncio.create_task(controller(i)) for i in range(3)]
    await asyncio.sleep(0.2)
    try:
        response = await api.delete(f"{API}/clusters/{cluster['id']}?force=true", headers=USER)
        await finish_cluster_deletions(settings)  # the cascade job's steps, reports still coming
    finally:
        stop.set()
        await asyncio.gather(*reporters)
    assert response.status_code == 202, response.text
    assert (await api.get(f"{API}/nodepools", headers=USER)).json()["total"] == 0
    assert_error(await api.get(f"{API}/clusters/{cluster['id']}", headers=USER), 404, "NOT_FOUND")
