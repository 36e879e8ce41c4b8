"""Publishing status reports to ``<ns>.status``, as any real controller does.

A report counts as sent only when the broker has confirmed it (publisher confirms) and routed it
to a queue (``mandatory=True``): the controller acknowledges the event that caused a report only
after that, so an event is never lost between the controller and the ingester. A report the
broker returns, refuses, or loses with the connection is published again until it gets through.

Each report carries its controller's broker user as ``user_id``: the broker checks it against the
connection's user, and the ingester applies a report only when it names the report's controller.
A controller may not declare the status exchange or queue (they are the ingester's): a report
published before the ingester has declared its queue is returned, and published again.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import PublishError

from cls_runtime import amqp
from reconciler_stub.reports import Report
from shared_models.names import Names

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 10.0
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0


class Reporter:
    def __init__(self, connection: AbstractRobustConnection, names: Names, user_id: str) -> None:
        self.connection = connection
        self.names = names
        self.user_id = user_id
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def start(self) -> None:
        self._channel = await self.connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await amqp.existing_exchange(self._channel, self.names.status_exchange)

    async def publish(self, report: Report) -> None:
        """Publish until the broker has confirmed the report into a queue (or we are cancelled)."""
        body = report.model_dump(mode="json", exclude_none=True)
        # One message for every attempt: the same message_id lets a consumer spot a report that
        # reached the queue although its confirmation was lost.
        message = amqp.report_message(body, self.user_id)
        routing_key = amqp.status_routing_key(body)
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                await asyncio.wait_for(self._publish_once(message, routing_key), PUBLISH_TIMEOUT)
                return
            except PublishError:
                # Unroutable: the ingester has not declared its queue yet (or it was removed).
                log.warning("status report returned as unroutable (no status queue); retrying")
            except amqp.IN_FLIGHT_ERRORS as exc:  # the report is never dropped: publish it again
                log.warning("status report not confirmed (%r); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _publish_once(self, message: aio_pika.Message, routing_key: str) -> None:
        assert self._exchange is not None, "start() first"
        await self._exchange.publish(message, routing_key=routing_key, mandatory=True)
