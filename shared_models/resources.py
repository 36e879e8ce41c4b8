"""Resources as the API returns them, and the bodies it accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import UUID4, AfterValidator, BaseModel, ConfigDict, Field

from shared_models.specs import ClusterSpec, Name, NodePoolSpec
from shared_models.status import AggregatedStatus, StoredControllerStatus
from shared_models.validators import is_uuid


def _resource_id(value: str) -> str:
    if not is_uuid(value):
        raise ValueError(f"{value[:80]!r} is not a UUID")
    # Ids are stored lowercase; the same UUID in capitals names the same resource.
    return value.lower()


ResourceId = Annotated[
    str, AfterValidator(_resource_id), Field(json_schema_extra={"format": "uuid"})
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ClusterCreate(_Body):
    # A client may choose the id (a UUID), e.g. to create a cluster it already refers to.
    id: ResourceId | None = None
    name: Name
    project_id: ResourceId | None = Field(
        None, description="The project it belongs to; by default, your personal project"
    )
    spec: ClusterSpec


class ClusterUpdate(_Body):
    """PUT body: replaces the spec, and the name when one is given (absent: unchanged)."""

    name: Name | None = None
    spec: ClusterSpec


class NodePoolCreate(_Body):
    name: Name
    cluster_id: ResourceId | None = None
    spec: NodePoolSpec


class NodePoolUpdate(_Body):
    """PUT body: replaces the spec, and the name when one is given (absent: unchanged), as
    the original system's spec-only updates. ``cluster_id`` may be repeated, never changed."""

    name: Name | None = None
    cluster_id: ResourceId | None = None
    spec: NodePoolSpec


class NodePoolPatch(_Body):
    """PATCH body (application/merge-patch+json, RFC 7386): only the members to change.

    Documentation only: the patch is merged into {name, spec} and the result is validated as a
    NodePoolUpdate, so every rule of PUT applies. A member set to null is removed.
    """

    name: Name | None = None
    cluster_id: ResourceId | None = Field(
        default=None, description="May be repeated, never changed"
    )
    spec: dict[str, Any] | None = Field(
        default=None, description="Members of NodePoolSpec to merge; null removes a member"
    )


class _Resource(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID4 | str
    name: str
    generation: int
    resource_version: str
    status: AggregatedStatus
    created_at: datetime
    updated_at: datetime
    created_by: str


class Cluster(_Resource):
    project_id: str
    spec: ClusterSpec


class NodePool(_Resource):
    cluster_id: str
    spec: NodePoolSpec


class ClusterList(BaseModel):
    clusters: list[Cluster]
    total: int
    limit: int
    offset: int


class NodePoolList(BaseModel):
    nodepools: list[NodePool]
    total: int
    limit: int
    offset: int


class NodePoolStatusView(BaseModel):
    nodepool_id: str
    generation: int
    status: AggregatedStatus
    controller_status: list[StoredControllerStatus]


class ClusterStatusView(BaseModel):
    cluster_id: str
    generation: int
    status: AggregatedStatus
    controller_status: list[StoredControllerStatus]
