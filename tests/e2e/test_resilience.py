"""A service killed (SIGKILL) in the middle of a run and started again: every nodepool still ends
Ready at its latest generation."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.support.resources import create_cluster
from tests.support.stack import (
    EVENTS,
    Stack,
    all_ready_at,
    create_body,
    create_nodepool,
    scale_body,
)
from tests.support.status_reports import Report, Reports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

POOLS = 20


def pool_name(index: int) -> str:
    return f"pool-{index:03d}"


async def create_pools(stack: Stack, count: int = POOLS) -> list[str]:
    cluster = await create_cluster(stack.http)
    bodies = [create_body(cluster["id"], name=pool_name(i)) for i in range(count)]
    created = await asyncio.gather(*(create_nodepool(stack.http, b) for b in bodies))
    return [c["id"] for c in created]


async def scale_half(http: httpx.AsyncClient, pools: list[str]) -> dict[str, int]:
    """PUT the guide's scale request on every other pool; returns each pool's latest generation."""
    latest = dict.fromkeys(pools, 1)
    for index in range(0, len(pools), 2):
        nodepool_id = pools[index]
        body = scale_body(name=pool_name(index))
        response = await http.put(f"/api/v1/nodepools/{nodepool_id}", json=body)
        assert response.status_code == 200, response.text
        latest[nodepool_id] = response.json()["generation"]
    return latest


async def reports_of_the_scales_published(reports: Reports, latest: dict[str, int]) -> None:
    """Until a controller has reported on a scale: with a consumer down, such reports (or the
    events behind them) pile up in its queue meanwhile."""
    scaled = {p: g for p, g in latest.items() if g > 1}

    def on_a_scale(report: Report) -> bool:
        return bool(scaled.get(report.get("nodepool_id", "")) == report["observed_generation"])

    await reports.wait_for(on_a_scale, 30)


async def ready_count(http: httpx.AsyncClient) -> int:
    response = await http.get("/api/v1/nodepools", params={"status": "Ready", "limit": 1})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


@pytest.mark.stack_env(CLS_STUB_DELAY_MS="200")
async def test_ingester_killed_and_restarted_mid_run(stack: Stack, reports: Reports) -> None:
    pools = await create_pools(stack)
    await reports.wait_for(lambda r: r.get("nodepool_id") in pools)  # the runs have begun
    stack["status_ingester"].kill()
    assert await ready_count(stack.http) < len(pools)  # killed mid-run
    latest = await scale_half(stack.http, pools)
    await reports_of_the_scales_published(reports, latest)  # piling up in the status queue
    await stack.start("status_ingester")
    await all_ready_at(stack, latest)


@pytest.mark.stack_env(CLS_STUB_DELAY_MS="200")
async def test_stub_killed_and_restarted_mid_run(stack: Stack, reports: Reports) -> None:
    pools = await create_pools(stack)
    await reports.wait_for(lambda r: r.get("nodepool_id") in pools)
    stack["reconciler_stub"].kill()
    assert await ready_count(stack.http) < len(pools)
    latest = await scale_half(stack.http, pools)  # events wait in the controller's queue
    await asyncio.sleep(1.0)  # reconcile events pile up too
    await stack.start("reconciler_stub")
    await all_ready_at(stack, latest)


@pytest.mark.stack_env(CLS_STUB_DELAY_MS="200")
async def test_both_consumers_killed_and_restarted_mid_run(stack: Stack, reports: Reports) -> None:
    pools = await create_pools(stack)
    await reports.wait_for(lambda r: r.get("nodepool_id") in pools)
    stack["reconciler_stub"].kill()
    stack["status_ingester"].kill()
    latest = await scale_half(stack.http, pools)
    await stack.start("reconciler_stub")
    await reports_of_the_scales_published(reports, latest)  # piling up for the ingester
    await stack.start("status_ingester")
    await all_ready_at(stack, latest)


# A short lock TTL: the restarted process leads once the killed one's lock expires.
@pytest.mark.stack_env(CLS_STUB_DELAY_MS="200", CLS_LEADER_LOCK_TTL="2")
async def test_events_process_killed_and_restarted_mid_run(
    stack: Stack, reports: Reports, redis: Redis, settings: Settings
) -> None:
    pools = await create_pools(stack)
    await reports.wait_for(lambda r: r.get("nodepool_id") in pools)
    stack[EVENTS].kill()
    latest = await scale_half(stack.http, pools)  # the API still writes; events wait
    assert await redis.xlen(settings.names.outbox) >= len(pools) // 2
    await stack.start(EVENTS)
    await all_ready_at(stack, latest)


@pytest.mark.stack_env(CLS_STUB_FAILURE_RATE="0.3", CLS_STUB_SEED="7")
async def test_random_transient_failures_still_converge(stack: Stack, reports: Reports) -> None:
    pools = await create_pools(stack, 30)
    latest = await scale_half(stack.http, pools)
    await all_ready_at(stack, latest)
    assert any("last_error" in r for p in pools for r in reports.of(p))  # failures did happen
