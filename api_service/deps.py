"""Dependencies for routes, as ``Annotated`` aliases: ``owner: Owner``, ``svc: NodePools``...

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

from api_service.auth import resolve_controller, resolve_user
from api_service.errors import Unauthorized, ValidationFailed
from api_service.services.clusters import ClusterService
from api_service.services.common import Preconditions
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


# One dependency per caller, not one per service: FastAPI solves every dependency at a fixed
# cost (four parameter scans, a cache key...), and three of them cost a third of a GET's CPU.
@dataclass(frozen=True)
class UserCall:
    """A user's request: who is asking, and the services that act on their resources."""

    owner: str
    clusters: ClusterService
    nodepools: NodePoolService


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


def user_of(request: Request) -> UserCall:
    """The calling user (401/403 when there is none), for the routes that resolve their inputs
    themselves (see ``inputs_doc``) and for the ``User`` dependency."""
    state = state_of(request)
    email = identity_header(request, "X-User-Email")
    owner = resolve_user(state.settings, email, identity_header(request, "Authorization"))
    return UserCall(owner, state.clusters, state.nodepools)


async def _user(request: Request) -> UserCall:
    return user_of(request)


User = Annotated[UserCall, Depends(_user)]

_IDENTITY_DOCS: dict[Callable[..., Any], list[dict[str, Any]]] = {
    _user: [_EMAIL_DOC, _AUTH_DOC],
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


# ---- routes that resolve their inputs themselves ------------------------------------------------
# The read routes (GET of a resource, of a list, of a status) and the status reports (whose body
# is read by hand, as a queue message is) take only the Request and call ``user_of`` (or
# ``controller_of``) then ``path_id`` themselves, in the order FastAPI resolved them, so a
# missing identity is still a 401 before anything about the request is judged. Reads are most of
# the traffic and each is served from a view stored ready to send: FastAPI's generic resolution
# of a dependency and a path parameter was a fifth of the Python function calls of a GET (151 of
# 733, cProfile in-process; a bare app's GET makes 545). ``inputs_doc`` documents in OpenAPI what
# FastAPI would have.
# The other write routes still declare their parameters, although they cost a write as much
# (about 400 of a scale's 1,728 calls): doing without them needs a body reader that judges every
# malformed, empty or mistyped body exactly as FastAPI does, and the body models registered in
# OpenAPI's components by hand.


def controller_of(request: Request) -> ControllerCall:
    """The calling controller (401/403 when there is none): the status reports' caller."""
    state = state_of(request)
    authorization = identity_header(request, "Authorization")
    name = resolve_controller(
        state.settings, authorization, identity_header(request, "X-User-Email")
    )
    return ControllerCall(name, state.status)


def path_id(request: Request, name: str) -> str:
    """The path parameter ``name``, a UUID (400 naming it otherwise), lower-cased."""
    return resource_id(request.path_params[name], name)


def inputs_doc(
    path: tuple[str, str] | None = None,
    query: list[dict[str, Any]] | None = None,
    *,
    controller: bool = False,
) -> dict[str, Any]:
    """``openapi_extra`` of a route that resolves its inputs itself: its path id (name,
    description), its query parameters and the identity headers (a controller's first)."""
    parameters: list[dict[str, Any]] = []
    if path is not None:
        name, description = path
        schema = {"type": "string", **UUID_DOC, "description": description}
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": schema,
                "description": description,
            }
        )
    identity = [_AUTH_DOC, _EMAIL_DOC] if controller else [_EMAIL_DOC, _AUTH_DOC]
    return {"parameters": [*parameters, *(query or []), *identity]}


NODEPOOL_PATH_ID = ("id", "NodePool id (UUID)")
CLUSTER_PATH_ID = ("id", "Cluster id (UUID)")
PARENT_CLUSTER_PATH_ID = ("clusterId", "Cluster id (UUID)")
