"""Events: how fast the outbox relay publishes, and how long a write takes to reach a consumer.

Publish rate: nodepools are created through the service layer while nothing relays, so their
events wait in the outbox; then the stack as deployed starts (the API, and the events process that
relays) and a private queue bound to every event notes when each arrives. Lag: with both running,
sequential scale requests, each timed from just before the request to its event's arrival at that
queue.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from aio_pika.abc import AbstractRobustConnection

from bench import bodies
from bench.amqp_tools import EventTap, publish_copies, wait_for
from bench.context import RunContext
from bench.procs import Server, deployed_api
from bench.report import Figure
from bench.scenarios.listing import QUIET
from bench.seed import add_nodepools_parallel, new_cluster, services
from bench.stats import median
from cls_runtime import amqp
from cls_runtime.settings import Settings
from shared_models.names import Names

SECTION = "Events (outbox -> RabbitMQ -> a consumer)"
TIMEOUT = 180.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _scenario(ctx: RunContext, settings: Settings, count: int) -> None:
    async with services(settings) as state:
        where = await new_cluster(state, bodies.OWNER, "events")
    add_nodepools_parallel(settings, where, 0, count)
    waiting = count + 1  # and the cluster's own event
    connection = await amqp.connect(settings.amqp_url)
    tap = EventTap()
    await tap.start(connection, settings.names)
    deployed = deployed_api(settings.namespace, ctx.log_dir, settings.redis_url, **QUIET)
    try:
        api = await asyncio.to_thread(deployed.__enter__)

        async def all_arrived() -> bool:
            return tap.count >= waiting

        await wait_for(all_arrived, TIMEOUT, f"{waiting} events from the outbox")
        bare = await _bare_rate(ctx, connection, tap.sample, waiting, settings.relay_batch_size)
        ctx.add(
            Figure(
                SECTION,
                f"outbox -> broker publish rate ({waiting:,} events waiting at start)",
                f"{tap.rate():,.0f} events/s",
                f"{bare:,.0f} events/s",
                tap.rate() / bare if bare else None,
                note="first to last arrival at a consumer bound to every event; baseline: bare "
                f"aio-pika publisher, same bodies, {settings.relay_batch_size} confirms in flight",
            )
        )
        lags = await _lags(api, tap, where.cluster_id, ctx.config.event_lag_writes)
        ctx.add(
            Figure(
                SECTION,
                f"write -> event at a consumer ({len(lags)} sequential scales)",
                f"p50 {median(lags) * 1e3:.1f} ms, p99 {_percentile(lags, 0.99) * 1e3:.1f} ms",
                note="from just before PUT /nodepools/{id} to the event's arrival",
            )
        )
    finally:
        await asyncio.to_thread(deployed.__exit__, None, None, None)
        await connection.close()


async def _bare_rate(
    ctx: RunContext, connection: AbstractRobustConnection, body: bytes, count: int, batch: int
) -> float:
    """The same number of events published straight to the broker, into a namespace of its own."""
    names = Names(ctx.new_namespace("publish"))
    tap = EventTap()
    await tap.start(connection, names)
    await publish_copies(connection, names, body, count, batch)

    async def all_arrived() -> bool:
        return tap.count >= count

    await wait_for(all_arrived, TIMEOUT, f"{count} events from the bare publisher")
    return tap.rate()


async def _lags(api: Server, tap: EventTap, cluster_id: str, writes: int) -> list[float]:
    lags: list[float] = []
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        pools: list[dict[str, Any]] = []
        while len(pools) < writes:  # pages of at most 100, the API's limit
            page = await client.get(
                f"/api/v1/clusters/{cluster_id}/nodepools",
                params={"limit": min(100, writes - len(pools)), "offset": len(pools)},
                headers=bodies.USER_HEADERS,
            )
            page.raise_for_status()
            pools += page.json()["nodepools"]
        for i, pool in enumerate(pools):
            body = {"name": pool["name"], "spec": bodies.nodepool_spec(2 + (i % 2) * 3)}
            sent = time.monotonic()
            response = await client.put(
                f"/api/v1/nodepools/{pool['id']}", json=body, headers=bodies.USER_HEADERS
            )
            response.raise_for_status()
            key = (pool["id"], int(response.json()["generation"]))

            async def arrived(key: tuple[str, int] = key) -> bool:
                return key in tap.arrivals

            await wait_for(arrived, 30, f"the event of write {i}", every=0.001)
            lags.append(tap.arrivals[key] - sent)
    return lags


def run(ctx: RunContext) -> None:
    cfg = ctx.config
    settings = Settings(
        namespace=ctx.new_namespace("events"),
        redis_url=cfg.redis_url,
        amqp_url=cfg.amqp_url,
        reconcile_interval=float(QUIET["reconcile_interval"]),
        reconcile_ready_interval=float(QUIET["reconcile_ready_interval"]),
    )
    asyncio.run(_scenario(ctx, settings, cfg.event_backlog))
