"""The whole stack as deployed, as real processes: ``python -m api_service`` (without in-process
event jobs), ``python -m event_jobs`` (the outbox relay and the reconcile loop),
``python -m status_ingester`` and ``python -m reconciler_stub`` against the real Redis and
broker, in a fresh namespace per test, and the requests of the user guide that end-to-end and
fault tests send to it.

The ``stack`` and ``reports`` fixtures (tests/conftest.py) build on this module.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelNotFoundEntity
from redis.asyncio import Redis

from event_jobs.pipeline import RELAY_JOB
from reconciler_stub.catalog import ALL_CONTROLLERS
from shared_models.names import Names
from tests.conftest import AMQP_URL, CONTROLLER_TOKENS, REDIS_URL
from tests.support.polling import eventually
from tests.support.services import ServiceProcess, wait_http_ok

EVENTS = "event_jobs"
PACKAGES = ("api_service", EVENTS, "status_ingester", "reconciler_stub")
STUB_DELAY_MS = 20
START_TIMEOUT = 30.0

Json = dict[str, Any]


@dataclass
class Stack:
    """The four processes of one namespace, and an HTTP client for its API."""

    names: Names
    base_url: str
    services: dict[str, ServiceProcess]
    http: httpx.AsyncClient
    amqp: AbstractRobustConnection

    def __getitem__(self, package: str) -> ServiceProcess:
        return self.services[package]

    async def start(self, *packages: str) -> None:
        """Start services and wait until they serve: the API answers /ready, the events process
        leads the relay, the consumers consume from their queues (so that no event or report
        published later is missed)."""
        for package in packages:
            self.services[package].start()
        await asyncio.gather(*(self.wait_serving(package) for package in packages))

    async def wait_serving(self, package: str) -> None:
        service = self.services[package]
        if package == "api_service":
            await asyncio.to_thread(wait_http_ok, f"{self.base_url}/ready", START_TIMEOUT, service)
        elif package == EVENTS:
            await wait_relay_leader(service)
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

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every service at once and wait for their exits off the event loop: a broker
        proxy or consumer the test runs in this loop must keep serving while they shut down,
        since their last AMQP calls (cancel, close) go through it. Returns the exit codes."""
        names = list(self.services)
        codes = await asyncio.gather(*(asyncio.to_thread(self.services[n].stop) for n in names))
        return dict(zip(names, codes, strict=True))

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


def lock_holder_pid(token: object) -> int | None:
    """The process id in a leader lock's token (``host:pid:random``), None when none is held."""
    return None if token is None else int(str(token).split(":")[1])


async def wait_relay_leader(service: ServiceProcess) -> None:
    """Until ``service`` holds the outbox relay's lock (a lock left by a killed process is
    taken over once it expires: ``CLS_LEADER_LOCK_TTL``). Read in the Redis the service uses,
    which may be a test's own."""
    redis = Redis.from_url(service.env["CLS_REDIS_URL"], decode_responses=True)
    key = Names(service.env["CLS_NAMESPACE"]).lock(RELAY_JOB)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while lock_holder_pid(await redis.get(key)) != service.pid:
            if not service.alive:
                raise RuntimeError(f"{service.package} exited:\n{service.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.package} never led the relay:\n{service.log_tail()}")
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


def stack_env(names: Names, port: int, **extra: str) -> dict[str, str]:
    return {
        "CLS_NAMESPACE": names.namespace,
        "CLS_REDIS_URL": REDIS_URL,
        "CLS_AMQP_URL": AMQP_URL,
        "CLS_HOST": "127.0.0.1",
        "CLS_PORT": str(port),
        "CLS_STUB_API_URL": f"http://127.0.0.1:{port}",
        "CLS_CONTROLLER_TOKENS": ",".join(f"{n}={t}" for n, t in CONTROLLER_TOKENS.items()),
        "CLS_STUB_DELAY_MS": str(STUB_DELAY_MS),
        "CLS_RECONCILE_INTERVAL": "1",
        "CLS_LOG_LEVEL": "INFO",
        "CLS_EVENT_JOBS": "separate",  # as deployed: the API serves, EVENTS relays
        **extra,
    }


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


def cluster_body(platform: str = "gcp", name: str = "demo") -> Json:
    """A cluster on any platform (create it with ``tests.support.resources.create_cluster``)."""
    return {"name": name, "spec": {"platform": CLUSTER_PLATFORMS[platform]}}


async def create_nodepool(http: httpx.AsyncClient, body: Json) -> Json:
    response = await http.post("/api/v1/nodepools", json=body)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


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
        probe, what=f"nodepool {nodepool_id} {phase} at generation {generation}", within=within
    )


def controller_report(view: Json, controller: str) -> Json:
    found: Json = next(c for c in view["controller_status"] if c["controller_name"] == controller)
    return found


async def all_ready_at(stack: Stack, latest: dict[str, int], within: float = 90.0) -> None:
    async def probe() -> Json | None:
        views = await asyncio.gather(*(status_of(stack.http, p) for p in latest))
        lagging = [
            v["nodepool_id"]
            for v in views
            if v["status"]["phase"] != "Ready"
            or v["status"]["observedGeneration"] != latest[v["nodepool_id"]]
        ]
        return None if lagging else {"ok": True}

    await eventually(probe, what="every nodepool Ready at its latest generation", within=within)
