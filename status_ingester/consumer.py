"""The status ingester: controller reports from ``<ns>.status.ingest`` into Redis.

A report is acked only once Redis holds its effect. The parts, each its own module:

- ``decode``: a delivery's body into a report, or a reason to dead-letter it;
- ``window``: deliveries handed out in windows (one Redis round trip to read a window's
  resources, one to write them), reports on one resource in delivery order;
- ``judging``: a window's reports applied with ``StatusService`` (the API's own rules) and the
  verdict on each delivery: ack, dead-letter or requeue;
- ``settling``: the deliveries in hand, settled in delivery order (one ``multiple`` ack per
  window and channel);
- ``redis_health``: the gate that holds the windows while Redis is away. Nothing is settled
  meanwhile: the full prefetch window stops the broker from sending more, and the reports in
  hand are applied and acked when Redis answers again.

This module is their life cycle: connect, consume, drain on SIGTERM, close. A broker outage is
handled by the robust connection: reports in hand whose channel died are dropped unsettled (the
broker delivers them again) and the consumer is restored on the new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
)

from cls_core.services.status import StatusService
from cls_core.store import RedisStore
from cls_core.store.redis_store import connect_redis
from cls_runtime import amqp
from cls_runtime.logs import install_record_context
from cls_runtime.settings import Settings
from status_ingester.counters import IngestCounters
from status_ingester.dead_letters import DeadLetters
from status_ingester.decode import Poison, Report, decode
from status_ingester.judging import WindowJudge
from status_ingester.redis_health import RedisGate
from status_ingester.settling import Delivery, Ledger
from status_ingester.window import Windows

log = logging.getLogger("status_ingester")

DRAIN_TIMEOUT = 15.0
REDIS_PROBE_INTERVAL = 0.5
BROKER_RETRY_INTERVAL = 1.0
DELIVERY_GRACE = 0.1
CLOSE_TIMEOUT = 10.0


class StatusIngester:
    def __init__(
        self,
        settings: Settings,
        *,
        drain_timeout: float = DRAIN_TIMEOUT,
        redis_probe_interval: float = REDIS_PROBE_INTERVAL,
    ) -> None:
        install_record_context()  # log lines name the report they are about
        self.settings = settings
        self.names = settings.names
        self.redis = connect_redis(settings.redis_url)
        self.status = StatusService(RedisStore(self.redis, self.names), settings)
        self.counters = IngestCounters(self.redis, self.names.metric("ingest"))
        self.drain_timeout = drain_timeout
        self.gate = RedisGate(self.redis, redis_probe_interval)
        self.judge = WindowJudge(self.status, self.gate)
        self.ledger = Ledger(self.counters)
        # Set while a consumer is registered with the broker (tests wait on it).
        self.consuming = asyncio.Event()
        self._windows: Windows[Delivery] = Windows(
            self._handle_window, _key, limit=settings.ingest_prefetch
        )
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: ConsumerTag | None = None
        self._stopping = False
        self._broker_up = True

    @property
    def in_hand(self) -> int:
        """Reports delivered to this ingester and not settled yet."""
        return len(self.ledger)

    @property
    def paused(self) -> bool:
        """True while Redis is away and the reports in hand wait for it."""
        return not self.gate.is_open

    # ---- life cycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the reports in hand and close."""
        try:
            if not await self._open(stop):
                return
            self.counters.start()
            supervisor = asyncio.create_task(self._supervise(), name="ingest supervisor")
            stopped = asyncio.create_task(stop.wait(), name="ingest stop")
            await asyncio.wait({supervisor, stopped}, return_when=asyncio.FIRST_COMPLETED)
            supervisor.cancel()
            stopped.cancel()
            await asyncio.gather(supervisor, stopped, return_exceptions=True)
            await self._drain()
            # The supervisor never returns: if it ended, it failed, and so must the process.
            failure = None if supervisor.cancelled() else supervisor.exception()
            if failure is not None:
                raise RuntimeError("the ingest supervisor failed") from failure
        finally:
            await self._close()

    async def _open(self, stop: asyncio.Event) -> bool:
        """Connect and declare the topology, retrying until the broker answers or ``stop``."""
        connection = await amqp.until_up(self._connect, stop, "status ingester")
        if connection is None:
            return False
        connection.close_callbacks.add(self._on_broker_lost)
        connection.reconnect_callbacks.add(self._on_broker_back)
        return True

    async def _connect(self) -> AbstractRobustConnection:
        self._connection = await amqp.connect(
            self.settings.amqp_url, self.settings.ingester_broker_user
        )
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self.settings.ingest_prefetch)
            self._queue = await amqp.declare_status_queue(
                channel, self.names, self.settings.ingest_delivery_limit
            )
            # Dead-letter copies get a channel of their own: confirms, and a copy the broker
            # cannot route raises instead of vanishing.
            publishing = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            dead = await amqp.existing_exchange(publishing, self.names.status_dead_exchange)
            self.ledger.dead_letters = DeadLetters(dead)
        except BaseException:
            await self._close_connection()
            raise
        return self._connection

    async def _drain(self) -> None:
        """Stop new deliveries, then let the reports in hand finish (bounded)."""
        self._stopping = True
        await self._stop_consuming()
        log.info("draining: %d report(s) in hand", self.in_hand)
        try:
            await asyncio.wait_for(self._finish_in_hand(), self.drain_timeout)
        except TimeoutError:
            abandoned = await self._abandon()
            log.warning(
                "drain timed out after %.1fs: %d report(s) left unacked for redelivery",
                self.drain_timeout,
                abandoned,
            )

    async def _finish_in_hand(self) -> None:
        while True:
            await self._windows.wait_idle()
            # Deliveries that reached the channel before CancelOk reach our callback through
            # tasks the client library has already scheduled, a few loop turns later: wait for
            # any straggler before declaring the hand empty.
            await asyncio.sleep(DELIVERY_GRACE)
            if not self.in_hand:
                return

    async def _abandon(self) -> int:
        """Give up the reports in hand, unsettled (the broker delivers them again)."""
        abandoned = self.in_hand
        await self._windows.cancel()
        self.ledger.clear()
        return abandoned

    async def _close(self) -> None:
        self._stopping = True
        await self._abandon()
        await self.counters.close()
        await self._close_connection()
        await self.redis.aclose()
        log.info("stopped")

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*amqp.BROKER_ERRORS):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)

    # ---- consuming, paused while Redis is away ---------------------------------------------
    async def _supervise(self) -> None:
        await self.gate.reopen("before consuming")
        await self._start_consuming()
        while True:
            await self.gate.wait_lost()
            # No cancel: the reports in hand are never acked while Redis is away, so the
            # prefetch window stays full and the broker sends no more. (Cancelling instead makes
            # a quorum queue hand back the deliveries in transit, each one a delivery attempt.)
            log.warning(
                "redis unavailable: paused with %d report(s) held unacked until it answers",
                self.in_hand,
            )
            await self.gate.reopen("to resume")
            log.info("redis answers again: resumed")

    async def _start_consuming(self) -> None:
        assert self._queue is not None
        while True:
            try:
                self._consumer_tag = await self._queue.consume(self._on_message)
            except amqp.BROKER_ERRORS as exc:
                log.debug("consume failed (%s); retrying", exc)
                await asyncio.sleep(BROKER_RETRY_INTERVAL)
                continue
            self.consuming.set()
            log.info("consuming %s (prefetch %d)", self._queue.name, self.settings.ingest_prefetch)
            return

    async def _stop_consuming(self) -> None:
        tag, self._consumer_tag = self._consumer_tag, None
        if tag is None or self._queue is None:
            return
        try:
            await self._queue.cancel(tag, timeout=5)
        except amqp.BROKER_ERRORS as exc:
            # The channel is gone, and the consumer with it; the robust queue has forgotten it
            # too, so it will not be restored on the next channel.
            log.debug("cancel failed (%s)", exc)
        self.consuming.clear()

    def _on_broker_lost(self, *_: object) -> None:
        # Called again by every failed reconnection attempt: log the change only.
        if self._broker_up and not self._stopping:
            log.warning(
                "broker connection lost: %d report(s) in hand will be redelivered; reconnecting",
                self.in_hand,
            )
        self._broker_up = False

    def _on_broker_back(self, *_: object) -> None:
        self._broker_up = True
        log.info("broker connection restored")

    # ---- deliveries, a window at a time ---------------------------------------------------
    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # No await before submit: callbacks start in delivery order, and so windows hold the
        # reports in that order.
        decoded: Report | Poison | Exception
        try:
            decoded = decode(message, self.settings.max_body_bytes)
        except Exception as exc:  # a bug of ours, not a bad message: requeue, don't strand it
            decoded = exc
        delivery = Delivery(message, decoded)
        self.ledger.add(delivery)
        self._windows.submit(delivery)

    async def _handle_window(self, window: list[Delivery]) -> None:
        try:
            await self.ledger.settle(window, await self.judge.judge(window))
        except Exception:
            log.exception("a window of %d report(s) failed; requeued", len(window))
            await self.ledger.requeue_unsettled(window)


def _key(delivery: Delivery) -> str | None:
    """Deliveries on one resource are applied in delivery order; the others need no order."""
    return delivery.decoded.key if isinstance(delivery.decoded, Report) else None
