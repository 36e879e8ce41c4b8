"""The route class of every API router: ``ApiRoute``.

Every route declares its inputs in its signature (``user: User``, ``nodepool_id: NodePoolId``,
``query: Annotated[NodePoolPageQuery, Query()]``, ``body: NodePoolCreate``...) and FastAPI
documents them in OpenAPI from it. Serving a request, FastAPI's own handler resolves those inputs
with a generic solver that re-inspects every parameter on every request; for this API's small
requests that cost as much CPU as the work itself. So ``ApiRoute`` compiles, once per route, a
resolver for the kinds of input this API uses (path, query and header parameters, a query model,
a JSON body model, the request, and ``async`` dependencies made of these), and validates each
value with the very pydantic field FastAPI built for it: the values, and the errors of a bad
input, are the ones FastAPI would give. A route with any other kind of input keeps FastAPI's
handler.

First of all, an operation answers only the query it documents: an unknown query parameter is a
400 naming it, never ignored. Ignored, a typo (``?dryrun=true``, ``?forse=true``) or a feature
this API lacks (``?labelSelector=``) would turn a call the client meant as safe into one that acts.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine, Iterator, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from fastapi import Request, Response, params
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

from cls_core.errors import ValidationFailed
from shared_models.errors import FieldError

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Source = Literal["path", "query", "header"]


class ApiRoute(APIRoute):
    """An ``APIRoute`` whose handler refuses undocumented query parameters, then resolves the
    route's inputs with a resolver compiled from its signature (see the module docstring)."""

    # Whether the compiled resolver serves this route (False: FastAPI's own handler does).
    compiled: bool = False

    def get_route_handler(self) -> Handler:
        try:
            handler = _compiled_handler(self.dependant)
            self.compiled = True
        except _NotCompilable:
            handler = super().get_route_handler()
        allowed = frozenset(documented_query_names(self))

        async def refuse_unknown_query(request: Request) -> Response:
            if request.scope["query_string"]:
                unknown = [name for name in request.query_params if name not in allowed]
                if unknown:
                    raise unknown_query_parameters(unknown, allowed)
            return await handler(request)

        return refuse_unknown_query


# ---- the compiled resolver ----------------------------------------------------------------------


class _NotCompilable(Exception):
    """The route has an input of a kind the resolver does not know: FastAPI's handler serves it."""


@dataclass(frozen=True)
class _Param:
    """A path, query or header parameter: where to read it and how FastAPI validates it."""

    name: str
    source: Source
    key: str  # the name in the request (query and path: as sent; headers: case-insensitive)
    field: ModelField
    model: type[BaseModel] | None  # a query model: every query parameter at once

    def resolve(self, request: Request, errors: list[Any]) -> Any:
        if self.model is not None:
            value: Any = dict(request.query_params)
            loc: tuple[str, ...] = (self.source,)
        else:
            value = _sources(request, self.source).get(self.key)
            loc = (self.source, self.key)
        if value is None:
            return _default(self.field, loc, errors)
        resolved, problems = self.field.validate(value, {}, loc=loc)
        errors.extend(problems)
        return resolved


@dataclass(frozen=True)
class _Call:
    """A function (the endpoint or a dependency) and how to resolve each of its arguments."""

    call: Callable[..., Coroutine[Any, Any, Any]]
    dependencies: list[tuple[str, _Call]] = field(default_factory=list)
    params: list[_Param] = field(default_factory=list)
    request_name: str | None = None
    body: ModelField | None = None

    async def resolve(self, request: Request, solved: dict[Callable[..., Any], Any]) -> Any:
        """Call with every argument resolved, in FastAPI's order: the dependencies (each once
        per request), then the parameters and the body, whose errors are reported together."""
        values: dict[str, Any] = {}
        for name, dependency in self.dependencies:
            if dependency.call not in solved:
                solved[dependency.call] = await dependency.resolve(request, solved)
            values[name] = solved[dependency.call]
        errors: list[Any] = []
        for param in self.params:
            values[param.name] = param.resolve(request, errors)
        if self.request_name is not None:
            values[self.request_name] = request
        if self.body is not None:
            values[self.body.name] = await _json_body(request, self.body, errors)
        if errors:
            raise RequestValidationError(errors)
        return await self.call(**values)


def _compiled_handler(dependant: Dependant) -> Handler:
    endpoint = _compile(dependant, is_endpoint=True)

    async def handler(request: Request) -> Response:
        response = await endpoint.resolve(request, {})
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.call.__name__} must return a Response")
        return response

    return handler


def _compile(dependant: Dependant, is_endpoint: bool = False) -> _Call:
    call = dependant.call
    unsupported = (
        dependant.cookie_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.own_oauth_scopes
        or not dependant.use_cache
        or len(dependant.body_params) > 1
        or any(not _is_json_body(body) for body in dependant.body_params)
        or call is None
        or not inspect.iscoroutinefunction(call)  # sync (a thread) or yield (a cleanup)
    )
    if unsupported or call is None or (is_endpoint and not _returns_response(call)):
        raise _NotCompilable
    return _Call(
        call=call,
        dependencies=[(sub.name or "", _compile(sub)) for sub in dependant.dependencies],
        params=[
            *(_param(f, "path") for f in dependant.path_params),
            *(_param(f, "query") for f in dependant.query_params),
            *(_param(f, "header") for f in dependant.header_params),
        ],
        request_name=dependant.request_param_name,
        body=dependant.body_params[0] if dependant.body_params else None,
    )


def _returns_response(call: Callable[..., Any]) -> bool:
    """An endpoint that builds its Response itself; any other return value is FastAPI's to
    serialise."""
    returned = inspect.signature(call, eval_str=True).return_annotation
    return isinstance(returned, type) and issubclass(returned, Response)


def _param(model_field: ModelField, source: Source) -> _Param:
    if _is_sequence(model_field):
        raise _NotCompilable  # a repeated parameter: FastAPI's handler collects its values
    key = model_field.alias
    converts = getattr(model_field.field_info, "convert_underscores", True)
    if source == "header" and key == model_field.name and converts:
        key = key.replace("_", "-")  # ``if_match`` is the header If-Match
    model = _query_model(model_field) if source == "query" else None
    return _Param(model_field.name, source, key, model_field, model)


def _query_model(model_field: ModelField) -> type[BaseModel] | None:
    annotation = model_field.field_info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_sequence(model_field: ModelField) -> bool:
    annotation = model_field.field_info.annotation
    origin = getattr(annotation, "__origin__", None)
    return origin in (list, tuple, set, frozenset)


def _is_json_body(body: ModelField) -> bool:
    return isinstance(body.field_info, params.Body) and not isinstance(
        body.field_info, (params.Form, params.File)
    )


def _sources(request: Request, source: Source) -> Mapping[str, Any]:
    if source == "path":
        return request.path_params
    if source == "query":
        return request.query_params
    return request.headers


def _default(model_field: ModelField, loc: tuple[str, ...], errors: list[Any]) -> Any:
    """A value absent from the request: its default, or FastAPI's "Field required" error."""
    info = model_field.field_info
    if info.is_required():
        errors.append(_missing(loc))
        return None
    value = deepcopy(info.default)
    if not info.validate_default:
        return value
    resolved, problems = model_field.validate(value, {}, loc=loc)
    errors.extend(problems)
    return resolved


def _missing(loc: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": None}


async def _json_body(request: Request, body: ModelField, errors: list[Any]) -> Any:
    """The body as FastAPI reads it: parsed when its Content-Type is JSON, the raw bytes
    otherwise (the model then refuses them), absent when empty."""
    raw = await request.body()
    if not raw:
        return _default(body, ("body",), errors)
    value: Any = raw
    if _is_json(request.headers.get("content-type")):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            errors.append(_json_error(raw))
            return None
    resolved, problems = body.validate(value, {}, loc=("body",))
    errors.extend(problems)
    return resolved


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def _json_error(raw: bytes) -> dict[str, Any]:
    # In the words of the standard library's parser, as FastAPI reports it.
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        return {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
    except UnicodeDecodeError as exc:
        reason = str(exc)
    else:  # orjson refused what the standard library takes (a lone surrogate, say)
        reason = "not valid UTF-8 JSON"
    return {
        "type": "json_invalid",
        "loc": ("body", 0),
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": reason},
    }


# ---- the documented query -----------------------------------------------------------------------


def documented_query_names(route: APIRoute) -> Iterator[str]:
    yield from _declared_query_names(route.dependant)
    for parameter in (route.openapi_extra or {}).get("parameters", []):
        if parameter.get("in") == "query":
            yield str(parameter["name"])


def _declared_query_names(dependant: Dependant) -> Iterator[str]:
    for query_field in dependant.query_params:
        model = _query_model(query_field)
        if model is None:
            yield query_field.alias
            continue
        for name, model_field in model.model_fields.items():
            yield model_field.alias or name
    for sub in dependant.dependencies:
        yield from _declared_query_names(sub)


def unknown_query_parameters(unknown: list[str], allowed: frozenset[str]) -> ValidationFailed:
    takes = ", ".join(sorted(allowed)) if allowed else "no query parameters"
    return ValidationFailed(
        [
            FieldError(
                field=name[:80],
                message=f"{name[:80]}: unknown query parameter (this operation takes {takes})",
            )
            for name in unknown
        ],
        message="Unknown query parameter",
    )
