"""Redis restarts under the ingester: consumption pauses, reports in hand wait, none is
dead-lettered or lost.

The whole stack of these tests (API, ingester, reads) runs on a private redis-server, which the
tests stop and start; the delivery limit is 1, so a good report handed back to the broker even
twice would end in the dead-letter queue and fail the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from cls_runtime.settings import Settings
from status_ingester.consumer import StatusIngester
from tests.conftest import AMQP_URL, CONTROLLER_TOKENS
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
from tests.support.redis_server import PrivateRedis

POOLS = 10
PER_OUTAGE = 15  # steps per nodepool published while Redis is down: more than one window


@pytest.fixture
def settings(namespace: str, private_redis: PrivateRedis) -> Settings:
    return Settings(
        namespace=namespace,
        redis_url=private_redis.url,
        amqp_url=AMQP_URL,
        controller_tokens=",".join(f"{n}={t}" for n, t in CONTROLLER_TOKENS.items()),
        ingest_delivery_limit=1,
        ingest_prefetch=32,
    )


@pytest.fixture
async def redis(private_redis: PrivateRedis) -> AsyncIterator[Redis]:
    # Pipelines retry a connection that the restart broke only for the errors listed here.
    client = Redis.from_url(
        private_redis.url, decode_responses=True, retry_on_error=[RedisConnectionError]
    )
    yield client
    await client.aclose()


async def paused(ingester: StatusIngester) -> None:
    await eventually(
        lambda: asyncio.sleep(0, ingester.paused), lambda paused: paused, what="paused"
    )


async def test_reports_in_hand_wait_through_redis_restarts(
    api: httpx.AsyncClient,
    publisher: Publisher,
    start_ingester: StartIngester,
    private_redis: PrivateRedis,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    pools = await create_nodepools(api, await create_cluster_id(api), POOLS)
    ingester = await start_ingester(redis_probe_interval=0.1)
    published = 0
    for outage in range(3):
        await asyncio.to_thread(private_redis.stop)
        steps = range(outage * PER_OUTAGE + 1, (outage + 1) * PER_OUTAGE + 1)
        await publisher.reports([nodepool_report(p, step=s) for s in steps for p in pools])
        published += len(steps) * POOLS
        await paused(ingester)
        # The reports the ingester had taken stay with it, unacked: none is handed back.
        round_total = len(steps) * POOLS

        async def held_and_queued() -> tuple[int, int]:
            return ingester.in_hand, (await queue_counts(amqp, settings.names))[0]

        await eventually(
            held_and_queued,
            lambda counts, total=round_total: counts[0] > 0 and sum(counts) == total,  # type: ignore[misc]
            what="reports held by the ingester plus reports queued == reports published",
        )
        await asyncio.to_thread(private_redis.start)

        last = {f"{p}/{CONTROLLER}": steps[-1] for p in pools}
        await eventually(
            lambda last=last: steps_behind(redis, settings.names, last),  # type: ignore[misc]
            lambda behind: not behind,
            within=30,
            what=f"outage {outage}: every nodepool at its last step",
        )
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("applied") == published,
        what="every report applied once",
    )
    assert await dead_letter_count(amqp, settings.names) == 0
    assert "requeued" not in await counters(redis, settings.names)


async def test_ingester_waits_for_redis_before_consuming(
    publisher: Publisher,
    private_redis: PrivateRedis,
    settings: Settings,
    amqp: AbstractRobustConnection,
    start_ingester: StartIngester,
) -> None:
    await asyncio.to_thread(private_redis.stop)
    ingester = StatusIngester(settings, redis_probe_interval=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    try:
        await publisher.report(nodepool_report("00000000-0000-4000-8000-000000000000"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ingester.consuming.wait(), 1.0)
        assert await queue_counts(amqp, settings.names) == (1, 0)
        await asyncio.to_thread(private_redis.start)
        await asyncio.wait_for(ingester.consuming.wait(), 10)
        await eventually(
            lambda: queue_counts(amqp, settings.names), lambda c: c == (0, 1), what="consumed"
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
