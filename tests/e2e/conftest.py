"""API processes of one namespace for the end-to-end tests of projects: two replicas side by side
(what a deployment behind a load balancer runs), and one that a test kills and starts again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.support.redis_server import free_port
from tests.support.services import ServiceProcess, api_env, base_url, wait_http_ok
from tests.support.stack import START_TIMEOUT

# The header the gateway names the caller's groups in, as CLS_GROUPS_HEADER says.
GROUPS_HEADER = "X-User-Groups"


@dataclass
class ApiReplica:
    """One ``python -m api_service`` process, and a client for it (no identity by default: each
    request says who sends it)."""

    service: ServiceProcess
    http: httpx.AsyncClient

    async def start(self) -> None:
        """Start the process (again, after a kill) and wait until it serves."""
        self.service.start()
        url = f"{base_url(self.service)}/ready"
        await asyncio.to_thread(wait_http_ok, url, START_TIMEOUT, self.service)

    def kill(self) -> None:
        """SIGKILL, and wait for the exit."""
        self.service.kill()


def _replica(settings: Settings, log_dir: Path) -> ApiReplica:
    log_dir.mkdir(parents=True, exist_ok=True)
    # As deployed: the API serves and writes its events to the outbox; no process relays them
    # here (no test reads them), so the API has no broker link at all.
    env = api_env(settings, free_port(), CLS_EVENT_JOBS="separate", CLS_GROUPS_HEADER=GROUPS_HEADER)
    service = ServiceProcess("api_service", env, log_dir)
    http = httpx.AsyncClient(base_url=base_url(service), timeout=10)
    return ApiReplica(service, http)


@pytest.fixture
async def replicas(
    settings: Settings, redis: Redis, tmp_path: Path
) -> AsyncIterator[tuple[ApiReplica, ApiReplica]]:
    """Two API processes on the test's namespace (each with its own port and log), started
    together."""
    first, second = _replica(settings, tmp_path / "a"), _replica(settings, tmp_path / "b")
    try:
        await asyncio.gather(first.start(), second.start())
        yield first, second
    finally:
        for replica in (first, second):
            await replica.http.aclose()
            await asyncio.to_thread(replica.service.stop)


@pytest.fixture
async def killable_api(
    settings: Settings, redis: Redis, tmp_path: Path
) -> AsyncIterator[ApiReplica]:
    """One API process on the test's namespace, which the test may SIGKILL and start again (on
    the same port)."""
    replica = _replica(settings, tmp_path)
    try:
        await replica.start()
        yield replica
    finally:
        await replica.http.aclose()
        await asyncio.to_thread(replica.service.stop)
