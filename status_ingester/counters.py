"""Ingest counters, kept in Redis (hash ``names.metric("ingest")``) so that every process reads
the same numbers: tests, other ingester replicas and the API's /metrics.

Increments are batched in memory and flushed every ``interval`` seconds with one pipelined
HINCRBY per counter: one round trip per flush instead of one per report. A flush that fails
(Redis away) keeps its counts for the next one. Counts not yet flushed when the process is
killed are lost; these are metrics, not state.

The flush loop is stopped by an event, never by cancelling it: redis-py can swallow a
cancellation that lands inside a command (redis/redis-py#2028, #2551), and the loop would then
go on forever, holding up the ingester's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from enum import StrEnum

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("status_ingester.counters")


class Count(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    STALE = "stale"
    UNKNOWN = "unknown"  # reports on resources that do not exist (acked, not stored)
    DEAD_LETTERED = "dead_lettered"  # rejected by us into the dead-letter queue
    REQUEUED = "requeued"  # unexpected failures handed back to the broker


class IngestCounters:
    def __init__(self, redis: Redis, key: str, interval: float = 0.2) -> None:
        self._redis = redis
        self._key = key
        self._interval = interval
        self._pending: Counter[Count] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def add(self, count: Count, amount: int = 1) -> None:
        self._pending[count] += amount

    def start(self) -> None:
        self._closing.clear()
        self._task = asyncio.create_task(self._flush_until_closed(), name="ingest counters")

    async def close(self) -> None:
        """Stop the periodic flush once its flush in flight is done, and try one last one."""
        self._closing.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> bool:
        if not self._pending:
            return True
        batch, self._pending = self._pending, Counter()
        try:
            # MULTI/EXEC: a failed flush has counted nothing, so re-adding its batch is exact.
            async with self._redis.pipeline(transaction=True) as pipe:
                for count, amount in batch.items():
                    pipe.hincrby(self._key, count.value, amount)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._pending.update(batch)
            log.debug("counters not flushed: %s", exc)
            return False
        return True

    async def _flush_until_closed(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._interval)
            await self.flush()
