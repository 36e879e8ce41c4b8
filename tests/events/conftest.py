"""Fixtures for the event pipeline: a consumer of ``<ns>.events`` and settings helpers.

``events_consumer`` binds an exclusive, auto-delete queue to ``<ns>.events`` with ``#`` before
the app starts (this folder's ``api`` fixture depends on it), so it sees every event the test
causes. ``sync()`` answers "has everything committed so far been delivered?" without sleeping:
it commits a marker event to the outbox and waits for it, and since the relay publishes in
commit order through one channel, every event committed before the marker has arrived by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from redis.asyncio import Redis

from cls_core.services.common import outbox_fields
from cls_runtime import amqp as amqp_topology
from cls_runtime.settings import Settings
from shared_models.events import Event
from tests.conftest import api_client
from tests.support.redis_server import free_port
from tests.support.services import ServiceProcess, api_env, events_env, wait_http_ok
from tests.support.stack import wait_relay_leader

MARKER_CLUSTER = "sync-marker"


@dataclass(frozen=True)
class Received:
    routing_key: str
    body: dict[str, Any]
    message_id: str | None
    content_type: str | None
    delivery_mode: int | None
    headers: dict[str, Any]
    at: float  # monotonic time of arrival

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def resource_id(self) -> str:
        return str(self.body["nodepool_id"] or self.body["cluster_id"])

    @property
    def is_marker(self) -> bool:
        return self.body.get("cluster_id") == MARKER_CLUSTER


class EventsConsumer:
    def __init__(self, queue: AbstractQueue, redis: Redis, settings: Settings) -> None:
        self.queue = queue
        self.redis = redis
        self.settings = settings
        self.received: list[Received] = []

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.received.append(
            Received(
                routing_key=message.routing_key or "",
                body=orjson.loads(message.body),
                message_id=message.message_id,
                content_type=message.content_type,
                delivery_mode=int(message.delivery_mode) if message.delivery_mode else None,
                headers=dict(message.headers or {}),
                at=time.monotonic(),
            )
        )

    @property
    def events(self) -> list[Received]:
        """Every real event received so far (markers left out), in arrival order."""
        return [r for r in self.received if not r.is_marker]

    def of(self, resource_id: str, kind: str | None = None) -> list[Received]:
        return [
            r
            for r in self.events
            if r.resource_id == resource_id and (kind is None or r.type == kind)
        ]

    async def wait_until(
        self, done: Callable[[], bool], within: float = 10.0, what: str = "events"
    ) -> None:
        deadline = time.monotonic() + within
        while not done():
            if time.monotonic() > deadline:
                seen = [(r.routing_key, r.body.get("generation")) for r in self.events]
                raise AssertionError(f"timed out after {within}s waiting for {what}; got {seen}")
            await asyncio.sleep(0.01)

    async def sync(self, within: float = 10.0) -> list[Received]:
        """Wait until every event committed before this call has arrived; return the events."""
        marker = Event.model_validate(
            {
                "id": str(uuid.uuid4()),
                "type": "cluster.reconcile",
                "cluster_id": MARKER_CLUSTER,
                "nodepool_id": None,
                "generation": 0,
                "timestamp": datetime.now(UTC),
                "platform": "gcp",
                "resource": {},
            }
        )
        fields: dict[Any, Any] = dict(outbox_fields(marker))
        await self.redis.xadd(self.settings.names.outbox, fields)
        await self.wait_until(
            lambda: any(r.message_id == marker.id for r in self.received), within, "the marker"
        )
        return self.events


async def outbox_empties(redis: Redis, settings: Settings, within: float = 10.0) -> None:
    """Wait until the relay has removed every entry (it removes after the confirm, so an
    entry may still be there for a moment after its event arrived)."""
    deadline = time.monotonic() + within
    while await redis.xlen(settings.names.outbox):
        assert time.monotonic() < deadline, "the outbox did not empty"
        await asyncio.sleep(0.01)


def settings_with(settings: Settings, **changes: Any) -> Settings:
    """The test's settings with some fields changed (same namespace)."""
    return Settings.model_validate({**settings.model_dump(), **changes})


@contextlib.asynccontextmanager
async def consume_events(
    amqp: AbstractRobustConnection, redis: Redis, settings: Settings
) -> AsyncIterator[EventsConsumer]:
    """An exclusive, auto-delete queue bound to ``<ns>.events`` with ``#``, consumed."""
    channel = await amqp.channel()
    exchange = await amqp_topology.declare_events_exchange(channel, settings.names)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")
    consumer = EventsConsumer(queue, redis, settings)
    tag = await queue.consume(consumer.on_message, no_ack=True)
    yield consumer
    await queue.cancel(tag)
    await channel.close()


@pytest.fixture
async def events_consumer(
    amqp: AbstractRobustConnection, redis: Redis, settings: Settings
) -> AsyncIterator[EventsConsumer]:
    async with consume_events(amqp, redis, settings) as consumer:
        yield consumer


@pytest.fixture
async def api(
    settings: Settings,
    redis: Redis,
    amqp: AbstractRobustConnection,
    events_consumer: EventsConsumer,
) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process, started after ``events_consumer`` is listening."""
    async with api_client(settings) as client:
        yield client


__all__ = ["EventsConsumer", "Received", "outbox_empties", "settings_with"]


@dataclass
class ApiProcess:
    service: ServiceProcess
    url: str

    @property
    def pid(self) -> int:
        assert self.service.process is not None
        return self.service.process.pid

    def log(self) -> str:
        return self.service.log_path.read_text(errors="replace")


class ApiProcesses:
    """Starts ``python -m api_service`` processes in the test's namespace; stops them after."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.started: list[ApiProcess] = []

    async def start(self, **env: str) -> ApiProcess:
        port = free_port()
        log_dir = self.log_dir / f"api-{len(self.started)}"
        log_dir.mkdir(parents=True, exist_ok=True)
        service = ServiceProcess(
            "api_service", api_env(self.settings, port, **{"CLS_LOG_LEVEL": "INFO", **env}), log_dir
        ).start()
        process = ApiProcess(service, f"http://127.0.0.1:{port}")
        self.started.append(process)
        await asyncio.to_thread(wait_http_ok, f"{process.url}/health", 30.0, service)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.service.stop(timeout=10)


@pytest.fixture
def api_processes(settings: Settings, tmp_path: Path) -> Iterator[ApiProcesses]:
    processes = ApiProcesses(settings, tmp_path)
    yield processes
    processes.stop_all()


class EventsProcesses:
    """Starts ``python -m event_jobs`` processes in the test's namespace; stops them
    after."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.started: list[ServiceProcess] = []

    async def start(self, **env: str) -> ServiceProcess:
        """Start one; return once it leads the relay (it holds the lock, broker or not)."""
        service = self.spawn(**env)
        await wait_relay_leader(service)
        return service

    def spawn(self, **env: str) -> ServiceProcess:
        """Start one without waiting for anything."""
        log_dir = self.log_dir / f"events-{len(self.started)}"
        log_dir.mkdir(parents=True, exist_ok=True)
        full_env = events_env(self.settings, **{"CLS_LOG_LEVEL": "INFO", **env})
        service = ServiceProcess("event_jobs", full_env, log_dir).start()
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        for service in self.started:
            service.stop(timeout=20)


@pytest.fixture
def events_processes(settings: Settings, tmp_path: Path) -> Iterator[EventsProcesses]:
    processes = EventsProcesses(settings, tmp_path)
    yield processes
    processes.stop_all()
