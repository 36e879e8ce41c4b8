"""The ingest counters: batched in memory, flushed to Redis, and closed without hanging."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from status_ingester.counters import Count, IngestCounters
from tests.conftest import REDIS_URL

ROUNDS = 150

pytestmark = pytest.mark.timeout(60)


async def test_close_during_a_flush_in_flight_returns_with_every_count_flushed(
    redis: Redis, settings: Settings
) -> None:
    # A fresh client per round: the flush in flight is then often still connecting, where a
    # cancelled flush once swallowed its cancellation and never ended (CI hang at shutdown).
    key = settings.names.metric("ingest")
    added = 0
    for round_ in range(ROUNDS):
        client = Redis.from_url(REDIS_URL)
        counters = IngestCounters(client, key, interval=0.0005)
        counters.start()
        for _ in range(1 + round_ % 7):
            counters.add(Count.APPLIED)
            added += 1
            await asyncio.sleep(0.0003)
        try:
            await asyncio.wait_for(counters.close(), 5)
        finally:
            await client.aclose()
    assert int(await redis.hget(key, Count.APPLIED.value) or 0) == added
