"""What every scenario shares: the configuration, a log folder, namespaces, and clean-up."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from bench.config import BenchConfig
from bench.report import Figure
from cls_runtime import amqp as amqp_topology
from shared_models.names import Names

# Queues a namespace may have declared (the stub's controller queues included).
CONTROLLERS = tuple(
    f"{platform}-{kind}-controller"
    for platform in ("gcp", "aws", "azure")
    for kind in ("nodepool", "cluster")
)


@dataclass
class RunContext:
    config: BenchConfig
    log_dir: Path
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def new_namespace(self, label: str) -> str:
        """A namespace of its own for one scenario, removed at the end of the run."""
        namespace = f"bench-{label}-{uuid.uuid4().hex[:8]}"
        self.namespaces.append(namespace)
        return namespace

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        ratio = f"  ({figure.ratio:.2f}x)" if figure.ratio is not None else ""
        print(f"  {figure.name}: {figure.value}{ratio}", flush=True)

    async def cleanup(self) -> None:
        for namespace in self.namespaces:
            await delete_redis_namespace(self.config.redis_url, namespace)
            await delete_amqp_namespace(self.config.amqp_url, namespace)


async def delete_redis_namespace(redis_url: str, namespace: str) -> None:
    """UNLINK every key of one benchmark namespace (SCAN is fine here: nothing is serving it)."""
    redis = Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{namespace}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()


async def delete_amqp_namespace(amqp_url: str, namespace: str) -> None:
    names = Names(namespace)
    connection = await amqp_topology.connect(amqp_url)
    try:
        channel = await connection.channel()
        queues = [names.status_queue, names.status_dead_queue]
        queues += [names.controller_queue(c) for c in CONTROLLERS]
        for queue in queues:
            await channel.queue_delete(queue, if_unused=False, if_empty=False)
        for exchange in (names.events_exchange, names.status_exchange, names.status_dead_exchange):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
