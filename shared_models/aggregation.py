"""Status aggregation: one verdict over every controller's latest report on a resource.

The function is pure (no I/O, no clock: the caller passes ``now``, and the names of the
controllers the registry requires for the resource's kind and platform) so that the ingester can
recompute it on every report and get the same answer every time, and so that tests can pin every
timestamp. See DESIGN.md, "Status aggregation", and docs/controllers.md.

The rule works on plain data: each report is read once into a ``Controller`` (what it says for
the aggregate), and the aggregate is the JSON document that is stored (``aggregate_json``), so
that applying a report needs no model round trip. ``aggregate`` is the same rule over the models.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict, cast

import orjson
from pydantic import TypeAdapter

from shared_models.status import (
    AggregatedStatus,
    ConditionStatus,
    ControllerError,
    ControllerReport,
    Health,
    Phase,
)

__all__ = [
    "MAX_AGGREGATE_ERRORS",
    "MAX_MESSAGE_LENGTH",
    "Controller",
    "ErrorFact",
    "StoredCondition",
    "StoredError",
    "StoredStatus",
    "aggregate",
    "aggregate_json",
    "aggregate_stored",
    "controller_of",
    "controller_of_json",
    "deletion_confirmed",
    "timestamp",
    "unconfirmed",
]

MAX_MESSAGE_LENGTH = 1024
# Each failing controller's detail is capped well below the message limit so that one verbose
# error cannot push the names of the other failing controllers out of the message.
_MAX_DETAIL_LENGTH = 200
# status.errors lists this many controllers at most (by name): a status document is rewritten
# with every report, so its size must not grow with the number of controllers in error.
MAX_AGGREGATE_ERRORS = 16
_ELLIPSIS = "…"

_READY_TYPES = ("Ready", "Available")
_ERROR_TYPES = ("Failed", "Degraded")
# The condition a controller confirms a deletion with, at the deletion's generation.
_DELETED = "Deleted"

_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)

# A condition as the rule reads it: (type, status, reason, message).
_Condition = tuple[str, str, str, str]


def timestamp(moment: datetime) -> str:
    """``moment`` as the models write it in JSON (so stored and validated documents agree)."""
    text: str = _DATETIME.dump_python(moment, mode="json")
    return text


@dataclass(frozen=True, slots=True)
class _Verdict:
    phase: Phase
    health: Health
    reason: str
    message: str


# ---- per-controller facts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorFact:
    """Why a controller is in error, as ``status.errors`` shows it (an ``AggregateError``)."""

    error_type: str
    code: str
    message: str
    user_actionable: bool
    suggestions: tuple[str, ...]
    retry_after: str | None


class StoredCondition(TypedDict):
    """One of ``status.conditions`` as stored and shown (a ``Condition`` as JSON)."""

    type: Literal["Ready", "Available"]
    status: ConditionStatus
    lastTransitionTime: str
    reason: str
    message: str


class StoredError(TypedDict):
    """One of ``status.errors`` as stored and shown (an ``AggregateError`` as JSON)."""

    controller: str
    errorType: str
    errorCode: str
    message: str
    userActionable: bool
    suggestions: list[str]
    retryAfter: str | None


class StoredStatus(TypedDict):
    """A resource's ``status`` as stored and shown (an ``AggregatedStatus`` as JSON)."""

    observedGeneration: int
    phase: str
    health: str
    reason: str
    message: str
    lastUpdateTime: str
    conditions: list[StoredCondition]
    errors: NotRequired[list[StoredError]]


@dataclass(frozen=True, slots=True)
class Controller:
    """What one controller's latest report says, worked out once per report."""

    name: str
    observed_generation: int
    ready: bool
    in_error: bool
    failure: str  # why it is in error, as the message shows it ("" when it is not)
    error: ErrorFact | None = None  # the same, as status.errors shows it (None when not)
    deleted: bool = False  # its condition Deleted is True (a deletion's confirmation)


# A report's last_error as stored: a string, or a ControllerError as JSON.
_LastError = str | Mapping[str, Any] | None


def controller_of(report: ControllerReport) -> Controller:
    conditions = [(c.type, c.status, c.reason, c.message) for c in report.conditions]
    sent = report.last_error
    # An object is read in its stored form, so that both readings of a report share one rule.
    last_error: _LastError = (
        sent.model_dump(mode="json") if isinstance(sent, ControllerError) else sent
    )
    return _controller(report.controller_name, report.observed_generation, last_error, conditions)


def controller_of_json(report: Mapping[str, Any]) -> Controller:
    """The same, from a report as stored (a ``StoredControllerStatus`` in JSON)."""
    conditions = [
        (c["type"], c["status"], c.get("reason") or "", c.get("message") or "")
        for c in report.get("conditions") or ()
    ]
    return _controller(
        report["controller_name"],
        report["observed_generation"],
        report.get("last_error"),
        conditions,
    )


def _controller(
    name: str, generation: int, last_error: _LastError, conditions: Iterable[_Condition]
) -> Controller:
    first = _first_of_each_type(conditions)
    true = {type_ for type_, condition in first.items() if condition[1] == "True"}
    ready = not true.isdisjoint(_READY_TYPES)
    # An object is always an error (its message is required); an empty string never was one.
    in_error = bool(last_error) or not true.isdisjoint(_ERROR_TYPES)
    deleted = _DELETED in true
    if not in_error:
        return Controller(name, generation, ready, in_error, "", deleted=deleted)
    if isinstance(last_error, Mapping):
        error = _structured_error(last_error)
        failure = _truncate(_one_line(_headline(error)), _MAX_DETAIL_LENGTH)
    else:
        error = _plain_error(last_error, first)
        failure = _failure_detail(last_error, first)
    return Controller(name, generation, ready, in_error, failure, error, deleted=deleted)


def _first_of_each_type(conditions: Iterable[_Condition]) -> dict[str, _Condition]:
    """As ``ControllerReport.condition`` reads a report: the first condition of a type decides."""
    first: dict[str, _Condition] = {}
    for condition in conditions:
        first.setdefault(condition[0], condition)
    return first


def _structured_error(last_error: Mapping[str, Any]) -> ErrorFact:
    """A ``ControllerError`` as stored; ``details`` stay in ``controller_status`` (free-form and
    up to 64 keys: too much for a document rewritten with every report)."""
    return ErrorFact(
        error_type=last_error["errorType"],
        code=last_error.get("errorCode") or "",
        message=_truncate(last_error["message"], MAX_MESSAGE_LENGTH),
        user_actionable=bool(last_error.get("userActionable")),
        suggestions=tuple(last_error.get("suggestions") or ()),
        retry_after=last_error.get("retryAfter"),
    )


def _plain_error(last_error: str | None, first: Mapping[str, _Condition]) -> ErrorFact:
    """A string ``last_error``, or else the failing condition, in the structured shape: its
    type is not known; a condition's reason is the nearest thing to a code."""
    code = ""
    if last_error:
        message = last_error
    else:
        message = "error"  # unreachable for a controller in error; keeps the function total
        for type_ in _ERROR_TYPES:
            condition = first.get(type_)
            if condition is not None and condition[1] == "True":
                _, _, code, text = condition
                message = text or code or type_
                break
    return ErrorFact("Unknown", code, _truncate(message, MAX_MESSAGE_LENGTH), False, (), None)


def _headline(error: ErrorFact) -> str:
    """A structured error in the aggregate's message: "Configuration error QUOTA: text"."""
    code = f" {error.code}" if error.code else ""
    return f"{error.error_type} error{code}: {error.message}"


def _failure_detail(last_error: str | None, first: Mapping[str, _Condition]) -> str:
    """Why a controller is in error: its ``last_error``, else what its failing condition says."""
    if last_error:
        return _truncate(_one_line(last_error) or "error", _MAX_DETAIL_LENGTH)
    for type_ in _ERROR_TYPES:
        condition = first.get(type_)
        if condition is not None and condition[1] == "True":
            _, _, reason, message = condition
            detail = _one_line(message) or _one_line(reason) or type_
            return _truncate(detail, _MAX_DETAIL_LENGTH)
    return "error"  # unreachable for a controller in error; keeps the function total


# ---- the aggregate ----------------------------------------------------------------------------


def aggregate(
    generation: int,
    reports: Sequence[ControllerReport],
    previous: AggregatedStatus | None,
    now: datetime,
    *,
    required: Collection[str],
) -> AggregatedStatus:
    """Compute a resource's ``status`` from the latest report of each controller.

    ``aggregate_json`` over models: the same rule, the same document.
    """
    status = aggregate_json(
        generation,
        [controller_of(report) for report in reports],
        None if previous is None else _stored(previous),
        timestamp(now),
        required=required,
    )
    return AggregatedStatus.model_validate(status)


def _stored(status: AggregatedStatus) -> StoredStatus:
    # Unset fields are absent from the stored document too (``errors`` without errors).
    return cast(StoredStatus, status.model_dump(mode="json", exclude_unset=True))


def aggregate_json(
    generation: int,
    controllers: Sequence[Controller],
    previous: StoredStatus | None,
    now: str,
    *,
    required: Collection[str],
    deleting: bool = False,
    overdue: bool = False,
) -> StoredStatus:
    """A resource's ``status`` (an ``AggregatedStatus`` as JSON) from the latest report of each
    controller; ``previous`` is the status stored before, ``now`` a ``timestamp``, ``required``
    the controllers the resource cannot be Ready without (the registry's, for its kind and
    platform). A resource being ``deleting`` is in phase Deleting whatever the reports say
    (``generation`` is then its deletion's); ``overdue``: its deletion timed out.

    Only reports at ``generation`` decide phase and health; reports of any generation decide
    ``Available``. A required controller without a report at ``generation`` keeps the resource
    from Ready, and the message names it. Timestamps move only when something changed, so
    recomputing the same aggregate returns a document equal to ``previous``.
    """
    if deleting:
        verdict = _deleting_verdict(generation, controllers, required, overdue)
    else:
        verdict = _verdict(generation, controllers, required)
    ready: ConditionStatus = "True" if verdict.phase is Phase.READY else "False"
    candidate: StoredStatus = {
        "observedGeneration": _observed_generation(generation, controllers),
        "phase": verdict.phase.value,
        "health": verdict.health.value,
        "reason": verdict.reason,
        "message": verdict.message,
        # Provisionally keep the previous time: if the result then equals ``previous``, nothing
        # changed and the time must not move.
        "lastUpdateTime": previous["lastUpdateTime"] if previous is not None else now,
        "conditions": [
            _condition("Ready", ready, verdict.reason, verdict.message, previous, now),
            _available_condition(controllers, previous, now),
        ],
    }
    errors = _errors(generation, controllers)
    if errors:
        candidate["errors"] = errors
    if previous is not None and candidate != previous:
        candidate["lastUpdateTime"] = now
    return candidate


def aggregate_stored(
    generation: int,
    reports: Mapping[str, str],
    previous: StoredStatus | None,
    now: datetime,
    *,
    required: Collection[str],
    deleting: bool = False,
    overdue: bool = False,
) -> StoredStatus:
    """``aggregate_json`` over the reports as stored (controller -> its JSON) and a stored
    ``previous``: what a spec write recomputes, without a round trip through the models."""
    controllers = [controller_of_json(orjson.loads(raw)) for raw in reports.values()]
    return aggregate_json(
        generation,
        controllers,
        previous,
        timestamp(now),
        required=required,
        deleting=deleting,
        overdue=overdue,
    )


def unconfirmed(
    generation: int, controllers: Iterable[Controller], required: Collection[str]
) -> list[str]:
    """The required controllers that have not confirmed a deletion at ``generation`` (its
    deletion generation), by name: a report at that generation with condition Deleted=True."""
    confirmed = {c.name for c in controllers if c.observed_generation == generation and c.deleted}
    return sorted(name for name in required if name not in confirmed)


def deletion_confirmed(
    generation: int, controllers: Iterable[Controller], required: Collection[str]
) -> bool:
    """Every required controller confirmed the deletion at ``generation``: it may be purged."""
    return not unconfirmed(generation, controllers, required)


def _by_name(controllers: Iterable[Controller]) -> list[Controller]:
    return sorted(controllers, key=lambda c: c.name)


def _errors(generation: int, controllers: Sequence[Controller]) -> list[StoredError]:
    """``status.errors``: the controllers in error at ``generation`` (exactly those the message
    names as failing), by name."""
    failing = _by_name(
        c for c in controllers if c.observed_generation == generation and c.error is not None
    )
    return [_error_entry(c.name, c.error) for c in failing[:MAX_AGGREGATE_ERRORS] if c.error]


def _error_entry(name: str, error: ErrorFact) -> StoredError:
    return {
        "controller": name,
        "errorType": error.error_type,
        "errorCode": error.code,
        "message": error.message,
        "userActionable": error.user_actionable,
        "suggestions": list(error.suggestions),
        "retryAfter": error.retry_after,
    }


# ---- phase, health, reason and message --------------------------------------------------------


def _verdict(
    generation: int, controllers: Sequence[Controller], required: Collection[str]
) -> _Verdict:
    current = _by_name(c for c in controllers if c.observed_generation == generation)
    # Required controllers without a report at this generation: Ready waits for them whoever
    # else reported (a resource is Ready when the registry's controllers say so, not its guests).
    reported = {c.name for c in current}
    missing = sorted(name for name in required if name not in reported)
    if not current:
        return _waiting_verdict(generation, controllers, missing)
    ready = [c for c in current if c.ready]
    failing = [c for c in current if c.in_error]
    total = _controllers(len(current) + len(missing))
    summary = _truncate(
        f"{len(ready)} of {total} ready at generation {generation}" + _waiting_for(missing),
        MAX_MESSAGE_LENGTH,
    )
    if len(ready) == len(current) and not failing:
        if missing:
            return _Verdict(Phase.PROGRESSING, Health.UNKNOWN, "WaitingForControllers", summary)
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


def _deleting_verdict(
    generation: int, controllers: Sequence[Controller], required: Collection[str], overdue: bool
) -> _Verdict:
    """Phase Deleting: health says whether the deletion goes well. A controller's deletion
    error (at the deletion generation) makes it Unhealthy (Degraded while others confirmed), and
    so does a deletion not confirmed in time; the message names who did not confirm."""
    missing = unconfirmed(generation, controllers, required)
    failing = _by_name(c for c in controllers if c.observed_generation == generation and c.in_error)
    done = len(required) - len(missing)
    summary = (
        f"Deletion: {done} of {_controllers(len(required))} confirmed at generation {generation}"
    )
    if missing:
        summary += f"; not confirmed by {', '.join(missing)}"
    if overdue:
        summary = "Deletion timed out. " + summary
    if failing:
        message = _with_failures(summary, failing)
        health = Health.DEGRADED if done and not overdue else Health.UNHEALTHY
        return _Verdict(Phase.DELETING, health, "DeletionFailed", message)
    message = _truncate(summary, MAX_MESSAGE_LENGTH)
    if overdue:
        return _Verdict(Phase.DELETING, Health.UNHEALTHY, "DeletionTimedOut", message)
    return _Verdict(Phase.DELETING, Health.UNKNOWN, "WaitingForDeletion", message)


def _waiting_verdict(
    generation: int, controllers: Sequence[Controller], missing: Sequence[str]
) -> _Verdict:
    """No controller has reported on ``generation`` yet (so every required one is missing)."""
    if not controllers:
        message = f"No controller has reported yet (generation {generation})"
        message = _truncate(message + _waiting_for(missing), MAX_MESSAGE_LENGTH)
        return _Verdict(Phase.PENDING, Health.UNKNOWN, "NoControllers", message)
    latest = max(c.observed_generation for c in controllers)
    message = (
        f"Waiting for controllers to report generation {generation}; "
        f"latest observed generation is {latest}"
    ) + _waiting_for(missing)
    message = _truncate(message, MAX_MESSAGE_LENGTH)
    return _Verdict(Phase.PROGRESSING, Health.UNKNOWN, "NewGenerationPending", message)


def _waiting_for(missing: Sequence[str]) -> str:
    return f"; waiting for {', '.join(missing)}" if missing else ""


def _with_failures(summary: str, failing: Sequence[Controller]) -> str:
    details = "; ".join(f"{c.name}: {c.failure}" for c in failing)
    return _truncate(f"{summary}; failing: {details}", MAX_MESSAGE_LENGTH)


# ---- conditions -------------------------------------------------------------------------------


def _available_condition(
    controllers: Sequence[Controller], previous: StoredStatus | None, now: str
) -> StoredCondition:
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
    previous: StoredStatus | None,
    now: str,
) -> StoredCondition:
    before = _previous_condition(previous, type_)
    # The transition time records when the status last flipped, not when the text last changed.
    since = (
        before["lastTransitionTime"] if before is not None and before["status"] == status else now
    )
    return {
        "type": type_,
        "status": status,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    }


def _previous_condition(previous: StoredStatus | None, type_: str) -> StoredCondition | None:
    if previous is None:
        return None
    return next((c for c in previous["conditions"] if c["type"] == type_), None)


# ---- small helpers ----------------------------------------------------------------------------


def _observed_generation(generation: int, controllers: Sequence[Controller]) -> int:
    if any(c.observed_generation == generation for c in controllers):
        return generation
    return max((c.observed_generation for c in controllers), default=0)


def _controllers(count: int) -> str:
    return f"{count} controller" if count == 1 else f"{count} controllers"


def _one_line(text: str) -> str:
    # Errors are often multi-line tracebacks; a status message is read on one line.
    return " ".join(text.split())


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS
