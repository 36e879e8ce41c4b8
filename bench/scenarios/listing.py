"""Listing cost as the data grows, and memory once 100k nodepools are stored.

Owner "small" keeps the smallest size (1k); owner "big" grows to 10k and then 100k. Each size of
"big" is measured in rounds interleaved with "small", on the same API process, so the ratio
big/small is the cost of growth alone: near 1.0 when a page costs O(log n + limit).
"""

from __future__ import annotations

import asyncio

from bench.context import RunContext
from bench.load.driver import run_load
from bench.load.plan import LoadPlan, LoadResult
from bench.procs import Server, deployed_api, rss_mb
from bench.report import Figure
from bench.scenarios import memory
from bench.seed import Seeded, add_nodepools_parallel, new_cluster, services
from bench.stats import interleaved, median, paired_ratio
from cls_runtime.settings import Settings

SECTION = "Listing as data grows (GET /nodepools?limit=50, 1 connection)"
SMALL_OWNER = "small@example.com"
BIG_OWNER = "big@example.com"
LIST_TARGET = 1.3
# No reconcile events for the seeded nodepools while the listing is measured (the seeding and the
# API process use the same intervals).
QUIET = {"reconcile_interval": "86400", "reconcile_ready_interval": "86400"}


def _plan(owner: str) -> LoadPlan:
    return LoadPlan("GET", "/api/v1/nodepools?limit=50", {"X-User-Email": owner})


def _label(count: int) -> str:
    return f"{count // 1000}k" if count >= 1000 else str(count)


async def _clusters(settings: Settings) -> tuple[Seeded, Seeded]:
    async with services(settings) as state:
        small = await new_cluster(state, SMALL_OWNER, "small")
        big = await new_cluster(state, BIG_OWNER, "big")
    return small, big


def _describe(results: list[LoadResult]) -> str:
    p50 = median([r.p50_ms for r in results])
    p99 = median([r.p99_ms for r in results])
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, {median([r.rps for r in results]):,.0f} req/s"


NOTE = (
    "Listing: nodepools are stored through NodePoolService.create in-process (2 processes), the "
    "same guarded transaction as a POST; the 'big' owner's pages are measured in rounds "
    "alternating with the 'small' owner's (the smallest size), on the same API process."
)


def run(ctx: RunContext) -> None:
    ctx.notes.append(NOTE)
    cfg = ctx.config
    namespace = ctx.new_namespace("list")
    settings = Settings(
        namespace=namespace,
        redis_url=cfg.redis_url,
        amqp_url=cfg.amqp_url,
        reconcile_interval=float(QUIET["reconcile_interval"]),
        reconcile_ready_interval=float(QUIET["reconcile_ready_interval"]),
    )
    small, big = asyncio.run(_clusters(settings))
    smallest, *larger = cfg.list_sizes
    add_nodepools_parallel(settings, small, 0, smallest)
    stored = 0
    with deployed_api(namespace, ctx.log_dir, cfg.redis_url, **QUIET) as api:
        for size in larger:
            print(f"listing: storing {_label(size)} nodepools for the big owner", flush=True)
            add_nodepools_parallel(settings, big, stored, size - stored)
            stored = size
            memory.drain_outbox(settings, ctx)
            _measure(ctx, api, smallest, size)
        ctx.add(
            Figure(
                memory.SECTION,
                f"API RSS after the {_label(stored)} run",
                f"{rss_mb(api.pid):.0f} MB",
                target="< 150 MB",
                met=rss_mb(api.pid) < 150,
            )
        )
        memory.redis_bytes_per_nodepool(ctx, settings, big, stored)


def _measure(ctx: RunContext, api: Server, smallest: int, size: int) -> None:
    cfg = ctx.config
    if cfg.warmup_seconds:
        run_load(api.url, _plan(BIG_OWNER), 1, cfg.warmup_seconds)
    big, small = interleaved(
        cfg.rounds,
        lambda _i: run_load(api.url, _plan(BIG_OWNER), 1, cfg.seconds),
        lambda _i: run_load(api.url, _plan(SMALL_OWNER), 1, cfg.seconds),
    )
    # Time per page, growth over the smallest size: the inverse of the throughput ratio.
    ratio = 1 / paired_ratio([r.rps for r in big], [r.rps for r in small])
    largest = size == cfg.list_sizes[-1]
    ctx.add(
        Figure(
            SECTION,
            f"page of 50, {_label(size)} stored vs {_label(smallest)}",
            _describe(big),
            _describe(small),
            ratio,
            f"<= {LIST_TARGET}x" if largest else "",
            ratio <= LIST_TARGET if largest else None,
            "ratio = time per page at this size / at the smallest",
        )
    )
