"""What a simulated controller reports while it works on one generation of a resource.

An event becomes a :class:`Target` (what the resource asks for), and a target becomes a plan:
the list of :class:`Step` the controller reports, the first one at once, each of the others one
delay later. Pure functions, so that every plan is tested without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from reconciler_stub.faults import FAULT_LABEL, Fault, fault_from_labels
from reconciler_stub.simulation import (
    UNKNOWN_REGION,
    desired_nodes,
    region_from_zones,
    step_plan,
)
from shared_models.events import Event
from shared_models.names import Kind
from shared_models.specs import ClusterSpec, NodePoolSpec, Platform
from shared_models.status import ErrorType


@dataclass(frozen=True)
class Target:
    """What one generation of a resource asks its controller for."""

    kind: Kind
    platform: Platform
    region: str
    desired: int = 0  # nodes (nodepools only)
    fault: Fault = Fault.NONE
    version: str | None = None  # the cluster's release version, when it names one


@dataclass(frozen=True)
class ErrorKind:
    """What makes a step's error the structured ``last_error`` object (see ControllerError)."""

    error_type: ErrorType
    code: str
    user_actionable: bool = False
    suggestions: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    retry_after: str | None = None  # a duration such as "30s"


@dataclass(frozen=True)
class Step:
    """One report of a run: the state the controller has reached and how it reads."""

    active: int
    ready: bool
    reason: str
    message: str
    # Becomes last_error (the resource is failing): with ``error_kind``, the object form, with
    # ``error`` as its message; without, the plain string.
    error: str | None = None
    error_kind: ErrorKind | None = None
    degraded: str | None = None  # becomes a Degraded=True condition with this message
    # A step of a deletion: True confirms it (a Deleted=True condition), False fails it (a
    # Deleted=False condition beside last_error); None, no Deleted condition (progress).
    deleted: bool | None = None


def nodepool_target(event: Event, cluster_region: str | None) -> Target:
    spec = NodePoolSpec.model_validate(event.resource["spec"])
    platform = spec.platform
    return Target(
        kind="nodepool",
        platform=platform.type,
        region=region_from_zones(platform.type, platform.zones, cluster_region),
        desired=desired_nodes(event.resource["spec"]),
        fault=fault_from_labels(platform.labels),
    )


def nodepool_labels(event: Event) -> dict[str, str]:
    return NodePoolSpec.model_validate(event.resource["spec"]).platform.labels


def cluster_target(event: Event) -> Target:
    spec = ClusterSpec.model_validate(event.resource["spec"])
    version = spec.release.version if spec.release is not None else None
    return Target(
        kind="cluster", platform=spec.platform.type, region=spec.platform.region, version=version
    )


def deletion_target(
    event: Event, kind: Kind, cluster_region: str | None, known: Target | None
) -> Target:
    """What a deletion works on: the resource as the event shows it (its platform, region and
    fault label), with no node wanted. The controller may never have seen the resource (created
    and deleted while it was down), and the event may carry no usable spec: then what the
    controller knew of it (``known``), else only the event's platform."""
    try:
        if kind == "cluster":
            current = cluster_target(event)
        else:
            current = nodepool_target(event, cluster_region)
    except (KeyError, TypeError, ValidationError):
        current = known or Target(kind=kind, platform=event.platform, region=UNKNOWN_REGION)
    return replace(current, desired=0)


def nodes_at_deletion(event: Event) -> int:
    """The nodes a controller that never saw a nodepool assumes it has to delete: as many as
    its spec asks for (0 when the event carries no usable spec)."""
    try:
        return desired_nodes(event.resource["spec"])
    except (KeyError, TypeError, ValidationError):
        return 0


def deleting(resource: dict[str, Any]) -> bool:
    """Whether the API shows the resource being deleted (a deletion it has not purged yet)."""
    if resource.get("deletion_timestamp") is not None:
        return True
    status = resource.get("status")
    return isinstance(status, dict) and status.get("phase") == "Deleting"


def converged(resource: dict[str, Any], generation: int) -> bool:
    """Whether the resource's own status already says Ready at ``generation``.

    A controller that restarted has forgotten what it built; when a reconcile event shows the
    resource Ready at the generation it asks about, the infrastructure is there to adopt, and
    starting over from zero nodes would wrongly take a working pool back to Progressing.
    """
    status = resource.get("status")
    if not isinstance(status, dict):
        return False
    return status.get("phase") == "Ready" and status.get("observedGeneration") == generation


def plan(target: Target, active: int | None, adopt: bool) -> list[Step]:
    """The steps of a run towards ``target``.

    ``active`` is the node count the controller knows of, None when it does not know the
    resource (first event, or restarted since). ``adopt``: the event shows the resource already
    Ready at its generation (see :func:`converged`), so there is nothing to build, only to report.
    """
    if target.fault is Fault.NO_RESPONSE:
        return []
    if adopt and active is None:
        return [cluster_ready(target) if target.kind == "cluster" else nodes_ready(target)]
    if target.kind == "cluster":
        return cluster_plan(target)
    return nodepool_plan(target, active or 0, first_run=active is None)


def nodepool_plan(target: Target, active: int, first_run: bool) -> list[Step]:
    """The steps from ``active`` nodes to the target; empty when the controller must stay mute."""
    if target.fault is Fault.NO_RESPONSE:
        return []
    reason = _reason(active, target.desired, first_run)
    first = Step(active, False, reason, _progress(reason, active, active, target.desired))
    if target.fault is Fault.QUOTA_EXCEEDED:
        return [first, _quota_exceeded(active, target)]
    counts = step_plan(active, target.desired)
    steps = [Step(n, False, reason, _progress(reason, active, n, target.desired)) for n in counts]
    return [first, *steps[:-1], nodes_ready(target)]


def nodes_ready(target: Target) -> Step:
    """The last step of a successful run (also what an adopted, converged pool reports)."""
    degraded = None
    if target.fault is Fault.DEGRADED:
        degraded = (
            f"1 of {target.desired} nodes is not reporting health "
            f"(simulated by {FAULT_LABEL}={Fault.DEGRADED.value})"
        )
    message = f"All {target.desired} nodes are ready"
    return Step(target.desired, True, "NodesReady", message, degraded=degraded)


def cluster_plan(target: Target) -> list[Step]:
    where = f"{target.platform} {target.region}"
    return [
        Step(0, False, "Provisioning", f"Provisioning the control plane in {where}"),
        cluster_ready(target),
    ]


def cluster_ready(target: Target) -> Step:
    return Step(0, True, "ClusterReady", f"Control plane is running in {target.region}")


def deletion_plan(target: Target, active: int) -> list[Step]:
    """The steps of a deletion from ``active`` nodes: drain and delete them (the usual steps,
    at most MAX_STEPS), then confirm; empty when the controller must stay mute."""
    if target.fault is Fault.NO_RESPONSE:
        return []
    if target.kind == "cluster":
        where = f"{target.platform} {target.region}"
        first = Step(0, False, "Deleting", f"Deleting the control plane in {where}")
        return [first, deleted(target)]
    draining = f"Draining {active} nodes" if active else "Deleting the instance group"
    first = Step(active, False, "Deleting", draining)
    if target.fault is Fault.DELETION_FAILS:
        return [first, _deletion_failed(active, target)]
    counts = step_plan(active, 0)
    steps = [Step(n, False, "Deleting", f"Deleting nodes: {n} of {active} left") for n in counts]
    return [first, *steps[:-1], deleted(target)]


def deleted(target: Target) -> Step:
    """The last step of a deletion: the confirmation the API waits for to purge the record."""
    what = "control plane" if target.kind == "cluster" else "nodes and instance group"
    return Step(0, False, "Deleted", f"All {what} deleted", deleted=True)


def transient_failure(active: int, attempt: int, retry_in_ms: int | None = None) -> Step:
    """What a random (``CLS_STUB_FAILURE_RATE``) failure of a step reports; the step is retried
    (in ``retry_in_ms``, when given)."""
    error = f"simulated transient failure (attempt {attempt + 1}, CLS_STUB_FAILURE_RATE); retrying"
    kind = ErrorKind(
        "Transient",
        "SIMULATED_TRANSIENT_FAILURE",
        details={"attempt": attempt + 1},
        retry_after=None if retry_in_ms is None else f"{retry_in_ms}ms",
    )
    return Step(active, False, "TransientError", "Retrying after a transient error", error, kind)


def _reason(active: int, desired: int, first_run: bool) -> str:
    if first_run:
        return "Provisioning"
    return "Scaling" if active != desired else "Updating"


def _progress(reason: str, start: int, active: int, desired: int) -> str:
    if reason == "Provisioning":
        return f"Provisioning nodes: {active} of {desired} ready"
    if reason == "Scaling":
        return f"Scaling from {start} to {desired} nodes: {active} active"
    return f"Rolling out the new configuration to {desired} nodes"


def _quota_exceeded(active: int, target: Target) -> Step:
    error = (
        f"Quota exceeded in region {target.region}: cannot provision {target.desired} nodes "
        f"(simulated by {FAULT_LABEL}={Fault.QUOTA_EXCEEDED.value})"
    )
    # What a real controller would say: the user can act, and how.
    kind = ErrorKind(
        "Configuration",
        "QUOTA_EXCEEDED",
        user_actionable=True,
        suggestions=(
            f"Request a higher quota for region {target.region}",
            "Lower nodeCount (or autoscaling.maxNodes)",
            f"Remove the label {FAULT_LABEL} (this failure is simulated)",
        ),
        details={"region": target.region, "requestedNodes": target.desired},
    )
    return Step(active, False, "QuotaExceeded", "Node provisioning failed", error, kind)


def _deletion_failed(active: int, target: Target) -> Step:
    error = (
        "simulated cloud error: instance group deletion failed "
        f"(simulated by {FAULT_LABEL}={Fault.DELETION_FAILS.value})"
    )
    kind = ErrorKind(
        "Fatal",
        "DELETION_FAILED",
        suggestions=(
            "Delete the instance group by hand, then force the deletion (?force=true, a reason)",
        ),
        details={"region": target.region, "remainingNodes": active},
    )
    return Step(active, False, "DeletionFailed", "Deletion failed", error, kind, deleted=False)
