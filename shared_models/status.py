"""Status: what controllers report and the aggregate users read.

Field names follow the user guide (``controller_name``, ``observed_generation``) for reports and
the Kubernetes conventions (``observedGeneration``, ``lastTransitionTime``) for the aggregate.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ConditionStatus = Literal["True", "False", "Unknown"]

ControllerName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
ConditionType = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9]*$")
]

MAX_CONDITIONS = 16
MAX_METADATA_KEYS = 64


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
    observed_generation: Annotated[int, Field(ge=1, strict=True)]
    conditions: Annotated[list[Condition], Field(max_length=MAX_CONDITIONS)] = []
    metadata: Annotated[dict[str, Any], Field(max_length=MAX_METADATA_KEYS)] = {}
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
