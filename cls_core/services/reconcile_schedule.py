"""When a resource is next due for a reconcile event: one rule, for every writer.

The schedule is the sorted set ``names.reconcile_due`` (member ``<kind>:<id>``, score the unix
time it is due). A resource Ready at its current generation is re-checked every
``reconcile_ready_interval``, any other every ``reconcile_interval``. Each writer schedules in
its own guarded transaction: a create or a spec change, a status report that changes the phase,
the reconcile loop after each reconcile event; a delete takes the resource off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cls_core.store import Txn
from cls_runtime.settings import Settings
from shared_models.names import Kind, Names


def is_ready(status: Mapping[str, Any], generation: int) -> bool:
    """Ready at the current generation (a Ready of an older spec does not count)."""
    return status.get("phase") == "Ready" and status.get("observedGeneration") == generation


def member(kind: Kind, resource_id: str) -> str:
    return f"{kind}:{resource_id}"


class ReconcileSchedule:
    def __init__(self, names: Names, settings: Settings) -> None:
        self.names = names
        self.settings = settings

    def interval(self, ready: bool) -> float:
        if ready:
            return self.settings.reconcile_ready_interval
        return self.settings.reconcile_interval

    def schedule(self, txn: Txn, kind: Kind, resource_id: str, ready: bool, now: float) -> None:
        """Due one interval after ``now``, whenever it was due before."""
        txn.zadd(self.names.reconcile_due, now + self.interval(ready), member(kind, resource_id))

    def next_if_still_due(
        self, txn: Txn, due_member: str, ready: bool, now: float, fail: str
    ) -> None:
        """After a reconcile event: due again one interval later, unless a write rescheduled it
        since it was found due (then the transaction fails with ``fail``)."""
        txn.expect_score_at_most(self.names.reconcile_due, due_member, now, fail)
        txn.zadd(self.names.reconcile_due, now + self.interval(ready), due_member)

    def forget(self, txn: Txn, due_member: str) -> None:
        txn.zrem(self.names.reconcile_due, due_member)
