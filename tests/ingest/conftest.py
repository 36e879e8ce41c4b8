"""Fixtures for the status ingester over the real broker and Redis.

- ``publisher``: publishes reports with publisher confirms and ``mandatory=True`` (a report the
  broker cannot route raises instead of vanishing);
- ``start_ingester``: runs the ingester in-process as a task (fast, inspectable);
- ``ingester_process``: runs ``python -m status_ingester`` as a real process (for SIGKILL and
  SIGTERM);
- helpers to poll Redis, read the dead-letter queue and build reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from api_service.app import create_app
from cls_runtime import amqp as topology
from cls_runtime.settings import Settings
from shared_models.names import Names
from status_ingester.consumer import StatusIngester
from tests.conftest import USER, gcp_cluster_body, seed_nodepool_body
from tests.support.broker import ReportPublisher
from tests.support.polling import eventually
from tests.support.resources import create_cluster
from tests.support.services import ServiceProcess

T = TypeVar("T")

CONTROLLER = "gcp-nodepool-controller"
CLUSTER_CONTROLLER = "gcp-cluster-controller"


# ---- polling ----------------------------------------------------------------------------------


# ---- reports ----------------------------------------------------------------------------------


def report(
    generation: int = 1,
    *,
    controller: str = CONTROLLER,
    ready: bool = False,
    step: int = 0,
    error: str | None = None,
    failed: bool = False,
) -> dict[str, Any]:
    """A PUT status body; ``step`` makes each report of a burst distinct."""
    conditions = [
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastTransitionTime": "2025-10-17T10:30:00Z",
            "reason": "NodesReady" if ready else "NodesProvisioning",
            "message": f"step {step}",
        }
    ]
    if failed:
        conditions.append({"type": "Failed", "status": "True", "reason": "QuotaExceeded"})
    body: dict[str, Any] = {
        "controller_name": controller,
        "observed_generation": generation,
        "conditions": conditions,
        "metadata": {"platform": "gcp", "step": step, "active_nodes": step},
    }
    if error is not None:
        body["last_error"] = error
    return body


def nodepool_report(nodepool_id: str, generation: int = 1, **kwargs: Any) -> dict[str, Any]:
    return {**report(generation, **kwargs), "nodepool_id": nodepool_id}


def cluster_report(cluster_id: str, generation: int = 1, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("controller", CLUSTER_CONTROLLER)
    return {**report(generation, **kwargs), "cluster_id": cluster_id}


def without_times(value: Any) -> Any:
    """The document with every timestamp the server sets removed (they differ by clock)."""
    server_times = {"updated_at", "lastUpdateTime"}
    if isinstance(value, dict):
        return {
            k: without_times(v)
            for k, v in value.items()
            if k not in server_times and not (k == "lastTransitionTime" and "reason" in value)
        }
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


# ---- publishing -------------------------------------------------------------------------------


class Publisher:
    """Publishes to ``<ns>.status`` the way controllers do: each report as the broker user of its
    controller with that ``user_id``, persistent, confirmed, mandatory."""

    def __init__(self, reports: ReportPublisher) -> None:
        self.reports_as = reports

    async def report(self, body: dict[str, Any], as_user: str | None = None) -> None:
        await self.reports_as.report(body, as_user)

    async def reports(self, bodies: list[dict[str, Any]], window: int = 500) -> None:
        """Publish in order, ``window`` confirms outstanding at a time."""
        for controller in dict.fromkeys(str(b["controller_name"]) for b in bodies):
            await self.reports_as.exchange_of(controller)  # connected before the first publish
        for start in range(0, len(bodies), window):
            await asyncio.gather(*(self.report(b) for b in bodies[start : start + window]))

    async def raw(
        self,
        body: bytes,
        routing_key: str = "nodepool.status",
        content_type: str | None = "application/json",
        as_user: str = CONTROLLER,
    ) -> None:
        """``body`` as it is, published by ``as_user`` with its user_id: a body that fails is
        refused for what it is, not for who sent it."""
        message = aio_pika.Message(
            body=body,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            user_id=as_user,
        )
        exchange = await self.reports_as.exchange_of(as_user)
        await exchange.publish(message, routing_key=routing_key, mandatory=True)


@pytest.fixture
async def publisher(amqp: AbstractRobustConnection, settings: Settings) -> AsyncIterator[Publisher]:
    # The queue is the ingester's to declare (with guest's rights here, as the ingester would):
    # reports published before the ingester starts then wait in it.
    channel = await amqp.channel()
    await topology.declare_status_queue(channel, settings.names, settings.ingest_delivery_limit)
    reports = ReportPublisher(settings.names)
    yield Publisher(reports)
    await reports.close()
    await channel.close()


async def queue_counts(amqp: AbstractRobustConnection, names: Names) -> tuple[int, int]:
    """(ready messages, consumers) of the status queue, by a passive declare."""
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(names.status_queue, passive=True)
        result = queue.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)
    finally:
        await channel.close()


async def dead_letters(amqp: AbstractRobustConnection, names: Names) -> list[bytes]:
    """Take every message currently in ``<ns>.status.dead``."""
    channel = await amqp.channel()
    bodies = []
    try:
        queue = await channel.declare_queue(names.status_dead_queue, passive=True)
        while (message := await queue.get(fail=False, timeout=5)) is not None:
            bodies.append(message.body)
            await message.ack()
    finally:
        await channel.close()
    return bodies


async def dead_letter_reasons(amqp: AbstractRobustConnection, names: Names) -> list[str]:
    """Take every message currently in ``<ns>.status.dead``: the reason header of each."""
    channel = await amqp.channel()
    reasons = []
    try:
        queue = await channel.declare_queue(names.status_dead_queue, passive=True)
        while (message := await queue.get(fail=False, timeout=5)) is not None:
            reasons.append(str((message.headers or {}).get(topology.DEAD_REASON_HEADER)))
            await message.ack()
    finally:
        await channel.close()
    return reasons


async def dead_letter_count(amqp: AbstractRobustConnection, names: Names) -> int:
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(names.status_dead_queue, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await channel.close()


# ---- Redis reads ------------------------------------------------------------------------------


async def counters(redis: Redis, names: Names) -> dict[str, int]:
    raw = await redis.hgetall(names.metric("ingest"))
    return {str(k): int(v) for k, v in raw.items()}


async def stored_reports(redis: Redis, names: Names, nodepool_id: str) -> dict[str, Any]:
    raw = await redis.hgetall(names.controller_reports("nodepool", nodepool_id))
    return {str(k): orjson.loads(v) for k, v in raw.items()}


async def stored_steps(redis: Redis, names: Names, nodepool_ids: list[str]) -> dict[str, int]:
    """'<nodepool>/<controller>' -> the step of that controller's stored report."""
    steps: dict[str, int] = {}
    async with redis.pipeline(transaction=False) as pipe:
        for nodepool_id in nodepool_ids:
            pipe.hgetall(names.controller_reports("nodepool", nodepool_id))
        rows = await pipe.execute()
    for nodepool_id, row in zip(nodepool_ids, rows, strict=True):
        for controller, raw in row.items():
            steps[f"{nodepool_id}/{controller}"] = orjson.loads(raw)["metadata"]["step"]
    return steps


async def steps_behind(
    redis: Redis, names: Names, expected: dict[str, int]
) -> dict[str, int | None]:
    """The entries of ``expected`` ('<nodepool>/<controller>' -> step) that Redis does not
    hold (yet), with the step it holds instead: empty once every last report is applied."""
    pools = sorted({key.partition("/")[0] for key in expected})
    found = await stored_steps(redis, names, pools)
    return {key: found.get(key) for key, step in expected.items() if found.get(key) != step}


# ---- the ingester -----------------------------------------------------------------------------

StartIngester = Callable[..., Awaitable[StatusIngester]]


@pytest.fixture
async def start_ingester(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection
) -> AsyncIterator[StartIngester]:
    """Start in-process ingesters (``start_ingester(settings=..., **kwargs)``); all are stopped
    at teardown, before the namespace's queues are deleted."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(custom: Settings | None = None, **kwargs: Any) -> StatusIngester:
        ingester = StatusIngester(custom or settings, **kwargs)
        stop = asyncio.Event()
        task = asyncio.create_task(ingester.run(stop))
        running.append((stop, task))
        waiter = asyncio.create_task(ingester.consuming.wait())
        done, _ = await asyncio.wait({waiter, task}, timeout=15, return_when="FIRST_COMPLETED")
        waiter.cancel()
        if task in done:
            task.result()  # surface the failure
        assert ingester.consuming.is_set(), "the ingester did not start consuming within 15s"
        return ingester

    yield start
    for stop, _ in running:
        stop.set()
    for _, task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def ingester(start_ingester: StartIngester) -> StatusIngester:
    return await start_ingester()


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "CLS_NAMESPACE": settings.namespace,
        "CLS_REDIS_URL": settings.redis_url,
        "CLS_AMQP_URL": settings.amqp_url,
        "CLS_INGEST_PREFETCH": str(settings.ingest_prefetch),
        "CLS_INGEST_DELIVERY_LIMIT": str(settings.ingest_delivery_limit),
        "CLS_LOG_LEVEL": "INFO",
        # The test's registry of controllers (unset: the default one).
        **(
            {"CLS_CONTROLLERS_FILE": str(settings.controllers_file)}
            if settings.controllers_file
            else {}
        ),
        **extra,
    }


@pytest.fixture
def ingester_process(
    settings: Settings, tmp_path: Path, amqp: AbstractRobustConnection, redis: Redis
) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory of ``python -m status_ingester`` processes; each is killed at teardown."""
    started: list[ServiceProcess] = []

    def make(**extra: str) -> ServiceProcess:
        process = ServiceProcess("status_ingester", service_env(settings, **extra), tmp_path)
        started.append(process)
        return process.start()

    yield make
    for process in started:
        if process.alive:
            process.kill()


async def wait_consumers(
    amqp: AbstractRobustConnection, names: Names, count: int, service: ServiceProcess
) -> None:
    async def probe() -> int:
        if not service.alive:
            raise AssertionError(f"ingester exited:\n{service.log_tail()}")
        return (await queue_counts(amqp, names))[1]

    await eventually(
        probe, lambda n: n == count, within=20, what=f"{count} consumer(s) on the queue"
    )


# ---- resources through the API ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process on ``settings`` (for stacks on a private Redis)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def create_nodepools(
    api: httpx.AsyncClient, cluster_id: str, count: int, prefix: str = "pool"
) -> list[str]:
    ids = []
    for i in range(count):
        body = seed_nodepool_body(cluster_id, name=f"{prefix}-{i}")
        response = await api.post("/api/v1/nodepools", json=body, headers=USER)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def create_cluster_id(api: httpx.AsyncClient, name: str = "demo") -> str:
    """The id of a new GCP cluster named ``name``."""
    return str((await create_cluster(api, gcp_cluster_body(name)))["id"])
