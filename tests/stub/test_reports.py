"""A step as a report: the seed's PUT status body plus the resource id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler_stub.faults import Fault
from reconciler_stub.plans import ErrorKind, Step, Target, transient_failure
from reconciler_stub.reports import Observation, build_report
from shared_models.status import ControllerError

NOW = datetime(2025, 10, 17, 10, 30, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=5)


def seen(births: tuple[datetime, ...] = ()) -> Observation:
    return Observation("gcp-nodepool-controller", "np-1", 2, births, SINCE, NOW)


def test_nodepool_report_has_the_seed_fields() -> None:
    births = (NOW - timedelta(hours=2, minutes=30), NOW - timedelta(minutes=30))
    target = Target("nodepool", "gcp", "us-central1", 2)
    step = Step(2, True, "NodesReady", "All 2 nodes are ready")
    body = build_report(step, target, seen(births)).model_dump(mode="json", exclude_none=True)
    assert body == {
        "nodepool_id": "np-1",
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": "2025-10-17T10:25:00Z",
                "reason": "NodesReady",
                "message": "All 2 nodes are ready",
            }
        ],
        "metadata": {
            "platform": "gcp",
            "region": "us-central1",
            "active_nodes": 2,
            "desired_nodes": 2,
            "node_ages": "2h30m,30m",
        },
    }


def test_failing_step_sets_last_error() -> None:
    target = Target("nodepool", "aws", "us-west-2", 3, Fault.QUOTA_EXCEEDED)
    step = Step(0, False, "QuotaExceeded", "failed", error="Quota exceeded")
    report = build_report(step, target, seen())
    assert report.last_error == "Quota exceeded"
    assert not report.is_true("Ready")


def test_failing_step_with_an_error_kind_sends_the_object() -> None:
    target = Target("nodepool", "aws", "us-west-2", 3, Fault.QUOTA_EXCEEDED)
    kind = ErrorKind("Configuration", "QUOTA_EXCEEDED", True, ("Lower nodeCount",), {"n": 3})
    step = Step(0, False, "QuotaExceeded", "failed", "Quota exceeded", kind)
    report = build_report(step, target, seen())
    assert report.last_error == ControllerError(
        controllerName="gcp-nodepool-controller",
        errorType="Configuration",
        errorCode="QUOTA_EXCEEDED",
        message="Quota exceeded",
        userActionable=True,
        suggestions=["Lower nodeCount"],
        details={"n": 3},
    )


def test_transient_failure_report_carries_its_retry_delay() -> None:
    target = Target("nodepool", "gcp", "us-central1", 3)
    report = build_report(transient_failure(1, 0, retry_in_ms=1500), target, seen())
    assert isinstance(report.last_error, ControllerError)
    assert (report.last_error.errorType, report.last_error.retryAfter) == ("Transient", "2s")


def test_degraded_step_adds_a_degraded_condition() -> None:
    target = Target("nodepool", "gcp", "us-central1", 1, Fault.DEGRADED)
    step = Step(1, True, "NodesReady", "ok", degraded="1 of 1 nodes is not reporting health")
    report = build_report(step, target, seen((NOW,)))
    assert report.is_true("Ready") and report.is_true("Degraded")


def test_cluster_report_names_the_cluster_and_its_region() -> None:
    target = Target("cluster", "azure", "westeurope", version="4.16.2")
    step = Step(0, True, "ClusterReady", "Control plane is running")
    body = build_report(step, target, seen()).model_dump(mode="json", exclude_none=True)
    assert body["cluster_id"] == "np-1" and "nodepool_id" not in body
    assert body["metadata"] == {"platform": "azure", "region": "westeurope", "version": "4.16.2"}


def test_deletion_step_adds_a_deleted_condition() -> None:
    target = Target("nodepool", "gcp", "us-central1", 0)
    step = Step(0, False, "Deleted", "All nodes and instance group deleted", deleted=True)
    observed = Observation("gcp-nodepool-controller", "np-1", 2, (), SINCE, NOW, deleted_since=NOW)
    body = build_report(step, target, observed).model_dump(mode="json", exclude_none=True)
    ready, deleted = body["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "Deleted")
    assert deleted == {
        "type": "Deleted",
        "status": "True",
        "lastTransitionTime": "2025-10-17T10:30:00Z",
        "reason": "Deleted",
        "message": "All nodes and instance group deleted",
    }
    assert body["observed_generation"] == 2 and "last_error" not in body


def test_progress_of_a_deletion_has_no_deleted_condition() -> None:
    target = Target("nodepool", "gcp", "us-central1", 0)
    step = Step(2, False, "Deleting", "Deleting nodes: 2 of 3 left")
    report = build_report(step, target, seen())
    assert [c.type for c in report.conditions] == ["Ready"]
