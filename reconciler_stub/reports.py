"""A step of a run as a status report: the seed's PUT status body plus the resource id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler_stub.plans import Step, Target
from reconciler_stub.simulation import node_ages
from shared_models.status import (
    ClusterStatusReport,
    Condition,
    ControllerError,
    NodePoolStatusReport,
)

Report = NodePoolStatusReport | ClusterStatusReport


@dataclass(frozen=True)
class Observation:
    """Everything a report says besides the step: who, about what, and the clock."""

    controller_name: str
    resource_id: str
    generation: int
    births: Sequence[datetime]  # creation time of each running node (nodepools)
    ready_since: datetime  # when this controller's Ready condition last flipped
    now: datetime
    deleted_since: datetime | None = None  # when its Deleted condition last flipped


def build_report(step: Step, target: Target, seen: Observation) -> Report:
    conditions = [
        Condition(
            type="Ready",
            status="True" if step.ready else "False",
            lastTransitionTime=seen.ready_since,
            reason=step.reason,
            message=step.message,
        )
    ]
    if step.degraded is not None:
        conditions.append(
            Condition(
                type="Degraded",
                status="True",
                # It appears with the nodes, so it flipped when Ready did.
                lastTransitionTime=seen.ready_since,
                reason="NodesUnhealthy",
                message=step.degraded,
            )
        )
    if step.deleted is not None:
        conditions.append(
            Condition(
                type="Deleted",
                status="True" if step.deleted else "False",
                lastTransitionTime=seen.deleted_since or seen.now,
                reason=step.reason,
                message=step.message,
            )
        )
    common: dict[str, Any] = {
        "controller_name": seen.controller_name,
        "observed_generation": seen.generation,
        "conditions": conditions,
        "metadata": _metadata(step, target, seen),
        "last_error": _last_error(step, seen),
    }
    if target.kind == "nodepool":
        return NodePoolStatusReport(nodepool_id=seen.resource_id, **common)
    return ClusterStatusReport(cluster_id=seen.resource_id, **common)


def _last_error(step: Step, seen: Observation) -> str | ControllerError | None:
    kind = step.error_kind
    if step.error is None or kind is None:
        return step.error
    # No timestamp: a step reported again (on reconcile) must be the same report, a no-op.
    return ControllerError(
        controllerName=seen.controller_name,
        errorType=kind.error_type,
        errorCode=kind.code,
        message=step.error,
        userActionable=kind.user_actionable,
        suggestions=list(kind.suggestions),
        details=kind.details,
        retryAfter=kind.retry_after,
    )


def _metadata(step: Step, target: Target, seen: Observation) -> dict[str, Any]:
    metadata: dict[str, Any] = {"platform": target.platform, "region": target.region}
    if target.kind == "nodepool":
        metadata.update(
            active_nodes=step.active,
            desired_nodes=target.desired,
            node_ages=node_ages(seen.births, seen.now),
        )
    elif target.version is not None:
        metadata["version"] = target.version
    return metadata
