"""Every error leaves the API in the envelope ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api_service.json_response import OrjsonResponse
from cls_core.errors import ApiError, ValidationFailed
from cls_core.services.validation import field_errors
from shared_models.errors import ErrorCode, envelope

log = logging.getLogger("cls_core.errors")

_HTTP_CODES = {
    400: ErrorCode.VALIDATION_ERROR,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    503: ErrorCode.UNAVAILABLE,
}


def error_response(error: ApiError) -> OrjsonResponse:
    return OrjsonResponse(
        envelope(error.code, error.message, error.details, error.fields),
        status_code=error.status_code,
        headers=error.headers or None,
    )


def _resource_of(request: Request) -> str:
    return "cluster" if "/nodepools" not in request.url.path else "nodepool"


async def _api_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


def _body_not_json(errors: list[Any]) -> bool:
    """FastAPI hands a body over as raw bytes when its Content-Type is not JSON."""
    return any(
        tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes) for e in errors
    )


async def _request_validation(request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if _body_not_json(list(errors)):
        # Say why, rather than "not a JSON object" about a body that may well be one.
        return error_response(
            ValidationFailed.of("Content-Type", "Content-Type: send the body as application/json")
        )
    # Lazily: field_errors converts only the errors the response lists.
    fields = field_errors(_relocated(errors), resource=_resource_of(request))
    return error_response(ValidationFailed(fields, total=len(errors)))


def _relocated(errors: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """FastAPI's errors as field_errors reads them: located in the body, query... itself."""
    for error in errors:
        loc = list(error.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        if error.get("type") == "json_invalid":
            ctx = error.get("ctx") or {}
            reason = ctx.get("error", "malformed JSON")
            yield {**error, "loc": (), "msg": f"request body is not valid JSON: {reason}"}
            continue
        yield {**error, "loc": tuple(loc)}


def _unparsable_body(exc: StarletteHTTPException) -> ValidationFailed:
    """FastAPI's 400 for a body json.loads could not even decode (bad UTF-8, nesting depth)."""
    if isinstance(exc.__cause__, UnicodeDecodeError):
        reason = "it is not UTF-8"
    elif isinstance(exc.__cause__, RecursionError):
        reason = "it is nested too deeply"
    else:
        reason = "it could not be decoded"
    return ValidationFailed.of("body", f"request body is not valid JSON: {reason}")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's 405 names only the methods of
    the first route whose path matched, and FastAPI makes one route per method: GET, PUT and
    DELETE of /clusters/{id} would answer an OPTIONS with ``Allow: GET``."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def _http_exception(request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        return error_response(_unparsable_body(exc))
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.VALIDATION_ERROR)
    if exc.status_code == 404:
        message = "Not found"
    elif exc.status_code == 405:
        message = "Method not allowed"
    else:
        message = str(exc.detail)
    response = OrjsonResponse(envelope(code, message, ""), status_code=exc.status_code)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["Allow"] = allowed_methods(request) or response.headers.get("Allow", "")
    return response


async def _redis_down(_: Request, exc: Exception) -> OrjsonResponse:
    log.warning("redis unavailable: %s", exc)
    return OrjsonResponse(
        envelope(ErrorCode.UNAVAILABLE, "Storage is unavailable; retry shortly", ""),
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _unexpected(_: Request, exc: Exception) -> OrjsonResponse:
    log.exception("unhandled error", exc_info=exc)
    return OrjsonResponse(envelope(ErrorCode.INTERNAL, "Internal error", ""), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
    app.add_exception_handler(ConnectionRefusedError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
