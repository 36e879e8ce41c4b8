"""What /metrics and the logs say of requests cut short: a client that hangs up before its
answer is a client disconnect, counted with status 499 (as proxies count it), never as a 500,
and not logged as an error; a request the edge answered while the app read its body (a body
timeout, a malformed body) is counted with the status the client got."""

from __future__ import annotations

import logging

import orjson
import pytest

from tests.conftest import USER, gcp_cluster_body
from tests.edge.conftest import EdgeServer, scrape_until
from tests.edge.test_malformed import MALFORMED_BODY
from tests.ops.conftest import value
from tests.support.raw_http import RawConnection, request

LABELS = {"method": "POST", "route": "/api/v1/clusters"}
CREATE_HEADERS = {**USER, "Content-Type": "application/json"}


async def hang_up_mid_body(server: EdgeServer) -> None:
    whole = request("POST", "/api/v1/clusters", CREATE_HEADERS, orjson.dumps(gcp_cluster_body()))
    connection = await server.connect()
    await connection.send(whole[:-10])
    await connection.close()


async def test_a_hang_up_mid_body_is_counted_as_499(edge_server: EdgeServer) -> None:
    await hang_up_mid_body(edge_server)
    samples = await scrape_until(
        edge_server, lambda s: value(s, "http_requests_total", code="499", **LABELS) is not None
    )
    assert value(samples, "http_requests_total", code="499", **LABELS) == 1
    assert value(samples, "http_requests_total", code="500", **LABELS) is None


async def test_a_hang_up_mid_body_is_not_logged_as_an_error(
    edge_server: EdgeServer, logs: pytest.LogCaptureFixture
) -> None:
    await hang_up_mid_body(edge_server)
    await scrape_until(
        edge_server, lambda s: value(s, "http_requests_total", code="499", **LABELS) is not None
    )
    access = [
        r
        for r in logs.records
        if r.name == "api_service.access" and getattr(r, "method", "") == "POST"
    ]
    assert [getattr(r, "status", None) for r in access] == [499]
    assert [r.levelname for r in access] == ["INFO"]
    trouble = [r for r in logs.records if r.levelno >= logging.ERROR or r.exc_info]
    assert trouble == []


@pytest.mark.edge(body_timeout=1.0)
async def test_a_body_timeout_is_counted_as_a_408(
    edge_server: EdgeServer, raw: RawConnection
) -> None:
    body = orjson.dumps(gcp_cluster_body())
    await raw.send(request("POST", "/api/v1/clusters", CREATE_HEADERS, body)[:-10])
    assert (await raw.answer()).status == 408
    samples = await scrape_until(
        edge_server, lambda s: value(s, "http_requests_total", code="408", **LABELS) is not None
    )
    assert value(samples, "http_requests_total", code="408", **LABELS) == 1
    assert value(samples, "http_requests_total", code="499", **LABELS) is None


async def test_a_malformed_body_is_counted_as_a_400(
    edge_server: EdgeServer, raw: RawConnection
) -> None:
    await raw.send(MALFORMED_BODY)
    assert (await raw.answer()).status == 400
    samples = await scrape_until(
        edge_server, lambda s: value(s, "http_requests_total", code="400", **LABELS) is not None
    )
    assert value(samples, "http_requests_total", code="400", **LABELS) == 1
