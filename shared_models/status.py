"""Status: what controllers report and the aggregate users read.

Field names follow the user guide (``controller_name``, ``observed_generation``) for reports and
the Kubernetes conventions (``observedGeneration``, ``lastTransitionTime``) for the aggregate.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

ConditionStatus = Literal["True", "False", "Unknown"]

ControllerName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
ConditionType = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9]*$")
]

MAX_CONDITIONS = 16
MAX_METADATA_KEYS = 64
MAX_METADATA_DEPTH = 16
MAX_ERROR_MESSAGE_LENGTH = 4096
MAX_ERROR_CODE_LENGTH = 128
MAX_SUGGESTIONS = 10
MAX_SUGGESTION_LENGTH = 512
MAX_DETAILS_KEYS = 64
# A retry hint longer than this is not a hint; 30 days still covers a monthly quota reset.
MAX_RETRY_AFTER_SECONDS = 30 * 24 * 3600
# The integer range the stored JSON (orjson) can represent exactly.
_INT_RANGE = (-(2**63), 2**64 - 1)


def _check_plain_json(value: Any, depth: int = 0) -> None:
    """Raise ValueError unless ``value`` survives a JSON round trip unchanged.

    HTTP bodies are parsed leniently (NaN, huge integers); a value that cannot be stored as it
    was sent would either fail when stored or never compare equal to itself, and then applying
    the same report twice would not be a no-op.
    """
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"nested deeper than {MAX_METADATA_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise ValueError("integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, list):
        for item in value:
            _check_plain_json(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check_plain_json(item, depth + 1)
    else:
        raise ValueError(f"unsupported value of type {type(value).__name__}")


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    _check_plain_json(value)
    return value


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    FAILED = "Failed"
    # DELETE accepted: the resource stays until its required controllers confirm (or a force).
    DELETING = "Deleting"


class Health(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    type: ConditionType
    status: ConditionStatus
    lastTransitionTime: datetime | None = None  # noqa: N815
    reason: Annotated[str, StringConstraints(max_length=128)] = ""
    message: Annotated[str, StringConstraints(max_length=4096)] = ""


# ---- last_error as an object ------------------------------------------------------------------

ErrorType = Literal["Transient", "Configuration", "Fatal", "System"]

_NANOSECONDS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,  # micro sign, as Go writes it
    "\u03bcs": 10**3,  # Greek mu, which Go also accepts
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
# Go's time.ParseDuration syntax, unsigned: "30s", "1m30s", "1.5h", "500ms".
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_MAX_DURATION_TEXT = 64


def _duration_nanoseconds(text: str) -> int | None:
    """Nanoseconds in a Go duration string, rounded up; None when it is not one."""
    if text == "0":
        return 0
    if not text or len(text) > _MAX_DURATION_TEXT:
        return None
    total = Fraction(0)
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += Fraction(match.group(1)) * _NANOSECONDS[match.group(2)]
        position = match.end()
    if position != len(text):
        return None
    return math.ceil(total)


def _duration_text(seconds: int) -> str:
    """Whole seconds as the spec's durations read: "1h30m", "45s", "0s"."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


def _retry_after(value: Any) -> str:
    """``retryAfter`` normalised to whole seconds (rounded up: never sooner than asked).

    The original system's controllers are Go programs whose ``retryAfter`` is a
    ``time.Duration``, which Go's JSON encoder writes as an integer of nanoseconds; a duration
    string ("30s", "1m30s") is accepted too, as people write it.
    """
    if isinstance(value, str):
        nanoseconds = _duration_nanoseconds(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        nanoseconds = value
    else:
        nanoseconds = None
    if nanoseconds is None or nanoseconds < 0:
        raise PydanticCustomError(
            "retry_after",
            "must be a duration such as '30s' or '1m30s', or an integer of nanoseconds (as Go "
            "encodes a time.Duration), not negative",
        )
    seconds = -(-nanoseconds // 10**9)
    if seconds > MAX_RETRY_AFTER_SECONDS:
        raise PydanticCustomError(
            "retry_after",
            "must be at most {limit} ({limit_s} s)",
            {
                "limit": _duration_text(MAX_RETRY_AFTER_SECONDS),
                "limit_s": MAX_RETRY_AFTER_SECONDS,
            },
        )
    return _duration_text(seconds)


RetryAfter = Annotated[
    str,
    PlainValidator(_retry_after),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": _MAX_DURATION_TEXT},
                {"type": "integer", "minimum": 0, "maximum": MAX_RETRY_AFTER_SECONDS * 10**9},
            ],
            "description": (
                "A duration ('30s', '1m30s', '1.5h') or an integer of nanoseconds (a Go "
                "time.Duration); stored and shown as whole seconds, rounded up ('1m30s')."
            ),
        },
        mode="validation",
    ),
    WithJsonSchema(
        {"type": "string", "description": "Whole seconds, rounded up: '45s', '1m30s', '2h'."},
        mode="serialization",
    ),
]


class ControllerError(_Strict):
    """``last_error`` as an object: the form the original system's controllers send.

    Stored as validated (defaults filled in, ``retryAfter`` and ``timestamp`` normalised) and
    shown in ``controller_status``; the aggregate shows it in ``status.errors``.
    """

    # The original wire names (camelCase), so that those controllers' reports pass unchanged.
    controllerName: ControllerName | None = None  # noqa: N815
    errorType: ErrorType  # noqa: N815
    errorCode: Annotated[str, StringConstraints(max_length=MAX_ERROR_CODE_LENGTH)] = ""  # noqa: N815
    message: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ERROR_MESSAGE_LENGTH)]
    userActionable: StrictBool = False  # noqa: N815
    suggestions: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUGGESTION_LENGTH)]],
        Field(max_length=MAX_SUGGESTIONS),
    ] = []
    details: Annotated[
        dict[str, Any], Field(max_length=MAX_DETAILS_KEYS), AfterValidator(_plain_json)
    ] = {}
    retryAfter: RetryAfter | None = None  # noqa: N815
    # Go writes its zero time when the controller set none; it is stored as sent.
    timestamp: datetime | None = None


_ERROR_TEXT: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(max_length=MAX_ERROR_MESSAGE_LENGTH)]
)


def _last_error(value: Any) -> str | ControllerError | None:
    """Dispatch on the form, so that an error names the fields of that form only (a union would
    also report why an object is not a string, and why a string is not an object)."""
    if value is None or isinstance(value, ControllerError):
        return value
    if isinstance(value, str):
        return _ERROR_TEXT.validate_python(value)
    if isinstance(value, dict):
        return ControllerError.model_validate(value)
    raise PydanticCustomError(
        "last_error_type", "must be a string, an object with errorType and message, or null"
    )


class ControllerReport(_Strict):
    """The body of ``PUT .../status``: one controller's view of one resource at a generation."""

    controller_name: ControllerName
    # Generations are stored as 64-bit integers; a larger one cannot be a real generation.
    observed_generation: Annotated[int, Field(ge=1, le=2**63 - 1, strict=True)]
    conditions: Annotated[list[Condition], Field(max_length=MAX_CONDITIONS)] = []
    metadata: Annotated[
        dict[str, Any], Field(max_length=MAX_METADATA_KEYS), AfterValidator(_plain_json)
    ] = {}
    last_error: (
        Annotated[str, StringConstraints(max_length=MAX_ERROR_MESSAGE_LENGTH)]
        | ControllerError
        | None
    ) = None

    @field_validator("last_error", mode="wrap")
    @classmethod
    def _one_form(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # The annotation above is what the schemas show; this is how it is checked.
        return _last_error(value)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def is_true(self, type_: str) -> bool:
        condition = self.condition(type_)
        return condition is not None and condition.status == "True"


class NodePoolStatusReport(ControllerReport):
    """A report on the status queue (routing key ``nodepool.status``)."""

    nodepool_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ClusterStatusReport(ControllerReport):
    """A report on the status queue (routing key ``cluster.status``)."""

    cluster_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class StoredControllerStatus(ControllerReport):
    """A controller's last report as stored and shown in ``controller_status``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    updated_at: datetime


class AggregateCondition(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["Ready", "Available"]
    status: ConditionStatus
    lastTransitionTime: datetime  # noqa: N815
    reason: str
    message: str


class AggregateError(BaseModel):
    """Why one controller is in error at the current generation, in one shape whatever form it
    reported: a structured ``last_error`` as sent (but ``details``), a string ``last_error`` as
    ``errorType`` "Unknown" with that text as ``message``, a failing condition (``Failed`` or
    ``Degraded`` True, no ``last_error``) as "Unknown" with its reason as ``errorCode``."""

    model_config = ConfigDict(frozen=True)

    controller: str = Field(description="The controller that reported it (controller_name)")
    errorType: ErrorType | Literal["Unknown"]  # noqa: N815
    errorCode: str  # noqa: N815
    message: str = Field(description="At most 1024 characters (a longer one is cut, with '…')")
    userActionable: bool  # noqa: N815
    suggestions: list[str]
    retryAfter: str | None = Field(  # noqa: N815
        description="Whole seconds, rounded up ('1m30s'); null when the controller gave none"
    )


class AggregatedStatus(BaseModel):
    """A resource's ``status``: the verdict over every controller's report."""

    model_config = ConfigDict(frozen=True)

    observedGeneration: int  # noqa: N815
    phase: Phase
    health: Health
    reason: str
    message: str
    lastUpdateTime: datetime  # noqa: N815
    conditions: list[AggregateCondition]
    # Absent (rather than empty) when no controller is in error, so that the documents of
    # resources without errors are what they were before the field existed.
    errors: list[AggregateError] = Field(
        default=[],
        description=(
            "The controllers in error at the current generation (phase Failed, or health "
            "Degraded), by controller name, at most 16; absent when there are none"
        ),
    )
