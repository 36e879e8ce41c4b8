"""``python -m event_jobs``: the outbox relay and the reconcile loop in a process of their
own, beside an API that runs no event jobs (``CLS_EVENT_JOBS=separate``, the stack as deployed).

It publishes what the API commits (the API needs no broker at all), publishes what was committed
while it was down or after it was killed, drains and exits 0 on SIGTERM or SIGINT, and shares
the jobs safely with an API that still runs them in-process.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_core.services.common import outbox_fields
from cls_runtime.settings import Settings
from event_jobs.pipeline import RECONCILE_JOB, RELAY_JOB
from shared_models.events import Event
from tests.conftest import AMQP_URL, USER, api_client, gcp_cluster_body, seed_nodepool_body
from tests.events.conftest import (
    ApiProcesses,
    EventsConsumer,
    EventsProcesses,
    outbox_empties,
    settings_with,
)
from tests.support.redis_server import free_port
from tests.support.services import ServiceProcess
from tests.support.stack import lock_holder_pid
from tests.support.tcp_proxy import TcpProxy, through

pytestmark = pytest.mark.e2e

LOCK_TTL = "1.0"
# Generous: only a failure waits that long, and the machine is shared.
PATIENCE = 60.0
EXIT_BOUND = 20.0  # seconds from a signal to the exit
LEADER_LINE = "outbox-relay: this instance is now the leader"
RELEASED_LINE = "outbox-relay: this instance is no longer the leader (stopping)"


def separate(settings: Settings) -> Settings:
    """The test's settings for an API that leaves the event jobs to another process."""
    return settings_with(settings, event_jobs="separate")


async def write_cluster_and_pool(client: httpx.AsyncClient, name: str = "demo") -> tuple[str, str]:
    cluster = await client.post("/api/v1/clusters", json=gcp_cluster_body(name), headers=USER)
    assert cluster.status_code == 201, cluster.text
    body = seed_nodepool_body(cluster.json()["id"])
    pool = await client.post("/api/v1/nodepools", json=body, headers=USER)
    assert pool.status_code == 201, pool.text
    return cluster.json()["id"], pool.json()["id"]


async def fill_outbox(redis: Redis, settings: Settings, count: int) -> list[str]:
    """``count`` committed events, straight into the outbox; their ids, in commit order."""
    events = [
        Event.model_validate(
            {
                "id": str(uuid.uuid4()),
                "type": "cluster.reconcile",
                "cluster_id": f"backlog-{index}",
                "nodepool_id": None,
                "generation": 1,
                "timestamp": datetime.now(UTC),
                "platform": "gcp",
                "resource": {},
            }
        )
        for index in range(count)
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            fields: dict[Any, Any] = dict(outbox_fields(event))
            pipe.xadd(settings.names.outbox, fields)
        await pipe.execute()
    return [event.id for event in events]


async def outbox_ids(redis: Redis, settings: Settings) -> set[str]:
    entries: Any = await redis.xrange(settings.names.outbox)
    return {str(fields["id"]) for _, fields in entries}


async def stop_with(service: ServiceProcess, sig: signal.Signals) -> tuple[int | None, float]:
    """Send ``sig``; (exit code, seconds until the exit), waited for off the event loop."""
    started = time.monotonic()
    service.signal(sig)
    code = await asyncio.to_thread(service.wait, EXIT_BOUND)
    return code, time.monotonic() - started


async def relay_holder(redis: Redis, settings: Settings) -> int | None:
    return lock_holder_pid(await redis.get(settings.names.lock(RELAY_JOB)))


async def wait_holder(redis: Redis, settings: Settings, pid: int, within: float) -> None:
    deadline = time.monotonic() + within
    while await relay_holder(redis, settings) != pid:
        assert time.monotonic() < deadline, f"process {pid} never led the relay"
        await asyncio.sleep(0.05)


async def test_a_post_reaches_a_consumer_through_the_events_process_the_api_needs_no_broker(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    api_processes: ApiProcesses,
    events_processes: EventsProcesses,
) -> None:
    # Nothing listens on the API's broker port: with the jobs elsewhere, it never connects.
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    # The API schedules each write's reconcile (its interval), the events process sends it.
    fast = {"CLS_RECONCILE_INTERVAL": "0.5"}
    api = await api_processes.start(CLS_EVENT_JOBS="separate", CLS_AMQP_URL=nowhere, **fast)
    events = await events_processes.start(**fast)
    async with httpx.AsyncClient(base_url=api.url, timeout=PATIENCE) as client:
        ready = await client.get("/ready")
        cluster_id, pool_id = await write_cluster_and_pool(client)
    # Readiness is Redis alone: the API has no broker link to report on.
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "ok"}

    received = await events_consumer.sync(within=PATIENCE)
    assert [(e.routing_key, e.resource_id) for e in received][:2] == [
        ("cluster.created.gcp", cluster_id),
        ("nodepool.created.gcp", pool_id),
    ]
    # The reconcile loop runs there too: the pool is not Ready, so it is re-sent.
    await events_consumer.wait_until(
        lambda: bool(events_consumer.of(pool_id, "nodepool.reconcile")), PATIENCE, "a reconcile"
    )
    assert await relay_holder(redis, settings) == events.pid
    assert LEADER_LINE not in api.log()
    assert "event jobs not run here" in api.log()


async def test_events_committed_while_it_is_down_are_published_once_it_starts(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    events_processes: EventsProcesses,
) -> None:
    async with api_client(separate(settings), relay_events=None) as client:
        cluster_id, pool_id = await write_cluster_and_pool(client)
        await asyncio.sleep(0.5)  # an in-process relay would have published by now
    assert await redis.xlen(settings.names.outbox) == 2
    assert not events_consumer.events

    await events_processes.start()
    received = await events_consumer.sync(within=PATIENCE)
    assert [(e.routing_key, e.resource_id) for e in received] == [
        ("cluster.created.gcp", cluster_id),
        ("nodepool.created.gcp", pool_id),
    ]
    await outbox_empties(redis, settings, within=PATIENCE)


async def test_events_of_a_killed_events_process_are_published_by_the_next_start(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    broker_proxy: TcpProxy,
    events_processes: EventsProcesses,
) -> None:
    await broker_proxy.cut()  # it leads the relay, but cannot publish
    first = await events_processes.start(
        CLS_AMQP_URL=through(AMQP_URL, broker_proxy), CLS_LEADER_LOCK_TTL=LOCK_TTL
    )
    async with api_client(separate(settings), relay_events=None) as client:
        cluster_id, pool_id = await write_cluster_and_pool(client)
    first.kill()  # SIGKILL: no drain, no lock release
    assert await redis.xlen(settings.names.outbox) == 2

    await events_processes.start(CLS_LEADER_LOCK_TTL=LOCK_TTL)  # once the dead lock expires
    received = await events_consumer.sync(within=PATIENCE)
    assert [(e.routing_key, e.resource_id) for e in received] == [
        ("cluster.created.gcp", cluster_id),
        ("nodepool.created.gcp", pool_id),
    ]


async def test_sigterm_finishes_the_batch_in_flight_releases_the_locks_and_exits_0(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    events_processes: EventsProcesses,
) -> None:
    # A backlog relayed in small batches, so that the SIGTERM lands while it drains.
    ids = await fill_outbox(redis, settings, 3000)
    first = await events_processes.start(CLS_RELAY_BATCH_SIZE="5")
    await events_consumer.wait_until(lambda: len(events_consumer.events) >= 50, within=PATIENCE)
    code, took = await stop_with(first, signal.SIGTERM)
    assert code == 0, first.log_tail()
    left = await outbox_ids(redis, settings)
    figures = f"exit after {took:.1f}s, {len(left)} of {len(ids)} events left in the outbox"
    assert left, f"{figures}: the backlog drained before the SIGTERM, nothing was in flight"
    # The batch in flight was finished: what the consumer got is out of the outbox (a batch
    # abandoned between the confirm and the delete would be published again).
    await events_consumer.wait_until(
        lambda: {e.body["id"] for e in events_consumer.events} | left >= set(ids),
        within=10,
        what="every event either delivered or still in the outbox",
    )
    assert not {e.body["id"] for e in events_consumer.events} & left, figures
    # Both locks handed over at once, not a TTL later.
    assert await redis.get(settings.names.lock(RELAY_JOB)) is None
    assert await redis.get(settings.names.lock(RECONCILE_JOB)) is None
    log = first.log_path.read_text()
    assert RELEASED_LINE in log and "did not stop within" not in log

    await events_processes.start()
    await events_consumer.wait_until(
        lambda: {e.body["id"] for e in events_consumer.events} >= set(ids), within=PATIENCE
    )
    await outbox_empties(redis, settings, within=PATIENCE)
    print(f"\nEVENTS sigterm: {figures}; lost 0")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_stops_it_promptly_while_the_broker_is_away(
    sig: signal.Signals,
    settings: Settings,
    redis: Redis,
    amqp: AbstractRobustConnection,
    broker_proxy: TcpProxy,
    events_processes: EventsProcesses,
) -> None:
    await broker_proxy.cut()
    await fill_outbox(redis, settings, 3)
    service = await events_processes.start(CLS_AMQP_URL=through(AMQP_URL, broker_proxy))
    code, took = await stop_with(service, sig)
    assert code == 0, service.log_tail()
    assert took < 5.0, f"took {took:.1f}s"  # it was waiting, not working: nothing to finish
    assert await redis.xlen(settings.names.outbox) == 3


async def test_an_api_relaying_in_process_and_an_events_process_share_the_relay_safely(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    api_processes: ApiProcesses,
    events_processes: EventsProcesses,
) -> None:
    """Both kinds of relayer at once (an API with the default ``in-process``, an events
    process): one leads, nothing is published twice, and the other takes over when it dies."""
    api = await api_processes.start(CLS_LEADER_LOCK_TTL=LOCK_TTL)
    await wait_holder(redis, settings, api.pid, within=PATIENCE)
    standby = events_processes.spawn(CLS_LEADER_LOCK_TTL=LOCK_TTL)
    async with api_client(separate(settings), relay_events=None) as client:
        written = [await write_cluster_and_pool(client, f"demo-{i}") for i in range(5)]
        received = await events_consumer.sync(within=PATIENCE)
        ids = [e.body["id"] for e in received]
        assert len(ids) == len(set(ids)) == 2 * len(written), ids  # each event once
        assert await relay_holder(redis, settings) == api.pid
        assert standby.alive and LEADER_LINE not in standby.log_path.read_text()

        api.service.kill()
        assert standby.pid is not None
        await wait_holder(redis, settings, standby.pid, within=float(LOCK_TTL) + 5)
        cluster_id, pool_id = await write_cluster_and_pool(client, "after-the-kill")
    await events_consumer.wait_until(
        lambda: bool(events_consumer.of(pool_id, "nodepool.created")), PATIENCE, "the new events"
    )
    assert events_consumer.of(cluster_id, "cluster.created")
