"""Dependencies for routes, as ``Annotated`` aliases: ``owner: Owner``, ``svc: NodePools``...

Every dependency is ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency
in a worker thread, and those thread hand-offs (several per request) cost more than the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api_service.auth import resolve_controller, resolve_user
from api_service.errors import ValidationFailed
from api_service.services.clusters import ClusterService
from api_service.services.nodepools import NodePoolService
from api_service.services.status import StatusService
from api_service.store import RedisStore
from shared_models.settings import Settings
from shared_models.validators import UUID, is_uuid


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


async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.cls
    return state


State = Annotated[AppState, Depends(app_state)]


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.cls
    return state


async def _settings(request: Request) -> Settings:
    return _state(request).settings


async def _clusters(request: Request) -> ClusterService:
    return _state(request).clusters


async def _nodepools(request: Request) -> NodePoolService:
    return _state(request).nodepools


async def _status(request: Request) -> StatusService:
    return _state(request).status


SettingsDep = Annotated[Settings, Depends(_settings)]
Clusters = Annotated[ClusterService, Depends(_clusters)]
NodePools = Annotated[NodePoolService, Depends(_nodepools)]
StatusDep = Annotated[StatusService, Depends(_status)]

IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="Write only if resource_version (ETag) still matches"),
]


# The identity headers are read from the request itself: declared as Header parameters, FastAPI
# validates each one on every request, which cost more than serving a GET from Redis. These
# entries document them in OpenAPI instead (see ``document_identity_headers``).
_EMAIL_DOC = {
    "name": "X-User-Email",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The caller's email (set by the gateway)",
}
_AUTH_DOC = {
    "name": "Authorization",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Controllers: Bearer <token>",
}


async def _owner(request: Request) -> str:
    headers = request.headers
    return resolve_user(
        _state(request).settings, headers.get("x-user-email"), headers.get("authorization")
    )


async def _controller(request: Request) -> str:
    headers = request.headers
    return resolve_controller(
        _state(request).settings, headers.get("authorization"), headers.get("x-user-email")
    )


Owner = Annotated[str, Depends(_owner)]
Controller = Annotated[str, Depends(_controller)]

_IDENTITY_DOCS: dict[Callable[..., Any], list[dict[str, Any]]] = {
    _owner: [_EMAIL_DOC, _AUTH_DOC],
    _controller: [_AUTH_DOC, _EMAIL_DOC],
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def document_identity_headers(router: APIRouter) -> None:
    """Add the identity headers that a route's dependencies read to its OpenAPI parameters."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        extra = dict(route.openapi_extra or {})
        params = list(extra.get("parameters", []))
        for call in _calls(route.dependant):
            for doc in _IDENTITY_DOCS.get(call, []) if call else []:
                if all(p.get("name") != doc["name"] for p in params):
                    params.append(doc)
        if params:
            extra["parameters"] = params
            route.openapi_extra = extra


# How the ids of paths and of the cluster_id filter are documented: exactly what resource_id
# accepts (the 8-4-4-4-12 hex form, any case), so that a client generated from the document
# never sends an id the API refuses with a 400.
UUID_DOC: dict[str, Any] = {
    "format": "uuid",
    "pattern": f"^{UUID.pattern}$",
}


def resource_id(raw: str, what: str) -> str:
    """Path ids are UUIDs; anything else is a 400 naming the parameter."""
    if not is_uuid(raw):
        raise ValidationFailed.of(what, f"{what}: {raw[:80]!r} is not a UUID")
    return raw.lower()


async def _nodepool_id(
    nodepool_id: Annotated[
        str, Path(alias="id", description="NodePool id (UUID)", json_schema_extra=UUID_DOC)
    ],
) -> str:
    return resource_id(nodepool_id, "id")


async def _cluster_id(
    cluster_id: Annotated[
        str, Path(alias="id", description="Cluster id (UUID)", json_schema_extra=UUID_DOC)
    ],
) -> str:
    return resource_id(cluster_id, "id")


async def _parent_cluster_id(
    cluster_id: Annotated[
        str, Path(alias="clusterId", description="Cluster id (UUID)", json_schema_extra=UUID_DOC)
    ],
) -> str:
    return resource_id(cluster_id, "clusterId")


NodePoolId = Annotated[str, Depends(_nodepool_id)]
ClusterId = Annotated[str, Depends(_cluster_id)]
ParentClusterId = Annotated[str, Depends(_parent_cluster_id)]


async def _cluster_filter(
    cluster_id: Annotated[
        str | None,
        Query(description="Only the nodepools of this cluster (UUID)", json_schema_extra=UUID_DOC),
    ] = None,
) -> str | None:
    # Validated like a path id: a non-UUID would silently match nothing (or, for '*', the
    # wildcard of the index keys, i.e. every cluster).
    return None if cluster_id is None else resource_id(cluster_id, "cluster_id")


ClusterFilter = Annotated[str | None, Depends(_cluster_filter)]
