"""The transactional outbox through broker outages: writes succeed while RabbitMQ is away, and
every committed event is published once it returns, in order per resource, nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime import amqp as amqp_topology
from cls_runtime.settings import Settings
from tests.conftest import AMQP_URL, USER, api_client, gcp_cluster_body, seed_nodepool_body
from tests.events.conftest import (
    EventsConsumer,
    Received,
    outbox_empties,
    settings_with,
)
from tests.support.tcp_proxy import TcpProxy, through

NP = "/api/v1/nodepools"


async def write_a_mix(api: httpx.AsyncClient) -> list[tuple[str, str, int]]:
    """A cluster, three nodepools, scales and a delete; returns the events they must produce."""
    expected: list[tuple[str, str, int]] = []
    response = await api.post("/api/v1/clusters", json=gcp_cluster_body("outage"), headers=USER)
    assert response.status_code == 201
    cluster_id = response.json()["id"]
    expected.append(("cluster.created.gcp", cluster_id, 1))
    for name in ("a", "b", "c"):
        response = await api.post(NP, json=seed_nodepool_body(cluster_id, name), headers=USER)
        assert response.status_code == 201
        pool_id = response.json()["id"]
        expected.append(("nodepool.created.gcp", pool_id, 1))
        for generation, count in ((2, 4), (3, 5)):
            patch = await api.patch(
                f"{NP}/{pool_id}",
                json={"spec": {"nodeCount": count}},
                headers={**USER, "Content-Type": "application/merge-patch+json"},
            )
            assert patch.status_code == 200
            expected.append(("nodepool.updated.gcp", pool_id, generation))
    assert (await api.delete(f"{NP}/{pool_id}", headers=USER)).status_code == 204
    expected.append(("nodepool.deleted.gcp", pool_id, 4))
    return expected


def per_resource(events: list[tuple[str, str, int]]) -> dict[str, list[tuple[str, int]]]:
    grouped: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for routing_key, resource_id, generation in events:
        grouped[resource_id].append((routing_key, generation))
    return dict(grouped)


def received(events: list[Received]) -> list[tuple[str, str, int]]:
    return [(e.routing_key, e.resource_id, e.body["generation"]) for e in events]


async def wait_ready_check(api: httpx.AsyncClient, expected: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        checks = (await api.get("/ready")).json()["checks"]
        if checks["rabbitmq"] == expected:
            return
        assert time.monotonic() < deadline, f"rabbitmq readiness stayed {checks['rabbitmq']}"
        await asyncio.sleep(0.05)


async def test_writes_succeed_while_the_broker_is_unreachable_and_their_events_follow(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    broker_proxy: TcpProxy,
) -> None:
    app_settings = settings_with(settings, amqp_url=through(AMQP_URL, broker_proxy))
    async with api_client(app_settings) as api:
        await wait_ready_check(api, "ok")
        await broker_proxy.cut()
        await wait_ready_check(api, "unavailable")
        expected = await write_a_mix(api)
        assert await redis.xlen(settings.names.outbox) == len(expected)
        assert events_consumer.events == []
        await broker_proxy.restore()
        events = await events_consumer.sync(within=30)
        await wait_ready_check(api, "ok")
    assert sorted(received(events)) == sorted(expected)  # each one, exactly once
    assert per_resource(received(events)) == per_resource(expected)  # in order per resource
    await outbox_empties(redis, settings)


async def test_the_api_starts_and_accepts_writes_with_the_broker_unreachable(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    broker_proxy: TcpProxy,
) -> None:
    await broker_proxy.cut()
    app_settings = settings_with(settings, amqp_url=through(AMQP_URL, broker_proxy))
    async with api_client(app_settings) as api:
        ready = await api.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"redis": "ok", "rabbitmq": "unavailable"}
        expected = await write_a_mix(api)
        await broker_proxy.restore()
        events = await events_consumer.sync(within=30)
    assert received(events) == expected


async def test_events_committed_before_a_restart_are_published_by_the_next_start(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    broker_proxy: TcpProxy,
) -> None:
    await broker_proxy.cut()
    app_settings = settings_with(settings, amqp_url=through(AMQP_URL, broker_proxy))
    async with api_client(app_settings) as api:
        expected = await write_a_mix(api)
    # The app is gone with its events unpublished; they wait in Redis, not in the process.
    assert await redis.xlen(settings.names.outbox) == len(expected)
    async with api_client(settings):
        events = await events_consumer.sync(within=30)
    assert received(events) == expected


async def test_an_event_the_broker_refuses_stays_in_the_outbox_until_confirmed(
    settings: Settings,
    redis: Redis,
    amqp: AbstractRobustConnection,
    events_consumer: EventsConsumer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A queue that rejects every publish makes the broker nack the event: it must stay in the
    outbox (and be retried, in order) until a publish of it is confirmed."""
    channel = await amqp.channel()
    exchange = await amqp_topology.declare_events_exchange(channel, settings.names)
    blocker = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    await blocker.bind(exchange, routing_key="#")
    async with api_client(settings) as api:
        expected = await write_a_mix(api)
        deadline = time.monotonic() + 10
        while "broker unreachable" not in caplog.text:
            assert time.monotonic() < deadline, "the broker never refused a publish"
            await asyncio.sleep(0.02)
        assert await redis.xlen(settings.names.outbox) == len(expected)
        await blocker.delete(if_unused=False, if_empty=False)
        events = await events_consumer.sync(within=20)
    # Refused attempts may still have reached the consumer's queue: duplicates are allowed,
    # losses and reordering are not.
    assert dedupe(received(events)) == expected
    await outbox_empties(redis, settings)


def dedupe(events: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return list(dict.fromkeys(events))
