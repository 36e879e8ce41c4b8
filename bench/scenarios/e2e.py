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


async def _one_ready(client: httpx.AsyncClient, cluster_id: str, name: str) -> str:
    """A new nodepool's id, once it is Ready."""
    response = await client.post(
        "/api/v1/nodepools",
        json=bodies.nodepool_body(cluster_id, name),
        headers=bodies.USER_HEADERS,
    )
    response.raise_for_status()
    nodepool_id = str(response.json()["id"])

    async def ready() -> bool:
        got = await client.get(f"/api/v1/nodepools/{nodepool_id}", headers=bodies.USER_HEADERS)
        return bool(got.json()["status"]["phase"] == "Ready")

    await wait_for(ready, 30, f"{name} Ready", every=0.01)
    return nodepool_id


async def _one(client: httpx.AsyncClient, cluster_id: str, name: str) -> float:
    began = time.monotonic()
    response = await client.post(
        "/api/v1/nodepools",
        json=bodies.nodepool_body(cluster_id, name),
        headers=bodies.USER_HEADERS,
    )
    response.raise_for_status()
    path = f"/api/v1/nodepools/{response.json()['id']}"

    async def ready() -> bool:
        got = await client.get(path, headers=bodies.USER_HEADERS)
        return bool(got.json()["status"]["phase"] == "Ready")

    return await wait_for(ready, 30, f"{name} Ready", every=0.002) - began


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


async def _measure(ctx: RunContext, api: Server, singles: int, batch: int) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        single_cluster = await _cluster(client, "e2e-single")
        await _one(client, single_cluster, "warmup")
        times = [await _one(client, single_cluster, f"single-{i}") for i in range(singles)]
        p50 = median(times) * 1e3
        ctx.add(
            Figure(
                SECTION,
                f"one nodepool, POST -> Ready ({singles} in turn)",
                f"p50 {p50:.0f} ms, max {max(times) * 1e3:.0f} ms",
                target=f"p50 < {SINGLE_TARGET_MS:.0f} ms",
                met=p50 < SINGLE_TARGET_MS,
                note="polling GET every 2 ms",
            )
        )
        ready = [await _one_ready(client, single_cluster, f"gone-{i}") for i in range(singles)]
        times = [await _purge_one(client, nodepool_id) for nodepool_id in ready]
        p50 = median(times) * 1e3
        ctx.add(
            Figure(
                SECTION,
                f"one nodepool, DELETE -> purged ({singles} in turn)",
                f"p50 {p50:.0f} ms, max {max(times) * 1e3:.0f} ms",
                target=f"p50 < {SINGLE_PURGE_TARGET_MS:.0f} ms",
                met=p50 < SINGLE_PURGE_TARGET_MS,
                note="the controller's Deleted=True confirmation; polling GET every 2 ms",
            )
        )
        batch_cluster = await _cluster(client, "e2e-batch")
        took = await _batch(client, batch_cluster, batch)
        ctx.add(
            Figure(
                SECTION,
                f"{batch:,} nodepools created at once, all Ready",
                f"{took:.1f} s",
                target=f"< {BATCH_TARGET_S:.0f} s" if batch >= 1000 else "",
                met=took < BATCH_TARGET_S if batch >= 1000 else None,
                note=f"{CONCURRENCY} concurrent POSTs; listing Ready every 50 ms",
            )
        )
        count, took = await _purge_batch(client, batch_cluster)
        ctx.add(
            Figure(
                SECTION,
                f"{count:,} nodepools deleted at once, all purged",
                f"{took:.1f} s",
                target=f"< {BATCH_PURGE_TARGET_S:.0f} s" if count >= 1000 else "",
                met=took < BATCH_PURGE_TARGET_S if count >= 1000 else None,
                note=f"{CONCURRENCY} concurrent DELETEs; listing the cluster every 50 ms",
            )
        )


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
