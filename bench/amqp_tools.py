"""What the benchmarks do on the broker: publish reports, watch queues, receive events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aio_pika import DeliveryMode, Message
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import ChannelClosed

from cls_runtime import amqp
from cls_runtime.settings import Settings
from shared_models.names import Names


async def publish_reports(
    settings: Settings, reports: list[dict[str, Any]], batch: int = 500
) -> None:
    """Publish with confirms, ``batch`` in flight at a time, in the order given, each report as
    its controller's broker user (one connection per controller)."""
    connections: dict[str, AbstractRobustConnection] = {}
    exchanges: dict[str, AbstractExchange] = {}
    try:
        for report in reports:
            controller = str(report["controller_name"])
            if controller not in exchanges:
                user = settings.controller_broker_user(controller)
                connections[controller] = await amqp.connect(settings.amqp_url, user)
                channel = await connections[controller].channel(publisher_confirms=True)
                status = settings.names.status_exchange
                exchanges[controller] = await amqp.existing_exchange(channel, status)
        for start in range(0, len(reports), batch):
            await asyncio.gather(
                *(
                    exchanges[str(r["controller_name"])].publish(
                        amqp.report_message(r, str(r["controller_name"])),
                        routing_key=amqp.status_routing_key(r),
                        mandatory=True,
                    )
                    for r in reports[start : start + batch]
                )
            )
    finally:
        for connection in connections.values():
            await connection.close()


async def publish_raw_as(
    settings: Settings, controller: str, messages: list[tuple[str, bytes]]
) -> None:
    """Publish bodies as they are (routing key, body), as ``controller`` with its user_id."""
    user = settings.controller_broker_user(controller)
    connection = await amqp.connect(settings.amqp_url, user)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await amqp.existing_exchange(channel, settings.names.status_exchange)
        for routing_key, body in messages:
            message = Message(
                body=body,
                content_type="application/json",
                delivery_mode=DeliveryMode.PERSISTENT,
                user_id=controller,
            )
            await exchange.publish(message, routing_key=routing_key, mandatory=True)
    finally:
        await connection.close()


async def wait_for(
    check: Callable[[], Awaitable[bool]], within: float, what: str, every: float = 0.02
) -> float:
    """Poll ``check`` until it holds; the monotonic time it was first seen holding."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic()
        await asyncio.sleep(every)
    raise TimeoutError(f"{what}: not within {within:.0f} s")


class EventTap:
    """A private queue bound to every event of a namespace, noting when each one arrives."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, int], float] = {}  # (resource id, generation) -> time
        self.times: list[float] = []  # every arrival, in order
        self.sample = b""  # the first body seen

    @property
    def count(self) -> int:
        return len(self.times)

    def rate(self) -> float:
        """Events per second from the first arrival to the last."""
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-6)

    async def start(self, connection: AbstractRobustConnection, names: Names) -> None:
        channel = await connection.channel()
        exchange = await amqp.declare_events_exchange(channel, names)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_event, no_ack=True)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        now = time.monotonic()
        body = orjson.loads(message.body)
        self.times.append(now)
        self.sample = self.sample or message.body
        resource = str(body.get("nodepool_id") or body.get("cluster_id"))
        self.arrivals.setdefault((resource, int(body["generation"])), now)


async def publish_copies(
    connection: AbstractRobustConnection, names: Names, body: bytes, count: int, batch: int
) -> None:
    """The bare publisher: ``count`` persistent copies of ``body``, ``batch`` confirms in flight."""
    channel = await connection.channel(publisher_confirms=True)
    exchange = await amqp.declare_events_exchange(channel, names)
    for start in range(0, count, batch):
        await asyncio.gather(
            *(
                exchange.publish(
                    Message(
                        body,
                        content_type="application/json",
                        delivery_mode=DeliveryMode.PERSISTENT,
                    ),
                    routing_key="nodepool.created.gcp",
                )
                for _ in range(min(batch, count - start))
            )
        )


def has_consumer(amqp_url: str, queue: str) -> Callable[[], bool]:
    """A readiness check for a worker process: its queue exists and it consumes from it."""

    async def check() -> bool:
        connection = await amqp.connect(amqp_url)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return bool(declared.declaration_result.consumer_count)
        except ChannelClosed:
            return False
        finally:
            await connection.close()

    return lambda: asyncio.run(check())
