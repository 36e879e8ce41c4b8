"""Refuse a JSON request body that lenient parsers would misread, before any route parses it.

Every JSON body the API reads passes ``shared_models.strict_json`` here, whatever parser its
route uses afterwards (FastAPI's ``json.loads``, orjson, pydantic). What a lenient parser
silently accepts is answered here with a 400 in the envelope, so no route ever sees it: duplicate
keys (the last one would win), nesting deeper than ``strict_json.MAX_DEPTH`` (a RecursionError
in waiting), NaN and Infinity, lone surrogates (which cannot be stored as UTF-8), a byte order
mark; and objects with far more keys than any valid document, before validation spends CPU on
each of their keys. Like the size limit (which runs first, so the body in hand is bounded), this
comes before authentication: the body's syntax tells nothing about anyone's resources.

A body that no parser accepts (truncated, not JSON at all) passes through: its route reports it,
after checking the caller's credentials, as it always has.

A body counts as JSON when its Content-Type is JSON (``application/json``, ``*/*+json``) or
absent; an empty body is left to the route ("body is required"), and so is any other
Content-Type (the route says which one it takes).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from api_service.body_limit import replaying
from api_service.error_handlers import error_response
from cls_core.errors import ValidationFailed
from shared_models.strict_json import (
    Malformed,
    StrictJsonError,
    TooMany,
    lenient_parsers_accept,
    loads,
)

_BODYLESS = {"GET", "HEAD", "OPTIONS", "DELETE"}


def is_json_content_type(value: bytes | None) -> bool:
    if not value:
        return True
    media = value.split(b";", 1)[0].strip().lower()
    kind, _, subtype = media.partition(b"/")
    return kind == b"application" and (subtype == b"json" or subtype.endswith(b"+json"))


class JsonGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), None)
        if not is_json_content_type(content_type):
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        if body is None:
            return  # the client went away
        if body:
            problem = _problem(body)
            if problem is not None:
                await error_response(problem)(scope, receive, send)
                return
        await self.app(scope, replaying(body, receive), send)


def _problem(body: bytes) -> ValidationFailed | None:
    try:
        loads(body)
    except Malformed as exc:
        if not lenient_parsers_accept(body):
            return None  # plainly not JSON: the route says so, after authentication
        return _invalid(exc)
    except StrictJsonError as exc:
        return _invalid(exc)
    return None


def _invalid(exc: StrictJsonError) -> ValidationFailed:
    if isinstance(exc, TooMany):
        return ValidationFailed.of("body", f"request body refused: {exc}")
    return ValidationFailed.of("body", f"request body is not valid JSON: {exc}")


async def _read(receive: Receive) -> bytes | None:
    """The whole body (bounded by the size limit in front); None when the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
