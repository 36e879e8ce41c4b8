"""``python -m status_ingester`` as a real process: SIGKILL mid-burst, SIGTERM drain, rate.

These tests print their figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import USER
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    counters,
    create_cluster_id,
    create_nodepools,
    dead_letter_count,
    nodepool_report,
    queue_counts,
    steps_behind,
    stored_steps,
    wait_consumers,
)
from tests.support.polling import eventually
from tests.support.registry import with_extra_controllers
from tests.support.services import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, with_extra_controllers]

POOLS = 100
# The nodepools' required controller and nine optional ones, all in the test's registry.
CONTROLLERS = [CONTROLLER, *(f"ctl-{i}" for i in range(1, 10))]
STEPS = 5  # 100 nodepools x 10 controllers x 5 steps = 5,000 reports
# The SIGKILL burst: every controller of 250 nodepools reports twice (5,000 reports). The kill
# comes once the first round is done, so every report in hand then is a last report, whose
# loss the final state shows.
KILL_POOLS, KILL_STEPS = 250, 2
PROCESSED = ("applied", "unchanged", "stale")


def burst(pools: list[str], steps: int = STEPS) -> list[dict[str, Any]]:
    """Every (nodepool, controller) reports steps 1..steps; the last step is Ready."""
    return [
        nodepool_report(pool, controller=controller, step=step, ready=step == steps)
        for step in range(1, steps + 1)
        for controller in CONTROLLERS
        for pool in pools
    ]


def final_steps(pools: list[str], steps: int = STEPS) -> dict[str, int]:
    return {f"{pool}/{controller}": steps for pool in pools for controller in CONTROLLERS}


async def processed(redis: Redis, settings: Settings) -> int:
    tally = await counters(redis, settings.names)
    return sum(tally.get(name, 0) for name in PROCESSED)


@pytest.mark.settings_update(max_nodepools_per_cluster=KILL_POOLS)
async def test_sigkill_mid_burst_loses_no_report(
    api: httpx.AsyncClient,
    publisher: Publisher,
    ingester_process: Callable[..., ServiceProcess],
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    pools = await create_nodepools(api, await create_cluster_id(api), KILL_POOLS)
    first = ingester_process()
    await wait_consumers(amqp, settings.names, 1, first)
    bodies = burst(pools, KILL_STEPS)
    publishing = asyncio.create_task(publisher.reports(bodies))
    first_round = len(bodies) // KILL_STEPS
    at_kill = await eventually(
        lambda: processed(redis, settings),
        lambda n: n >= first_round + 2 * settings.ingest_prefetch,
        within=60,
        what="the first round processed",
    )
    first.kill()
    await publishing
    left, _ = await queue_counts(amqp, settings.names)
    assert left > len(bodies) // 10, "the kill came at the end of the burst, not in its middle"

    second = ingester_process()
    await wait_consumers(amqp, settings.names, 1, second)
    final = final_steps(pools, KILL_STEPS)
    await eventually(
        lambda: steps_behind(redis, settings.names, final),
        lambda behind: not behind,
        within=60,
        what="every controller of every nodepool at its last step (shown: those behind)",
    )
    await eventually(
        lambda: queue_counts(amqp, settings.names), lambda c: c == (0, 1), what="queue drained"
    )
    assert await dead_letter_count(amqp, settings.names) == 0
    listed = await api.get(
        "/api/v1/nodepools", params={"status": "Ready", "limit": 100}, headers=USER
    )
    assert listed.json()["total"] == KILL_POOLS
    lost = len(await steps_behind(redis, settings.names, final))
    steps = await stored_steps(redis, settings.names, pools)
    print(
        f"\nSIGKILL burst: published={len(bodies)} processed_before_kill>={at_kill} "
        f"left_in_queue_after_kill={left} final_reports={len(steps)}/{len(final)} "
        f"lost={lost} counters={await counters(redis, settings.names)}"
    )


async def test_sigterm_drains_in_hand_reports_and_exits_0(
    api: httpx.AsyncClient,
    publisher: Publisher,
    ingester_process: Callable[..., ServiceProcess],
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    pools = await create_nodepools(api, await create_cluster_id(api), 20)
    bodies = burst(pools, steps=10)  # 1,200 reports
    await publisher.reports(bodies)
    process = ingester_process()
    await eventually(
        lambda: processed(redis, settings), lambda n: n >= 200, within=30, what="consuming"
    )
    started = time.monotonic()
    process.signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, 20)
    took = time.monotonic() - started
    assert code == 0, process.log_tail()
    assert took < 10, f"drain took {took:.1f}s"
    # Every report is either processed (and acked) or still queued, never both, never neither:
    # the reports in hand were finished and acked, not dropped nor returned after applying.
    left, consumers = await queue_counts(amqp, settings.names)
    done = await processed(redis, settings)
    assert consumers == 0
    assert left > 0, "the drain came after the burst, not in its middle"
    assert done + left == len(bodies), (done, left)
    # Steps are applied in order, so the stored steps add up to the reports applied: a report
    # applied but left unacked (and so also still queued) would show here.
    in_redis = sum((await stored_steps(redis, settings.names, pools)).values())
    assert in_redis == done, (in_redis, done)
    assert "drain timed out" not in process.log_tail()
    print(f"\nSIGTERM drain: {took:.2f}s, processed={done}, left in queue={left}")


async def test_ingest_rate_of_one_process(
    api: httpx.AsyncClient,
    publisher: Publisher,
    ingester_process: Callable[..., ServiceProcess],
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    pools = await create_nodepools(api, await create_cluster_id(api), POOLS)
    bodies = burst(pools)
    await publisher.reports(bodies)  # queued before the ingester starts: it never waits
    process = ingester_process()
    await wait_consumers(amqp, settings.names, 1, process)
    started = time.monotonic()
    await eventually(
        lambda: processed(redis, settings),
        lambda n: n == len(bodies),
        within=120,
        what="every report processed",
    )
    elapsed = time.monotonic() - started
    rate = len(bodies) / elapsed
    assert await stored_steps(redis, settings.names, pools) == final_steps(pools)
    print(
        f"\ningest rate: {len(bodies)} reports over {POOLS} nodepools in {elapsed:.2f}s = "
        f"{rate:.0f} reports/s (prefetch {settings.ingest_prefetch})"
    )
    assert rate > 100  # a floor that catches a serialised or stalled ingester, not a benchmark
