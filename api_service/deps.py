"""Dependencies for routes, as ``Annotated`` aliases: ``user: User``, ``reader: Reader``...

Every dependency is ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency
in a worker thread, and those thread hand-offs (several per request) cost more than the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AfterValidator

from api_service.auth import (
    controller_for_token,
    ensure_reports_on,
    parse_groups,
    resolve_controller,
    resolve_user,
)
from cls_core.errors import Unauthorized, ValidationFailed
from cls_core.services.access import Caller
from cls_core.services.clusters import ClusterService
from cls_core.services.common import Preconditions
from cls_core.services.nodepools import NodePoolService
from cls_core.services.operations import OperationService
from cls_core.services.projects import ProjectService
from cls_core.services.status import StatusService
from cls_core.services.watch import WatchService
from cls_core.store import RedisStore
from cls_runtime.settings import Settings
from shared_models.validators import UUID, is_uuid


@dataclass
class AppState:
    """Everything the lifespan builds once and requests share."""

    settings: Settings
    store: RedisStore
    clusters: ClusterService
    nodepools: NodePoolService
    projects: ProjectService
    status: StatusService
    operations: OperationService
    watch: WatchService
    # Extra readiness checks by name (the outbox relay adds "rabbitmq").
    readiness_probes: dict[str, Callable[[], bool]] = field(default_factory=dict)


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.cls
    return state


async def app_state(request: Request) -> AppState:
    return state_of(request)


State = Annotated[AppState, Depends(app_state)]


async def _preconditions(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="Write only if resource_version (the ETag) still matches; every "
            "write changes it, status reports included",
        ),
    ] = None,
    if_generation_match: Annotated[
        int | None,
        Header(
            alias="If-Generation-Match",
            ge=1,
            description="Write only if generation still matches; only spec changes move it, "
            "so this guards a read-modify-write of the spec without racing the controllers",
        ),
    ] = None,
) -> Preconditions:
    return Preconditions(if_match, if_generation_match)


Precondition = Annotated[Preconditions, Depends(_preconditions)]


# The identity headers are read by the identity dependencies themselves (``resolve_user`` judges
# the pair: a user's email, a controller's token, never both), so no route declares them as
# parameters; these entries document them in OpenAPI (see ``document_identity_headers``).
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


# One dependency per caller, not one per service: each dependency is a call per request.
@dataclass(frozen=True)
class UserCall:
    """A user's request: who is asking, and the services that act on their resources."""

    caller: Caller
    clusters: ClusterService
    nodepools: NodePoolService
    projects: ProjectService
    operations: OperationService
    watch: WatchService


@dataclass(frozen=True)
class ControllerCall:
    """A controller's request: which controller (its token's name), and the status service."""

    name: str
    status: StatusService


def identity_header(request: Request, name: str) -> str | None:
    """The one value of an identity header; 401 when it was sent more than once, as which of
    them a server reads (the first, the last, all joined) differs between servers and proxies:
    a gateway that adds its own rather than replacing the client's must not let either win."""
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise Unauthorized(
            f"{name} was sent more than once",
            f"a request carries one identity; send {name} once",
        )
    return values[0] if values else None


def _caller(
    request: Request, state: AppState, email: str | None, authorization: str | None
) -> Caller:
    """The user making the request, with the groups the gateway vouches for (when
    ``CLS_GROUPS_HEADER`` names the header it sets them in)."""
    user = resolve_user(state.settings, email, authorization)
    header = state.settings.groups_header
    if not header:
        return Caller(user)
    return Caller(user, parse_groups(identity_header(request, header), header))


async def _user(request: Request) -> UserCall:
    """The calling user (401/403 when there is none) and the services acting for them."""
    state = state_of(request)
    email = identity_header(request, "X-User-Email")
    caller = _caller(request, state, email, identity_header(request, "Authorization"))
    return UserCall(
        caller, state.clusters, state.nodepools, state.projects, state.operations, state.watch
    )


async def _controller(request: Request) -> ControllerCall:
    """The calling controller (401/403 when there is none): the status reports' caller."""
    state = state_of(request)
    authorization = identity_header(request, "Authorization")
    name = resolve_controller(
        state.settings, authorization, identity_header(request, "X-User-Email")
    )
    return ControllerCall(name, state.status)


@dataclass(frozen=True)
class ReadCall:
    """A read of one resource: by a user (``caller``), or by a controller (``caller`` None)."""

    caller: Caller | None
    clusters: ClusterService
    nodepools: NodePoolService
    watch: WatchService


async def _reader(request: Request) -> ReadCall:
    """A user reads their own resource; a controller's token alone reads any (a controller
    re-reads a resource to check the generation an event claims: asyncapi.yaml)."""
    state = state_of(request)
    email = identity_header(request, "X-User-Email")
    authorization = identity_header(request, "Authorization")
    if email is None and controller_for_token(state.settings, authorization) is not None:
        return ReadCall(None, state.clusters, state.nodepools, state.watch)
    caller = _caller(request, state, email, authorization)
    return ReadCall(caller, state.clusters, state.nodepools, state.watch)


User = Annotated[UserCall, Depends(_user)]
Controller = Annotated[ControllerCall, Depends(_controller)]
Reader = Annotated[ReadCall, Depends(_reader)]


# A status route's caller is a controller the registry lists for the route's kind (403 first).
async def _nodepool_controller(controller: Controller) -> ControllerCall:
    ensure_reports_on(controller.status.registry, controller.name, "nodepool")
    return controller


async def _cluster_controller(controller: Controller) -> ControllerCall:
    ensure_reports_on(controller.status.registry, controller.name, "cluster")
    return controller


NodePoolController = Annotated[ControllerCall, Depends(_nodepool_controller)]
ClusterController = Annotated[ControllerCall, Depends(_cluster_controller)]

_IDENTITY_DOCS: dict[Callable[..., Any], list[dict[str, Any]]] = {
    _user: [_EMAIL_DOC, _AUTH_DOC],
    _controller: [_AUTH_DOC, _EMAIL_DOC],
    _reader: [_EMAIL_DOC, _AUTH_DOC],
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


def _uuid_of(what: str) -> AfterValidator:
    # Raises the API's own 400 (not a ValueError, which FastAPI would report in its own words),
    # so a bad id reads the same wherever it is checked.
    return AfterValidator(lambda raw: resource_id(raw, what))


def _path_id(alias: str, description: str) -> Any:
    return Path(alias=alias, description=description, json_schema_extra=UUID_DOC)


# Plain path parameters (validated with the route's own parameters, at no extra dependency).
NodePoolId = Annotated[str, _path_id("id", "NodePool id (UUID)"), _uuid_of("id")]
ClusterId = Annotated[str, _path_id("id", "Cluster id (UUID)"), _uuid_of("id")]
ParentClusterId = Annotated[str, _path_id("clusterId", "Cluster id (UUID)"), _uuid_of("clusterId")]
ProjectId = Annotated[str, _path_id("id", "Project id (UUID)"), _uuid_of("id")]
OperationId = Annotated[str, _path_id("id", "Operation id (UUID)"), _uuid_of("id")]
