"""End to end: from POST to Ready, and from DELETE to purge (the controllers confirmed, GET
answers 404), with the whole stack running as deployed (the API, the events process relaying its
outbox, one status ingester, the simulated controllers with no delay), for one nodepool and for
many at once."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack

import httpx

from bench import bodies
from bench.amqp_tools import has_consumer, wait_for
from bench.context import RunContext
from bench.procs import Server, api_server, events_server, rss_mb, worker
from bench.report import Figure
from bench.stats import median
from shared_models.names import Names

SECTION = "End to end (POST -> Ready; stub controllers with CLS_STUB_DELAY_MS=0)"
SINGLE_TARGET_MS = 100.0
BATCH_TARGET_S = 30.0
# Deletion waits for the controllers' confirmations: one more event and report round trip.
SINGLE_PURGE_TARGET_MS = 100.0
BATCH_PURGE_TARGET_S = 30.0
CONCURRENCY = 32
HEADERS = bodies.USER_HEADERS


async def _cluster(client: httpx.AsyncClient, name: str) -> str:
    response = await client.post(
        "/api/v1/clusters", json=bodies.cluster_body(name), headers=bodies.USER_HEADERS
    )
    response.raise_for_status()
    return str(response.json()["id"])


async def _one(client: httpx.AsyncClient, cluster_id: str, name: str) -> tuple[str, float]:
    """(a new nodepool's id, seconds from its POST to a GET that shows it Ready)."""
    began = time.monotonic()
    response = await client.post(
        "/api/v1/nodepools",
        json=bodies.nodepool_body(cluster_id, name),
        headers=bodies.USER_HEADERS,
    )
    response.raise_for_status()
    nodepool_id = str(response.json()["id"])
    path = f"/api/v1/nodepools/{nodepool_id}"

    async def ready() -> bool:
        got = await client.get(path, headers=bodies.USER_HEADERS)
        return bool(got.json()["status"]["phase"] == "Ready")

    return nodepool_id, await wait_for(ready, 30, f"{name} Ready", every=0.002) - began


async def _purge_one(client: httpx.AsyncClient, nodepool_id: str) -> float:
    """Seconds from a DELETE to the GET that answers 404 (every controller confirmed)."""
    path = f"/api/v1/nodepools/{nodepool_id}"
    began = time.monotonic()
    response = await client.delete(path, headers=bodies.USER_HEADERS)
    response.raise_for_status()

    async def purged() -> bool:
        got = await client.get(path, headers=bodies.USER_HEADERS)
        return got.status_code == 404

    return await wait_for(purged, 30, f"{nodepool_id} purged", every=0.002) - began


async def _purge_batch(client: httpx.AsyncClient, cluster_id: str) -> tuple[int, float]:
    """(how many, seconds) from DELETEs of every nodepool of a cluster, sent at once, to a list
    of the cluster that is empty."""
    page = f"/api/v1/clusters/{cluster_id}/nodepools"
    ids: list[str] = []
    while True:
        got = await client.get(
            page, params={"limit": 100, "offset": len(ids)}, headers=bodies.USER_HEADERS
        )
        items = got.json()["nodepools"]
        ids += [item["id"] for item in items]
        if len(items) < 100:
            break
    pending = iter(ids)
    began = time.monotonic()

    async def deleter() -> None:
        for nodepool_id in pending:
            response = await client.delete(
                f"/api/v1/nodepools/{nodepool_id}", headers=bodies.USER_HEADERS
            )
            response.raise_for_status()

    await asyncio.gather(*(deleter() for _ in range(CONCURRENCY)))

    async def all_purged() -> bool:
        got = await client.get(page, params={"limit": 1}, headers=bodies.USER_HEADERS)
        return bool(got.json()["total"] == 0)

    took = await wait_for(all_purged, 300, f"{len(ids)} nodepools purged", every=0.05) - began
    return len(ids), took


async def _batch(client: httpx.AsyncClient, cluster_id: str, count: int) -> float:
    began = time.monotonic()
    names = iter(range(count))

    async def creator() -> None:
        for i in names:
            body = bodies.nodepool_body(cluster_id, f"batch-{i}")
            response = await client.post(
                "/api/v1/nodepools", json=body, headers=bodies.USER_HEADERS
            )
            response.raise_for_status()

    await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
    ready_page = f"/api/v1/clusters/{cluster_id}/nodepools?status=Ready&limit=1"

    async def all_ready() -> bool:
        got = await client.get(ready_page, headers=bodies.USER_HEADERS)
        return bool(got.json()["total"] >= count)

    return await wait_for(all_ready, 300, f"{count} nodepools Ready", every=0.05) - began


def _single_figure(what: str, times: list[float], target_ms: float, note: str) -> Figure:
    p50 = median(times) * 1e3
    return Figure(
        SECTION,
        f"one nodepool, {what} ({len(times)} in turn)",
        f"p50 {p50:.0f} ms, max {max(times) * 1e3:.0f} ms",
        target=f"p50 < {target_ms:.0f} ms",
        met=p50 < target_ms,
        note=note,
    )


def _batch_figure(what: str, count: int, took: float, target_s: float, note: str) -> Figure:
    """Targets hold for a thousand or more (a quick run's batch has none)."""
    return Figure(
        SECTION,
        f"{count:,} nodepools {what}",
        f"{took:.1f} s",
        target=f"< {target_s:.0f} s" if count >= 1000 else "",
        met=took < target_s if count >= 1000 else None,
        note=note,
    )


async def _measure(ctx: RunContext, api: Server, singles: int, batch: int) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        single_cluster = await _cluster(client, "e2e-single")
        await _one(client, single_cluster, "warmup")
        made = [await _one(client, single_cluster, f"single-{i}") for i in range(singles)]
        times = [seconds for _, seconds in made]
        ctx.add(_single_figure("POST -> Ready", times, SINGLE_TARGET_MS, "polling GET every 2 ms"))
        times = [await _purge_one(client, nodepool_id) for nodepool_id, _ in made]
        note = "the controller's Deleted=True confirmation; polling GET every 2 ms"
        ctx.add(_single_figure("DELETE -> purged", times, SINGLE_PURGE_TARGET_MS, note))
        batch_cluster = await _cluster(client, "e2e-batch")
        took = await _batch(client, batch_cluster, batch)
        note = f"{CONCURRENCY} concurrent POSTs; listing Ready every 50 ms"
        ctx.add(_batch_figure("created at once, all Ready", batch, took, BATCH_TARGET_S, note))
        count, took = await _purge_batch(client, batch_cluster)
        note = f"{CONCURRENCY} concurrent DELETEs; listing the cluster every 50 ms"
        what = "deleted at once, all purged"
        ctx.add(_batch_figure(what, count, took, BATCH_PURGE_TARGET_S, note))


def run(ctx: RunContext) -> None:
    namespace = ctx.new_namespace("e2e")
    singles = 5 if ctx.config.quick else 20
    with ExitStack() as stack:
        api = stack.enter_context(api_server(namespace, ctx.log_dir))
        events = stack.enter_context(events_server(namespace, ctx.log_dir, ctx.config.redis_url))
        names, url = Names(namespace), ctx.config.amqp_url
        # Each worker counts as started once it consumes: events published before the
        # controllers' queues exist would only come back with the next reconcile.
        ingester = stack.enter_context(
            worker("status_ingester", namespace, ctx.log_dir, has_consumer(url, names.status_queue))
        )
        stub_ready = has_consumer(url, names.controller_queue("gcp-nodepool-controller"))
        stack.enter_context(
            # The controllers re-read this API when an event claims a generation they have not
            # seen (creations do not: generation 1 cannot freeze anything).
            worker(
                "reconciler_stub",
                namespace,
                ctx.log_dir,
                stub_ready,
                stub_delay_ms="0",
                stub_api_url=api.url,
            )
        )
        asyncio.run(_measure(ctx, api, singles, ctx.config.e2e_batch))
        ctx.add(
            Figure(
                "Memory",
                "API and ingester RSS after the end-to-end runs",
                f"API {rss_mb(api.pid):.0f} MB, ingester {rss_mb(ingester.pid):.0f} MB, "
                f"events process {rss_mb(events.pid):.0f} MB",
                target="API < 150 MB",
                met=rss_mb(api.pid) < 150,
            )
        )
