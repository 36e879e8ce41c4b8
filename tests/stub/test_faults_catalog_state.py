"""Random failures, controller selection, and what a controller remembers of deletions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler_stub.catalog import ALL_CONTROLLERS, select_controllers
from reconciler_stub.faults import TransientFailures
from reconciler_stub.state import Tombstones

T0 = datetime(2025, 10, 17, 10, 0, tzinfo=UTC)


def test_no_failures_at_rate_zero() -> None:
    failures = TransientFailures(rate=0.0, seed=1)
    assert not any(failures.fails("np", 1, step, 0) for step in range(1000))


def test_failures_at_roughly_the_rate() -> None:
    failures = TransientFailures(rate=0.3, seed=1)
    rate = sum(failures.fails(f"np{i}", 1, 1, 0) for i in range(5000)) / 5000
    assert 0.27 < rate < 0.33


def test_failures_are_fixed_by_the_seed() -> None:
    first = [TransientFailures(0.5, 42).fails(f"np{i}", 1, 2, 0) for i in range(200)]
    again = [TransientFailures(0.5, 42).fails(f"np{i}", 1, 2, 0) for i in range(200)]
    other = [TransientFailures(0.5, 43).fails(f"np{i}", 1, 2, 0) for i in range(200)]
    assert first == again
    assert first != other


def test_a_step_fails_at_most_max_in_a_row_times() -> None:
    failures = TransientFailures(rate=1.0, seed=1, max_in_a_row=3)
    assert [failures.fails("np", 1, 1, attempt) for attempt in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_all_six_controllers_by_default() -> None:
    assert [c.name for c in select_controllers("")] == [
        "gcp-nodepool-controller",
        "aws-nodepool-controller",
        "azure-nodepool-controller",
        "gcp-cluster-controller",
        "aws-cluster-controller",
        "azure-cluster-controller",
    ]
    assert select_controllers("  ") == list(ALL_CONTROLLERS)


def test_controllers_named_comma_or_space_separated() -> None:
    chosen = select_controllers(
        "aws-nodepool-controller, gcp-cluster-controller azure-nodepool-controller"
    )
    assert [c.name for c in chosen] == [
        "aws-nodepool-controller",
        "gcp-cluster-controller",
        "azure-nodepool-controller",
    ]


def test_each_controller_binds_only_its_platform_and_kind() -> None:
    keys = {c.name: c.binding_key for c in ALL_CONTROLLERS}
    assert keys["aws-nodepool-controller"] == "nodepool.*.aws"
    assert keys["azure-cluster-controller"] == "cluster.*.azure"


def test_unknown_controller_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="gpc-nodepool-controller"):
        select_controllers("gpc-nodepool-controller")


def test_tombstone_covers_older_generations_sent_before_the_deletion() -> None:
    tombstones = Tombstones()
    tombstones.bury("np", 3, T0)
    assert tombstones.covers("np", 2, T0 - timedelta(seconds=1))
    assert not tombstones.covers("other", 2, T0 - timedelta(seconds=1))


def test_tombstone_does_not_cover_a_resource_created_again_later() -> None:
    tombstones = Tombstones()
    tombstones.bury("cluster", 2, T0)
    assert not tombstones.covers("cluster", 1, T0 + timedelta(seconds=1))


def test_tombstones_forget_the_oldest_beyond_capacity() -> None:
    tombstones = Tombstones(capacity=2)
    for name in ("a", "b", "c"):
        tombstones.bury(name, 2, T0)
    assert not tombstones.covers("a", 1, T0)
    assert tombstones.covers("c", 1, T0)


def test_a_deletion_asked_again_is_confirmed() -> None:
    tombstones = Tombstones()
    tombstones.bury("np", 3, T0)
    assert tombstones.confirmed("np", 3)
    assert not tombstones.covers("np", 3, T0)  # not a late event: a deletion asked again
    assert not tombstones.confirmed("np", 4)
    assert not tombstones.confirmed("other", 3)
