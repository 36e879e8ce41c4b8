"""A TCP proxy a test can cut and restore: the broker or Redis "goes away" for the code under
test while the real server (shared by other tests on this machine) keeps running.

The ``broker_proxy`` and ``redis_proxy`` fixtures (registered for every test by tests/conftest.py)
are cuttable paths to the shared RabbitMQ and Redis; ``through(url, proxy)`` points a URL at one.

The proxy runs in the test's event loop: whatever the code under test does through it (its
shutdown included) needs that loop running, so wait for processes off the loop
(``asyncio.to_thread``), never with a blocking call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import AMQP_URL, REDIS_URL


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> TcpProxy:
        """Listen on 127.0.0.1 (on ``port``, or a free one) and forward to the target."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        """Stop listening and drop every open connection, as a dead server would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        """Listen again on the same port."""
        await self.start(self.port)

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()


def target_of(url: str) -> tuple[str, int]:
    """(host, port) of a redis:// or amqp:// URL."""
    parts = urlsplit(url)
    default = 6379 if parts.scheme.startswith("redis") else 5672
    return parts.hostname or "127.0.0.1", parts.port or default


def through(url: str, proxy: TcpProxy) -> str:
    """The same URL, pointed at the proxy instead of the server."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def broker_proxy() -> AsyncIterator[TcpProxy]:
    """A cuttable path to RabbitMQ (the broker itself keeps running for everyone else)."""
    proxy = await TcpProxy(*target_of(AMQP_URL)).start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    """A cuttable path to Redis."""
    proxy = await TcpProxy(*target_of(REDIS_URL)).start()
    yield proxy
    await proxy.close()
