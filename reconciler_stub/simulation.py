"""The numbers of the simulation, as pure functions: node counts, steps, regions, ages, dice.

Nothing here does I/O or reads a clock, so every rule is table-tested in tests/stub.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared_models.specs import NodePoolSpec, Platform

# A run never takes more than this many steps, however many nodes it adds or removes: a pool
# scaled to 1000 nodes is Ready after MAX_STEPS delays, not a thousand.
MAX_STEPS = 10
UNKNOWN_REGION = "unknown"

_GCP_ZONE = re.compile(r"^(?P<region>[a-z]+-[a-z]+[0-9]+)-[a-z]$")
_AWS_ZONE = re.compile(r"^(?P<region>[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9])[a-z]$")


def desired_nodes(spec: dict[str, Any]) -> int:
    """``nodeCount``, clamped to the autoscaling bounds when autoscaling is enabled.

    The rule lives on the shared spec model, so the API and the controllers agree on it.
    """
    return NodePoolSpec.model_validate(spec).desired_nodes


def region_from_zones(platform: Platform, zones: Sequence[str], cluster_region: str | None) -> str:
    """The region a nodepool runs in.

    GCP zones (``us-central1-a``) and AWS availability zones (``us-west-2a``) name their region;
    Azure zones are bare numbers, so the cluster's location is the only source there. When
    neither says, the answer is ``unknown`` rather than a guess.
    """
    pattern = {"gcp": _GCP_ZONE, "aws": _AWS_ZONE}.get(platform)
    if pattern is not None:
        for zone in zones:
            match = pattern.match(zone)
            if match:
                return match["region"]
    return cluster_region or UNKNOWN_REGION


def step_plan(active: int, desired: int, max_steps: int = MAX_STEPS) -> list[int]:
    """The active node count after each step of a run from ``active`` to ``desired`` nodes.

    Always at least one step (a change that keeps the count, say a new machine type, still takes
    one step to roll out); the last entry is ``desired``.
    """
    if active < 0 or desired < 0 or max_steps < 1:
        raise ValueError("node counts must be >= 0 and max_steps >= 1")
    distance = abs(desired - active)
    if distance == 0:
        return [desired]
    size = math.ceil(distance / max_steps)
    direction = 1 if desired > active else -1
    counts = list(range(active + direction * size, desired, direction * size))
    return [*counts, desired]


def resize_nodes(births: Sequence[datetime], count: int, now: datetime) -> tuple[datetime, ...]:
    """The nodes' creation times after scaling to ``count``: new nodes are born ``now``, and
    scaling down removes the newest nodes first (the oldest have proven themselves)."""
    kept = tuple(births[:count])
    return kept + (now,) * (count - len(kept))


def format_age(seconds: float) -> str:
    """A node's age the way the user guide writes it: ``45s``, ``30m``, ``2h30m``, ``3d4h``."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def node_ages(births: Sequence[datetime], now: datetime) -> str:
    """Comma-separated ages, oldest node first (``2h30m,1h45m,45m``); empty with no nodes."""
    oldest_first = sorted(births)
    return ",".join(format_age((now - born).total_seconds()) for born in oldest_first)


def chance(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``parts``.

    Random failures are drawn from this instead of a shared generator so that, for one seed,
    whether a given step of a given resource fails does not depend on how the runs of other
    resources happened to interleave.
    """
    key = ":".join(str(part) for part in (seed, *parts)).encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
