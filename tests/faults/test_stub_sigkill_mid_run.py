"""SIGKILL of the simulated controllers in the middle of their runs.

A controller acknowledges an event once its first report is confirmed, then runs on (Progressing
with active_nodes ramping, then Ready). Killed after that ack, it leaves nothing for the broker to
redeliver: the runs it forgot are restarted only by the reconcile loop's ``nodepool.reconcile``
events (for nodepools not Ready at their generation). The chaos test (test_sigkill_chaos.py)
can converge without them when its kills miss every run in progress; this one kills mid-run.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.events.conftest import EventsConsumer
from tests.support.polling import eventually
from tests.support.stack import Json, Stack, all_ready_at, status_of

from .conftest import Writer, write_burst

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

POOLS = 5


@pytest.fixture
def fault_env() -> dict[str, str]:
    # Slow runs (several seconds each), so that the kill lands in the middle of them.
    return {"CLS_STUB_DELAY_MS": "500", "CLS_RECONCILE_INTERVAL": "1"}


async def test_runs_a_killed_stub_forgot_are_restarted_by_reconcile_events(
    stack: Stack, events: EventsConsumer
) -> None:
    writer = Writer(stack.http)
    pools = await write_burst(writer, await writer.cluster(), POOLS, scales=0)

    async def mid_run() -> Json | None:
        """The pools whose run has reported (so its event is acked) and is not finished."""
        views = await asyncio.gather(*(status_of(stack.http, p) for p in pools))
        running = [
            v["nodepool_id"]
            for v in views
            if v["status"]["phase"] != "Ready"
            and any(r["observed_generation"] == 1 for r in v["controller_status"])
        ]
        return {"running": running} if running else None

    running = (await eventually(mid_run, what="a run reported and in progress", within=30))[
        "running"
    ]
    stack["reconciler_stub"].signal(signal.SIGKILL)
    await asyncio.to_thread(stack["reconciler_stub"].wait, 10)
    await stack.start("reconciler_stub")
    await all_ready_at(stack, dict.fromkeys(pools, 1), within=60)
    print(f"\nFAULTS stub sigkill mid-run: {len(running)} run(s) in progress at the kill")
