"""``make run`` (``scripts/run_stack.py``): the stack as deployed comes up by itself, a nodepool
POSTed on the user guide's cluster reaches Ready, and Ctrl-C (SIGTERM here) stops every service
cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import AMQP_URL, REDIS_URL, USER
from tests.support.polling import eventually
from tests.support.redis_server import free_port
from tests.support.stack import create_body, wait_phase

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
DEMO_CLUSTER = "550e8400-e29b-41d4-a716-446655440000"  # the user guide's
# Each service's exit on SIGTERM (uvicorn re-raises the signal once it has shut down cleanly).
CLEAN_STOPS = {
    "api_service": ("code 0", "code -15"),
    "event_jobs": ("code 0",),
    "status_ingester": ("code 0",),
    "reconciler_stub": ("code 0",),
}


@pytest.fixture
def run_stack(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``python scripts/run_stack.py`` in the test's namespace; (process, API URL, output)."""
    port = free_port()
    output = tmp_path / "run_stack.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CLS_")  # exactly what `make run` would get, plus the below
    }
    env.update(
        CLS_NAMESPACE=settings.namespace,
        CLS_REDIS_URL=REDIS_URL,
        CLS_AMQP_URL=AMQP_URL,
        CLS_PORT=str(port),
        CLS_HOST="127.0.0.1",
        CLS_STUB_DELAY_MS="20",
    )
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_stack.py")],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        yield process, f"http://127.0.0.1:{port}", output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # it stops its children, then exits
            process.wait(40)


async def test_make_run_brings_up_the_stack_and_a_posted_nodepool_gets_ready(
    run_stack: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, url, output = run_stack
    async with httpx.AsyncClient(base_url=url, headers=USER, timeout=10) as http:

        async def demo_cluster() -> dict[str, str] | None:
            response = await http.get(f"/api/v1/clusters/{DEMO_CLUSTER}")
            return {"id": DEMO_CLUSTER} if response.status_code == 200 else None

        await eventually(demo_cluster, what="run_stack creating the guide's cluster", within=60)
        ready = await http.get("/ready")
        assert ready.json()["checks"] == {"redis": "ok"}, ready.text  # the API as deployed
        response = await http.post("/api/v1/nodepools", json=create_body(DEMO_CLUSTER))
        assert response.status_code == 201, response.text
        await wait_phase(http, response.json()["id"], "Ready", 1, within=60)

    process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, 40)
    text = output.read_text(errors="replace")
    assert code == 0, text[-4000:]
    for service, codes in CLEAN_STOPS.items():
        assert any(f"| {service} stopped ({c})" in text for c in codes), text[-4000:]
