"""The relay's link to RabbitMQ: one robust connection, one confirming channel, ``<ns>.events``.

Every replica connects at start-up (and declares the exchange, idempotently), leader or not, so
that readiness reflects the broker and a failover does not wait for a connection
(``amqp.until_up``: retried while the broker is away, then re-opened by aio-pika).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection

from cls_runtime import amqp
from cls_runtime.broker_users import BrokerUser
from event_jobs.stopping import Stopped
from shared_models.events import Event
from shared_models.names import Names

log = logging.getLogger("event_jobs.broker")

# How long a batch may wait for its confirms before it counts as failed (and is retried).
CONFIRM_TIMEOUT = 10.0


@dataclass
class _Link:
    connection: AbstractRobustConnection
    channel: AbstractRobustChannel
    exchange: AbstractExchange


class BrokerLink:
    def __init__(self, url: str, user: BrokerUser, names: Names) -> None:
        self.url = url
        # The relay's own broker user: only it may publish to <ns>.events, and every event
        # carries its name as user_id, which the broker checks and controllers trust.
        self.user = user
        self.names = names
        self._link: _Link | None = None
        self.last_error: str = ""

    @property
    def connected(self) -> bool:
        """The connection and the channel are open (readiness, and the relay's go-ahead)."""
        link = self._link
        return (
            link is not None and link.connection.connected.is_set() and not link.channel.is_closed
        )

    async def connect(self, stop: asyncio.Event) -> None:
        """Connect and declare the exchange, retrying until it works; ``Stopped`` if ``stop``
        is set first."""
        while self._link is None:
            self._link = await amqp.until_up(self._open, stop, "event jobs")
            if self._link is None:
                raise Stopped

    async def wait_ready(self, patience: float) -> bool:
        """Wait up to ``patience`` seconds for the (re-)opened channel; True when it is usable."""
        link = self._link
        if link is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):
                await link.channel.ready()
        return self.connected

    async def publish(self, events: list[Event]) -> int:
        """Publish in order, confirms pipelined; the number confirmed from the start of the list.

        Every publish is started before any confirm is awaited. aio-pika writes them to the
        channel in the order they start (one lock, first come first served), and the broker
        keeps a channel's order, so per-resource order holds. Whatever follows the first failure
        is not counted as confirmed: it stays in the outbox and goes again, in order (a consumer
        may then see an event twice, which at-least-once allows).
        """
        link = self._link
        if link is None or not events:
            return 0
        tasks = [
            asyncio.ensure_future(
                link.exchange.publish(
                    amqp.event_message(event, self.user.name), event.routing_key, mandatory=False
                )
            )
            for event in events
        ]
        try:
            await asyncio.wait(tasks, timeout=CONFIRM_TIMEOUT)
        finally:
            for task in tasks:
                task.cancel()  # no-op for finished ones; nothing outlives the batch
            await asyncio.gather(*tasks, return_exceptions=True)
        return self._confirmed_prefix(tasks)

    def _confirmed_prefix(self, tasks: list[asyncio.Task[Any]]) -> int:
        for index, task in enumerate(tasks):
            if task.cancelled():
                self.last_error = f"no confirm within {CONFIRM_TIMEOUT}s"
                return index
            exc = task.exception()
            if exc is not None:
                self.last_error = f"{type(exc).__name__}: {exc}"
                return index
        return len(tasks)

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                await link.connection.close()

    async def _open(self) -> _Link:
        connection = await amqp.connect(self.url, self.user)
        try:
            channel = connection.channel(publisher_confirms=True)
            await channel.initialize(timeout=10)
            exchange = await amqp.declare_events_exchange(channel, self.names)
        except BaseException:
            await connection.close()
            raise
        return _Link(connection, channel, exchange)
