"""Operations: the record of one change a user made to a resource, and how it went.

Every write that changes what the controllers must do (a create, a spec change, a scale, a
delete) starts an operation in the transaction of the change; the operation ends when the
resource's aggregated status reaches Ready (Succeeded) or Failed (Failed) at its generation,
when a newer change starts first (Superseded), or when the resource is deleted (Cancelled). A
delete's own operation ends when the resource is purged. See docs/user-guide.md, "Operations".
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared_models.names import Kind
from shared_models.status import AggregateError

__all__ = [
    "Change",
    "Operation",
    "OperationList",
    "OperationState",
    "OperationType",
    "Progress",
]


class OperationType(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    SCALE = "scale"  # a nodepool change of spec.nodeCount only
    DELETE = "delete"
    FORCE_DELETE = "force_delete"


class OperationState(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUPERSEDED = "Superseded"
    CANCELLED = "Cancelled"


# The types a status report ends (a deletion ends when the resource is purged).
ENDED_BY_STATUS = frozenset({OperationType.CREATE, OperationType.UPDATE, OperationType.SCALE})


class Change(BaseModel):
    """One spec field the change set: its dotted path, its value before and after (a create's
    ``old`` and a removed field's ``new`` are null)."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Dotted path, e.g. spec.nodeCount")
    old: Any = None
    new: Any = None


class Progress(BaseModel):
    """How far the controllers got with the operation's generation: computed from the
    resource's current status while the operation runs, frozen when it ends."""

    model_config = ConfigDict(frozen=True)

    phase: str | None = Field(
        default=None,
        description="The resource's phase at the operation's generation (null: the controllers "
        "have not reported it, or a newer generation replaced it)",
    )
    controllers_ready: int = Field(
        default=0, description="Controllers reporting Ready at the operation's generation"
    )
    controllers_reported: int = Field(
        default=0, description="Controllers that reported on the operation's generation"
    )
    desired_nodes: int | None = Field(
        default=None, description="Nodepools: the nodes the operation's spec asks for"
    )
    active_nodes: int | None = Field(
        default=None,
        description="Nodepools: the fewest active_nodes a controller reports at the operation's "
        "generation (null until one reports it)",
    )


class Operation(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    type: OperationType
    resource_kind: Kind
    resource_id: str
    cluster_id: str
    project_id: str
    generation: int = Field(description="The generation the change gave the resource")
    actor: str = Field(description="The email of the user who made the change")
    created_at: datetime
    finished_at: datetime | None = None
    state: OperationState
    changes: list[Change] = []
    progress: Progress = Progress()
    error: list[AggregateError] = Field(
        default=[], description="The controllers' errors that failed it (status.errors)"
    )
    superseded_by: str | None = None
    reason: str | None = Field(default=None, description="force_delete: why it was forced")


class OperationList(BaseModel):
    operations: list[Operation]
    total: int
    limit: int
    offset: int
