"""Dead-lettering a report with the reason it can never be applied.

A reject without requeue would dead-letter the report through the queue's dead-letter exchange,
but with the broker's reason only ("rejected"). Instead a copy carrying the reason in a header
(``x-cls-dead-reason``) is published to ``<ns>.status.dlx`` with publisher confirms, and only
once the broker has confirmed it into the dead-letter queue is the original acked: at least
once, never lost. The copy cannot keep the original's ``user_id`` (the broker accepts only the
ingester's own), so that goes in a header too. When the copy fails, the original is rejected
into the same queue by the broker instead: still kept, without the reason header.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from cls_runtime import amqp

log = logging.getLogger("status_ingester")

PUBLISH_TIMEOUT = 5.0
# A reason is a validation message, already bounded; this bounds a header whatever it says.
MAX_REASON = 1000


class DeadLetters:
    def __init__(self, exchange: AbstractExchange) -> None:
        self.exchange = exchange

    async def send(self, message: AbstractIncomingMessage, reason: str) -> bool:
        """Publish a copy of ``message`` with ``reason`` to the dead-letter exchange; True once
        the broker has confirmed it into a queue."""
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self.exchange.publish(
                    dead_copy(message, reason),
                    routing_key=message.routing_key or "",
                    mandatory=True,
                )
        except amqp.IN_FLIGHT_ERRORS as exc:  # returned, refused, or the channel broke
            log.warning("could not dead-letter %s with its reason (%r)", message.message_id, exc)
            return False
        return True


def dead_copy(message: AbstractIncomingMessage, reason: str) -> aio_pika.Message:
    headers: dict[str, Any] = dict(message.headers or {})
    headers[amqp.DEAD_REASON_HEADER] = reason[:MAX_REASON]
    headers[amqp.DEAD_USER_HEADER] = message.user_id or ""
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
