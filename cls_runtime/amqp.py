"""RabbitMQ topology and message shapes, declared the same way by every service.

Declarations are idempotent: each service declares what it uses at start-up, so the services can
start in any order. Status reports must reach a queue (publish them with ``mandatory=True``);
spec-change events are fan-out and may have no listener yet.
"""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared_models.events import Event
from shared_models.names import Names

STATUS_ROUTING_KEYS = ("nodepool.status", "cluster.status")


async def connect(url: str) -> AbstractRobustConnection:
    """A connection that re-opens itself, its channels and their declarations after a failure."""
    return await aio_pika.connect_robust(url, timeout=10, reconnect_interval=1.0)


async def declare_events_exchange(channel: AbstractChannel, names: Names) -> AbstractExchange:
    return await channel.declare_exchange(
        names.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_status_exchange(channel: AbstractChannel, names: Names) -> AbstractExchange:
    return await channel.declare_exchange(
        names.status_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_status_queue(
    channel: AbstractChannel, names: Names, delivery_limit: int
) -> AbstractQueue:
    """The quorum queue of status reports and its dead-letter queue.

    A report that keeps failing is dead-lettered after ``delivery_limit`` deliveries (RabbitMQ
    3.10 sets no limit by default), at-least-once, so it is never dropped on the way.
    """
    dead_exchange = await channel.declare_exchange(
        names.status_dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_queue = await channel.declare_queue(
        names.status_dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_queue.bind(dead_exchange, routing_key="#")
    status_exchange = await declare_status_exchange(channel, names)
    queue = await channel.declare_queue(
        names.status_queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": names.status_dead_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    for routing_key in STATUS_ROUTING_KEYS:
        await queue.bind(status_exchange, routing_key=routing_key)
    return queue


def event_message(event: Event) -> aio_pika.Message:
    """An event as it goes on the wire: persistent JSON, id as message_id, routing headers."""
    return aio_pika.Message(
        body=orjson.dumps(event.model_dump(mode="json")),
        message_id=event.id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        type=event.type,
        timestamp=event.timestamp,
        headers={"platform": event.platform, "generation": event.generation},
    )


def report_message(report: dict[str, Any]) -> aio_pika.Message:
    """A status report as it goes on the wire (body: the PUT body plus the resource id)."""
    return aio_pika.Message(
        body=orjson.dumps(report),
        message_id=str(uuid.uuid4()),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def status_routing_key(report: dict[str, Any]) -> str:
    return "cluster.status" if "cluster_id" in report else "nodepool.status"
