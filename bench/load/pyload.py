"""Fallback load generator when wrk is missing: ``python -m bench.load.pyload``.

An asyncio HTTP/1.1 keep-alive client (uvloop when available), one connection per worker, run in
its own process so it does not share the server's event loop. Prints the same JSON line as the wrk
script. It costs more CPU than wrk, which on 2 cores lowers every figure; ratios stay comparable
because the API and its baseline are driven the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.load.plan import LoadPlan


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value - 1


def _encode(plan: LoadPlan, host: str, n: int) -> bytes:
    path, body = plan.request_at(n)
    lines = [f"{plan.method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in plan.headers.items()]
    payload = body.encode()
    if payload:
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    plan: LoadPlan, host: str, port: int, until: float, counter: _Counter, out: list[float]
) -> int:
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            began = time.perf_counter()
            writer.write(_encode(plan, f"{host}:{port}", counter.next()))
            status = await _read_response(reader)
            out.append(time.perf_counter() - began)
            if not 200 <= status < 300:
                errors += 1
    finally:
        writer.close()
    return errors


async def run(url: str, concurrency: int, seconds: float, plan: LoadPlan) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    counter = _Counter()
    began = time.perf_counter()
    until = began + seconds
    errors = await asyncio.gather(
        *(_worker(plan, host, port, until, counter, latencies) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6 if latencies else 0

    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "errors": sum(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("plan", type=Path)
    args = parser.parse_args()
    plan = LoadPlan.from_json(args.plan.read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    result = asyncio.run(run(args.url, args.concurrency, args.seconds, plan))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
