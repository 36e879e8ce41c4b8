"""Bytes that are not HTTP get the error envelope too: 400 MALFORMED_REQUEST (uvicorn's own
answer is a plain-text 400), then the connection is closed, with either parser."""

from __future__ import annotations

import pytest

from tests.conftest import USER
from tests.edge.conftest import EdgeServer
from tests.support.raw_http import RawConnection

MALFORMED = {
    "request line": b"NOT HTTP AT ALL\r\n\r\n",
    "header without a colon": b"GET /health HTTP/1.1\r\nHost: test\r\nno colon\r\n\r\n",
    "NUL in a header name": b"GET /health HTTP/1.1\r\nHost: test\r\nX-\x00: a\r\n\r\n",
    "Content-Length not a number": (
        b"POST /api/v1/clusters HTTP/1.1\r\nHost: test\r\nContent-Length: ten\r\n\r\n"
    ),
    "non-ASCII path": "GET /h\u00e9alth HTTP/1.1\r\nHost: test\r\n\r\n".encode("latin-1"),
}

MALFORMED_BODY = (
    "POST /api/v1/clusters HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
    f"Content-Type: application/json\r\nX-User-Email: {USER['X-User-Email']}\r\n\r\n"
    '5\r\n{"a":\r\nnot a chunk size\r\n\r\n'
).encode()


@pytest.mark.parametrize("raw_request", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_http_is_400_malformed_request_in_the_envelope(
    edge_server: EdgeServer, raw: RawConnection, raw_request: bytes
) -> None:
    await raw.send(raw_request)
    answer = await raw.answer()
    assert answer.status == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.error_code == "MALFORMED_REQUEST"
    assert await raw.closed_by_server()


async def test_a_malformed_chunked_body_is_400_malformed_request(raw: RawConnection) -> None:
    # The head was fine: the app was already waiting for the body when the parser failed.
    await raw.send(MALFORMED_BODY)
    answer = await raw.answer()
    assert (answer.status, answer.error_code) == (400, "MALFORMED_REQUEST")
    assert await raw.closed_by_server()
