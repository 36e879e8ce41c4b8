"""What a simulated controller reports while it works on one generation of a resource.

An event becomes a :class:`Target` (what the resource asks for), and a target becomes a plan:
the list of :class:`Step` the controller reports, the first one at once, each of the others one
delay later. Pure functions, so that every plan is tested without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler_stub.faults import FAULT_LABEL, Fault, fault_from_labels
from reconciler_stub.simulation import desired_nodes, region_from_zones, step_plan
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
