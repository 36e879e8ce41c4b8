"""The pure rules of the simulation, table by table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler_stub.simulation import (
    MAX_STEPS,
    chance,
    desired_nodes,
    format_age,
    node_ages,
    region_from_zones,
    resize_nodes,
    step_plan,
)
from shared_models.specs import Platform

from .conftest import nodepool_spec

NOW = datetime(2025, 10, 17, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("node_count", "autoscaling", "expected"),
    [
        (3, None, 3),
        (0, None, 0),
        (3, {"enabled": True, "minNodes": 2, "maxNodes": 10}, 3),
        (2, {"enabled": True, "minNodes": 2, "maxNodes": 10}, 2),
        (10, {"enabled": True, "minNodes": 2, "maxNodes": 10}, 10),
        # Disabled autoscaling bounds do not apply (and need not hold).
        (50, {"enabled": False, "minNodes": 2, "maxNodes": 10}, 50),
    ],
)
def test_desired_nodes_is_node_count_within_autoscaling_bounds(
    node_count: int, autoscaling: dict[str, Any] | None, expected: int
) -> None:
    assert desired_nodes(nodepool_spec(node_count, autoscaling=autoscaling)) == expected


@pytest.mark.parametrize(
    ("platform", "zones", "cluster_region", "expected"),
    [
        ("gcp", ["us-central1-a", "us-central1-b"], None, "us-central1"),
        ("gcp", ["europe-west4-c"], "us-central1", "europe-west4"),
        ("aws", ["us-west-2a", "us-west-2b"], None, "us-west-2"),
        ("aws", ["us-gov-west-1a"], None, "us-gov-west-1"),
        ("azure", ["1", "2"], "westeurope", "westeurope"),
        ("azure", ["1"], None, "unknown"),
        ("gcp", [], "us-east1", "us-east1"),
        ("aws", [], None, "unknown"),
        ("gcp", ["not-a-zone"], None, "unknown"),
    ],
)
def test_region_from_zones(
    platform: Platform, zones: list[str], cluster_region: str | None, expected: str
) -> None:
    assert region_from_zones(platform, zones, cluster_region) == expected


@pytest.mark.parametrize(
    ("active", "desired", "expected"),
    [
        (0, 3, [1, 2, 3]),
        (3, 6, [4, 5, 6]),
        (6, 3, [5, 4, 3]),
        (3, 3, [3]),
        (0, 0, [0]),
        (2, 0, [1, 0]),
        (0, 25, [3, 6, 9, 12, 15, 18, 21, 24, 25]),
        (1000, 0, [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]),
    ],
)
def test_step_plan_walks_from_active_to_desired(
    active: int, desired: int, expected: list[int]
) -> None:
    assert step_plan(active, desired) == expected


@pytest.mark.parametrize(("active", "desired"), [(0, 1000), (1000, 1), (7, 993), (5, 6)])
def test_step_plan_never_exceeds_max_steps(active: int, desired: int) -> None:
    plan = step_plan(active, desired)
    assert 1 <= len(plan) <= MAX_STEPS
    assert plan[-1] == desired


def test_step_plan_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        step_plan(-1, 3)


def test_resize_nodes_adds_new_nodes_born_now() -> None:
    old = NOW - timedelta(hours=1)
    assert resize_nodes((old,), 3, NOW) == (old, NOW, NOW)


def test_resize_nodes_removes_the_newest_first() -> None:
    births = (NOW - timedelta(hours=3), NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    assert resize_nodes(births, 1, NOW) == (births[0],)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (45, "45s"),
        (59.9, "59s"),
        (60, "1m"),
        (30 * 60 + 59, "30m"),
        (3600, "1h"),
        (2 * 3600 + 30 * 60, "2h30m"),
        (86_400, "1d"),
        (3 * 86_400 + 4 * 3600 + 5 * 60, "3d4h"),
        (-5, "0s"),
    ],
)
def test_format_age(seconds: float, expected: str) -> None:
    assert format_age(seconds) == expected


def test_node_ages_reads_like_the_user_guide_oldest_first() -> None:
    ages = [timedelta(minutes=m) for m in (30, 150, 45, 105, 75)]
    births = [NOW - age for age in ages]
    assert node_ages(births, NOW) == "2h30m,1h45m,1h15m,45m,30m"


def test_node_ages_of_no_nodes_is_empty() -> None:
    assert node_ages([], NOW) == ""


def test_chance_is_fixed_by_seed_and_parts() -> None:
    assert chance(7, "np", 1, 2) == chance(7, "np", 1, 2)
    assert chance(7, "np", 1, 2) != chance(8, "np", 1, 2)
    assert chance(7, "np", 1, 2) != chance(7, "np", 1, 3)


def test_chance_is_spread_over_the_unit_interval() -> None:
    draws = [chance(1, i) for i in range(2000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert 0.45 < sum(d < 0.5 for d in draws) / len(draws) < 0.55
