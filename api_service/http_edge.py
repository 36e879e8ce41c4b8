"""The edge of the API: what one connection may cost before its request reaches the app.

uvicorn parses HTTP with one protocol object per connection (h11 or httptools). The subclasses
here feed it under limits, and answer what they refuse in the error envelope, as the app would:

- a request head (request line and headers) over ``CLS_MAX_HEADER_BYTES``: 431. Its bytes are
  counted before the parser sees them: httptools gathers each header whole before handing it on
  and h11 holds the head until it ends, so a 64 MiB header would otherwise be held whole;
- a head not complete ``CLS_HEADER_TIMEOUT`` seconds after its first byte (after the connection
  opened, for its first request), or a body not complete ``CLS_BODY_TIMEOUT`` seconds after its
  head: 408. Between requests, uvicorn's keep-alive timeout closes an idle connection;
- a connection beyond ``CLS_MAX_CONNECTIONS`` open ones: 503 at once;
- bytes no parser accepts as HTTP: 400 ``MALFORMED_REQUEST`` (uvicorn's own is plain text).

A refusal closes the connection: the answer, the end of our side, then what the client still
sends is read and dropped for a moment (``LINGER_*``), so that closing with unread data (which
makes the kernel reset the connection) does not lose the answer on its way.

Bytes a client pipelines behind a complete request in the same read are counted from the next
read on: a pipelined head may exceed the limit by one read (256 KiB), never more.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, Literal, Protocol, cast

import h11
import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from cls_runtime.settings import Settings
from shared_models.errors import ErrorCode, envelope

log = logging.getLogger("api_service.edge")

# After a refusal: how long, and how many bytes, the client's remaining bytes are read and dropped.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024
# The status the edge answered a request with while the app was reading its body (a body
# timeout), in that request's scope: the app counts it as answered so, not as a disconnect.
EDGE_STATUS = "cls.edge_status"


@dataclass(frozen=True)
class EdgeLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> EdgeLimits:
        return cls(
            settings.max_header_bytes,
            settings.header_timeout,
            settings.body_timeout,
            settings.max_connections,
        )


class Stage(enum.Enum):
    HEAD = "head"  # the next bytes are (part of) a request head
    BODY = "body"  # the head is in; its body is being received
    WAIT = "wait"  # the request is in; h11 holds what follows until the answer is sent


@dataclass(frozen=True)
class Refusal:
    status: int
    code: ErrorCode
    message: str
    details: str = ""
    retry_after: int | None = None


class ConnectionEdge:
    """The limits of one connection. Its protocol (below) reports each stage of the request
    being received and feeds the client's bytes through ``receive``."""

    def __init__(self, protocol: _Served, limits: EdgeLimits) -> None:
        self.protocol = protocol
        self.limits = limits
        self.stage = Stage.HEAD
        self.head_bytes = 0  # of the head being received (those fed in this stage)
        self.timer: asyncio.TimerHandle | None = None
        self.refused = False
        self.dropped = 0  # bytes read and dropped after a refusal

    def opened(self) -> None:
        if len(self.protocol.connections) > self.limits.max_connections:
            self.refuse(
                Refusal(
                    503,
                    ErrorCode.UNAVAILABLE,
                    "Too many connections; retry shortly",
                    f"the limit is {self.limits.max_connections} connections",
                    retry_after=1,
                )
            )
        else:
            self.arm(self.limits.header_timeout)  # a connection that never sends a byte

    def receive(self, data: bytes, feed: Callable[[bytes], None]) -> None:
        """Feed ``data`` to the parser (``feed``), a head at most ``max_header_bytes`` long."""
        if self.refused:
            self.drop(len(data))
            return
        while self.stage is Stage.HEAD and data:
            room = self.limits.max_header_bytes - self.head_bytes
            if room <= 0:
                self.refuse(
                    Refusal(
                        431,
                        ErrorCode.HEADERS_TOO_LARGE,
                        "Request headers too large",
                        f"the limit is {self.limits.max_header_bytes} bytes",
                    )
                )
                return
            piece, data = data[:room], data[room:]
            self.head_bytes += len(piece)
            feed(piece)
            if self.refused:
                return
        if data:
            feed(data)
        self.settle()

    def enter(self, stage: Stage) -> None:
        """The parser moved to ``stage`` (called on every event; only a change counts)."""
        if stage is self.stage or self.refused:
            return
        self.stage = stage
        self.head_bytes = 0
        self.disarm()

    def settle(self) -> None:
        """Start the stage's clock once bytes of it wait for more: a partial head, or a body."""
        if self.timer is not None or self.refused:
            return
        if self.stage is Stage.BODY:
            self.arm(self.limits.body_timeout)
        elif self.stage is Stage.HEAD and self.head_bytes:
            self.arm(self.limits.header_timeout)

    def arm(self, seconds: float) -> None:
        self.timer = self.protocol.loop.call_later(seconds, self.timed_out)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def timed_out(self) -> None:
        self.timer = None
        if self.stage is Stage.BODY:
            what, seconds = "body", self.limits.body_timeout
        else:
            what, seconds = "headers", self.limits.header_timeout
        self.refuse(
            Refusal(
                408,
                ErrorCode.REQUEST_TIMEOUT,
                f"Request {what} not received in time",
                f"the limit is {seconds:g} s",
            )
        )

    def malformed(self) -> None:
        self.refuse(Refusal(400, ErrorCode.MALFORMED_REQUEST, "Malformed HTTP request"))

    def refuse(self, refusal: Refusal) -> None:
        """Answer ``refusal`` (unless another answer is owed first), then close."""
        if self.refused:
            return
        self.refused = True
        self.disarm()
        protocol = self.protocol
        transport = protocol.transport
        cycle = protocol.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started or protocol.answering_earlier():
                # Too late, or the answer would be read as that of an earlier request.
                transport.close()
                return
            # The app waits for this body: it is told the client went, and its answer dropped.
            cycle.scope[EDGE_STATUS] = refusal.status
            cycle.disconnected = True
            cycle.message_event.set()
        request_id = uuid.uuid4().hex
        transport.write(self.answer(refusal, request_id))
        log.info(
            "refused %d %s",
            refusal.status,
            refusal.code,
            extra={
                "status": refusal.status,
                "request_id": request_id,
                "client": (protocol.client or ("",))[0],
            },
        )
        if transport.can_write_eof():
            transport.write_eof()
        protocol.flow.resume_reading()
        self.timer = protocol.loop.call_later(LINGER_SECONDS, transport.close)

    def answer(self, refusal: Refusal, request_id: str) -> bytes:
        body = orjson.dumps(envelope(refusal.code, refusal.message, refusal.details))
        lines = [f"HTTP/1.1 {refusal.status} {HTTPStatus(refusal.status).phrase}".encode()]
        lines += [
            name + b": " + value for name, value in self.protocol.server_state.default_headers
        ]
        lines += [
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"connection: close",
            b"x-request-id: " + request_id.encode(),
        ]
        if refusal.retry_after is not None:
            lines.append(b"retry-after: %d" % refusal.retry_after)
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def drop(self, size: int) -> None:
        self.dropped += size
        if self.dropped > LINGER_BYTES:
            self.protocol.transport.close()

    def closed(self) -> None:
        self.disarm()


class _Served(Protocol):
    """What ``ConnectionEdge`` uses of its protocol: uvicorn's h11 and httptools ones, below."""

    @property
    def transport(self) -> asyncio.Transport: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def connections(self) -> AbstractSet[Any]: ...
    @property
    def cycle(self) -> Any: ...  # the request being answered (each parser has its own class)
    @property
    def client(self) -> tuple[str, int] | None: ...
    @property
    def flow(self) -> FlowControl: ...
    @property
    def server_state(self) -> ServerState: ...
    def answering_earlier(self) -> bool:
        """Whether ``cycle`` answers an earlier request than the one being received."""


# One subclass per parser: each reports its parser's events (where a head ends, where a
# message ends) to the edge, and hands its 400 for malformed HTTP to it.


class _EdgeProtocol:
    """What both parsers' protocols do at the edge; each subclass below adds where its parser
    reports that a head or a message ended. Listed before the uvicorn protocol in the bases, so
    ``super()`` here is the uvicorn protocol."""

    limits: ClassVar[EdgeLimits]
    edge: ConnectionEdge

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edge = ConnectionEdge(self, self.limits)  # type: ignore[arg-type]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.edge.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self.edge.closed()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        self.edge.receive(data, super().data_received)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        self.edge.malformed()


class EdgeHttpToolsProtocol(_EdgeProtocol, HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.edge.enter(Stage.BODY)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.edge.enter(Stage.HEAD)

    def answering_earlier(self) -> bool:
        # Before its head is complete a request has no cycle; a complete one waits in the
        # pipeline while an earlier one is answered.
        return self.edge.stage is Stage.HEAD or bool(self.pipeline)


class EdgeH11Protocol(_EdgeProtocol, H11Protocol):
    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is h11.IDLE:
            self.edge.enter(Stage.HEAD)
        else:
            self.edge.enter(Stage.BODY if state is h11.SEND_BODY else Stage.WAIT)
        self.edge.settle()

    def answering_earlier(self) -> bool:
        return False  # h11 parses no further than the request being answered


Parser = Literal["auto", "h11", "httptools"]


def edge_protocol(settings: Settings, parser: Parser = "auto") -> type[asyncio.Protocol]:
    """The class for uvicorn's ``http=``: ``parser`` (``auto``: httptools when installed, as
    uvicorn's own "auto" chooses, else h11) under the limits of ``settings``."""
    if parser == "auto":
        try:
            import httptools  # noqa: F401
        except ImportError:  # pragma: no cover
            parser = "h11"
        else:
            parser = "httptools"
    base = EdgeH11Protocol if parser == "h11" else EdgeHttpToolsProtocol
    return cast(
        type[asyncio.Protocol], type(base.__name__, (base,), {"limits": EdgeLimits.of(settings)})
    )
