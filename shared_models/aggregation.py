"""Status aggregation: one verdict over every controller's latest report on a resource.

The function is pure (no I/O, no clock: the caller passes ``now``) so that the ingester can
recompute it on every report and get the same answer every time, and so that tests can pin every
timestamp. See DESIGN.md, "Status aggregation".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared_models.status import (
    AggregateCondition,
    AggregatedStatus,
    ConditionStatus,
    ControllerReport,
    Health,
    Phase,
)

__all__ = ["MAX_MESSAGE_LENGTH", "aggregate"]

MAX_MESSAGE_LENGTH = 1024
# Each failing controller's detail is capped well below the message limit so that one verbose
# error cannot push the names of the other failing controllers out of the message.
_MAX_DETAIL_LENGTH = 200
_ELLIPSIS = "…"

_READY_TYPES = ("Ready", "Available")
_ERROR_TYPES = ("Failed", "Degraded")


@dataclass(frozen=True)
class _Verdict:
    phase: Phase
    health: Health
    reason: str
    message: str


def aggregate(
    generation: int,
    reports: Sequence[ControllerReport],
    previous: AggregatedStatus | None,
    now: datetime,
) -> AggregatedStatus:
    """Compute a resource's ``status`` from the latest report of each controller.

    Only reports at ``generation`` decide phase and health; reports of any generation decide
    ``Available``. Timestamps move only when something changed, so recomputing the same
    aggregate returns an object equal to ``previous``.
    """
    controllers = [_Controller.of(report) for report in reports]
    verdict = _verdict(generation, controllers)
    conditions = [
        _condition(
            "Ready",
            _status(verdict.phase is Phase.READY),
            verdict.reason,
            verdict.message,
            previous,
            now,
        ),
        _available_condition(controllers, previous, now),
    ]
    candidate = AggregatedStatus(
        observedGeneration=_observed_generation(generation, reports),
        phase=verdict.phase,
        health=verdict.health,
        reason=verdict.reason,
        message=verdict.message,
        # Provisionally keep the previous time: if the result then equals ``previous``, nothing
        # changed and the time must not move.
        lastUpdateTime=previous.lastUpdateTime if previous is not None else now,
        conditions=conditions,
    )
    if previous is None or candidate == previous:
        return candidate
    return candidate.model_copy(update={"lastUpdateTime": now})


# ---- per-controller predicates ----------------------------------------------------------------


@dataclass(frozen=True)
class _Controller:
    """A report and what it says, worked out once per aggregation."""

    report: ControllerReport
    ready: bool
    in_error: bool

    @classmethod
    def of(cls, report: ControllerReport) -> _Controller:
        true = _true_types(report)
        return cls(
            report,
            ready=not true.isdisjoint(_READY_TYPES),
            in_error=bool(report.last_error) or not true.isdisjoint(_ERROR_TYPES),
        )


def _true_types(report: ControllerReport) -> set[str]:
    """The condition types that are True, as ``report.is_true`` reads them: the first condition
    of a type decides."""
    seen: set[str] = set()
    true: set[str] = set()
    for condition in report.conditions:
        if condition.type not in seen:
            seen.add(condition.type)
            if condition.status == "True":
                true.add(condition.type)
    return true


def _by_name(controllers: Sequence[_Controller]) -> list[_Controller]:
    return sorted(controllers, key=lambda c: c.report.controller_name)


# ---- phase, health, reason and message --------------------------------------------------------


def _verdict(generation: int, controllers: Sequence[_Controller]) -> _Verdict:
    current = _by_name([c for c in controllers if c.report.observed_generation == generation])
    if not current:
        return _waiting_verdict(generation, [c.report for c in controllers])
    ready = [c.report for c in current if c.ready]
    failing = [c.report for c in current if c.in_error]
    summary = f"{len(ready)} of {_controllers(len(current))} ready at generation {generation}"
    if len(ready) == len(current) and not failing:
        return _Verdict(Phase.READY, Health.HEALTHY, "AllControllersReady", summary)
    if ready and failing:
        message = _with_failures(summary, failing)
        return _Verdict(Phase.PROGRESSING, Health.DEGRADED, "ControllersWithErrors", message)
    if ready:
        return _Verdict(Phase.PROGRESSING, Health.UNKNOWN, "PartialProgress", summary)
    if failing:
        message = _with_failures(summary, failing)
        return _Verdict(Phase.FAILED, Health.UNHEALTHY, "ControllersFailed", message)
    return _Verdict(Phase.PROGRESSING, Health.UNKNOWN, "ControllersProgressing", summary)


def _waiting_verdict(generation: int, reports: Sequence[ControllerReport]) -> _Verdict:
    """No controller has reported on ``generation`` yet."""
    if not reports:
        message = f"No controller has reported yet (generation {generation})"
        return _Verdict(Phase.PENDING, Health.UNKNOWN, "NoControllers", message)
    latest = max(r.observed_generation for r in reports)
    message = (
        f"Waiting for controllers to report generation {generation}; "
        f"latest observed generation is {latest}"
    )
    return _Verdict(Phase.PROGRESSING, Health.UNKNOWN, "NewGenerationPending", message)


def _with_failures(summary: str, failing: Sequence[ControllerReport]) -> str:
    details = "; ".join(f"{r.controller_name}: {_failure_detail(r)}" for r in failing)
    return _truncate(f"{summary}; failing: {details}", MAX_MESSAGE_LENGTH)


def _failure_detail(report: ControllerReport) -> str:
    """Why a controller is in error: its ``last_error``, else what its failing condition says."""
    if report.last_error:
        return _truncate(_one_line(report.last_error) or "error", _MAX_DETAIL_LENGTH)
    for type_ in _ERROR_TYPES:
        condition = report.condition(type_)
        if condition is not None and condition.status == "True":
            detail = _one_line(condition.message) or _one_line(condition.reason) or type_
            return _truncate(detail, _MAX_DETAIL_LENGTH)
    return "error"  # unreachable for a report that _is_in_error; keeps the type total


# ---- conditions -------------------------------------------------------------------------------


def _available_condition(
    controllers: Sequence[_Controller], previous: AggregatedStatus | None, now: datetime
) -> AggregateCondition:
    # Any generation counts: nodes of an older generation keep serving while a change rolls out.
    serving = sum(1 for c in controllers if c.ready and not c.in_error)
    if serving:
        message = f"{_controllers(serving)} ready without errors"
        return _condition("Available", "True", "ControllersAvailable", message, previous, now)
    message = "No controller is ready without errors"
    return _condition("Available", "False", "NoneAvailable", message, previous, now)


def _condition(
    type_: Literal["Ready", "Available"],
    status: ConditionStatus,
    reason: str,
    message: str,
    previous: AggregatedStatus | None,
    now: datetime,
) -> AggregateCondition:
    before = _previous_condition(previous, type_)
    # The transition time records when the status last flipped, not when the text last changed.
    since = before.lastTransitionTime if before is not None and before.status == status else now
    return AggregateCondition(
        type=type_, status=status, lastTransitionTime=since, reason=reason, message=message
    )


def _previous_condition(previous: AggregatedStatus | None, type_: str) -> AggregateCondition | None:
    if previous is None:
        return None
    return next((c for c in previous.conditions if c.type == type_), None)


# ---- small helpers ----------------------------------------------------------------------------


def _observed_generation(generation: int, reports: Sequence[ControllerReport]) -> int:
    if any(r.observed_generation == generation for r in reports):
        return generation
    return max((r.observed_generation for r in reports), default=0)


def _status(value: bool) -> ConditionStatus:
    return "True" if value else "False"


def _controllers(count: int) -> str:
    return f"{count} controller" if count == 1 else f"{count} controllers"


def _one_line(text: str) -> str:
    # Errors are often multi-line tracebacks; a status message is read on one line.
    return " ".join(text.split())


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS
