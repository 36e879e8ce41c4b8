"""Status: what controllers report and the aggregate users read.

Field names follow the user guide (``controller_name``, ``observed_generation``) for reports and
the Kubernetes conventions (``observedGeneration``, ``lastTransitionTime``) for the aggregate.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

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


class ControllerReport(_Strict):
    """The body of ``PUT .../status``: one controller's view of one resource at a generation."""

    controller_name: ControllerName
    # Generations are stored as 64-bit integers; a larger one cannot be a real generation.
    observed_generation: Annotated[int, Field(ge=1, le=2**63 - 1, strict=True)]
    conditions: Annotated[list[Condition], Field(max_length=MAX_CONDITIONS)] = []
    metadata: Annotated[
        dict[str, Any], Field(max_length=MAX_METADATA_KEYS), AfterValidator(_plain_json)
    ] = {}
    last_error: Annotated[str, StringConstraints(max_length=4096)] | None = None

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
