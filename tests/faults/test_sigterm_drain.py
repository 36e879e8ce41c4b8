"""SIGTERM to each service in the middle of a run: it drains what it holds and exits within a
bound, and nothing it held is lost.

- The API finishes the requests in flight; the events it committed stay in the outbox for the
  relay (the events process, whose broker link is cut meanwhile). uvicorn exits by re-raising
  the signal once its graceful shutdown is done, so the API's normal exit code is -SIGTERM (-15).
- The events process finishes the batch in flight, releases its leader locks and exits 0; what
  it had not published is in the outbox for the next start.
- The ingester applies and acks the reports in hand, or leaves them unacked for redelivery.
- The stub acks an event only once it has reported; a run it abandons is picked up again by
  a reconcile event after its restart.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import AMQP_URL, USER
from tests.events.conftest import EventsConsumer
from tests.support.stack import EVENTS, Stack, all_ready_at, scale_body
from tests.support.status_reports import Reports
from tests.support.tcp_proxy import TcpProxy, through

from .conftest import (
    Writer,
    latest_generations,
    lost_acked_writes,
    stored_generations,
    undelivered,
    wait_delivered,
    write_burst,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

POOLS = 30
EXIT_BOUND = 20.0  # seconds from SIGTERM to exit
# Exit codes each service documents for a SIGTERM it handled.
CLEAN_EXIT = {
    "api_service": (0, -signal.SIGTERM),
    "event_jobs": (0,),
    "status_ingester": (0,),
    "reconciler_stub": (0,),
}


@pytest.fixture
def fault_env(broker_proxy: TcpProxy) -> dict[str, str]:
    return {"CLS_AMQP_URL": through(AMQP_URL, broker_proxy), "CLS_STUB_DELAY_MS": "100"}


async def terminate(stack: Stack, package: str) -> tuple[int | None, float]:
    """SIGTERM; (exit code, seconds it took), failing if it outlives the bound."""
    started = time.monotonic()
    stack[package].signal(signal.SIGTERM)
    code = await asyncio.to_thread(stack[package].wait, EXIT_BOUND)
    took = time.monotonic() - started
    assert code in CLEAN_EXIT[package], f"{package} exited {code}:\n{stack[package].log_tail()}"
    return code, took


async def first_commit(redis: Redis, settings: Settings, within: float = 10.0) -> None:
    """Until the outbox holds an entry (polled: Redis offers nothing to wait on here)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await redis.xlen(settings.names.outbox):
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no write committed within {within}s")


async def scale_all(base_url: str, pools: list[str], node_count: int) -> list[object]:
    """One scale per pool, all at once, each on a connection of its own (no keep-alive, so
    that a connection the server closes while idle is not mistaken for a dropped request):
    a response, or the transport error that ended the request."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, headers=USER, limits=limits) as http:
        sends = [
            http.put(
                f"/api/v1/nodepools/{p}",
                json=scale_body(name=f"pool-{i:03d}", node_count=node_count),
            )
            for i, p in enumerate(pools)
        ]
        return list(await asyncio.gather(*sends, return_exceptions=True))


@pytest.mark.stack_env(CLS_RECONCILE_INTERVAL="1")
async def test_api_sigterm_finishes_requests_in_flight_and_leaves_its_outbox(
    stack: Stack, broker_proxy: TcpProxy, events: EventsConsumer, redis: Redis, settings: Settings
) -> None:
    writer = Writer(stack.http)
    pools = await write_burst(writer, await writer.cluster(), POOLS, scales=0)
    await wait_delivered(writer, events)
    await broker_proxy.cut()  # from now on every event the API commits stays in the outbox
    in_flight = asyncio.create_task(scale_all(stack.base_url, pools, 7))
    # SIGTERM once the API is processing them (its first commit is in the outbox), not
    # before it has read any: a fixed sleep is too short on a loaded machine.
    await first_commit(redis, settings)
    code, took = await terminate(stack, "api_service")
    # uvicorn handled the signal with its graceful shutdown (killed outright, the process would
    # exit -15 as well).
    assert '"msg":"Shutting down"' in stack["api_service"].log_tail(50)
    outcomes = await in_flight
    answered = [o for o in outcomes if isinstance(o, httpx.Response)]
    refused = [o for o in outcomes if isinstance(o, httpx.ConnectError)]
    cut = [o for o in outcomes if isinstance(o, httpx.ReadError | httpx.RemoteProtocolError)]
    held = await redis.xlen(settings.names.outbox)
    figures = (
        f"exit {code} after {took:.1f}s; {len(outcomes)} scales sent: {len(answered)} answered, "
        f"{len(refused)} refused at connect, {len(cut)} reset before being read; "
        f"outbox held {held}"
    )
    # Every request the API had read got its answer; the rest never reached the app. (A reset
    # is a connection the kernel had accepted when the listener closed: the app never saw it.)
    assert len(answered) + len(refused) + len(cut) == len(outcomes), f"{figures}: {outcomes}"
    assert answered and all(r.status_code == 200 for r in answered), figures
    assert held >= len(answered), figures  # each answered write left its event behind
    for response in answered:
        writer.record_scale(response.json(), 7)
    await broker_proxy.restore()
    await stack.start("api_service")
    await wait_delivered(writer, events)
    stored = await stored_generations(stack.http, pools)
    assert not lost_acked_writes(writer, stored), figures
    # A reset request was never read, so it cannot have been committed unanswered.
    reset_pools = [p for p, o in zip(pools, outcomes, strict=True) if o in cut]
    assert all(stored[p]["generation"] == 1 for p in reset_pools), figures
    await all_ready_at(stack, latest_generations(stored), within=60)
    assert not undelivered(writer, events), figures
    print(f"\nFAULTS sigterm api: {figures}; lost 0")


async def sigterm_mid_run(
    stack: Stack, package: str, events: EventsConsumer, reports: Reports
) -> str:
    """Start a run of POOLS creates and scales, SIGTERM ``package`` in its middle, restart it;
    every nodepool must then converge."""
    writer = Writer(stack.http)
    pools = await write_burst(writer, await writer.cluster(), POOLS, scales=1)
    # Runs under way: a controller has reported on a scale, so reports flow and events are in
    # hand (polled, not slept: a fixed pause says nothing on a loaded machine).
    scaled = set(pools)
    await reports.wait_for(
        lambda r: r.get("nodepool_id") in scaled and r["observed_generation"] == 2, 30
    )
    code, took = await terminate(stack, package)
    assert "drain timed out" not in stack[package].log_tail(200)
    await stack.start(package)
    stored = await stored_generations(stack.http, pools)
    await all_ready_at(stack, latest_generations(stored), within=60)
    assert not undelivered(writer, events)
    return f"exit {code} after {took:.1f}s; writes acked {len(writer.acked)}"


# A long reconcile interval: nothing re-sends what the SIGTERM would have lost; every event
# committed must go out from the outbox.
@pytest.mark.stack_env(CLS_RECONCILE_INTERVAL="300")
async def test_events_process_sigterm_mid_burst_drains_and_loses_no_event(
    stack: Stack, events: EventsConsumer, redis: Redis, settings: Settings
) -> None:
    writer = Writer(stack.http)
    burst = asyncio.create_task(write_burst(writer, await writer.cluster(), POOLS, scales=1))
    await writer.wait_acked(POOLS // 2)  # relaying as the writes come
    code, took = await terminate(stack, EVENTS)
    log = stack[EVENTS].log_tail(200)
    assert "did not stop within" not in log and "no longer the leader (stopping)" in log
    pools = await burst
    # Writes go on while it is down: their events wait in the outbox.
    await asyncio.gather(*(writer.scale(p, f"pool-{i:03d}", 9) for i, p in enumerate(pools)))
    held = await redis.xlen(settings.names.outbox)
    assert held >= POOLS, held
    restarted_at = time.monotonic()
    await stack.start(EVENTS)
    # It released the relay's lock on the way out: the next one leads at once, not a TTL later.
    led_after = time.monotonic() - restarted_at
    assert led_after < 5.0, f"the restarted process led after {led_after:.1f}s"
    await wait_delivered(writer, events)
    stored = await stored_generations(stack.http, pools)
    assert not lost_acked_writes(writer, stored)
    await all_ready_at(stack, latest_generations(stored), within=60)
    assert not undelivered(writer, events)
    figures = f"exit {code} after {took:.1f}s; writes acked {len(writer.acked)}, held {held}"
    print(f"\nFAULTS sigterm events: {figures}; lost 0")


# A long reconcile interval: convergence can only come from what the ingester acked or left
# for redelivery, not from reconcile events re-sending the work.
@pytest.mark.stack_env(CLS_RECONCILE_INTERVAL="300")
async def test_ingester_sigterm_mid_run_drains_and_loses_no_report(
    stack: Stack, events: EventsConsumer, reports: Reports
) -> None:
    figures = await sigterm_mid_run(stack, "status_ingester", events, reports)
    print(f"\nFAULTS sigterm ingester: {figures}; lost 0")


# The stub forgets its runs when it stops (by design); reconcile events restart them.
@pytest.mark.stack_env(CLS_RECONCILE_INTERVAL="1")
async def test_stub_sigterm_mid_run_exits_promptly_and_runs_resume(
    stack: Stack, events: EventsConsumer, reports: Reports
) -> None:
    figures = await sigterm_mid_run(stack, "reconciler_stub", events, reports)
    print(f"\nFAULTS sigterm stub: {figures}; lost 0")
