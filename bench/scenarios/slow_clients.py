"""What slow and oversized clients cost everyone else (issue 12's edge limits,
api_service/http_edge.py).

- GET throughput of the API (16 connections) while ~1000 other connections send their requests
  a byte a second (half a head, half a body, as slowloris does), against the same API without
  them, rounds interleaved. The slow clients are opened afresh for each round and closed after
  it, well within the header and body timeouts: what is measured is the cost of holding them.
- the API process's resident memory with them open;
- how much a 64 MiB header (refused with 431) raises the API process's peak resident memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Iterator

import httpx

from bench import bodies
from bench.context import RunContext
from bench.load.driver import run_load
from bench.load.plan import LoadPlan, LoadResult
from bench.procs import Server, cpu_seconds, deployed_api, peak_rss_mb, rss_mb
from bench.report import Figure
from bench.stats import interleaved, median, paired_ratio

SECTION = "Slow clients and huge headers (the edge limits)"
QUIET = {"reconcile_interval": "86400", "reconcile_ready_interval": "86400"}
CONNECTIONS = 16
THROUGHPUT_TARGET = 0.8
RSS_TARGET_MB = 4.0
MIB = 1024 * 1024


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _hold(
    host: str, port: int, count: int, ready: threading.Event, stop: threading.Event
) -> None:
    """Open ``count`` connections and send each its request a byte a second until ``stop``."""
    head = request("GET", "/health", {"X-Slow": "a" * 200})
    body_request = request("POST", "/api/v1/clusters", bodies.JSON_HEADERS, b" " * 1000)
    body_start = body_request.index(b"\r\n\r\n") + 4
    # Half send part of a head, half a whole head and part of its body.
    splits = [(head, 20) if i % 2 else (body_request, body_start) for i in range(count)]
    writers = []
    for whole, sent in splits:
        _, writer = await asyncio.open_connection(host, port)
        writer.write(whole[:sent])
        writers.append(writer)
    ready.set()
    for position in itertools.count():
        if stop.is_set():
            break
        for writer, (whole, sent) in zip(writers, splits, strict=True):
            if sent + position < len(whole) and not writer.is_closing():
                writer.write(whole[sent + position : sent + position + 1])
        await asyncio.sleep(1.0)
    for writer in writers:
        writer.close()


@contextlib.contextmanager
def slow_clients(server: Server, count: int) -> Iterator[None]:
    """``count`` slow connections to ``server``, from a thread of their own, while inside."""
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(_hold("127.0.0.1", server.port, count, ready, stop)),
        daemon=True,
    )
    thread.start()
    if not ready.wait(60):
        raise RuntimeError(f"{count} slow connections not open within 60 s")
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def _prepare(api: Server) -> str:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        made = client.post(
            "/api/v1/clusters", json=bodies.cluster_body("slow"), headers=bodies.USER_HEADERS
        )
        made.raise_for_status()
        pool = bodies.nodepool_body(made.json()["id"], "get")
        created = client.post("/api/v1/nodepools", json=pool, headers=bodies.USER_HEADERS)
        created.raise_for_status()
        nodepool_id: str = created.json()["id"]
    return nodepool_id


def _describe(rounds: list[LoadResult]) -> str:
    rps = median([r.rps for r in rounds])
    p50 = median([r.p50_ms for r in rounds])
    p99 = median([r.p99_ms for r in rounds])
    return f"{rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def _throughput(ctx: RunContext, api: Server, nodepool_id: str, slow: int) -> None:
    cfg = ctx.config
    plan = LoadPlan("GET", "/api/v1/nodepools/{id}", bodies.USER_HEADERS, ids=(nodepool_id,))

    rss = [rss_mb(api.pid)]

    def with_slow(_i: int) -> LoadResult:
        with slow_clients(api, slow):
            result = run_load(api.url, plan, CONNECTIONS, cfg.seconds)
            rss.append(rss_mb(api.pid))
        return result

    def without(_i: int) -> LoadResult:
        return run_load(api.url, plan, CONNECTIONS, cfg.seconds)

    if cfg.warmup_seconds:
        run_load(api.url, plan, CONNECTIONS, cfg.warmup_seconds)
    subject, baseline = interleaved(cfg.rounds, with_slow, without)
    ratio = paired_ratio([r.rps for r in subject], [r.rps for r in baseline])
    errors = sum(r.errors for r in subject + baseline)
    ctx.add(
        Figure(
            SECTION,
            f"GET /nodepools/{{id}}, {CONNECTIONS} conn, {slow} slow connections open",
            _describe(subject),
            _describe(baseline),
            ratio,
            f">= {THROUGHPUT_TARGET}x",
            ratio >= THROUGHPUT_TARGET,
            "baseline: the same API without them"
            + (f"; {errors} failed requests" if errors else ""),
        )
    )
    ctx.add(
        Figure(
            SECTION,
            f"API RSS with {slow} slow connections open",
            f"{max(rss[1:]):.0f} MB ({rss[0]:.0f} MB before the first round)",
            note="half of them wait in the app for their body",
        )
    )


def _send_huge_header(port: int) -> tuple[int, int]:
    """A 64 MiB header sent from a thread while the answer is read: (its status, 0 when there
    was none; the bytes of the header the kernel accepted before the server closed)."""
    accepted = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:

        def upload() -> None:
            nonlocal accepted
            with contextlib.suppress(OSError):  # the server closed the connection
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Huge: ")
                chunk = b"a" * MIB
                for _ in range(64):
                    sock.sendall(chunk)
                    accepted += len(chunk)

        sender = threading.Thread(target=upload)
        sender.start()
        sock.settimeout(30)
        answered = b""
        with contextlib.suppress(OSError):  # a reset once the answer is in
            while chunk := sock.recv(65536):
                answered += chunk
        sender.join(60)
    status = int(answered.split(b" ", 2)[1]) if answered.startswith(b"HTTP/1.1 ") else 0
    return status, accepted


def _huge_header(ctx: RunContext, api: Server) -> None:
    # The peak, not the RSS after: the memory of a header read whole is freed once answered.
    peak, cpu = peak_rss_mb(api.pid), cpu_seconds(api.pid)
    started = time.monotonic()
    status, accepted = _send_huge_header(api.port)
    took = time.monotonic() - started
    grown, cpu = peak_rss_mb(api.pid) - peak, cpu_seconds(api.pid) - cpu
    ctx.add(
        Figure(
            SECTION,
            "64 MiB header: growth of the API's peak RSS",
            f"{grown:.1f} MB (peak {peak:.0f} MB before)",
            target=f"<= {RSS_TARGET_MB:.0f} MB, answered 431",
            met=grown <= RSS_TARGET_MB and status == 431,
            note=f"answered {status} in {took * 1e3:.0f} ms, {cpu * 1e3:.0f} ms of API CPU; the "
            f"client handed the kernel {accepted / MIB:.0f} MiB of the 64 before the server closed",
        )
    )


def run(ctx: RunContext) -> None:
    slow = 100 if ctx.config.quick else 1000
    namespace = ctx.new_namespace("slow")
    with deployed_api(namespace, ctx.log_dir, ctx.config.redis_url, **QUIET) as api:
        nodepool_id = _prepare(api)
        _huge_header(ctx, api)  # first: a later peak would hide its own
        _throughput(ctx, api, nodepool_id, slow)
