"""What a run reports, for each kind of event and fault (pure: no broker)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler_stub.faults import FAULT_LABEL, Fault, fault_from_labels, label_problem
from reconciler_stub.plans import (
    Target,
    cluster_target,
    converged,
    deleting,
    deletion_plan,
    deletion_target,
    nodepool_target,
    nodes_at_deletion,
    plan,
    transient_failure,
)

from .conftest import cluster_event, cluster_spec, new_id, nodepool_event, nodepool_spec


def target(desired: int = 3, fault: Fault = Fault.NONE) -> Target:
    return Target(
        kind="nodepool", platform="gcp", region="us-central1", desired=desired, fault=fault
    )


def summary(steps: list[Any]) -> list[tuple[int, bool, str]]:
    return [(s.active, s.ready, s.reason) for s in steps]


def test_first_run_provisions_from_zero_then_nodes_ready() -> None:
    assert summary(plan(target(3), None, adopt=False)) == [
        (0, False, "Provisioning"),
        (1, False, "Provisioning"),
        (2, False, "Provisioning"),
        (3, True, "NodesReady"),
    ]


def test_scale_up_starts_from_the_active_count() -> None:
    assert summary(plan(target(6), 3, adopt=False)) == [
        (3, False, "Scaling"),
        (4, False, "Scaling"),
        (5, False, "Scaling"),
        (6, True, "NodesReady"),
    ]


def test_scale_down_steps_down() -> None:
    assert [s.active for s in plan(target(1), 3, adopt=False)] == [3, 2, 1]


def test_change_keeping_the_count_rolls_out_in_one_step() -> None:
    assert summary(plan(target(3), 3, adopt=False)) == [
        (3, False, "Updating"),
        (3, True, "NodesReady"),
    ]


def test_ready_message_counts_the_nodes() -> None:
    assert plan(target(5), None, adopt=False)[-1].message == "All 5 nodes are ready"


def test_quota_fault_fails_after_one_provisioning_step() -> None:
    steps = plan(target(3, Fault.QUOTA_EXCEEDED), None, adopt=False)
    assert summary(steps) == [(0, False, "Provisioning"), (0, False, "QuotaExceeded")]
    assert steps[0].error is None
    assert steps[-1].error is not None and "Quota exceeded" in steps[-1].error
    kind = steps[-1].error_kind
    assert kind is not None and (kind.error_type, kind.code) == ("Configuration", "QUOTA_EXCEEDED")
    assert kind.user_actionable and kind.suggestions


def test_no_response_fault_reports_nothing() -> None:
    assert plan(target(3, Fault.NO_RESPONSE), None, adopt=False) == []
    assert plan(target(3, Fault.NO_RESPONSE), None, adopt=True) == []


def test_degraded_fault_ends_ready_and_degraded() -> None:
    last = plan(target(3, Fault.DEGRADED), None, adopt=False)[-1]
    assert last.ready and last.degraded is not None


def test_adopting_a_converged_resource_reports_ready_at_once() -> None:
    assert summary(plan(target(4), None, adopt=True)) == [(4, True, "NodesReady")]


def test_adoption_only_applies_to_resources_the_controller_does_not_know() -> None:
    assert summary(plan(target(4), 2, adopt=True))[0] == (2, False, "Scaling")


def test_cluster_provisions_then_is_ready() -> None:
    cluster = Target(kind="cluster", platform="aws", region="us-west-2")
    assert [(s.ready, s.reason) for s in plan(cluster, None, adopt=False)] == [
        (False, "Provisioning"),
        (True, "ClusterReady"),
    ]


def test_transient_failure_is_an_error_that_keeps_the_node_count() -> None:
    step = transient_failure(active=2, attempt=0)
    assert (step.active, step.ready, step.reason) == (2, False, "TransientError")
    assert step.error


def test_nodepool_target_reads_desired_region_and_fault() -> None:
    spec = nodepool_spec(
        12,
        labels={FAULT_LABEL: "quota-exceeded", "team": "platform"},
        autoscaling={"enabled": True, "minNodes": 2, "maxNodes": 12},
    )
    found = nodepool_target(nodepool_event("nodepool.created", new_id(), 1, spec), None)
    assert found == Target("nodepool", "gcp", "us-central1", 12, Fault.QUOTA_EXCEEDED)


def test_azure_nodepool_target_takes_the_cluster_location() -> None:
    event = nodepool_event("nodepool.created", new_id(), 1, nodepool_spec(platform="azure"))
    assert nodepool_target(event, "westeurope").region == "westeurope"
    assert nodepool_target(event, None).region == "unknown"


def test_cluster_target_reads_platform_region() -> None:
    event = cluster_event("cluster.created", new_id(), 1, cluster_spec("azure"))
    assert cluster_target(event) == Target("cluster", "azure", "westeurope")


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        ({"phase": "Ready", "observedGeneration": 2}, 2, True),
        ({"phase": "Ready", "observedGeneration": 1}, 2, False),
        ({"phase": "Progressing", "observedGeneration": 2}, 2, False),
        (None, 1, False),
    ],
)
def test_converged(status: dict[str, Any] | None, generation: int, expected: bool) -> None:
    assert converged({"status": status}, generation) is expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, Fault.NONE),
        ({"team": "platform"}, Fault.NONE),
        ({FAULT_LABEL: "quota-exceeded"}, Fault.QUOTA_EXCEEDED),
        ({FAULT_LABEL: "no-response"}, Fault.NO_RESPONSE),
        ({FAULT_LABEL: "degraded"}, Fault.DEGRADED),
        ({FAULT_LABEL: "deletion-fails"}, Fault.DELETION_FAILS),
        ({FAULT_LABEL: "typo"}, Fault.NONE),
    ],
)
def test_fault_from_labels(labels: dict[str, str], expected: Fault) -> None:
    assert fault_from_labels(labels) is expected


def test_unknown_fault_value_is_explained() -> None:
    problem = label_problem({FAULT_LABEL: "typo"})
    assert problem is not None and "quota-exceeded" in problem
    assert label_problem({FAULT_LABEL: "degraded"}) is None
    assert label_problem({}) is None


# ---- deletion --------------------------------------------------------------------------------


def deletion_summary(steps: list[Any]) -> list[tuple[int, str, bool | None]]:
    return [(s.active, s.reason, s.deleted) for s in steps]


def test_deletion_drains_the_nodes_then_confirms() -> None:
    assert deletion_summary(deletion_plan(target(0), 3)) == [
        (3, "Deleting", None),
        (2, "Deleting", None),
        (1, "Deleting", None),
        (0, "Deleted", True),
    ]


def test_deletion_of_many_nodes_takes_at_most_max_steps() -> None:
    steps = deletion_plan(target(0), 1000)
    assert len(steps) == 11 and steps[-1].deleted is True


def test_deletion_without_nodes_still_takes_a_step() -> None:
    assert deletion_summary(deletion_plan(target(0), 0)) == [
        (0, "Deleting", None),
        (0, "Deleted", True),
    ]


def test_deletion_never_reports_ready() -> None:
    assert not any(s.ready for s in deletion_plan(target(0), 3))


def test_deletion_fails_fault_fails_the_deletion_with_an_error() -> None:
    steps = deletion_plan(target(0, Fault.DELETION_FAILS), 3)
    assert deletion_summary(steps) == [(3, "Deleting", None), (3, "DeletionFailed", False)]
    failed = steps[-1]
    assert failed.error is not None and "instance group deletion failed" in failed.error
    kind = failed.error_kind
    assert kind is not None and (kind.error_type, kind.code) == ("Fatal", "DELETION_FAILED")


def test_deletion_fails_fault_leaves_creation_alone() -> None:
    assert plan(target(3, Fault.DELETION_FAILS), None, adopt=False)[-1].reason == "NodesReady"


def test_no_response_fault_never_confirms_a_deletion() -> None:
    assert deletion_plan(target(0, Fault.NO_RESPONSE), 3) == []


def test_cluster_deletion_deletes_the_control_plane_then_confirms() -> None:
    cluster = Target(kind="cluster", platform="aws", region="us-west-2")
    assert deletion_summary(deletion_plan(cluster, 0)) == [
        (0, "Deleting", None),
        (0, "Deleted", True),
    ]


def test_deletion_target_reads_the_event_and_wants_no_node() -> None:
    spec = nodepool_spec(5, labels={FAULT_LABEL: "deletion-fails"})
    event = nodepool_event("nodepool.deleted", new_id(), 2, spec)
    found = deletion_target(event, "nodepool", None, None)
    assert found == Target("nodepool", "gcp", "us-central1", 0, Fault.DELETION_FAILS)
    assert nodes_at_deletion(event) == 5


def test_deletion_target_without_a_spec_falls_back() -> None:
    event = nodepool_event("nodepool.deleted", new_id(), 2, nodepool_spec(5))
    bare = event.model_copy(update={"resource": {}})
    known = Target("nodepool", "gcp", "europe-west1", 5, Fault.NO_RESPONSE)
    assert deletion_target(bare, "nodepool", None, known) == Target(
        "nodepool", "gcp", "europe-west1", 0, Fault.NO_RESPONSE
    )
    assert deletion_target(bare, "nodepool", None, None) == Target("nodepool", "gcp", "unknown")
    assert nodes_at_deletion(bare) == 0


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"status": {"phase": "Deleting"}}, True),
        ({"deletion_timestamp": "2026-12-03T20:00:00Z", "status": {"phase": "Ready"}}, True),
        ({"deletion_timestamp": None, "status": {"phase": "Ready"}}, False),
        ({"status": None}, False),
        ({}, False),
    ],
)
def test_deleting(resource: dict[str, Any], expected: bool) -> None:
    assert deleting(resource) is expected
