"""Fault scenarios on the whole stack: the services as deployed, as real processes (the ``stack``
fixture), with a consumer bound straight to ``<ns>.events`` before they start, and a writer that
records every write the API acknowledged, so that a test can tell what must not be lost.

A module points the services at a cuttable broker or a Redis of its own by overriding
``fault_env``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.events.conftest import EventsConsumer, consume_events
from tests.support.resources import create_cluster
from tests.support.stack import Json, Stack, create_body, scale_body

# How long a writer keeps retrying one request through an outage before the test fails.
WRITE_PATIENCE = 60.0


@pytest.fixture
def fault_env() -> dict[str, str]:
    """Extra environment of the services (a module overrides it)."""
    return {}


@pytest.fixture
def stack_overrides(
    request: pytest.FixtureRequest, fault_env: dict[str, str], events: EventsConsumer
) -> dict[str, str]:
    """The ``stack_env`` marker's values and the module's; depends on ``events`` so that the
    consumer listens before the services start."""
    marker = request.node.get_closest_marker("stack_env")
    return {**(marker.kwargs if marker is not None else {}), **fault_env}


@pytest.fixture
async def events(
    amqp: AbstractRobustConnection, redis: Redis, settings: Settings
) -> AsyncIterator[EventsConsumer]:
    """Every event published to ``<ns>.events``, received on a direct link to the broker."""
    async with consume_events(amqp, redis, settings) as consumer:
        yield consumer


@dataclass(frozen=True)
class Write:
    """A write the API acknowledged: the event it promised is (nodepool_id, type, generation)."""

    nodepool_id: str
    type: str
    generation: int
    node_count: int


@dataclass
class Writer:
    """Creates and scales nodepools over HTTP, retrying through outages, recording acks."""

    http: httpx.AsyncClient
    acked: list[Write] = field(default_factory=list)
    refusals: Counter[int] = field(default_factory=Counter)  # status codes answered meanwhile
    errors: Counter[str] = field(default_factory=Counter)  # transport errors meanwhile
    slowest_refusal: float = 0.0  # seconds the slowest refused request took
    _acked_more: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, write: Write) -> None:
        self.acked.append(write)
        self._acked_more.set()

    async def wait_acked(self, count: int) -> None:
        """Return once ``count`` writes are acknowledged."""
        while len(self.acked) < count:
            self._acked_more.clear()
            await self._acked_more.wait()

    async def wait_pools(self, count: int) -> None:
        """Return once ``count`` nodepools exist."""
        while len(self.latest()) < count:
            self._acked_more.clear()
            await self._acked_more.wait()

    async def send(self, method: str, url: str, body: Json, ok: int) -> Json:
        """Send until the API acknowledges (``ok``); what happened meanwhile is counted.

        A retried create can find its name taken by an earlier attempt that was committed
        although its answer was lost: that pool is then read back by name.
        """
        deadline = time.monotonic() + WRITE_PATIENCE
        while time.monotonic() < deadline:
            sent_at = time.monotonic()
            try:
                response = await self.http.request(method, url, json=body)
            except httpx.TransportError as exc:
                self.errors[type(exc).__name__] += 1
            else:
                if response.status_code == ok:
                    answer: Json = response.json()
                    return answer
                if response.status_code == 409 and method == "POST":
                    return await self.created_earlier(body)
                self.refused(response, time.monotonic() - sent_at)
            await asyncio.sleep(0.1)
        raise AssertionError(f"{method} {url} not acknowledged within {WRITE_PATIENCE}s")

    def refused(self, response: httpx.Response, took: float) -> None:
        """The only acceptable refusal is 503 UNAVAILABLE (storage away), answered promptly."""
        self.refusals[response.status_code] += 1
        self.slowest_refusal = max(self.slowest_refusal, took)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "UNAVAILABLE", response.text

    async def created_earlier(self, body: Json) -> Json:
        response = await self.http.get(
            "/api/v1/nodepools", params={"cluster_id": body["cluster_id"], "limit": 100}
        )
        assert response.status_code == 200, response.text
        found: Json = next(p for p in response.json()["items"] if p["name"] == body["name"])
        return found

    async def create(self, cluster_id: str, name: str) -> str:
        pool = await self.send("POST", "/api/v1/nodepools", create_body(cluster_id, name=name), 201)
        self.record(Write(pool["id"], "nodepool.created", pool["generation"], 3))
        return str(pool["id"])

    async def scale(self, nodepool_id: str, name: str, node_count: int) -> None:
        body = scale_body(name=name, node_count=node_count)
        pool = await self.send("PUT", f"/api/v1/nodepools/{nodepool_id}", body, 200)
        self.record(Write(nodepool_id, "nodepool.updated", pool["generation"], node_count))

    def record_scale(self, pool: Json, node_count: int) -> None:
        """A scale acknowledged outside ``scale`` (the test sent it itself)."""
        self.record(Write(pool["id"], "nodepool.updated", pool["generation"], node_count))

    async def cluster(self) -> str:
        created = await create_cluster(self.http)
        return str(created["id"])

    def latest(self) -> dict[str, Write]:
        """The last acknowledged write of each nodepool."""
        last: dict[str, Write] = {}
        for write in self.acked:
            if write.generation >= last.get(write.nodepool_id, write).generation:
                last[write.nodepool_id] = write
        return last


async def write_burst(writer: Writer, cluster_id: str, pools: int, scales: int) -> list[str]:
    """Create ``pools`` nodepools, then scale each ``scales`` times (pools in parallel)."""
    names = [f"pool-{i:03d}" for i in range(pools)]
    ids = list(await asyncio.gather(*(writer.create(cluster_id, name) for name in names)))

    async def scale_one(nodepool_id: str, name: str) -> None:
        for step in range(scales):
            await writer.scale(nodepool_id, name, 4 + step)

    await asyncio.gather(*(scale_one(i, n) for i, n in zip(ids, names, strict=True)))
    return ids


async def stored_generations(http: httpx.AsyncClient, ids: list[str]) -> dict[str, Json]:
    """Each nodepool as the API stores it now."""

    async def one(nodepool_id: str) -> Json:
        response = await http.get(f"/api/v1/nodepools/{nodepool_id}")
        assert response.status_code == 200, response.text
        body: Json = response.json()
        return body

    views = await asyncio.gather(*(one(i) for i in ids))
    return {v["id"]: v for v in views}


def lost_acked_writes(writer: Writer, stored: dict[str, Json]) -> list[Write]:
    """Acknowledged writes the store no longer shows (a later write may have superseded one)."""
    lost = []
    for nodepool_id, write in writer.latest().items():
        view = stored[nodepool_id]
        newer = view["generation"] > write.generation
        if not newer and (
            view["generation"] != write.generation or view["spec"]["nodeCount"] != write.node_count
        ):
            lost.append(write)
    return lost


def undelivered(writer: Writer, events: EventsConsumer) -> list[Write]:
    """Acknowledged writes whose event never reached the consumer."""
    seen = {(e.resource_id, e.type, int(e.body["generation"])) for e in events.events}
    return [w for w in writer.acked if (w.nodepool_id, w.type, w.generation) not in seen]


def delivery_counts(events: EventsConsumer) -> tuple[int, int]:
    """(distinct event ids, deliveries): the difference is duplicates, allowed and counted."""
    ids = [e.body["id"] for e in events.events]
    return len(set(ids)), len(ids)


async def wait_delivered(writer: Writer, events: EventsConsumer, within: float = 60.0) -> None:
    await events.wait_until(
        lambda: not undelivered(writer, events), within, "the events of every acknowledged write"
    )


def latest_generations(stored: dict[str, Json]) -> dict[str, int]:
    return {nodepool_id: int(view["generation"]) for nodepool_id, view in stored.items()}


__all__ = ["Stack", "Write", "Writer"]
