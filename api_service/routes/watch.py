"""Serving watches (``?watch=true``, server-sent events) and waits (``?waitFor=``).

The routes of the resources call these when their query asks to watch or to wait; the work is
``WatchService``'s (cls_core/services/watch.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import Header
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from api_service.routes.queries import ResourceGetQuery, WatchFields
from api_service.routes.responses import stored_resource_response
from cls_core.errors import Forbidden, ValidationFailed
from cls_core.services.access import Caller
from cls_core.services.watch import WaitCondition, Watch, WatchFilter, WatchService
from shared_models.errors import ErrorEnvelope
from shared_models.names import Kind

LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=100_000,
        description="With watch=true: resume after this event id (what EventSource sends "
        "when it reconnects)",
    ),
]

TIMED_OUT_HEADER = "X-Wait-Timed-Out"

_STREAM = {
    "text/event-stream": {
        "schema": {"type": "string"},
        "example": 'event: MODIFIED\nid: eyJ...\ndata: {"id": "...", "status": {...}}\n\n',
    }
}
_WATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    410: {
        "model": ErrorEnvelope,
        "description": "With watch=true: the resume token is older than the history kept; "
        "list again, then watch (RESOURCE_EXPIRED)",
    },
    429: {
        "model": ErrorEnvelope,
        "description": "With watch=true or waitFor: too many of your watches are open "
        "(TOO_MANY_REQUESTS)",
    },
}


def watchable(page_headers: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """The responses of a route that can also stream its changes."""
    ok: dict[str, Any] = {"content": _STREAM}
    if page_headers:
        ok["headers"] = page_headers
    return {200: ok, **_WATCH_ERRORS}


def waitable(etag_headers: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The responses of a GET of one resource, which can also watch it or wait for it."""
    headers = {
        **etag_headers,
        TIMED_OUT_HEADER: {
            "description": "With waitFor: 'true' when the condition did not hold before the "
            "timeout (the resource is as it was then)",
            "schema": {"type": "string"},
        },
    }
    return {
        **watchable(headers),
        204: {"description": "waitFor=Deleted: the resource was deleted while waiting"},
    }


def resume_token(query: WatchFields, last_event_id: str | None) -> str | None:
    if query.resource_version is not None and not query.watch:
        raise ValidationFailed.of("resource_version", "resource_version: only with watch=true")
    return last_event_id or query.resource_version


async def watch_response(
    service: WatchService, caller: Caller, wanted: WatchFilter, token: str | None
) -> Response:
    """The watch as a stream of server-sent events; its errors (400, 404, 410, 429) are
    answered before the stream starts, as any request's."""
    watch = await service.open(caller, wanted, token)
    return EventSourceResponse(
        _frames(service, watch),
        ping=service.settings.watch_heartbeat,
        # Proxies must pass each event on as it comes (nginx buffers otherwise).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _frames(service: WatchService, watch: Watch) -> AsyncIterator[ServerSentEvent]:
    async for event in service.events(watch):
        yield ServerSentEvent(data=event.data, event=event.type, id=event.token)


async def one_resource(
    service: WatchService,
    caller: Caller | None,
    kind: Kind,
    resource_id: str,
    query: ResourceGetQuery,
    last_event_id: str | None,
) -> Response | None:
    """The answer of a GET of one resource that watches it or waits for it (None: a plain
    GET)."""
    token = resume_token(query, last_event_id)
    if not query.watch and query.wait_for is None:
        return None
    if caller is None:
        raise Forbidden(
            "Controllers do not watch", "watch and waitFor are for users (X-User-Email)"
        )
    if query.watch:
        if query.wait_for is not None:
            raise ValidationFailed.of("waitFor", "waitFor: not with watch=true")
        return await watch_response(
            service, caller, WatchFilter(kind, resource_id=resource_id), token
        )
    assert query.wait_for is not None
    condition = WaitCondition.parse(query.wait_for)
    result = await service.wait_for(caller, kind, resource_id, condition, query.timeout)
    if result.view is None:
        return Response(status_code=204)
    rv = str(orjson.loads(result.view)["resource_version"])
    response = stored_resource_response(rv, result.view)
    if result.timed_out:
        response.headers[TIMED_OUT_HEADER] = "true"
    return response
