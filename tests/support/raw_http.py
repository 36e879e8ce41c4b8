"""HTTP/1.1 over a bare socket, for tests of what a client does on the wire (slow, huge, broken
requests) that an HTTP client library would not send, and of how the server ends connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def error_code(self) -> str:
        code: str = self.json()["error"]["code"]
        return code


class RawConnection:
    """One TCP connection to the server, written and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.opened = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False when the server has closed the connection."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            return False
        return True

    async def answer(self, within: float = 10.0) -> Answer:
        """The next response (it must carry a Content-Length, as the API's do)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)
        status, headers = parse_head(head)
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), within)
        return Answer(status, headers, body)

    async def closed_by_server(self, within: float = 5.0) -> bool:
        """Whether the server ends the connection (end of stream, or a reset) within
        ``within`` seconds, sending nothing more."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), within)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in filter(None, lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def parse_answer(raw: bytes) -> Answer:
    """The response at the start of ``raw`` (a Content-Length response)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    return Answer(status, headers, rest[: int(headers.get("content-length", "0"))])


def upload_while_reading(
    host: str, port: int, start: bytes, filler: bytes, count: int
) -> tuple[bytes, int]:
    """Send ``start`` then ``count`` times ``filler`` from a thread, while reading what the server
    answers until it closes: (the bytes answered, the filler bytes the kernel accepted). Blocking
    sockets, as asyncio's streams drop what was read once a write fails."""
    accepted = 0
    with socket.create_connection((host, port)) as sock:

        def upload() -> None:
            nonlocal accepted
            try:
                sock.sendall(start)
                for _ in range(count):
                    sock.sendall(filler)
                    accepted += len(filler)
            except OSError:
                pass  # the server closed the connection

        sender = threading.Thread(target=upload)
        sender.start()
        sock.settimeout(30)
        answered = b""
        try:
            while chunk := sock.recv(65536):
                answered += chunk
        except OSError:
            pass  # a reset after the answer (the server closed with the upload unread)
        sender.join(60)
    return answered, accepted


def request(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """A request's bytes: ``Host`` first, ``Content-Length`` when there is a body."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
