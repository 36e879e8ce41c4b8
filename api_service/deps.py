"""Dependencies for routes, as ``Annotated`` aliases: ``owner: Owner``, ``svc: NodePools``..."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from api_service.auth import resolve_controller, resolve_user
from api_service.errors import ValidationFailed
from api_service.services.clusters import ClusterService
from api_service.services.nodepools import NodePoolService
from api_service.services.status import StatusService
from api_service.store import RedisStore
from shared_models.settings import Settings
from shared_models.validators import is_uuid


@dataclass
class AppState:
    """Everything the lifespan builds once and requests share."""

    settings: Settings
    store: RedisStore
    clusters: ClusterService
    nodepools: NodePoolService
    status: StatusService
    # Extra readiness checks by name (the outbox relay adds "rabbitmq").
    readiness_probes: dict[str, Callable[[], bool]] = field(default_factory=dict)


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.cls
    return state


State = Annotated[AppState, Depends(app_state)]


def _settings(state: State) -> Settings:
    return state.settings


def _clusters(state: State) -> ClusterService:
    return state.clusters


def _nodepools(state: State) -> NodePoolService:
    return state.nodepools


def _status(state: State) -> StatusService:
    return state.status


SettingsDep = Annotated[Settings, Depends(_settings)]
Clusters = Annotated[ClusterService, Depends(_clusters)]
NodePools = Annotated[NodePoolService, Depends(_nodepools)]
StatusDep = Annotated[StatusService, Depends(_status)]

EmailHeader = Annotated[
    str | None, Header(alias="X-User-Email", description="The caller's email (set by the gateway)")
]
AuthHeader = Annotated[
    str | None, Header(alias="Authorization", description="Controllers: Bearer <token>")
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="Write only if resource_version (ETag) still matches"),
]


def _owner(settings: SettingsDep, email: EmailHeader = None, auth: AuthHeader = None) -> str:
    return resolve_user(settings, email, auth)


def _controller(settings: SettingsDep, auth: AuthHeader = None, email: EmailHeader = None) -> str:
    return resolve_controller(settings, auth, email)


Owner = Annotated[str, Depends(_owner)]
Controller = Annotated[str, Depends(_controller)]


def resource_id(raw: str, what: str) -> str:
    """Path ids are UUIDs; anything else is a 400 naming the parameter."""
    if not is_uuid(raw):
        raise ValidationFailed.of(what, f"{what}: {raw[:80]!r} is not a UUID")
    return raw.lower()


def _nodepool_id(
    nodepool_id: Annotated[str, Path(alias="id", description="NodePool id (UUID)")],
) -> str:
    return resource_id(nodepool_id, "id")


def _cluster_id(
    cluster_id: Annotated[str, Path(alias="id", description="Cluster id (UUID)")],
) -> str:
    return resource_id(cluster_id, "id")


def _parent_cluster_id(
    cluster_id: Annotated[str, Path(alias="clusterId", description="Cluster id (UUID)")],
) -> str:
    return resource_id(cluster_id, "clusterId")


NodePoolId = Annotated[str, Depends(_nodepool_id)]
ClusterId = Annotated[str, Depends(_cluster_id)]
ParentClusterId = Annotated[str, Depends(_parent_cluster_id)]


def _cluster_filter(
    cluster_id: Annotated[
        str | None,
        Query(description="Only the nodepools of this cluster (UUID)"),
    ] = None,
) -> str | None:
    # Validated like a path id: a non-UUID would silently match nothing (or, for '*', the
    # wildcard of the index keys, i.e. every cluster).
    return None if cluster_id is None else resource_id(cluster_id, "cluster_id")


ClusterFilter = Annotated[str | None, Depends(_cluster_filter)]
