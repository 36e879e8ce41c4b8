"""CLS_MAX_CONNECTIONS: a connection beyond the limit is answered 503 UNAVAILABLE at once and
closed, whatever it sends; once connections close, new ones are served again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.edge.conftest import EdgeServer
from tests.support.raw_http import RawConnection, request

LIMIT = 8


@pytest.fixture
async def full(edge_server: EdgeServer) -> AsyncIterator[list[RawConnection]]:
    """LIMIT idle connections, each served once (so the server has them all)."""
    connections = [await edge_server.connect() for _ in range(LIMIT)]
    for connection in connections:
        await connection.send(request("GET", "/health"))
        assert (await connection.answer()).status == 200
    yield connections
    for connection in connections:
        await connection.close()


@pytest.mark.edge(max_connections=LIMIT)
async def test_a_connection_beyond_the_limit_is_503_in_the_envelope(
    edge_server: EdgeServer, full: list[RawConnection]
) -> None:
    extra = await edge_server.connect()
    await extra.send(request("GET", "/health"))
    answer = await extra.answer()
    assert answer.status == 503
    assert answer.error_code == "UNAVAILABLE"
    assert answer.headers["retry-after"] == "1"
    await extra.close()


@pytest.mark.edge(max_connections=LIMIT)
async def test_a_connection_beyond_the_limit_is_closed(
    edge_server: EdgeServer, full: list[RawConnection]
) -> None:
    extra = await edge_server.connect()
    assert (await extra.answer()).status == 503  # before it sent anything
    assert await extra.closed_by_server()
    await extra.close()


@pytest.mark.edge(max_connections=LIMIT)
async def test_connections_are_served_again_once_others_close(
    edge_server: EdgeServer, full: list[RawConnection]
) -> None:
    for connection in full[: LIMIT // 2]:
        await connection.close()
    # The server learns of the closes as it runs: poll until a connection is served.
    deadline = time.monotonic() + 5
    while True:
        retry = await edge_server.connect()
        await retry.send(request("GET", "/health"))
        status = (await retry.answer()).status
        await retry.close()
        if status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert status == 200
