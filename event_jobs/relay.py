"""The outbox relay: publishes committed events to ``<ns>.events``, then removes them.

Only the leader relays (one ``Leadership`` for the job "outbox-relay"), so replicas do not publish
an entry twice in normal operation. A batch is read from the start of the stream, published in
stream order with publisher confirms, and only the confirmed prefix is deleted: nothing is removed
before the broker has it, and per-resource order is kept because the stream is in commit order
and nothing behind a failed entry is skipped. A crash between the confirm and the delete
publishes those entries again on the next round (at-least-once; consumers deduplicate).

The relay keeps going through broker and Redis outages, and says so once per state change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum

from redis.exceptions import RedisError

from cls_core.store.outbox import Outbox, OutboxEntry
from event_jobs.broker import BrokerLink
from event_jobs.leader import Leadership
from event_jobs.stopping import Stopped, pause, unless_stopped

log = logging.getLogger("event_jobs.relay")

# XREAD BLOCK: short, so leadership changes and shutdown are noticed within it.
BLOCK_MS = 1000
# Waits between attempts after a failure (the last one repeats).
BACKOFF = (0.2, 0.5, 1.0, 2.0)
# A backlog whose oldest entry is older than this is reported as lagging.
LAG_WARNING_SECONDS = 5.0


class RelayState(StrEnum):
    RELAYING = "relaying"  # publishing as entries arrive
    CATCHING_UP = "catching_up"  # a backlog is draining (after an outage, or falling behind)
    BROKER_DOWN = "broker_down"
    REDIS_DOWN = "redis_down"


@dataclass
class RelayStats:
    """What an operator (and, later, /metrics) needs: progress, failures, backlog age."""

    state: RelayState = RelayState.RELAYING
    published: int = 0
    publish_failures: int = 0
    dead_lettered: int = 0
    lag_seconds: float = 0.0  # age of the oldest waiting entry at the last read
    since: float = field(default_factory=time.monotonic)  # when the state last changed
    relayed_since: int = 0  # events published since the state last changed


class OutboxRelay:
    def __init__(
        self, outbox: Outbox, broker: BrokerLink, lease: Leadership, batch_size: int
    ) -> None:
        self.outbox = outbox
        self.broker = broker
        self.lease = lease
        self.batch_size = batch_size
        self.stats = RelayStats()
        self._failures_in_row = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; a batch in flight is finished first."""
        try:
            await self.broker.connect(stop)
            while True:
                await unless_stopped(stop, self.lease.wait_leader())
                await self._round(stop)
        except Stopped:
            return

    async def _round(self, stop: asyncio.Event) -> None:
        try:
            if not self.broker.connected:
                await self._enter_broker_down(self.broker.last_error or "not connected")
                await unless_stopped(stop, self.broker.wait_ready(patience=1.0))
                return
            entries = await unless_stopped(stop, self.outbox.read(self.batch_size, BLOCK_MS))
            self._redis_answered()
            if not entries:
                self._caught_up()
                return
            if await self._relay(entries):
                self._failures_in_row = 0
                return
        except RedisError as exc:
            self._enter_redis_down(exc)
        await pause(stop, BACKOFF[min(self._failures_in_row, len(BACKOFF) - 1)])
        self._failures_in_row += 1

    async def _relay(self, entries: list[OutboxEntry]) -> bool:
        """Publish one batch and delete what the broker confirmed; False if anything failed."""
        await self._set_aside_unreadable(entries)
        batch = [entry for entry in entries if entry.event is not None]
        if not batch:
            return True
        self._note_lag(time.time() - batch[0].committed_at)
        if not self.lease.is_leader:
            return True  # the term ended while we waited: the new leader takes it from here
        confirmed = await self.broker.publish([entry.event for entry in batch if entry.event])
        await self.outbox.remove(batch[:confirmed])
        if log.isEnabledFor(logging.DEBUG):
            for entry in batch[:confirmed]:
                log.debug("published %s", entry.fields.get("rk"), extra=entry.log_fields())
        self.stats.published += confirmed
        self.stats.relayed_since += confirmed
        if confirmed < len(batch):
            self.stats.publish_failures += 1
            await self._enter_broker_down(self.broker.last_error)
            return False
        await self._broker_answered()
        return True

    async def _set_aside_unreadable(self, entries: list[OutboxEntry]) -> None:
        unreadable = [entry for entry in entries if entry.event is None]
        if unreadable:
            await self.outbox.dead_letter(unreadable)
            self.stats.dead_lettered += len(unreadable)
            for entry in unreadable:
                log.error(
                    "outbox entry %s is not an event, moved to %s: %s",
                    entry.stream_id,
                    self.outbox.dead_key,
                    entry.error,
                    extra=entry.log_fields(),
                )

    # ---- state changes: one log line each ---------------------------------------------------
    def _change(self, state: RelayState) -> tuple[float, int]:
        """Enter ``state``; returns (seconds in the previous state, events relayed in it)."""
        elapsed = time.monotonic() - self.stats.since
        relayed = self.stats.relayed_since
        self.stats.state = state
        self.stats.since = time.monotonic()
        self.stats.relayed_since = 0
        return elapsed, relayed

    async def _enter_broker_down(self, reason: str) -> None:
        if self.stats.state == RelayState.BROKER_DOWN:
            return
        self._change(RelayState.BROKER_DOWN)
        waiting, age = await self._backlog()
        log.warning(
            "broker unreachable or refusing events (%s), %s events waiting, oldest %.1fs old",
            reason,
            waiting,
            age,
        )

    async def _broker_answered(self) -> None:
        """A batch was confirmed: if the broker was down, it is back and the backlog drains."""
        if self.stats.state != RelayState.BROKER_DOWN:
            return
        relayed = self.stats.relayed_since
        down_for, _ = self._change(RelayState.CATCHING_UP)
        self.stats.relayed_since = relayed
        waiting, _ = await self._backlog()
        log.info("broker back after %.1fs, relayed %d, %s waiting", down_for, relayed, waiting)

    def _enter_redis_down(self, exc: RedisError) -> None:
        if self.stats.state == RelayState.REDIS_DOWN:
            return
        self._change(RelayState.REDIS_DOWN)
        log.warning("redis unreachable (%s: %s), relay paused", type(exc).__name__, exc)

    def _redis_answered(self) -> None:
        if self.stats.state == RelayState.REDIS_DOWN:
            down_for, _ = self._change(RelayState.RELAYING)
            log.info("redis back after %.1fs, relay resumed", down_for)

    def _note_lag(self, lag: float) -> None:
        self.stats.lag_seconds = lag
        if self.stats.state == RelayState.RELAYING and lag > LAG_WARNING_SECONDS:
            self._change(RelayState.CATCHING_UP)
            log.warning("relay lagging: the oldest waiting event is %.1fs old", lag)

    def _caught_up(self) -> None:
        """The outbox is empty: every committed event has been published."""
        self.stats.lag_seconds = 0.0
        state = self.stats.state
        if state == RelayState.BROKER_DOWN:
            down_for, _ = self._change(RelayState.RELAYING)
            log.info("broker back after %.1fs, no events waiting", down_for)
        elif state == RelayState.CATCHING_UP:
            took, relayed = self._change(RelayState.RELAYING)
            log.info("relay caught up: outbox empty, relayed %d in the last %.1fs", relayed, took)

    async def _backlog(self) -> tuple[str, float]:
        """(number of waiting events, age of the oldest), for a log line; '?' without Redis."""
        try:
            return str(await self.outbox.size()), await self.outbox.oldest_age()
        except RedisError:
            return "?", 0.0
