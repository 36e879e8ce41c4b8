"""Memory: Redis bytes per stored nodepool, and the outbox left by seeding."""

from __future__ import annotations

import asyncio
import random

from redis.asyncio import Redis

from bench.context import RunContext
from bench.report import Figure
from bench.seed import Seeded
from cls_runtime.settings import Settings

SECTION = "Memory"
SAMPLE = 200


async def _memory_usage(redis: Redis, key: str) -> int:
    # SAMPLES 0: count every element of large sets exactly.
    used = await redis.memory_usage(key, samples=0)
    return int(used or 0)


async def _bytes_per_nodepool(
    settings: Settings, where: Seeded, count: int
) -> tuple[float, float, float]:
    """(record hash bytes, view bytes, index bytes) per nodepool of one project's cluster."""
    names = settings.names
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        members = names.cluster_nodepools(where.cluster_id)
        total = await redis.zcard(members)
        picks = random.sample(range(total), min(SAMPLE, total))
        ids = [str((await redis.zrange(members, i, i))[0]) for i in picks]
        records = [await _memory_usage(redis, names.record("nodepool", i)) for i in ids]
        views = [await _memory_usage(redis, names.view("nodepool", i)) for i in ids]
        # Everything else a nodepool of this project adds to: its 8 filter indexes, the cluster's
        # name hash and member set, and its share of the namespace-wide reconcile schedule.
        phases, healths = ("Pending", "*"), ("Unknown", "*")
        index_keys = [
            names.nodepool_index(where.project_id, c, p, h)
            for c in (where.cluster_id, "*")
            for p in phases
            for h in healths
        ]
        shared = [*index_keys, names.nodepool_names(where.cluster_id), members]
        index_bytes = sum([await _memory_usage(redis, k) for k in shared]) / count
        due = names.reconcile_due
        index_bytes += await _memory_usage(redis, due) / max(1, await redis.zcard(due))
        return sum(records) / len(records), sum(views) / len(views), index_bytes
    finally:
        await redis.aclose()


def redis_bytes_per_nodepool(
    ctx: RunContext, settings: Settings, where: Seeded, count: int
) -> None:
    record, view, index = asyncio.run(_bytes_per_nodepool(settings, where, count))
    ctx.add(
        Figure(
            SECTION,
            "Redis bytes per nodepool (MEMORY USAGE)",
            f"{record + view + index:,.0f} B",
            note=f"record hash {record:,.0f} B + view {view:,.0f} B + indexes {index:,.0f} B, "
            f"averaged over {count:,} nodepools of one project",
        )
    )


async def _trim(settings: Settings) -> int:
    redis = Redis.from_url(settings.redis_url)
    try:
        return int(await redis.xtrim(settings.names.outbox, maxlen=0))
    finally:
        await redis.aclose()


def drain_outbox(settings: Settings, ctx: RunContext) -> None:
    """Drop the seeded creates' events: nobody consumes them here, and relaying them (the events
    process beside the API) would load the machine while the listing is measured (the relay's
    own rate is the events scenario's)."""
    trimmed = asyncio.run(_trim(settings))
    print(f"  trimmed {trimmed:,} seeded events from the outbox", flush=True)
