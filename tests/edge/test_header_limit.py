"""CLS_MAX_HEADER_BYTES: a request head (request line and headers) over the limit is answered
431 HEADERS_TOO_LARGE and the connection closed, with either parser; what is not a head (bodies,
the heads of earlier requests on the connection) never counts."""

from __future__ import annotations

import asyncio

import orjson

from tests.conftest import USER, gcp_cluster_body
from tests.edge.conftest import EdgeServer
from tests.support.raw_http import RawConnection, parse_answer, request, upload_while_reading

KIB = 1024
MIB = 1024 * KIB


def head_of(size: int, path: str = "/health") -> bytes:
    """A GET whose head is exactly ``size`` bytes, padded with one header."""
    bare = request("GET", path, {"X-Pad": ""})
    return request("GET", path, {"X-Pad": "a" * (size - len(bare))})


async def test_a_head_over_the_limit_is_431_in_the_envelope(
    edge_server: EdgeServer, raw: RawConnection
) -> None:
    await raw.send(head_of(edge_server.settings.max_header_bytes + 1))
    answer = await raw.answer()
    assert answer.status == 431
    assert answer.error_code == "HEADERS_TOO_LARGE"
    assert answer.headers["connection"] == "close"
    assert answer.headers["x-request-id"]


async def test_the_connection_is_closed_after_a_431(
    edge_server: EdgeServer, raw: RawConnection
) -> None:
    await raw.send(head_of(edge_server.settings.max_header_bytes + 1))
    assert (await raw.answer()).status == 431
    assert await raw.closed_by_server()


async def test_a_head_of_exactly_the_limit_is_served(
    edge_server: EdgeServer, raw: RawConnection
) -> None:
    await raw.send(head_of(edge_server.settings.max_header_bytes))
    assert (await raw.answer()).status == 200


async def test_a_body_after_the_head_never_counts_as_header_bytes(
    edge_server: EdgeServer, raw: RawConnection
) -> None:
    # Head and body in one write: the body (3x the header limit) arrives in the same reads.
    body = orjson.dumps(gcp_cluster_body()) + b" " * (3 * edge_server.settings.max_header_bytes)
    headers = {**USER, "Content-Type": "application/json"}
    await raw.send(request("POST", "/api/v1/clusters", headers, body))
    answer = await raw.answer()
    assert answer.status == 201, answer.body


async def test_heads_of_successive_requests_on_one_connection_never_add_up(
    edge_server: EdgeServer, raw: RawConnection
) -> None:
    head = head_of(4 * KIB)
    for _ in range(3 * edge_server.settings.max_header_bytes // len(head)):
        await raw.send(head)
        assert (await raw.answer()).status == 200


async def test_pipelined_heads_adding_up_past_the_limit_are_all_served(
    edge_server: EdgeServer, raw: RawConnection
) -> None:
    head = head_of(4 * KIB)
    count = 3 * edge_server.settings.max_header_bytes // len(head)
    await raw.send(head * count)
    statuses = [(await raw.answer()).status for _ in range(count)]
    assert statuses == [200] * count


async def test_a_huge_header_is_refused_after_reading_a_bounded_part_of_it(
    edge_server: EdgeServer,
) -> None:
    """The server stops reading: the client cannot even hand the kernel a 64 MiB header (it
    could, were the server reading it all), and gets its 431 all the same."""
    answered, accepted = await asyncio.to_thread(
        upload_while_reading,
        edge_server.host,
        edge_server.port,
        b"GET /health HTTP/1.1\r\nHost: test\r\nX-Huge: ",
        b"a" * MIB,
        64,
    )
    answer = parse_answer(answered)
    assert answer.status == 431
    assert answer.error_code == "HEADERS_TOO_LARGE"
    # Socket buffers of loopback hold a few MiB; the rest was never accepted.
    assert accepted < 24 * MIB, f"{accepted / MIB:.0f} MiB accepted"
