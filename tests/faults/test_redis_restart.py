"""Redis stops in the middle of a run of writes and starts again (a redis-server of the test's
own, AOF with appendfsync always): the API answers 503 UNAVAILABLE promptly meanwhile, every
service (the events process included) recovers without being restarted, and no acknowledged
write is lost."""

from __future__ import annotations

import asyncio

import pytest

from tests.events.conftest import EventsConsumer
from tests.support.redis_server import PrivateRedis
from tests.support.stack import PACKAGES, Stack, all_ready_at

from .conftest import (
    Writer,
    delivery_counts,
    latest_generations,
    lost_acked_writes,
    stored_generations,
    undelivered,
    wait_delivered,
    write_burst,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

POOLS = 30
SCALES = 4
OUTAGE_SECONDS = 4.0
# The API's Redis client gives up after its socket timeout (5 s); a refusal may take that long
# when Redis dies under a request, never longer (plus scheduling slack).
REFUSAL_BOUND = 7.0


@pytest.fixture
def fault_env(private_redis: PrivateRedis) -> dict[str, str]:
    return {
        "CLS_REDIS_URL": private_redis.url,
        "CLS_STUB_DELAY_MS": "50",
        "CLS_RECONCILE_INTERVAL": "2",
    }


async def outage(private_redis: PrivateRedis, writer: Writer, after_writes: int) -> int:
    """Stop Redis once ``after_writes`` writes are acknowledged, start it again; returns how
    many writes were acknowledged before the stop."""
    await writer.wait_acked(after_writes)
    acked_before = len(writer.acked)
    await asyncio.to_thread(private_redis.stop)
    await asyncio.sleep(OUTAGE_SECONDS)
    await asyncio.to_thread(private_redis.start)
    return acked_before


async def test_redis_restart_mid_run_loses_no_acknowledged_write(
    stack: Stack, private_redis: PrivateRedis, events: EventsConsumer
) -> None:
    pids = {p: stack[p].pid for p in PACKAGES}
    writer = Writer(stack.http)
    cluster_id = await writer.cluster()
    burst = asyncio.create_task(write_burst(writer, cluster_id, POOLS, SCALES))
    pools, acked_before = await asyncio.gather(
        burst, outage(private_redis, writer, after_writes=POOLS + 10)
    )
    stored = await stored_generations(stack.http, pools)
    figures = (
        f"writes acked {len(writer.acked)} ({acked_before} before the stop), refused meanwhile "
        f"{dict(writer.refusals)}, transport errors {dict(writer.errors)}, slowest refusal "
        f"{writer.slowest_refusal:.2f}s"
    )
    assert writer.refusals[503] > 0, f"the outage was not seen: {figures}"
    assert writer.slowest_refusal < REFUSAL_BOUND, figures
    assert not writer.errors, figures  # no hang up, no reset: an answer every time
    assert not lost_acked_writes(writer, stored), figures
    await wait_delivered(writer, events)
    await all_ready_at(stack, latest_generations(stored), within=120)
    restarted = [p for p in PACKAGES if not stack[p].alive or stack[p].pid != pids[p]]
    assert not restarted, f"{restarted} did not survive the outage"
    distinct, deliveries = delivery_counts(events)
    assert not undelivered(writer, events)
    print(f"\nFAULTS redis restart: {figures}; events {distinct}/{deliveries}; lost 0")
