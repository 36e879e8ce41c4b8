"""Refuse request bodies over the limit before the app reads them (413 in the envelope).

The body is read here, up to the limit, and replayed to the app: a chunked upload without a
Content-Length is bounded exactly like one that declares its size.

Before answering 413 the rest of the upload is read and discarded (up to DRAIN_LIMIT): a
server that closes a connection with unread data in its receive buffer makes the kernel send
a TCP reset, and the client, still writing, never sees the 413 but a "connection reset".
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_service.error_handlers import error_response
from cls_core.errors import PayloadTooLarge

_BODYLESS = {"GET", "HEAD", "OPTIONS", "DELETE"}

# How much of an oversized upload is read (and dropped) so that the client can read the 413.
# Beyond it the connection is closed at once: the client may then see a reset instead.
DRAIN_LIMIT = 64 * 1024 * 1024


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= DRAIN_LIMIT:
                await _drain(receive, 0)
            await self._reject(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > self.max_bytes:
                if more:
                    await _drain(receive, size)
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        await self.app(scope, replaying(body, receive), send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            PayloadTooLarge("Request body too large", f"the limit is {self.max_bytes} bytes")
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


async def _drain(receive: Receive, already: int) -> None:
    """Read and drop the rest of the upload, up to DRAIN_LIMIT bytes in all."""
    size = already
    while size <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        size += len(message.get("body", b""))


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, whole, then defers to the
    server's (for the disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
