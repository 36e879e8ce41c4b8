"""RabbitMQ for every service: connecting, the errors worth retrying, topology, message shapes.

Declarations are idempotent: each service declares what it uses at start-up, so the services can
start in any order. Status reports must reach a queue (publish them with ``mandatory=True``);
spec-change events are fan-out and may have no listener yet. The first connection is retried
(``until_up``) for as long as the broker is away; after that, aio-pika's robust connection
re-opens itself, its channels and their declarations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import (
    CONNECTION_EXCEPTIONS,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
)

from cls_runtime.broker_users import BrokerUser, url_as
from shared_models.events import Event
from shared_models.names import Names

log = logging.getLogger("cls_runtime.amqp")

T = TypeVar("T")

STATUS_ROUTING_KEYS = ("nodepool.status", "cluster.status")

# The broker went away, refused, or did not answer in time: trying again later may work.
BROKER_ERRORS = (*CONNECTION_EXCEPTIONS, ChannelInvalidStateError, TimeoutError)
# What a call made while the connection breaks may raise besides those: aiormq fails the writes
# in flight (an ack, a publish) with a bare ``Exception()`` when the connection closes under them.
# Where a failed call is simply retried or left to redelivery, any Exception is such a failure.
IN_FLIGHT_ERRORS = (Exception,)
# Waits between attempts at a first connection.
CONNECT_BACKOFF = (0.5, 1.0, 2.0, 5.0)
# Bound on each broker call made while stopping: with the broker away, stopping still ends.
STOP_CALL_TIMEOUT = 2.0
# How often a user who may not declare an exchange looks whether its owner has.
EXCHANGE_POLL_INTERVAL = 0.2
# The header a dead-lettered report carries: why it can never be applied.
DEAD_REASON_HEADER = "x-cls-dead-reason"
# ... and the user_id it was published with (a copy may not claim another user's).
DEAD_USER_HEADER = "x-cls-original-user-id"


async def connect(url: str, user: BrokerUser | None = None) -> AbstractRobustConnection:
    """A connection that re-opens itself, its channels and their declarations after a failure;
    as ``user`` when given (a service's role), else as the URL says (tools that administer)."""
    target = url if user is None else url_as(url, user)
    return await aio_pika.connect_robust(target, timeout=10, reconnect_interval=1.0)


async def until_up(
    open_link: Callable[[], Awaitable[T]], stop: asyncio.Event | None, who: str
) -> T | None:
    """``open_link()`` (connect, then declare what ``who`` uses), retried with a backoff while
    the broker is away: at start-up it may still be starting (compose, ``make run``). None when
    ``stop`` is set first; without ``stop``, retried until it works."""
    stop = stop or asyncio.Event()
    attempt = 0
    while not stop.is_set():
        try:
            link = await open_link()
        except BROKER_ERRORS as exc:
            if attempt == 0:
                log.warning("%s: broker unreachable (%r); retrying", who, exc)
            delay = CONNECT_BACKOFF[min(attempt, len(CONNECT_BACKOFF) - 1)]
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        if attempt:
            log.info("%s: broker reached after %d failed attempt(s)", who, attempt)
        return link
    return None


async def quietly(call: Awaitable[object], what: str) -> None:
    """Make a broker call while stopping: bounded in time, a failure only logged."""
    try:
        await asyncio.wait_for(call, STOP_CALL_TIMEOUT)
    except BROKER_ERRORS as exc:
        log.warning("could not %s while stopping (%r)", what, exc)


async def wait_for_exchanges(
    connection: AbstractRobustConnection, names: list[str], stop: asyncio.Event, who: str
) -> bool:
    """Until every exchange of ``names`` exists; False when ``stop`` is set first.

    For a user who may not declare them (a controller): their owners (the relay, the ingester)
    declare them when they start, in any order. A passive declare needs no permission.
    """
    waited = False
    for name in names:
        while not await _exchange_exists(connection, name):
            if not waited:
                log.info("%s: waiting for the exchange %s to be declared", who, name)
                waited = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), EXCHANGE_POLL_INTERVAL)
            if stop.is_set():
                return False
    return True


async def _exchange_exists(connection: AbstractRobustConnection, name: str) -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_exchange(name, passive=True, robust=False)
    except ChannelNotFoundEntity:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True


async def existing_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    """An exchange someone else declared (a passive declare: needs no configure permission)."""
    return await channel.declare_exchange(name, passive=True)


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


def event_message(event: Event, user_id: str | None = None) -> aio_pika.Message:
    """An event as it goes on the wire: persistent JSON, id as message_id, routing headers, and
    the relay's broker user as user_id (the broker checks it; controllers trust only that)."""
    return aio_pika.Message(
        user_id=user_id,
        body=orjson.dumps(event.model_dump(mode="json")),
        message_id=event.id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        type=event.type,
        timestamp=event.timestamp,
        headers={"platform": event.platform, "generation": event.generation},
    )


def report_message(report: dict[str, Any], user_id: str | None = None) -> aio_pika.Message:
    """A status report as it goes on the wire (body: the PUT body plus the resource id); its
    user_id, the publishing controller's broker user, must name the report's controller."""
    return aio_pika.Message(
        user_id=user_id,
        body=orjson.dumps(report),
        message_id=str(uuid.uuid4()),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def status_routing_key(report: dict[str, Any]) -> str:
    return "cluster.status" if "cluster_id" in report else "nodepool.status"
