"""CLS_HEADER_TIMEOUT and CLS_BODY_TIMEOUT: a request whose head, or body, is not complete in
time is answered 408 REQUEST_TIMEOUT and its connection closed, with either parser. The clocks
run from the head's first byte (the connection's opening, for its first request) and from the
head's end: a client trickling a byte at a time cannot hold a connection forever."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.conftest import USER, gcp_cluster_body
from tests.support.raw_http import RawConnection, request

SHORT = 1.0
# How much later than its limit a 408 may come (a loaded 2-core machine).
SLACK = 2.0
CREATE_HEADERS = {**USER, "Content-Type": "application/json"}


async def timed_answer(raw: RawConnection, limit: float) -> tuple[int, str, float]:
    """(status, error code, seconds since the connection opened) of the server's answer."""
    answer = await raw.answer(within=limit + SLACK + 5)
    return answer.status, answer.error_code, time.monotonic() - raw.opened


async def trickle(raw: RawConnection, data: bytes, every: float) -> None:
    """Send ``data`` a byte at a time, until done or the server closes the connection."""
    for byte in data:
        if not await raw.send(bytes([byte])):
            return
        await asyncio.sleep(every)


@pytest.mark.edge(header_timeout=SHORT)
async def test_a_head_not_complete_in_time_is_408(raw: RawConnection) -> None:
    await raw.send(b"GET /health HTTP/1.1\r\nHost: test\r\n")
    status, code, after = await timed_answer(raw, SHORT)
    assert (status, code) == (408, "REQUEST_TIMEOUT")
    assert SHORT * 0.9 <= after <= SHORT + SLACK


@pytest.mark.edge(header_timeout=SHORT)
async def test_the_connection_is_closed_after_a_408(raw: RawConnection) -> None:
    await raw.send(b"GET /health HTTP/1.1\r\n")
    assert (await raw.answer(within=SHORT + SLACK)).status == 408
    assert await raw.closed_by_server()


@pytest.mark.edge(header_timeout=SHORT)
async def test_a_connection_that_sends_nothing_is_408_after_the_header_timeout(
    raw: RawConnection,
) -> None:
    status, code, after = await timed_answer(raw, SHORT)
    assert (status, code) == (408, "REQUEST_TIMEOUT")
    assert SHORT * 0.9 <= after <= SHORT + SLACK


@pytest.mark.edge(header_timeout=SHORT)
async def test_a_trickled_head_is_timed_from_its_first_byte(raw: RawConnection) -> None:
    sender = asyncio.create_task(trickle(raw, request("GET", "/health", USER), SHORT / 5))
    status, code, after = await timed_answer(raw, SHORT)
    sender.cancel()
    assert (status, code) == (408, "REQUEST_TIMEOUT")
    assert after <= SHORT + SLACK


@pytest.mark.edge(header_timeout=3 * SHORT)
async def test_a_head_trickled_within_the_timeout_is_served(raw: RawConnection) -> None:
    await trickle(raw, request("GET", "/health"), SHORT / 40)
    assert (await raw.answer()).status == 200


@pytest.mark.edge(header_timeout=SHORT)
async def test_an_idle_keep_alive_connection_is_not_timed_out_between_requests(
    raw: RawConnection,
) -> None:
    # The header clock starts with a request's first byte; idle time between requests is
    # uvicorn's keep-alive timeout's (5 s), longer than this wait.
    for _ in range(2):
        await raw.send(request("GET", "/health"))
        assert (await raw.answer()).status == 200
        await asyncio.sleep(SHORT * 1.5)


@pytest.mark.edge(body_timeout=SHORT)
async def test_a_body_not_complete_in_time_is_408(raw: RawConnection) -> None:
    body = orjson.dumps(gcp_cluster_body())
    await raw.send(request("POST", "/api/v1/clusters", CREATE_HEADERS, body)[:-10])
    status, code, after = await timed_answer(raw, SHORT)
    assert (status, code) == (408, "REQUEST_TIMEOUT")
    assert SHORT * 0.9 <= after <= SHORT + SLACK
    assert await raw.closed_by_server()


@pytest.mark.edge(body_timeout=SHORT)
async def test_a_trickled_body_is_timed_from_the_end_of_its_head(raw: RawConnection) -> None:
    whole = request("POST", "/api/v1/clusters", CREATE_HEADERS, orjson.dumps(gcp_cluster_body()))
    head, _, body = whole.partition(b"\r\n\r\n")
    await raw.send(head + b"\r\n\r\n")
    sender = asyncio.create_task(trickle(raw, body, SHORT / 5))
    status, code, after = await timed_answer(raw, SHORT)
    sender.cancel()
    assert (status, code) == (408, "REQUEST_TIMEOUT")
    assert after <= SHORT + SLACK
