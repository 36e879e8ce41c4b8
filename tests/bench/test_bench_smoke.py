"""``make bench`` keeps working: its quick mode runs every scenario and prints the table.

The figures themselves are never judged here (benchmarks are not pass/fail tests); only that the
benchmark runs against the real servers, prints its table, and leaves bench/RESULTS.md alone.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "RESULTS.md"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis, pytest.mark.rabbitmq]


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _run_quick(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The quick bench in a session of its own: on a timeout its servers and workers are killed
    with it (killing the bench alone left them running for the rest of the test run)."""
    args = [sys.executable, "-m", "bench"]
    with subprocess.Popen(
        args,
        cwd=REPO,
        env={**os.environ, "BENCH_QUICK": "1", "BENCH_OUT": str(tmp_path), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.communicate()
            raise
    return subprocess.CompletedProcess(args, bench.returncode, stdout, stderr)


@pytest.mark.timeout(300)
def test_quick_bench_prints_every_section_and_leaves_results_md_alone(tmp_path: Path) -> None:
    before = _digest(RESULTS)
    done = _run_quick(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for heading in (
        "### HTTP",
        "### Listing",
        "### Memory",
        "### Events",
        "### Rejected bodies",
        "### Rejected reports",
        "### Idempotency-Key storage",
        "### Slow clients",
        "| figure | measured | baseline",
    ):
        assert heading in done.stdout, done.stdout[-3000:]
    assert "targets met:" in done.stdout
    assert _digest(RESULTS) == before, "a quick run must not rewrite bench/RESULTS.md"
    assert "### HTTP" in (tmp_path / "RESULTS.md").read_text()


@pytest.mark.timeout(200)
def test_python_load_generator_drives_the_http_scenario(tmp_path: Path) -> None:
    done = _run_quick(tmp_path, BENCH_ONLY="http", BENCH_LOADGEN="python")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "load generator: bench.load.pyload" in done.stdout
    assert "POST /nodepools, 16 conn" in done.stdout
    for read in ("GET /nodepools/{id}", "GET /nodepools?limit=50"):  # the caller in 20 projects
        assert f"{read}, caller in 20 projects, 16 conn" in done.stdout, done.stdout[-3000:]
