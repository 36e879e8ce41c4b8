"""The status ingester: controller reports from ``<ns>.status.ingest`` into Redis.

Every report goes through ``StatusService.apply_many``, the same rules the API's
``PUT .../status`` runs, and is acked only once that returned (Redis holds its effect). How each
delivery ends:

- applied, unchanged (a duplicate), stale (an older generation): ack;
- unknown or deleted resource: ack, counted as ``unknown``;
- malformed, wrong content type, invalid, or for a generation the resource has not reached:
  reject without requeue, so the broker dead-letters it to ``<ns>.status.dead``;
- an unexpected failure: nack with requeue; the queue's delivery limit dead-letters a report
  that keeps failing;
- Redis away: nothing is settled. The reports in hand wait and are applied and acked when
  Redis answers again; meanwhile the full prefetch window stops the broker from sending more.
  Handing them back to the broker instead would count against their delivery limit.

Reports are handled a window at a time (see ``window``): every report delivered since the last
window, up to the prefetch count, is read in one Redis round trip and written in another (one
guarded transaction per resource, reports on one resource applied in delivery order), then
settled: dead-letters and requeues one by one, then the acks, with one ``multiple`` ack when that
settles exactly them. A broker outage is handled by the robust connection: reports in hand whose
channel died are dropped unsettled (the broker delivers them again) and the consumer is restored
on the new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from dataclasses import dataclass
from enum import Enum

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
)
from aio_pika.exceptions import ChannelInvalidStateError

from cls_core.services.status import ApplyResult, Outcome, ReportFor, StatusService
from cls_core.store import RedisStore
from cls_core.store.redis_store import connect_redis
from cls_runtime import amqp
from cls_runtime.logs import install_record_context, log_context
from cls_runtime.settings import Settings
from status_ingester.counters import Count, IngestCounters
from status_ingester.decode import Poison, Report, decode
from status_ingester.redis_health import is_redis_unavailable, redis_answers, wait_for_redis
from status_ingester.window import Windows

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


@dataclass(eq=False)
class Delivery:
    message: AbstractIncomingMessage
    decoded: Report | Poison | Exception  # an exception: decoding itself failed
    finished: bool = False  # handled: settled, or due to be acked (ack_count), or died
    ack_count: Count | None = None  # due to be acked, and counted as this once it is


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
        self._windows: Windows[Delivery] = Windows(
            self._handle_window, _key, limit=settings.ingest_prefetch
        )
        # Every delivery not settled yet, in delivery order (acks go in that order).
        self._ledger: deque[Delivery] = deque()
        self._ack_lock = asyncio.Lock()
        # Channels where a settle failed: no ``multiple`` ack there.
        self._unclean: weakref.WeakSet[object] = weakref.WeakSet()
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
        return len(self._ledger)

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
        self._connection = await amqp.connect(self.settings.amqp_url)
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self.settings.ingest_prefetch)
            self._queue = await amqp.declare_status_queue(
                channel, self.names, self.settings.ingest_delivery_limit
            )
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
        self._ledger.clear()
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
                self.in_hand,
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
        self._ledger.append(delivery)
        self._windows.submit(delivery)

    async def _handle_window(self, window: list[Delivery]) -> None:
        try:
            await self._handle_reports(window)
        except Exception:
            # A bug of ours: requeue what is not settled yet, or the acks after it wait forever.
            log.exception("a window of %d report(s) failed; requeued", len(window))
            for delivery in window:
                if not delivery.finished:
                    await self._settle_one(delivery.message, Settle.REQUEUE)
                    self.counters.add(Count.REQUEUED)
                    delivery.finished = True
            await self._flush_acks()

    async def _handle_reports(self, window: list[Delivery]) -> None:
        settles: list[tuple[Delivery, Settle, Count]] = []
        reports: list[Delivery] = []
        for delivery in window:
            decoded = delivery.decoded
            if isinstance(decoded, Poison):
                log.debug("dead-lettering %s: %s", delivery.message.message_id, decoded.reason)
                settles.append((delivery, Settle.DEAD, Count.DEAD_LETTERED))
            elif isinstance(decoded, Exception):
                self._failed(delivery, decoded)
                settles.append((delivery, Settle.REQUEUE, Count.REQUEUED))
            else:
                reports.append(delivery)
        applied = False
        for delivery, result in await self._apply(reports):
            if isinstance(result, Exception):
                self._failed(delivery, result)
                settles.append((delivery, Settle.REQUEUE, Count.REQUEUED))
            else:
                applied = True
                settles.append((delivery, *_BY_OUTCOME[result.outcome]))
        if applied:
            self._succeeded()
        await self._settle(window, settles)

    def _failed(self, delivery: Delivery, exc: Exception) -> None:
        # One line when reports start failing, not one per report of a poison storm.
        message, decoded = delivery.message, delivery.decoded
        fields = decoded.log_fields() if isinstance(decoded, Report) else {}
        with log_context(message_id=message.message_id, **fields):
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

    async def _apply(
        self, deliveries: list[Delivery]
    ) -> list[tuple[Delivery, ApplyResult | Exception]]:
        """Apply the reports of a window, waiting through Redis outages. The deliveries that
        died meanwhile (the broker has taken them back and will deliver them again) are left
        out."""
        done: list[tuple[Delivery, ApplyResult | Exception]] = []
        waiting = deliveries
        while waiting:
            await self._redis_ok.wait()
            waiting = [d for d in waiting if _channel_open(d.message)]
            if not waiting:
                break
            items = [_item(d) for d in waiting]
            try:
                results: list[ApplyResult | Exception] = await self.status.apply_many(items)
            except Exception as exc:
                if not is_redis_unavailable(exc):
                    done += [(d, exc) for d in waiting]
                    break
                # Retrying is safe even if some writes landed before the error: applying the
                # same reports again is a no-op.
                self._redis_lost()
                continue
            # Each resource's reports fail or succeed together, so those retried are still in
            # delivery order among themselves.
            retry = []
            for delivery, result in zip(waiting, results, strict=True):
                if isinstance(result, Exception) and is_redis_unavailable(result):
                    retry.append(delivery)
                else:
                    done.append((delivery, result))
            if retry:
                self._redis_lost()
            waiting = retry
        return done

    # ---- settling ----------------------------------------------------------------------------
    async def _settle(
        self, window: list[Delivery], settles: list[tuple[Delivery, Settle, Count]]
    ) -> None:
        """Settle a window: dead-letters and requeues now, one by one; acks are due once every
        delivery before them is settled too, and then go in one ``multiple`` ack per channel
        (see ``_flush_acks``)."""
        for delivery, settle, count in settles:
            if settle is Settle.ACK:
                delivery.ack_count = count
                delivery.finished = True
                continue
            settled = await self._settle_one(delivery.message, settle)
            delivery.finished = True
            if not settled:
                self._note_unclean(delivery.message)
            if settled or settle is not Settle.DEAD:
                self.counters.add(count)
        for delivery in window:
            delivery.finished = True  # the ones left out died with their channel: not settled
        await self._flush_acks()

    async def _flush_acks(self) -> None:
        """Ack the deliveries due, in delivery order, up to the first one not finished yet.

        One ``multiple`` ack of the last one due on a channel acks exactly those due before it
        on that channel: every delivery before it is finished, and the ones not acked were
        dead-lettered or requeued before (frames of a channel are handled in order) or died
        with an earlier channel. After a settle that failed on a channel, its acks go one by one.
        """
        async with self._ack_lock:  # acks go out in delivery order
            due: dict[object | None, list[Delivery]] = {}
            while self._ledger and self._ledger[0].finished:
                delivery = self._ledger.popleft()
                if delivery.ack_count is not None:
                    due.setdefault(_channel_of(delivery.message), []).append(delivery)
            for channel, deliveries in due.items():
                if channel is not None and channel not in self._unclean:
                    last = max(deliveries, key=lambda d: d.message.delivery_tag or 0)
                    if not await self._settle_one(last.message, Settle.ACK, multiple=True):
                        self._note_unclean(last.message)
                else:
                    for delivery in deliveries:
                        await self._settle_one(delivery.message, Settle.ACK)
                for delivery in deliveries:
                    # Counted even when the ack was lost: the work was done, and a redelivery
                    # of the report changes nothing.
                    assert delivery.ack_count is not None
                    self.counters.add(delivery.ack_count)

    def _note_unclean(self, message: AbstractIncomingMessage) -> None:
        channel = _channel_of(message)
        if channel is not None:
            self._unclean.add(channel)

    async def _settle_one(
        self, message: AbstractIncomingMessage, settle: Settle, multiple: bool = False
    ) -> bool:
        try:
            # Bounded: a settle written to a connection that died in the meantime may never
            # complete, and the windows waiting on it would hold up every report.
            async with asyncio.timeout(SETTLE_TIMEOUT):
                if settle is Settle.ACK:
                    await message.ack(multiple=multiple)
                elif settle is Settle.DEAD:
                    await message.reject(requeue=False)
                else:
                    await message.nack(requeue=True)
        except amqp.BROKER_ERRORS as exc:
            # The channel died after the work was done: the broker delivers the report again,
            # and applying it again changes nothing.
            log.debug("could not %s %s: %r", settle.value, message.message_id, exc)
            return False
        return True


def _item(delivery: Delivery) -> ReportFor:
    report = delivery.decoded
    assert isinstance(report, Report)
    return ReportFor(report.kind, report.resource_id, report.report)


def _key(delivery: Delivery) -> str | None:
    """Deliveries on one resource are applied in delivery order; the others need no order."""
    return delivery.decoded.key if isinstance(delivery.decoded, Report) else None


def _channel_of(message: AbstractIncomingMessage) -> object | None:
    """The (client) channel the message came on, None once it is closed."""
    try:
        return message.channel
    except ChannelInvalidStateError:
        return None


def _channel_open(message: AbstractIncomingMessage) -> bool:
    return _channel_of(message) is not None
