"""The broker goes away during a burst of writes and of status reports, and comes back.

Every service that talks to RabbitMQ (the events process, the ingester, the stub; the API has
no broker link) reaches it through a proxy the test cuts for a few seconds; the test's own
consumer and its checks reach the broker directly. A probe publisher sends extra reports
through the proxy too, each from a controller name of its own, so that each report's effect can
be found in the store afterwards.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from cls_runtime import amqp as topology
from cls_runtime.settings import Settings
from shared_models.names import Names
from tests.conftest import AMQP_URL
from tests.events.conftest import EventsConsumer
from tests.support.broker import controller_user
from tests.support.registry import EXTRAS_FILE
from tests.support.stack import Json, Stack, all_ready_at, status_of
from tests.support.tcp_proxy import TcpProxy, through

from .conftest import (
    Writer,
    delivery_counts,
    latest_generations,
    lost_acked_writes,
    stored_generations,
    undelivered,
    wait_delivered,
    write_burst,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

POOLS = 40
SCALES = 4  # 40 creates + 160 scales = 200 writes
# The probes are optional controllers of the tests' registry (EXTRAS_FILE), each with a broker
# user of its own (tests/conftest.py creates the users of that registry).
PROBES = ("probe-0", "probe-1", "probe-2")
PROBES_PER_POOL = len(PROBES)
OUTAGE_SECONDS = 4.0


@pytest.fixture
def fault_env(broker_proxy: TcpProxy) -> dict[str, str]:
    return {
        # The probes are optional controllers of the nodepools in this registry.
        "CLS_CONTROLLERS_FILE": str(EXTRAS_FILE),
        "CLS_AMQP_URL": through(AMQP_URL, broker_proxy),
        "CLS_STUB_DELAY_MS": "50",
        "CLS_RECONCILE_INTERVAL": "2",
    }


def probe_report(nodepool_id: str, index: int) -> Json:
    """Generation 1 and Ready: it never holds a pool back once the pool is scaled past it."""
    return {
        "nodepool_id": nodepool_id,
        "controller_name": PROBES[index],
        "observed_generation": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Probe"}],
        "metadata": {"probe": index},
    }


async def publish_until_confirmed(
    connection: AbstractRobustConnection, names: Names, report: Json
) -> None:
    """A careful controller: publish with confirms, again until the broker confirms (as the
    report's controller: ``connection`` is its broker user's)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            channel = await connection.channel(publisher_confirms=True)
            try:
                exchange = await topology.existing_exchange(channel, names.status_exchange)
                message = topology.report_message(report, report["controller_name"])
                await exchange.publish(message, "nodepool.status", mandatory=True, timeout=5)
                return
            finally:
                if not channel.is_closed:
                    await channel.close()
        except (aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError):
            assert time.monotonic() < deadline, "a probe report was never confirmed"
            await asyncio.sleep(0.2)


async def probe_reports(url: str, names: Names, pools: list[str]) -> int:
    """Every probe reports on every pool, each probe over a connection as its own user."""
    published = await asyncio.gather(*(probe(url, names, pools, i) for i in range(len(PROBES))))
    return sum(published)


async def probe(url: str, names: Names, pools: list[str], index: int) -> int:
    # The broker may be cut before the probe's first connection: retried as a controller would.
    user = controller_user(PROBES[index])
    connection = await topology.until_up(lambda: topology.connect(url, user), None, "probe")
    assert connection is not None  # without a stop event, until_up retries until it connects
    try:
        reports = [probe_report(p, index) for p in pools]
        for start in range(0, len(reports), 10):
            batch = reports[start : start + 10]
            await asyncio.gather(*(publish_until_confirmed(connection, names, r) for r in batch))
        return len(reports)
    finally:
        await connection.close()


async def outage(proxy: TcpProxy, writer: Writer, after_writes: int) -> float:
    """Cut the broker once ``after_writes`` writes are acknowledged; restore it later."""
    await writer.wait_acked(after_writes)
    await proxy.cut()
    cut_at = time.monotonic()
    await asyncio.sleep(OUTAGE_SECONDS)
    await proxy.restore()
    return time.monotonic() - cut_at


def missing_probes(views: list[Json]) -> list[tuple[str, int]]:
    missing = []
    for view in views:
        stored = {c["controller_name"]: c for c in view["controller_status"]}
        for index in range(PROBES_PER_POOL):
            found = stored.get(PROBES[index])
            if found is None or found["metadata"] != {"probe": index}:
                missing.append((view["nodepool_id"], index))
    return missing


def regressed_controllers(views: list[Json], latest: dict[str, int]) -> list[str]:
    """Stub controllers whose stored report is not at the pool's latest generation."""
    return [
        f"{v['nodepool_id']}:{c['controller_name']}"
        for v in views
        for c in v["controller_status"]
        if c["controller_name"] not in PROBES
        and c["observed_generation"] != latest[v["nodepool_id"]]
    ]


async def test_broker_outage_during_write_and_report_bursts_loses_nothing(
    stack: Stack, broker_proxy: TcpProxy, events: EventsConsumer, settings: Settings
) -> None:
    writer = Writer(stack.http)
    cluster_id = await writer.cluster()
    burst = asyncio.create_task(write_burst(writer, cluster_id, POOLS, SCALES))
    cut = asyncio.create_task(outage(broker_proxy, writer, after_writes=POOLS + 20))
    # The probe reports start once the pools exist, so that they race the outage too.
    await writer.wait_pools(POOLS)
    probes = asyncio.create_task(
        probe_reports(through(AMQP_URL, broker_proxy), settings.names, list(writer.latest()))
    )
    pools, down_for, published = await asyncio.gather(burst, cut, probes)
    await wait_delivered(writer, events)
    stored = await stored_generations(stack.http, pools)
    latest = latest_generations(stored)
    await all_ready_at(stack, latest, within=120)
    views = [await status_of(stack.http, p) for p in pools]
    distinct, deliveries = delivery_counts(events)
    figures = (
        f"broker down {down_for:.1f}s; writes acked {len(writer.acked)}, events distinct "
        f"{distinct}, deliveries {deliveries}; probe reports published {published}"
    )
    assert not undelivered(writer, events), figures
    assert not lost_acked_writes(writer, stored), figures
    assert not missing_probes(views), f"{figures}; missing {missing_probes(views)}"
    assert not regressed_controllers(views, latest), figures
    assert len(writer.acked) == POOLS * (1 + SCALES), figures
    print(f"\nFAULTS broker outage: {figures}; lost 0")
