"""The whole stack as real processes: ``python -m api_service``, ``python -m status_ingester`` and
``python -m reconciler_stub`` against the real Redis and broker, in a fresh namespace per test.

On a failure, the tail of each service's log is printed with the test report.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity
from redis.asyncio import Redis

from reconciler_stub.catalog import ALL_CONTROLLERS
from shared_models.names import Names
from shared_models.settings import Settings
from tests.conftest import AMQP_URL, CONTROLLER_TOKENS, REDIS_URL, USER
from tests.support.services import ServiceProcess, wait_http_ok
from tests.support.status_reports import Reports, watch_reports

PACKAGES = ("api_service", "status_ingester", "reconciler_stub")
STUB_DELAY_MS = 20
START_TIMEOUT = 30.0

Json = dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """The three services of one namespace, and an HTTP client for its API."""

    names: Names
    base_url: str
    services: dict[str, ServiceProcess]
    http: httpx.AsyncClient
    amqp: AbstractRobustConnection

    def __getitem__(self, package: str) -> ServiceProcess:
        return self.services[package]

    async def start(self, *packages: str) -> None:
        """Start services and wait until they serve: the API answers /ready, the consumers
        consume from their queues (so that no event or report published later is missed)."""
        for package in packages:
            self.services[package].start()
        await asyncio.gather(*(self.wait_serving(package) for package in packages))

    async def wait_serving(self, package: str) -> None:
        service = self.services[package]
        if package == "api_service":
            await asyncio.to_thread(wait_http_ok, f"{self.base_url}/ready", START_TIMEOUT, service)
        elif package == "status_ingester":
            await self.wait_consumed(service, [self.names.status_queue])
        else:
            queues = [self.names.controller_queue(spec.name) for spec in ALL_CONTROLLERS]
            await self.wait_consumed(service, queues)

    async def wait_consumed(self, service: ServiceProcess, queues: list[str]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not all([await consumers(self.amqp, queue) > 0 for queue in queues]):
            if not service.alive:
                raise RuntimeError(f"{service.package} exited:\n{service.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.package} not consuming:\n{service.log_tail()}")
            await asyncio.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(
            f"----- {name} (last lines of {service.log_path}) -----\n{service.log_tail(80)}"
            for name, service in self.services.items()
        )


async def consumers(connection: AbstractRobustConnection, queue_name: str) -> int:
    """Consumers of a queue, 0 when it does not exist yet (passive declare)."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(queue_name, passive=True)
        return int(queue.declaration_result.consumer_count or 0)
    except ChannelNotFoundEntity:
        return 0
    finally:
        if not channel.is_closed:
            await channel.close()


def stack_env(names: Names, port: int, **extra: str) -> dict[str, str]:
    return {
        "CLS_NAMESPACE": names.namespace,
        "CLS_REDIS_URL": REDIS_URL,
        "CLS_AMQP_URL": AMQP_URL,
        "CLS_HOST": "127.0.0.1",
        "CLS_PORT": str(port),
        "CLS_CONTROLLER_TOKENS": ",".join(f"{n}={t}" for n, t in CONTROLLER_TOKENS.items()),
        "CLS_STUB_DELAY_MS": str(STUB_DELAY_MS),
        "CLS_RECONCILE_INTERVAL": "1",
        "CLS_LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's outcome on the test item, so a fixture can tell a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def stack(
    request: pytest.FixtureRequest,
    settings: Settings,
    redis: Redis,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    """The three services, started together (they may start in any order).

    ``@pytest.mark.stack_env(CLS_STUB_DELAY_MS="200")`` overrides their environment.
    """
    port = free_port()
    marker = request.node.get_closest_marker("stack_env")
    env = stack_env(settings.names, port, **(marker.kwargs if marker is not None else {}))
    services = {package: ServiceProcess(package, env, tmp_path) for package in PACKAGES}
    base_url = f"http://127.0.0.1:{port}"
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so a
    # request never goes out on a connection the server is closing.
    limits = httpx.Limits(keepalive_expiry=2.0)
    async with httpx.AsyncClient(
        base_url=base_url, headers=USER, timeout=10, limits=limits
    ) as http:
        running = Stack(settings.names, base_url, services, http, amqp)
        try:
            await running.start(*PACKAGES)
            yield running
        finally:
            codes = {name: s.stop() for name, s in services.items()}
            failed = getattr(request.node, "report_call", None)
            if failed is not None and failed.failed:
                print(f"\nservice exit codes: {codes}\n{running.logs()}")


@pytest.fixture
async def reports(stack: Stack) -> AsyncIterator[Reports]:
    """Every report the controllers publish (a copy; the ingester gets its own)."""
    async with watch_reports(stack.amqp, stack.names) as collected:
        yield collected


# ---- requests -----------------------------------------------------------------------------

CLUSTER_PLATFORMS: dict[str, Json] = {
    "gcp": {"type": "gcp", "gcp": {"projectID": "my-project-123", "region": "us-central1"}},
    "aws": {"type": "aws", "aws": {"region": "us-west-2"}},
    "azure": {"type": "azure", "azure": {"location": "westeurope"}},
}
NODEPOOL_PLATFORMS: dict[str, Json] = {
    "gcp": {
        "type": "gcp",
        "gcp": {
            "machineType": "n1-standard-4",
            "diskSize": 100,
            "diskType": "pd-ssd",
            "zones": ["us-central1-a", "us-central1-b"],
        },
    },
    "aws": {
        "type": "aws",
        "aws": {
            "instanceType": "m5.xlarge",
            "volumeSize": 100,
            "volumeType": "gp3",
            "availabilityZones": ["us-west-2a", "us-west-2b"],
        },
    },
    "azure": {
        "type": "azure",
        "azure": {
            "vmSize": "Standard_D4s_v3",
            "osDiskSizeGB": 100,
            "osDiskType": "Premium_LRS",
            "availabilityZones": ["1", "2"],
        },
    },
}
# The seed's scale request ("3. Scale the NodePool") keeps only these fields of the block.
SCALE_PLATFORMS: dict[str, Json] = {
    "gcp": {"type": "gcp", "gcp": {"machineType": "n1-standard-4", "diskSize": 100}},
    "aws": {"type": "aws", "aws": {"instanceType": "m5.xlarge", "volumeSize": 100}},
    "azure": {"type": "azure", "azure": {"vmSize": "Standard_D4s_v3", "osDiskSizeGB": 100}},
}


def create_body(
    cluster_id: str,
    platform: str = "gcp",
    name: str = "production-workers",
    labels: dict[str, str] | None = None,
) -> Json:
    """The seed's "1. Create the NodePool" request, on any platform."""
    block_name = platform
    platform_spec = {**NODEPOOL_PLATFORMS[platform]}
    if labels is not None:
        platform_spec[block_name] = {**platform_spec[block_name], "labels": labels}
    return {
        "name": name,
        "cluster_id": cluster_id,
        "spec": {
            "platform": platform_spec,
            "autoscaling": {"enabled": True, "minNodes": 2, "maxNodes": 10},
            "nodeCount": 3,
        },
    }


def scale_body(
    platform: str = "gcp", node_count: int = 6, name: str = "production-workers"
) -> Json:
    """The seed's "3. Scale the NodePool" request, on any platform."""
    return {
        "name": name,
        "spec": {"platform": SCALE_PLATFORMS[platform], "nodeCount": node_count},
    }


async def create_cluster(
    http: httpx.AsyncClient, platform: str = "gcp", name: str = "demo"
) -> Json:
    response = await http.post(
        "/api/v1/clusters", json={"name": name, "spec": {"platform": CLUSTER_PLATFORMS[platform]}}
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


async def create_nodepool(http: httpx.AsyncClient, body: Json) -> Json:
    response = await http.post("/api/v1/nodepools", json=body)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def eventually(
    probe: Callable[[], Awaitable[Json | None]], what: str, within: float = 30.0
) -> Json:
    """Poll ``probe`` until it returns a value, or fail saying what never happened.

    A transport error counts as "not yet": a keep-alive connection the server closes just as the
    client reuses it fails one request (a known race of HTTP/1.1), and the next poll retries.
    """
    deadline = time.monotonic() + within
    problem = ""
    while time.monotonic() < deadline:
        try:
            found = await probe()
        except httpx.TransportError as exc:
            problem = f" (last request failed: {exc!r})"
            found = None
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {within}s{problem}")


async def status_of(http: httpx.AsyncClient, nodepool_id: str) -> Json:
    response = await http.get(f"/api/v1/nodepools/{nodepool_id}/status")
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def wait_phase(
    http: httpx.AsyncClient, nodepool_id: str, phase: str, generation: int, within: float = 30.0
) -> Json:
    """The nodepool's status view once its aggregate is ``phase`` at ``generation``."""

    async def probe() -> Json | None:
        view = await status_of(http, nodepool_id)
        status = view["status"]
        at = status["observedGeneration"] == generation and view["generation"] == generation
        return view if at and status["phase"] == phase else None

    return await eventually(
        probe, f"nodepool {nodepool_id} {phase} at generation {generation}", within
    )


def controller_report(view: Json, controller: str) -> Json:
    found: Json = next(c for c in view["controller_status"] if c["controller_name"] == controller)
    return found
