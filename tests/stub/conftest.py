"""Fixtures for the simulated controllers: the stub in-process over the real broker, a way to
publish events as the API's relay does, and a queue that collects every status report."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from cls_runtime import amqp as topology
from cls_runtime.settings import Settings
from reconciler_stub.catalog import select_controllers
from reconciler_stub.controller import Trust
from reconciler_stub.faults import FAULT_LABEL
from reconciler_stub.service import StubService
from shared_models.events import Event, EventType
from shared_models.names import Kind, Names
from tests.support.broker import connected_as, publish_event_as_relay, relay_user
from tests.support.status_reports import (
    Report,
    Reports,
    is_report_of,
    ready_status,
    reason,
    watch_reports,
)

StartStub = Callable[..., Awaitable[StubService]]
Publish = Callable[[Event], Awaitable[None]]

CLUSTER_ID = "550e8400-e29b-41d4-a716-446655440000"
TEST_DELAY_MS = 20


def nodepool_spec(
    node_count: int = 3,
    *,
    platform: str = "gcp",
    labels: dict[str, str] | None = None,
    autoscaling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    blocks: dict[str, dict[str, Any]] = {
        "gcp": {"machineType": "n1-standard-4", "zones": ["us-central1-a", "us-central1-b"]},
        "aws": {"instanceType": "m5.xlarge", "availabilityZones": ["us-west-2a", "us-west-2b"]},
        "azure": {"vmSize": "Standard_D4s_v3", "availabilityZones": ["1", "2"]},
    }
    block = dict(blocks[platform])
    if labels is not None:
        block["labels"] = labels
    spec: dict[str, Any] = {
        "platform": {"type": platform, platform: block},
        "nodeCount": node_count,
    }
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return spec


def seed_spec() -> dict[str, Any]:
    """The nodepool spec of the user guide's complete example workflow."""
    return nodepool_spec(3, autoscaling={"enabled": True, "minNodes": 2, "maxNodes": 10})


def cluster_spec(platform: str = "gcp") -> dict[str, Any]:
    blocks: dict[str, dict[str, Any]] = {
        "gcp": {"projectID": "my-project-123", "region": "us-central1"},
        "aws": {"region": "us-west-2"},
        "azure": {"location": "westeurope"},
    }
    return {"platform": {"type": platform, platform: blocks[platform]}}


def nodepool_event(
    event_type: EventType,
    nodepool_id: str,
    generation: int,
    spec: dict[str, Any],
    *,
    cluster_id: str = CLUSTER_ID,
    status: dict[str, Any] | None = None,
) -> Event:
    """An event as the relay publishes it: the nodepool as it was at ``generation``."""
    resource = {
        "id": nodepool_id,
        "name": "production-workers",
        "cluster_id": cluster_id,
        "generation": generation,
        "spec": spec,
        "status": status or {"phase": "Pending", "observedGeneration": 0},
    }
    return _event(event_type, cluster_id, nodepool_id, generation, spec, resource)


def cluster_event(
    event_type: EventType, cluster_id: str, generation: int, spec: dict[str, Any]
) -> Event:
    resource = {"id": cluster_id, "name": "demo", "generation": generation, "spec": spec}
    return _event(event_type, cluster_id, None, generation, spec, resource)


def _event(
    event_type: EventType,
    cluster_id: str,
    nodepool_id: str | None,
    generation: int,
    spec: dict[str, Any],
    resource: dict[str, Any],
) -> Event:
    return Event(
        id=str(uuid.uuid4()),
        type=event_type,
        cluster_id=cluster_id,
        nodepool_id=nodepool_id,
        generation=generation,
        timestamp=datetime.now(UTC),
        platform=spec["platform"]["type"],
        resource=resource,
    )


def new_id() -> str:
    return str(uuid.uuid4())


SEED_SPEC = seed_spec()


def faulty(fault: str, node_count: int = 3) -> dict[str, Any]:
    """A nodepool spec whose label asks the simulated controllers for ``fault``."""
    return nodepool_spec(node_count, labels={FAULT_LABEL: fault, "team": "platform"})


async def create_ready(publish: Publish, reports: Reports, spec: dict[str, Any] = SEED_SPEC) -> str:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, spec))
    await reports.wait_ready(nodepool_id, 1)
    return nodepool_id


async def barrier(publish: Publish, reports: Reports, platform: str = "gcp") -> None:
    """Wait until a fresh nodepool on ``platform`` is Ready.

    A controller handles its events in order, so once the barrier's first report is out, every
    event published before it has been handled; once it is Ready, several step delays passed.
    """
    await create_ready(publish, reports, nodepool_spec(3, platform=platform))


@pytest.fixture
async def reports(amqp: AbstractRobustConnection, namespace: str) -> AsyncIterator[Reports]:
    """A private queue bound to ``<ns>.status`` that sees every report any controller sends."""
    async with watch_reports(amqp, Names(namespace)) as collected:
        yield collected


@pytest.fixture
async def publish(namespace: str) -> AsyncIterator[Publish]:
    """Publish an event to ``<ns>.events`` the way the relay does: as its broker user, with its
    user_id (the controllers take no other), persistent, confirmed."""
    async with connected_as(relay_user()) as relay:
        channel = await relay.channel(publisher_confirms=True)
        await topology.declare_events_exchange(channel, Names(namespace))

        async def send(event: Event) -> None:
            await publish_event_as_relay(channel, Names(namespace), event)

        yield send


@pytest.fixture
async def publish_as_admin(amqp: AbstractRobustConnection, namespace: str) -> Publish:
    """Publish an event as ``guest``, who may write anywhere but is not the relay."""
    channel = await amqp.channel(publisher_confirms=True)
    events = await topology.declare_events_exchange(channel, Names(namespace))

    async def send(event: Event) -> None:
        await events.publish(topology.event_message(event), routing_key=event.routing_key)

    return send


async def declare_owned_topology(amqp: AbstractRobustConnection, settings: Settings) -> None:
    """What the relay and the ingester declare (here with guest's rights): controllers may not
    declare the exchanges they use, and their reports need the status queue."""
    channel = await amqp.channel()
    await topology.declare_events_exchange(channel, settings.names)
    await topology.declare_status_queue(channel, settings.names, settings.ingest_delivery_limit)
    await channel.close()


def stub_settings(settings: Settings, **overrides: Any) -> Settings:
    """No API here (``stub_api_url`` empty): events are taken at their word. The re-read of a
    generation ahead is tested with the whole stack (tests/e2e/test_forged_events.py)."""
    defaults = {"stub_delay_ms": TEST_DELAY_MS, "stub_api_url": ""}
    return Settings(**{**settings.model_dump(), **defaults, **overrides})


@pytest.fixture
async def start_stub(
    settings: Settings, amqp: AbstractRobustConnection
) -> AsyncIterator[StartStub]:
    """Start the simulated controllers in-process (``CLS_STUB_*`` as keyword overrides)."""
    started: list[StubService] = []
    await declare_owned_topology(amqp, settings)

    async def start(**overrides: Any) -> StubService:
        chosen = stub_settings(settings, **overrides)
        service = StubService(chosen, select_controllers(chosen.stub_controllers))
        started.append(service)
        assert await service.start(asyncio.Event())
        return service

    yield start
    for service in started:
        await service.stop()


@pytest.fixture
async def stub(start_stub: StartStub) -> StubService:
    return await start_stub()


async def queue_depth(amqp: AbstractRobustConnection, queue_name: str) -> int:
    """Messages waiting (ready, not unacknowledged) in a queue, read with a passive declare."""
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(queue_name, passive=True)
        count = queue.declaration_result.message_count
        return int(count or 0)
    finally:
        await channel.close()


def deleted_status(report: Report) -> str | None:
    """The status of a report's ``Deleted`` condition; None when it has none (progress)."""
    return next((c["status"] for c in report["conditions"] if c["type"] == "Deleted"), None)


def is_confirmation(report: Report, resource_id: str, generation: int) -> bool:
    return is_report_of(report, resource_id, generation) and deleted_status(report) == "True"


class FakeApi:
    """The API as the controllers read it (``ResourceReader``): each resource as a test sets
    it, None (404) for any other."""

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = {}

    def has(self, event: Event, phase: str, generation: int | None = None) -> None:
        """The API has ``event``'s resource, at ``generation`` (the event's by default), in
        ``phase`` (``Deleting``: with its deletion_timestamp, as the API shows one)."""
        at = event.generation if generation is None else generation
        view = {**event.resource, "generation": at, "status": {"phase": phase}}
        if phase == "Deleting":
            view["deletion_timestamp"] = event.timestamp.isoformat()
        self.resources[event.nodepool_id or event.cluster_id] = view

    async def read(self, kind: Kind, resource_id: str) -> dict[str, Any] | None:
        return self.resources.get(resource_id)


@pytest.fixture
async def api(stub: StubService) -> FakeApi:
    """The stub, checking what events claim against a fake API (``stub_api_url`` is empty)."""
    fake = FakeApi()
    for controller in stub.controllers:
        controller.trust = Trust(controller.trust.relay_user, fake)
    return fake


__all__ = ["Report", "Reports", "is_report_of", "ready_status", "reason"]
