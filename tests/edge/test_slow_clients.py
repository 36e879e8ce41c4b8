"""The edge of ``python -m api_service`` as deployed (a real process, its default parser) under
the attacks its limits are for: hundreds of clients trickling their requests a byte a second,
and a 64 MiB header."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import USER, gcp_cluster_body
from tests.support.raw_http import RawConnection, parse_answer, request, upload_while_reading
from tests.support.services import ServiceProcess, api_process, base_url

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]

MIB = 1024 * 1024
TIMEOUT = 3.0  # CLS_HEADER_TIMEOUT and CLS_BODY_TIMEOUT of the server under attack
SLOW_HEADS = 150
SLOW_BODIES = 150
PROMPT = 1.0  # seconds: the longest a normal request may take during the attack
CREATE_HEADERS = {**USER, "Content-Type": "application/json"}


@pytest.fixture
def api(settings: Settings, redis: Redis, tmp_path: Path) -> Iterator[ServiceProcess]:
    """``python -m api_service`` with short edge timeouts (its event jobs elsewhere)."""
    with api_process(
        settings,
        tmp_path,
        CLS_HEADER_TIMEOUT=str(TIMEOUT),
        CLS_BODY_TIMEOUT=str(TIMEOUT),
        CLS_EVENT_JOBS="separate",
    ) as service:
        yield service


@dataclass(frozen=True)
class Outcome:
    status: int
    code: str
    closed: bool
    seconds: float  # from the connection's opening to the answer


async def slow_client(host: str, port: int, first: bytes, trickled: bytes) -> Outcome:
    """Send ``first``, then ``trickled`` a byte a second, until the server answers."""
    connection = await RawConnection.open(host, port)

    async def trickle() -> None:
        await connection.send(first)
        for byte in trickled:
            await asyncio.sleep(1.0)
            if not await connection.send(bytes([byte])):
                return

    sender = asyncio.create_task(trickle())
    try:
        answer = await connection.answer(within=TIMEOUT + 30)
        seconds = time.monotonic() - connection.opened
        closed = await connection.closed_by_server()
    finally:
        sender.cancel()
        await connection.close()
    return Outcome(answer.status, answer.error_code, closed, seconds)


async def latencies_while(http: httpx.AsyncClient, until: asyncio.Future[Any]) -> list[float]:
    """GET /health every 0.2 s until ``until`` is done: how long each took."""
    taken = []
    while not until.done():
        started = time.monotonic()
        response = await http.get("/health")
        taken.append(time.monotonic() - started)
        assert response.status_code == 200
        await asyncio.sleep(0.2)
    return taken


async def test_slow_clients_get_408_without_delaying_anyone_else(api: ServiceProcess) -> None:
    port = int(api.env["CLS_PORT"])
    create = orjson.dumps(gcp_cluster_body())
    slow_head = request("GET", "/health", {"X-Slow": "a" * 64})
    slow_body = request("POST", "/api/v1/clusters", CREATE_HEADERS, create)
    head_end = slow_body.index(b"\r\n\r\n") + 4
    attack = asyncio.gather(
        *[
            slow_client("127.0.0.1", port, slow_head[:20], slow_head[20:])
            for _ in range(SLOW_HEADS)
        ],
        *[
            slow_client("127.0.0.1", port, slow_body[:head_end], slow_body[head_end:])
            for _ in range(SLOW_BODIES)
        ],
    )
    async with httpx.AsyncClient(base_url=base_url(api), timeout=10) as http:
        await asyncio.sleep(1.0)  # every slow client connected and trickling
        started = time.monotonic()
        created = await http.post("/api/v1/clusters", json=gcp_cluster_body(), headers=USER)
        create_took = time.monotonic() - started
        health = await latencies_while(http, attack)
    outcomes = await attack

    assert created.status_code == 201, created.text
    assert create_took < PROMPT, f"a create took {create_took:.2f} s"
    # Through the whole attack, the slow clients' 408s included.
    assert len(health) >= 5
    assert max(health) < PROMPT, f"/health took up to {max(health):.2f} s"
    assert {(o.status, o.code, o.closed) for o in outcomes} == {(408, "REQUEST_TIMEOUT", True)}
    assert max(o.seconds for o in outcomes) < TIMEOUT + 5


async def test_a_64_mib_header_is_refused_without_growing_the_process(
    api: ServiceProcess,
) -> None:
    assert api.pid is not None
    before = peak_rss_bytes(api.pid)
    answered, _ = await asyncio.to_thread(
        upload_while_reading,
        "127.0.0.1",
        int(api.env["CLS_PORT"]),
        b"GET /health HTTP/1.1\r\nHost: test\r\nX-Huge: ",
        b"a" * MIB,
        64,
    )
    # The peak, not the RSS after: the memory of a header read whole is freed once answered.
    grown = peak_rss_bytes(api.pid) - before
    answer = parse_answer(answered)
    assert (answer.status, answer.error_code) == (431, "HEADERS_TOO_LARGE")
    assert grown < 4 * MIB, f"peak RSS grew by {grown / MIB:.1f} MiB"


def peak_rss_bytes(pid: int) -> int:
    """The highest resident set size a process has had (VmHWM, from /proc: Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")
