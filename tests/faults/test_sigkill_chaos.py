"""SIGKILL of the API, the events process, the ingester and the stub at random moments of a run (a
seeded schedule), each restarted after a moment: once the last one is back, every nodepool is
Ready at its latest generation. Lost work is recovered by design, not by luck: the relay
republishes what the outbox still holds (a killed events process's lock expires and the restarted
one takes over), unacked events and reports are redelivered, and reconcile events restart runs a
restarted stub has forgotten."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field

import pytest

from tests.events.conftest import EventsConsumer
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

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

POOLS = 50
SCALES = 3
SEED = 20261126
EXTRA_KILLS = 3  # beyond one kill of each service


@dataclass
class Chaos:
    """Kills services on a seeded schedule while the writes run."""

    stack: Stack
    rng: random.Random
    kills: list[tuple[float, str]] = field(default_factory=list)

    def schedule(self) -> list[str]:
        victims = [*PACKAGES, *(self.rng.choice(PACKAGES) for _ in range(EXTRA_KILLS))]
        self.rng.shuffle(victims)
        return victims

    async def run(self, writer: Writer) -> None:
        started = time.monotonic()
        await writer.wait_acked(10)
        for victim in self.schedule():
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            self.stack[victim].signal(signal.SIGKILL)
            await asyncio.to_thread(self.stack[victim].wait, 10)
            self.kills.append((round(time.monotonic() - started, 2), victim))
            await asyncio.sleep(self.rng.uniform(0.2, 1.0))
            await self.stack.start(victim)


@pytest.fixture
def fault_env() -> dict[str, str]:
    # A short lock TTL: a killed events process's locks expire, and its restart leads, soon.
    return {"CLS_STUB_DELAY_MS": "50", "CLS_RECONCILE_INTERVAL": "1", "CLS_LEADER_LOCK_TTL": "3"}


async def test_random_sigkills_of_every_service_still_converge(
    stack: Stack, events: EventsConsumer
) -> None:
    chaos = Chaos(stack, random.Random(SEED))
    writer = Writer(stack.http)
    cluster_id = await writer.cluster()
    pools, _ = await asyncio.gather(
        write_burst(writer, cluster_id, POOLS, SCALES), chaos.run(writer)
    )
    stored = await stored_generations(stack.http, pools)
    figures = (
        f"kills {chaos.kills}; writes acked {len(writer.acked)}, refused meanwhile "
        f"{dict(writer.refusals)}, transport errors {dict(writer.errors)}"
    )
    assert {victim for _, victim in chaos.kills} == set(PACKAGES), figures
    assert not lost_acked_writes(writer, stored), figures
    await wait_delivered(writer, events)
    await all_ready_at(stack, latest_generations(stored), within=120)
    distinct, deliveries = delivery_counts(events)
    assert not undelivered(writer, events), figures
    print(f"\nFAULTS sigkill chaos: {figures}; events {distinct}/{deliveries}; lost 0")
