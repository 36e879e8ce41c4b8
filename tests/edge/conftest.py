"""The API served by uvicorn as ``python -m api_service`` serves it (``uvicorn_options``), with
each HTTP parser in turn, in a thread of the test process: the edge's limits are tested on the
wire, with raw connections (tests/support/raw_http.py).

``@pytest.mark.edge(header_timeout=1.0, ...)`` sets the server's settings for one test.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from api_service.__main__ import uvicorn_options
from api_service.app import create_app
from api_service.http_edge import Parser, edge_protocol
from cls_runtime.settings import Settings
from tests.conftest import AMQP_URL, CONTROLLER_TOKENS, REDIS_URL
from tests.ops.conftest import Samples, scrape
from tests.support.raw_http import RawConnection
from tests.support.threaded_server import served_in_thread

PARSERS: list[Parser] = ["httptools", "h11"]


@dataclass(frozen=True)
class EdgeServer:
    host: str
    port: int
    settings: Settings
    parser: Parser

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def connect(self) -> RawConnection:
        return await RawConnection.open(self.host, self.port)


def edge_settings(namespace: str, **overrides: object) -> Settings:
    return Settings(
        namespace=namespace,
        redis_url=REDIS_URL,
        amqp_url=AMQP_URL,
        controller_tokens=",".join(f"{n}={t}" for n, t in CONTROLLER_TOKENS.items()),
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> Parser:
    value: Parser = request.param
    return value


@pytest.fixture
def edge_server(
    request: pytest.FixtureRequest, namespace: str, redis: Redis, parser: Parser
) -> Iterator[EdgeServer]:
    """The API (event relay off) on a free loopback port, served with ``parser``."""
    marker = request.node.get_closest_marker("edge")
    settings = edge_settings(namespace, **(marker.kwargs if marker else {}))
    options = {**uvicorn_options(settings), "http": edge_protocol(settings, parser)}
    del options["host"], options["port"]  # served_in_thread binds its own socket
    with served_in_thread(create_app(settings, relay_events=False), **options) as port:
        yield EdgeServer("127.0.0.1", port, settings, parser)


@pytest.fixture
async def raw(edge_server: EdgeServer) -> AsyncIterator[RawConnection]:
    """A connection to the edge server, closed after the test."""
    connection = await edge_server.connect()
    yield connection
    await connection.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record logged at INFO and above, by the server thread too."""
    with caplog.at_level(logging.INFO):
        yield caplog


async def scrape_until(
    server: EdgeServer, found: Callable[[Samples], bool], within: float = 5.0
) -> Samples:
    """/metrics once ``found`` holds for it (a request the edge cut short is counted when the
    app's task ends, just after), or as it is after ``within`` seconds."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=server.url) as http:
        while True:
            samples = await scrape(http)
            if found(samples) or time.monotonic() > deadline:
                return samples
            await asyncio.sleep(0.05)
