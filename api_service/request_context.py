"""The outermost layer of the API (pure ASGI): request id, access line, HTTP metrics, last resort.

- ``X-Request-ID``: taken from the request when it is a short id of safe characters (a gateway's
  or a client's), generated otherwise, and echoed on every response, errors included;
- the request's log context (``cls_runtime.logs``): every line logged while serving it carries
  the request id and, once bound, the resource's ids and generation;
- one access line per request: method, route template, path, status, duration, resource ids;
- ``http_requests_total`` and ``http_request_duration_seconds`` by route template;
- an exception nothing handled becomes a 500 in the envelope, logged once with its traceback
  and the request id (never the request's headers or body);
- a client that hangs up before its answer (mid-body, say) is counted and logged as 499, the
  status proxies use for it: no error, no traceback.

It wraps the other middlewares, so a 413 from the size limit or a 401 from the proxy check is
counted, logged and carries the request id like any other response.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_service.error_handlers import error_response
from api_service.http_edge import EDGE_STATUS
from api_service.metrics import UNMATCHED, ApiMetrics
from cls_core.errors import ApiError
from cls_runtime.logs import bind, current_context, log_context

log = logging.getLogger("api_service")
access_log = logging.getLogger("api_service.access")

HEADER = b"x-request-id"
# The status counted for a request whose client hung up before it was answered (nginx's).
CLIENT_CLOSED = 499
# Room for a UUID, a W3C trace id or a gateway's own; nothing that could break a log line.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:+=/-]{1,128}")
# Path parameters, by route template fragment, as the resource fields of log lines.
_PATH_FIELDS = (("/nodepools/{id}", "id", "nodepool_id"), ("/clusters/{id}", "id", "cluster_id"))


class RouteTemplates:
    """The path template of a request's route, e.g. ``/api/v1/nodepools/{id}``.

    FastAPI puts the matched route in ``scope["route"]``, but the route as its router declared
    it, without the prefix it was included with: the templates are recorded at inclusion.
    Requests an outer middleware answered before routing are matched against them here.
    """

    def __init__(self) -> None:
        self._by_route: dict[int, str] = {}
        self._patterns: list[tuple[re.Pattern[str], str]] = []

    def include(self, routes: Iterable[BaseRoute], prefix: str = "") -> None:
        for route in routes:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                self._by_route[id(route)] = prefix + path
                self._patterns.append((compile_path(prefix + path)[0], prefix + path))

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return self._by_route.get(id(route), UNMATCHED)
        path = scope["path"]
        return next((t for pattern, t in self._patterns if pattern.match(path)), UNMATCHED)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics, templates: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        started = time.perf_counter()
        status = 500
        response_started = False
        disconnected = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), (HEADER, request_id.encode())]
            await send(message)

        async def watched_receive() -> Message:
            nonlocal disconnected
            message = await receive()
            disconnected = disconnected or message["type"] == "http.disconnect"
            return message

        with log_context(request_id=request_id):
            try:
                await self.app(scope, watched_receive, send_with_id)
            except Exception:
                log.exception("unhandled error")
                if response_started:
                    raise  # too late for a clean 500: the server closes the connection
                await error_response(ApiError("Internal error"))(scope, receive, send_with_id)
            finally:
                if disconnected and not response_started:
                    # Nobody was answered: the client hung up (499, as proxies count it), or
                    # the edge answered for the app (a body timeout's 408).
                    status = scope.get(EDGE_STATUS, CLIENT_CLOSED)
                self._account(scope, status, time.perf_counter() - started)

    def _account(self, scope: Scope, status: int, seconds: float) -> None:
        route = self.templates.of(scope)
        self.metrics.observe(scope["method"], route, status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            _bind_path_ids(route, scope.get("path_params") or {})
            access_log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"][:256],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "client": (scope.get("client") or ("",))[0],
                },
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == HEADER:
            if _SAFE_ID.fullmatch(value):
                return str(value.decode())
            break
    return uuid.uuid4().hex


def _bind_path_ids(route: str, params: dict[str, Any]) -> None:
    """The ids in the path, for a request whose code did not bind its resource itself."""
    bound = current_context()
    fields = {}
    for fragment, param, field in _PATH_FIELDS:
        if fragment in route and param in params:
            fields[field] = str(params[param])[:64]
    if "{clusterId}" in route and "clusterId" in params:
        fields["cluster_id"] = str(params["clusterId"])[:64]
    bind(**{k: v for k, v in fields.items() if k not in bound})
