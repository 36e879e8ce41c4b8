"""Periodic reconciliation: re-publish ``<kind>.reconcile`` for resources that are due.

Writes keep the schedule (``cls_core.services.reconcile_schedule``): a spec change
makes the resource due after ``reconcile_interval``; the status path moves it to
``reconcile_ready_interval`` when it becomes Ready and back when it leaves Ready. Each tick the
leader takes the members already due, oldest first and at most ``reconcile_batch_size`` (a
range read of the sorted set, never a scan), and for each one commits, in one guarded
transaction, a reconcile event carrying the resource at its current generation and its next due
time. The transaction requires the resource unchanged and the member still due: if a write
changed or rescheduled it meanwhile, that write wins and nothing is committed, and two loops that
both found a member due (say, during a leader hand-over) commit one reconcile between them.
Members whose resource is gone are removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from redis.exceptions import RedisError

from cls_core.services.common import RV_CHANGED, append_event, build_event
from cls_core.services.reconcile_schedule import ReconcileSchedule, is_ready
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, Txn
from cls_runtime.settings import Settings
from event_jobs.leader import Leadership
from event_jobs.stopping import Stopped, pause, unless_stopped
from shared_models.events import Event, EventType
from shared_models.names import Kind

log = logging.getLogger("event_jobs.reconcile")

KINDS: tuple[Kind, ...] = ("nodepool", "cluster")
STILL_EXISTS = "still_exists"
RESCHEDULED = "rescheduled"
MAX_TICK = 1.0

Record = NodePoolRecord | ClusterRecord


def tick_period(interval: float) -> float:
    """Often enough that a resource is reconciled close to its due time, at most every second."""
    return min(MAX_TICK, interval / 4)


class ReconcileLoop:
    def __init__(self, store: RedisStore, settings: Settings, lease: Leadership) -> None:
        self.store = store
        self.names = store.names
        self.settings = settings
        self.schedule = ReconcileSchedule(store.names, settings)
        self.lease = lease
        self.published = 0
        self.ticks = 0  # ticks run as leader (a metric)
        self._redis_failing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; a tick in progress is finished first."""
        period = tick_period(self.settings.reconcile_interval)
        try:
            while True:
                await unless_stopped(stop, self.lease.wait_leader())
                handled = await self._safe_tick()
                if handled < self.settings.reconcile_batch_size:
                    await pause(stop, period)
                else:
                    await pause(stop, 0)  # a full batch: more may be due already
        except Stopped:
            return

    async def _safe_tick(self) -> int:
        try:
            handled = await self.tick()
        except RedisError as exc:
            if not self._redis_failing:
                self._redis_failing = True
                log.warning("reconcile paused: redis unreachable (%s)", exc)
            return 0
        if self._redis_failing:
            self._redis_failing = False
            log.info("reconcile resumed: redis answers again")
        return handled

    async def tick(self) -> int:
        """Handle the members due now (one bounded batch); returns how many were due."""
        now = time.time()
        members = await self.store.reconcile_due(now, self.settings.reconcile_batch_size)
        if self.lease.is_leader:
            self.ticks += 1
        emitted = await self.handle(members, now) if members and self.lease.is_leader else 0
        # Every tick, even an idle one, so that it shows which replica runs the loop.
        log.debug("reconcile tick: %d due, %d reconcile events committed", len(members), emitted)
        return len(members) if self.lease.is_leader else 0

    async def handle(self, members: list[str], now: float) -> int:
        """Reconcile or forget members found due at ``now``, each in its own transaction.

        Returns the number of reconcile events committed.
        """
        records = await self._records(members)
        txns = [
            self._reconcile(member, records[member], now)
            if member in records
            else self._forget(member)
            for member in members
        ]
        emitted = 0
        for member, failed in zip(members, await self.store.run_each(txns), strict=True):
            if failed is None:
                emitted += member in records
            elif failed.code not in (RV_CHANGED, STILL_EXISTS, RESCHEDULED):
                kind, _, resource_id = member.partition(":")
                log.error(
                    "reconcile of %s failed: %s", member, failed, extra={f"{kind}_id": resource_id}
                )
        self.published += emitted
        return emitted

    async def _records(self, members: list[str]) -> dict[str, Record]:
        """member -> record, for the members whose resource exists."""
        found: dict[str, Record] = {}
        for kind in KINDS:
            ids = [m.partition(":")[2] for m in members if m.partition(":")[0] == kind]
            if ids:
                records = await self.store.get_records(kind, ids)
                found.update({f"{kind}:{rid}": record for rid, record in records.items()})
        return found

    def _reconcile(self, member: str, record: Record, now: float) -> Txn:
        """The reconcile event at the current generation, and the next due time, atomically."""
        kind: Kind = "nodepool" if isinstance(record, NodePoolRecord) else "cluster"
        txn = Txn()
        txn.expect_field(self.names.record(kind, record.id), "rv", record.rv, RV_CHANGED)
        # Still due: a write (or another replica's tick) that rescheduled it since we looked wins.
        ready = is_ready(record.status, record.generation)
        self.schedule.next_if_still_due(txn, member, ready, now, RESCHEDULED)
        append_event(txn, self.names, reconcile_event(record, now))
        return txn

    def _forget(self, member: str) -> Txn:
        """A member whose resource is gone (or of an unknown kind) leaves the schedule."""
        kind, _, resource_id = member.partition(":")
        txn = Txn()
        if kind in KINDS:
            record_key = self.names.record(kind, resource_id)
            txn.expect_field(record_key, "rv", None, STILL_EXISTS)
        else:
            log.warning("reconcile schedule: unknown member %r removed", member)
        self.schedule.forget(txn, member)
        return txn


def reconcile_event(record: Record, now: float) -> Event:
    """``<kind>.reconcile``: the resource as it is, at its current generation.

    Stamped with the tick's clock, the one its next due time is computed from, so consecutive
    reconcile events of a resource are never closer than the interval.
    """
    if isinstance(record, NodePoolRecord):
        event_type: EventType = "nodepool.reconcile"
        cluster_id, nodepool_id = record.cluster_id, record.id
    else:
        event_type, cluster_id, nodepool_id = "cluster.reconcile", record.id, None
    return build_event(
        event_type,
        cluster_id=cluster_id,
        nodepool_id=nodepool_id,
        generation=record.generation,
        platform=record.platform,
        resource=record.view(),
        moment=datetime.fromtimestamp(now, UTC),
    )
