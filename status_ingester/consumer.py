"""The status ingester: controller reports from ``<ns>.status.ingest`` into Redis.

Every report goes through ``StatusService.apply``, the same code the API's ``PUT .../status``
runs, and is acked only once that returned (Redis holds its effect). How each delivery ends:

- applied, unchanged (a duplicate), stale (an older generation): ack;
- unknown or deleted resource: ack, counted as ``unknown``;
- malformed, wrong content type, invalid, or for a generation the resource has not reached:
  reject without requeue, so the broker dead-letters it to ``<ns>.status.dead``;
- an unexpected failure: nack with requeue; the queue's delivery limit dead-letters a report
  that keeps failing;
- Redis away: nothing is settled. The reports in hand wait and are applied and acked when
  Redis answers again; meanwhile the full prefetch window stops the broker from sending more.
  Handing them back to the broker instead would count against their delivery limit.

Reports run concurrently up to the prefetch window, but those on one resource run one at a
time in delivery order (see ``lanes``). A broker outage is handled by the robust connection:
reports in hand whose channel died are dropped unsettled (the broker delivers them again) and
the consumer is restored on the new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from enum import Enum

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, ChannelInvalidStateError

from api_service.services.status import ApplyResult, Outcome, StatusService
from api_service.store import RedisStore
from api_service.store.redis_store import connect_redis
from shared_models import amqp
from shared_models.logs import install_record_context, log_context
from shared_models.settings import Settings
from status_ingester.counters import Count, IngestCounters
from status_ingester.decode import Poison, Report, decode
from status_ingester.lanes import Lanes
from status_ingester.redis_health import is_redis_unavailable, redis_answers, wait_for_redis

log = logging.getLogger("status_ingester")

DRAIN_TIMEOUT = 15.0
REDIS_PROBE_INTERVAL = 0.5
BROKER_RETRY_INTERVAL = 1.0
DELIVERY_GRACE = 0.1
SETTLE_TIMEOUT = 5.0
CLOSE_TIMEOUT = 10.0


class Settle(Enum):
    ACK = "ack"
    DEAD = "dead-letter"
    REQUEUE = "requeue"


_BY_OUTCOME: dict[Outcome, tuple[Settle, Count]] = {
    Outcome.APPLIED: (Settle.ACK, Count.APPLIED),
    Outcome.UNCHANGED: (Settle.ACK, Count.UNCHANGED),
    Outcome.STALE: (Settle.ACK, Count.STALE),
    Outcome.NOT_FOUND: (Settle.ACK, Count.UNKNOWN),
    # A report claiming a generation the resource never had is wrong, not early: the event of a
    # generation is published only after that generation is stored.
    Outcome.FUTURE_GENERATION: (Settle.DEAD, Count.DEAD_LETTERED),
}


@dataclass(frozen=True)
class Delivery:
    message: AbstractIncomingMessage
    decoded: Report | Poison | Exception  # an exception: decoding itself failed


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
        self.redis_probe_interval = redis_probe_interval
        # Set while a consumer is registered with the broker (tests wait on it).
        self.consuming = asyncio.Event()
        self._lanes: Lanes[Delivery] = Lanes(self._handle)
        self._redis_ok = asyncio.Event()
        self._redis_failed = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: ConsumerTag | None = None
        self._stopping = False
        self._broker_up = True
        self._failing = False

    @property
    def in_hand(self) -> int:
        """Reports delivered to this ingester and not settled yet."""
        return len(self._lanes)

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
        warned = False
        while not stop.is_set():
            try:
                self._connection = await amqp.connect(self.settings.amqp_url)
                channel = await self._connection.channel()
                await channel.set_qos(prefetch_count=self.settings.ingest_prefetch)
                self._queue = await amqp.declare_status_queue(
                    channel, self.names, self.settings.ingest_delivery_limit
                )
            except CONNECTION_EXCEPTIONS as exc:
                if not warned:
                    log.warning("broker unavailable (%s); retrying", exc)
                    warned = True
                await self._close_connection()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), BROKER_RETRY_INTERVAL)
                continue
            self._connection.close_callbacks.add(self._on_broker_lost)
            self._connection.reconnect_callbacks.add(self._on_broker_back)
            return True
        return False

    async def _drain(self) -> None:
        """Stop new deliveries, then let the reports in hand finish (bounded)."""
        self._stopping = True
        await self._stop_consuming()
        log.info("draining: %d report(s) in hand", len(self._lanes))
        try:
            await asyncio.wait_for(self._finish_in_hand(), self.drain_timeout)
        except TimeoutError:
            abandoned = await self._lanes.cancel()
            log.warning(
                "drain timed out after %.1fs: %d report(s) left unacked for redelivery",
                self.drain_timeout,
                abandoned,
            )

    async def _finish_in_hand(self) -> None:
        while True:
            await self._lanes.wait_idle()
            # Deliveries that reached the channel before CancelOk reach our callback through
            # tasks the client library has already scheduled, a few loop turns later: wait for
            # any straggler before declaring the hand empty.
            await asyncio.sleep(DELIVERY_GRACE)
            if not self._lanes:
                return

    async def _close(self) -> None:
        self._stopping = True
        await self._lanes.cancel()
        await self.counters.close()
        await self._close_connection()
        await self.redis.aclose()
        log.info("stopped")

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS, TimeoutError):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)

    # ---- consuming, paused while Redis is away ---------------------------------------------
    async def _supervise(self) -> None:
        await self._wait_for_redis("before consuming")
        self._redis_ok.set()
        await self._start_consuming()
        while True:
            await self._redis_failed.wait()
            # No cancel: the reports in hand are never acked while Redis is away, so the
            # prefetch window stays full and the broker sends no more. (Cancelling instead makes
            # a quorum queue hand back the deliveries in transit, each one a delivery attempt.)
            log.warning(
                "redis unavailable: paused with %d report(s) held unacked until it answers",
                len(self._lanes),
            )
            await self._wait_for_redis("to resume")
            self._redis_failed.clear()
            self._redis_ok.set()
            log.info("redis answers again: resumed")

    async def _wait_for_redis(self, why: str) -> None:
        if not await redis_answers(self.redis):
            log.warning("redis unavailable: waiting for it %s", why)
            await wait_for_redis(self.redis, self.redis_probe_interval)

    @property
    def paused(self) -> bool:
        """True while Redis is away and the reports in hand wait for it."""
        return not self._redis_ok.is_set()

    def _redis_lost(self) -> None:
        self._redis_ok.clear()
        self._redis_failed.set()

    async def _start_consuming(self) -> None:
        assert self._queue is not None
        while True:
            try:
                self._consumer_tag = await self._queue.consume(self._on_message)
            except CONNECTION_EXCEPTIONS as exc:
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
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
            # The channel is gone, and the consumer with it; the robust queue has forgotten it
            # too, so it will not be restored on the next channel.
            log.debug("cancel failed (%s)", exc)
        self.consuming.clear()

    def _on_broker_lost(self, *_: object) -> None:
        # Called again by every failed reconnection attempt: log the change only.
        if self._broker_up and not self._stopping:
            log.warning(
                "broker connection lost: %d report(s) in hand will be redelivered; reconnecting",
                len(self._lanes),
            )
        self._broker_up = False

    def _on_broker_back(self, *_: object) -> None:
        self._broker_up = True
        log.info("broker connection restored")

    # ---- one delivery ----------------------------------------------------------------------
    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # No await before submit: callbacks start in delivery order, and so lanes get the
        # reports of one resource in that order.
        decoded: Report | Poison | Exception
        try:
            decoded = decode(message, self.settings.max_body_bytes)
        except Exception as exc:  # a bug of ours, not a bad message: requeue, don't strand it
            decoded = exc
        key = decoded.key if isinstance(decoded, Report) else f"other:{message.delivery_tag}"
        self._lanes.submit(key, Delivery(message, decoded))

    async def _handle(self, delivery: Delivery) -> None:
        # Every line logged about this report (here and in the apply path, which binds the
        # resource's generation) names the message and, once decoded, the resource.
        decoded = delivery.decoded
        fields = decoded.log_fields() if isinstance(decoded, Report) else {}
        with log_context(message_id=delivery.message.message_id, **fields):
            await self._handle_in_context(delivery)

    async def _handle_in_context(self, delivery: Delivery) -> None:
        message, decoded = delivery.message, delivery.decoded
        if isinstance(decoded, Poison):
            log.debug("dead-lettering %s: %s", message.message_id, decoded.reason)
            await self._settle(message, Settle.DEAD, Count.DEAD_LETTERED)
            return
        try:
            if isinstance(decoded, Exception):
                raise decoded
            result = await self._apply(decoded, message)
        except Exception as exc:
            self._failed(message, exc)
            await self._settle(message, Settle.REQUEUE, Count.REQUEUED)
            return
        if result is not None:
            self._succeeded()
            log.debug("report %s: %s", message.message_id, result.outcome.value)
            await self._settle(message, *_BY_OUTCOME[result.outcome])

    def _failed(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        # One line when reports start failing, not one per report of a poison storm.
        if not self._failing:
            log.warning(
                "reports are failing; requeued until their delivery limit (first: %s: %r)",
                message.message_id,
                exc,
                exc_info=exc,
            )
            self._failing = True
        else:
            log.debug("report %s failed (%r); requeued", message.message_id, exc)

    def _succeeded(self) -> None:
        if self._failing:
            log.info("reports apply again")
            self._failing = False

    async def _apply(self, report: Report, message: AbstractIncomingMessage) -> ApplyResult | None:
        """Apply, waiting through Redis outages; None when the delivery died meanwhile."""
        while True:
            await self._redis_ok.wait()
            if not _channel_open(message):
                return None  # the broker has taken it back and will deliver it again
            try:
                return await self.status.apply(report.kind, report.resource_id, report.report)
            except Exception as exc:
                if not is_redis_unavailable(exc):
                    raise
                # Retrying is safe even if the write landed before the error: applying the
                # same report again is a no-op.
                self._redis_lost()

    async def _settle(self, message: AbstractIncomingMessage, settle: Settle, count: Count) -> None:
        try:
            # Bounded: a settle written to a connection that died in the meantime may never
            # complete, and a lane waiting on it would hold up its resource's reports forever.
            await asyncio.wait_for(_settle_once(message, settle), SETTLE_TIMEOUT)
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
            # The channel died after the work was done: the broker delivers the report again,
            # and applying it again changes nothing.
            log.debug("could not %s %s: %r", settle.value, message.message_id, exc)
            if settle is Settle.DEAD:
                return
        self.counters.add(count)


async def _settle_once(message: AbstractIncomingMessage, settle: Settle) -> None:
    if settle is Settle.ACK:
        await message.ack()
    elif settle is Settle.DEAD:
        await message.reject(requeue=False)
    else:
        await message.nack(requeue=True)


def _channel_open(message: AbstractIncomingMessage) -> bool:
    try:
        return not message.channel.is_closed
    except ChannelInvalidStateError:
        return False
