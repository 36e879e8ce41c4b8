"""Run one load round in a separate process (wrk, or the Python fallback) and parse its result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.load.plan import LoadPlan, LoadResult

WRK_SCRIPT = Path(__file__).with_name("plan.lua")


def generator_name() -> str:
    """wrk when installed; BENCH_LOADGEN=python forces the fallback (it is tested that way)."""
    if os.environ.get("BENCH_LOADGEN") == "python":
        return "python-asyncio"
    return "wrk" if shutil.which("wrk") else "python-asyncio"


def describe_generator() -> str:
    if generator_name() == "wrk":
        return "wrk (1 thread, Lua script, separate process)"
    return "bench.load.pyload (Python asyncio HTTP/1.1 client, separate process)"


def run_load(url: str, plan: LoadPlan, concurrency: int, seconds: float) -> LoadResult:
    """Drive ``url`` with ``concurrency`` keep-alive connections for ``seconds`` (wrk: whole
    seconds, at least 1)."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        if generator_name() == "wrk":
            plan_file = Path(tmp) / "plan_table.lua"
            plan_file.write_text(plan.to_lua())
            command = [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(WRK_SCRIPT),
                url,
                "--",
                str(plan_file),
            ]
        else:
            plan_file = Path(tmp) / "plan.json"
            plan_file.write_text(plan.to_json())
            command = [
                sys.executable,
                "-m",
                "bench.load.pyload",
                url,
                str(concurrency),
                str(seconds),
                str(plan_file),
            ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    return _parse(done, generator_name())


def _parse(done: subprocess.CompletedProcess[str], generator: str) -> LoadResult:
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{generator} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line)
    return LoadResult(
        requests=int(data["requests"]),
        seconds=float(data["duration_us"]) / 1e6,
        p50_ms=float(data["p50_us"]) / 1e3,
        p99_ms=float(data["p99_us"]) / 1e3,
        errors=int(data["errors"]),
        generator=generator,
    )
