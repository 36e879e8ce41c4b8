"""The ingester's broker link goes away mid-burst and comes back: nothing is lost."""

from __future__ import annotations

import httpx
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.events.conftest import settings_with
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    StartIngester,
    counters,
    create_cluster_id,
    create_nodepools,
    dead_letter_count,
    nodepool_report,
    queue_counts,
    steps_behind,
)
from tests.support.polling import eventually
from tests.support.tcp_proxy import TcpProxy, through

POOLS, STEPS = 20, 60


async def test_broker_outage_mid_burst_loses_nothing(
    broker_proxy: TcpProxy,  # first: set up before the ingester, so closed after it has stopped
    api: httpx.AsyncClient,
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    cluster_id = await create_cluster_id(api)
    pools = await create_nodepools(api, cluster_id, POOLS)
    proxied = settings_with(settings, amqp_url=through(settings.amqp_url, broker_proxy))
    await start_ingester(proxied)

    def burst(steps: range) -> list[dict[str, object]]:
        return [nodepool_report(p, step=s, ready=s == STEPS) for s in steps for p in pools]

    half = STEPS // 2
    await publisher.reports(burst(range(1, half + 1)))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("applied", 0) >= 100,
        what="the burst under way",
    )
    await broker_proxy.cut()  # reports in hand lose their channel; the rest stay queued
    await publisher.reports(burst(range(half + 1, STEPS + 1)))  # published during the outage
    ready, consumers = await queue_counts(amqp, settings.names)
    assert consumers == 0 and ready > 0, "the outage did not happen mid-burst"
    await broker_proxy.restore()

    final = {f"{p}/{CONTROLLER}": STEPS for p in pools}
    await eventually(
        lambda: steps_behind(redis, settings.names, final),
        lambda behind: not behind,
        within=30,
        what="every nodepool at the last step",
    )
    await eventually(
        lambda: queue_counts(amqp, settings.names),
        lambda counts: counts == (0, 1),
        what="the queue drained, the consumer back",
    )
    assert await dead_letter_count(amqp, settings.names) == 0
