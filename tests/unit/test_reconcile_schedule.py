"""The reconcile schedule's one rule: Ready at the current generation is re-checked rarely,
anything else soon (cls_core/services/reconcile_schedule.py)."""

from __future__ import annotations

from cls_core.services.reconcile_schedule import ReconcileSchedule, is_ready, member
from cls_core.store import Txn
from cls_runtime.settings import Settings
from shared_models.names import Names

SETTINGS = Settings(namespace="t", reconcile_interval=30, reconcile_ready_interval=300)


def test_ready_counts_only_at_the_current_generation() -> None:
    assert is_ready({"phase": "Ready", "observedGeneration": 2}, 2)
    assert not is_ready({"phase": "Ready", "observedGeneration": 1}, 2)
    assert not is_ready({"phase": "Progressing", "observedGeneration": 2}, 2)


def test_a_ready_resource_is_due_after_the_ready_interval_others_after_the_short_one() -> None:
    schedule = ReconcileSchedule(Names("t"), SETTINGS)
    ready, busy = Txn(), Txn()
    schedule.schedule(ready, "nodepool", "n1", ready=True, now=1000.0)
    schedule.schedule(busy, "cluster", "c1", ready=False, now=1000.0)
    assert ready.ops == [{"o": "zadd", "k": 1, "s": "1300.0", "m": "nodepool:n1"}]
    assert busy.ops == [{"o": "zadd", "k": 1, "s": "1030.0", "m": "cluster:c1"}]
    assert ready.keys == busy.keys == [Names("t").reconcile_due]


def test_the_next_due_time_is_written_only_if_still_due() -> None:
    txn = Txn()
    ReconcileSchedule(Names("t"), SETTINGS).next_if_still_due(
        txn, member("nodepool", "n1"), ready=False, now=50.0, fail="RESCHEDULED"
    )
    assert txn.checks == [
        {"c": "zscore_le", "k": 1, "m": "nodepool:n1", "v": "50.0", "fail": "RESCHEDULED"}
    ]
    assert txn.ops == [{"o": "zadd", "k": 1, "s": "80.0", "m": "nodepool:n1"}]
