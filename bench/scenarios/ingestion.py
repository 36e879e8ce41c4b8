"""Status ingestion: reports per second from RabbitMQ into Redis, one ingester process.

Each round publishes one report per seeded nodepool (a new controller name per round, so every
report is applied; the ingester's registry of controllers lists them as optional controllers of
GCP nodepools) while the consumer is stopped, then starts it and times from the first report
stored to the last one, so that neither process's start-up counts. The baseline is a bare
aio-pika consumer (bench.baseline_consumer) with the same prefetch that acks after one Redis
write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench import bodies
from bench.amqp_tools import publish_reports, wait_for
from bench.context import RunContext
from bench.procs import registry_file, rss_mb, worker
from bench.report import Figure
from bench.seed import add_nodepools_parallel, new_cluster, services
from bench.stats import interleaved, median, paired_ratio
from cls_runtime import amqp
from cls_runtime.settings import Settings
from shared_models.names import Names

SECTION = "Status ingestion (RabbitMQ -> Redis, one consumer process)"
TARGET = 0.8
TIMEOUT = 300.0
FIRST = 16  # reports looked at to see that storing began


@dataclass(frozen=True)
class Round:
    rate: float  # reports per second
    rss_mb: float


async def _seed(settings: Settings, count: int) -> list[str]:
    async with services(settings) as state:
        where = await new_cluster(state, bodies.OWNER, "ingest")
    add_nodepools_parallel(settings, where, 0, count)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        await redis.xtrim(settings.names.outbox, maxlen=0)  # no relay runs here
        members = await redis.zrange(settings.names.cluster_nodepools(where.cluster_id), 0, -1)
        return [str(m) for m in members]
    finally:
        await redis.aclose()


def _controller(round_: int) -> str:
    return f"bench-ctl-{round_}"


def _registry_file(ctx: RunContext) -> Path:
    names = [_controller(i) for i in range(ctx.config.rounds)]
    return registry_file(ctx.log_dir / "ingestion-controllers.yaml", names)


def _reports(ids: list[str], controller: str) -> list[dict[str, object]]:
    report = bodies.status_report(controller, 1, True, "nodes ready", 3)
    return [{**report, "nodepool_id": i} for i in ids]


Check = Callable[[], Awaitable[bool]]


async def _round(
    ctx: RunContext,
    module: str,
    settings: Settings,
    ids: list[str],
    controller: str,
    make_checks: Callable[[Redis], tuple[Check, Check]],
    **env: str,
) -> Round:
    connection = await amqp.connect(settings.amqp_url)
    redis = Redis.from_url(settings.redis_url)
    try:
        channel = await connection.channel()
        names = settings.names
        await amqp.declare_status_queue(channel, names, settings.ingest_delivery_limit)
        await _forget(redis, names, ids, controller)
        await publish_reports(settings, _reports(ids, controller))
        total = len(ids)
        # From the first report stored to the last: the process's start-up is left out. (The
        # queue's message count cannot tell when consuming starts: RabbitMQ 3.10 reports 0 for
        # a quorum queue to a passive declare.)
        started, done = make_checks(redis)

        with worker(module, settings.namespace, ctx.log_dir, None, **env) as process:
            began = await wait_for(started, 60, f"{module} storing reports", every=0.002)
            ended = await wait_for(done, TIMEOUT, f"{module} storing {total} reports")
            rss = rss_mb(process.pid)
        return Round(total / max(ended - began, 1e-6), rss)
    finally:
        await redis.aclose()
        await connection.close()


async def _forget(redis: Redis, names: Names, ids: list[str], controller: str) -> None:
    """Remove an earlier round's reports of ``controller`` (the controllers are few: rounds beyond
    them reuse one), so that this round's reports are new, not unchanged."""
    async with redis.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.hdel(names.controller_reports("nodepool", i), controller)
        await pipe.execute()


def _ingester_checks(
    settings: Settings, ids: list[str], controller: str
) -> Callable[[Redis], tuple[Check, Check]]:
    names = settings.names

    def make(redis: Redis) -> tuple[Check, Check]:
        async def started() -> bool:
            # Reports are taken in publishing order: one of the first stored means it began.
            async with redis.pipeline(transaction=False) as pipe:
                for i in ids[:FIRST]:
                    pipe.hexists(names.controller_reports("nodepool", i), controller)
                return any(await pipe.execute())

        async def done() -> bool:
            # Cheap test first (the last report published), then every nodepool once.
            last = names.controller_reports("nodepool", ids[-1])
            if not await redis.hexists(last, controller):
                return False
            async with redis.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hexists(names.controller_reports("nodepool", i), controller)
                return all(await pipe.execute())

        return started, done

    return make


def _baseline_checks(
    settings: Settings, before: int, total: int
) -> Callable[[Redis], tuple[Check, Check]]:
    key = f"{settings.namespace}:bench:reports"

    def make(redis: Redis) -> tuple[Check, Check]:
        async def started() -> bool:
            return bool(await redis.hlen(key) > before)

        async def done() -> bool:
            return bool(await redis.hlen(key) >= total)

        return started, done

    return make


def run(ctx: RunContext) -> None:
    cfg = ctx.config
    ingest = _settings(ctx, "ingest")
    base = _settings(ctx, "consume")
    ids = asyncio.run(_seed(ingest, cfg.ingest_reports))
    registry = str(_registry_file(ctx))
    base_total = 0

    def ingester_round(i: int) -> Round:
        controller = _controller(i)
        checks = _ingester_checks(ingest, ids, controller)
        return asyncio.run(
            _round(
                ctx,
                "status_ingester",
                ingest,
                ids,
                controller,
                checks,
                controllers_file=registry,
            )
        )

    def baseline_round(i: int) -> Round:
        nonlocal base_total
        checks = _baseline_checks(base, base_total, base_total + len(ids))
        base_total += len(ids)
        return asyncio.run(
            _round(ctx, "bench.baseline_consumer", base, ids, _controller(i), checks)
        )

    subject, baseline = interleaved(cfg.rounds, ingester_round, baseline_round)
    ratio = paired_ratio([r.rate for r in subject], [r.rate for r in baseline])
    ctx.add(
        Figure(
            SECTION,
            f"reports/s, {len(ids):,} reports per round, prefetch {ingest.ingest_prefetch}",
            f"{median([r.rate for r in subject]):,.0f} reports/s",
            f"{median([r.rate for r in baseline]):,.0f} reports/s",
            ratio,
            f">= {TARGET}x",
            ratio >= TARGET,
            "baseline: bare aio-pika consumer, one Redis write then ack",
        )
    )
    ctx.add(
        Figure(
            "Memory",
            "status ingester RSS after its rounds",
            f"{max(r.rss_mb for r in subject):.0f} MB",
            f"{max(r.rss_mb for r in baseline):.0f} MB",
            note="baseline: the bare consumer",
        )
    )


def _settings(ctx: RunContext, label: str) -> Settings:
    cfg = ctx.config
    return Settings(
        namespace=ctx.new_namespace(label), redis_url=cfg.redis_url, amqp_url=cfg.amqp_url
    )
