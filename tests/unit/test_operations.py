"""The rules of operations that need no Redis: what a change is, and what ends it."""

from __future__ import annotations

from typing import cast

from cls_core.services.operations import Running, changes_of, ending, update_type
from shared_models.aggregation import StoredStatus
from shared_models.operations import OperationState, OperationType

POOL = {"platform": {"type": "gcp", "gcp": {"machineType": "n1"}}, "nodeCount": 3}


def status(phase: str, observed: int) -> StoredStatus:
    # Only the fields ``ending`` reads.
    return cast(StoredStatus, {"observedGeneration": observed, "phase": phase})


def test_ready_at_the_operations_generation_ends_it_succeeded() -> None:
    running = Running("op", "scale", 2)
    assert ending(running, status("Ready", 2)) is OperationState.SUCCEEDED


def test_failed_at_the_operations_generation_ends_it_failed() -> None:
    running = Running("op", "update", 2)
    assert ending(running, status("Failed", 2)) is OperationState.FAILED


def test_a_ready_of_an_older_generation_ends_nothing() -> None:
    assert ending(Running("op", "scale", 3), status("Ready", 2)) is None


def test_a_progressing_status_ends_nothing() -> None:
    assert ending(Running("op", "create", 1), status("Progressing", 1)) is None


def test_a_deletion_is_not_ended_by_a_status() -> None:
    assert ending(Running("op", "delete", 4), status("Ready", 4)) is None
    assert ending(Running("op", "force_delete", 4), status("Failed", 4)) is None


def test_a_node_count_change_alone_is_a_scale() -> None:
    assert update_type("nodepool", POOL, {**POOL, "nodeCount": 5}) is OperationType.SCALE


def test_a_node_count_change_with_another_field_is_an_update() -> None:
    other = {"platform": {"type": "gcp", "gcp": {"machineType": "n2"}}, "nodeCount": 5}
    assert update_type("nodepool", POOL, other) is OperationType.UPDATE
    protected = {**POOL, "nodeCount": 5, "deletion_protection": True}
    assert update_type("nodepool", POOL, protected) is OperationType.UPDATE


def test_a_cluster_change_is_an_update() -> None:
    assert update_type("cluster", POOL, {**POOL, "nodeCount": 5}) is OperationType.UPDATE


def test_changes_name_each_leaf_by_its_dotted_path() -> None:
    after = {"platform": {"type": "gcp", "gcp": {"machineType": "n2"}}, "nodeCount": 3}
    assert changes_of(POOL, after, "a", "b") == [
        {"field": "name", "old": "a", "new": "b"},
        {"field": "spec.platform.gcp.machineType", "old": "n1", "new": "n2"},
    ]


def test_a_creates_changes_have_no_old_values() -> None:
    assert changes_of(None, POOL) == [
        {"field": "spec.nodeCount", "old": None, "new": 3},
        {"field": "spec.platform.gcp.machineType", "old": None, "new": "n1"},
        {"field": "spec.platform.type", "old": None, "new": "gcp"},
    ]
