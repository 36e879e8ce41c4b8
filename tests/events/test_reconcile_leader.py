"""Two API processes on one namespace: exactly one runs the reconcile loop, and when it dies the
other takes over within the lock's TTL."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from datetime import datetime

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import USER, gcp_cluster_body, seed_nodepool_body
from tests.events.conftest import ApiProcess, ApiProcesses, EventsConsumer, Received

INTERVAL = 0.5
LOCK_TTL = 1.5
ENV = {
    "CLS_RECONCILE_INTERVAL": str(INTERVAL),
    "CLS_RECONCILE_READY_INTERVAL": "60",
    "CLS_LEADER_LOCK_TTL": str(LOCK_TTL),
}
LEADER_LINE = "reconcile: this instance is now the leader"
TICK_LINE = "reconcile tick:"

pytestmark = pytest.mark.e2e


def gaps(events: list[Received]) -> list[float]:
    times = [datetime.fromisoformat(e.body["timestamp"]).timestamp() for e in events]
    return [b - a for a, b in itertools.pairwise(times)]


async def holder_pid(redis: Redis, settings: Settings) -> int | None:
    token = await redis.get(settings.names.lock("reconcile"))
    return None if token is None else int(str(token).split(":")[1])


async def create_nodepool(process: ApiProcess) -> str:
    async with httpx.AsyncClient(base_url=process.url, timeout=10) as client:
        cluster = await client.post("/api/v1/clusters", json=gcp_cluster_body(), headers=USER)
        assert cluster.status_code == 201
        body = seed_nodepool_body(cluster.json()["id"])
        pool = await client.post("/api/v1/nodepools", json=body, headers=USER)
        assert pool.status_code == 201
        nodepool_id: str = pool.json()["id"]
        return nodepool_id


async def test_reconcile_runs_on_exactly_one_of_two_api_processes_and_fails_over(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    api_processes: ApiProcesses,
) -> None:
    # DEBUG: each process logs every reconcile tick it runs, so we see which ones reconcile.
    env = {**ENV, "CLS_LOG_LEVEL": "DEBUG"}
    first, second = await asyncio.gather(api_processes.start(**env), api_processes.start(**env))
    nodepool_id = await create_nodepool(first)

    def reconciles() -> list[Received]:
        return events_consumer.of(nodepool_id, "nodepool.reconcile")

    await events_consumer.wait_until(lambda: len(reconciles()) >= 4, within=15)
    pid = await holder_pid(redis, settings)
    leader, standby = (first, second) if pid == first.pid else (second, first)
    assert pid == leader.pid
    # One source: a second loop would reconcile the same due nodepool again at once.
    assert min(gaps(reconciles())) >= INTERVAL * 0.9, gaps(reconciles())
    assert LEADER_LINE in leader.log()
    assert LEADER_LINE not in standby.log()
    assert TICK_LINE in leader.log()
    assert TICK_LINE not in standby.log()

    leader.service.kill()
    killed_at = time.monotonic()
    while await holder_pid(redis, settings) != standby.pid:
        assert time.monotonic() - killed_at < LOCK_TTL + 2, "the standby never took over"
        await asyncio.sleep(0.05)
    assert time.monotonic() - killed_at <= LOCK_TTL + 1.0  # TTL + one acquire attempt
    seen = len(reconciles())
    await events_consumer.wait_until(lambda: len(reconciles()) >= seen + 2, within=10)
    assert min(gaps(reconciles()[seen:])) >= INTERVAL * 0.9
    assert LEADER_LINE in standby.log()


async def test_a_stopped_api_process_hands_the_reconcile_loop_over_at_once(
    settings: Settings,
    redis: Redis,
    amqp: AbstractRobustConnection,
    api_processes: ApiProcesses,
) -> None:
    first = await api_processes.start(**ENV)
    deadline = time.monotonic() + 10
    while await holder_pid(redis, settings) != first.pid:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    second = await api_processes.start(**ENV)
    # SIGTERM: uvicorn shuts the app down, then exits by re-raising the signal.
    assert first.service.stop() in (0, -signal.SIGTERM)
    assert "reconcile: this instance is no longer the leader (stopping)" in first.log()
    stopped_at = time.monotonic()
    while await holder_pid(redis, settings) != second.pid:
        assert time.monotonic() - stopped_at < LOCK_TTL, "the lock was not released on shutdown"
        await asyncio.sleep(0.05)
