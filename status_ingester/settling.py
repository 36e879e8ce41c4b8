"""Settling deliveries with the broker: every delivery not settled yet, in delivery order.

Requeues go one by one as soon as a window is judged; so do dead-letters: a copy carrying the
reason is confirmed into the dead-letter queue (``dead_letters``), then the original is due to be
acked like any other (a plain reject when there is no copy). Acks wait until every delivery
before them is settled too, then go in one ``multiple`` ack per channel: one frame settles a whole
window. A settle that fails (the channel died after the work was done) is only
logged: the broker delivers the report again, and applying it again changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from dataclasses import dataclass
from enum import Enum

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

from cls_runtime import amqp
from status_ingester.counters import Count, IngestCounters
from status_ingester.dead_letters import DeadLetters
from status_ingester.decode import Poison, Report

log = logging.getLogger("status_ingester")

SETTLE_TIMEOUT = 5.0


class Settle(Enum):
    ACK = "ack"
    DEAD = "dead-letter"
    REQUEUE = "requeue"


@dataclass(eq=False)
class Delivery:
    message: AbstractIncomingMessage
    decoded: Report | Poison | Exception  # an exception: decoding itself failed
    finished: bool = False  # handled: settled, or due to be acked (ack_count), or died
    ack_count: Count | None = None  # due to be acked, and counted as this once it is
    dead_reason: str = ""  # why it is dead-lettered, when it is


Verdict = tuple[Delivery, Settle, Count]


class Ledger:
    """The deliveries in hand, in delivery order, and how each is settled and counted."""

    def __init__(self, counters: IngestCounters, dead_letters: DeadLetters | None = None) -> None:
        self.counters = counters
        # Where poison goes with its reason; None: rejected into the queue's dead-letter exchange.
        self.dead_letters = dead_letters
        self._deliveries: deque[Delivery] = deque()
        self._ack_lock = asyncio.Lock()
        # Channels where a settle failed: no ``multiple`` ack there.
        self._unclean: weakref.WeakSet[object] = weakref.WeakSet()

    def __len__(self) -> int:
        return len(self._deliveries)

    def add(self, delivery: Delivery) -> None:
        self._deliveries.append(delivery)

    def clear(self) -> None:
        """Forget the deliveries in hand, unsettled (the broker delivers them again)."""
        self._deliveries.clear()

    async def settle(self, window: list[Delivery], verdicts: list[Verdict]) -> None:
        """Settle a judged window: dead-letters and requeues now; acks once due."""
        copied = await self._copy_dead(verdicts)
        for delivery, settle, count in verdicts:
            if settle is Settle.ACK or delivery in copied:
                delivery.ack_count = count
                delivery.finished = True
                continue
            settled = await self.settle_one(delivery.message, settle)
            delivery.finished = True
            if not settled:
                self._note_unclean(delivery.message)
            if settled or settle is not Settle.DEAD:
                self.counters.add(count)
        for delivery in window:
            delivery.finished = True  # the ones left out died with their channel: not settled
        await self.flush_acks()

    async def _copy_dead(self, verdicts: list[Verdict]) -> set[Delivery]:
        """The dead-letters whose copy (with the reason) the broker confirmed, sent together."""
        if self.dead_letters is None:
            return set()
        # Not for a delivery whose channel died: the broker delivers it again anyway.
        dead = [
            delivery
            for delivery, settle, _ in verdicts
            if settle is Settle.DEAD and channel_of(delivery.message) is not None
        ]
        if not dead:
            return set()
        sender = self.dead_letters
        sent = await asyncio.gather(*(sender.send(d.message, d.dead_reason) for d in dead))
        return {delivery for delivery, ok in zip(dead, sent, strict=True) if ok}

    async def requeue_unsettled(self, window: list[Delivery]) -> None:
        """After a bug of ours: hand back what is not settled yet, or the acks after it would
        wait forever."""
        for delivery in window:
            if not delivery.finished:
                await self.settle_one(delivery.message, Settle.REQUEUE)
                self.counters.add(Count.REQUEUED)
                delivery.finished = True
        await self.flush_acks()

    async def flush_acks(self) -> None:
        """Ack the deliveries due, in delivery order, up to the first one not finished yet.

        One ``multiple`` ack of the last one due on a channel acks exactly those due before it
        on that channel: every delivery before it is finished, and the ones not acked were
        dead-lettered or requeued before (frames of a channel are handled in order) or died
        with an earlier channel. After a settle that failed on a channel, its acks go one by one.
        """
        async with self._ack_lock:  # acks go out in delivery order
            due: dict[object | None, list[Delivery]] = {}
            while self._deliveries and self._deliveries[0].finished:
                delivery = self._deliveries.popleft()
                if delivery.ack_count is not None:
                    due.setdefault(channel_of(delivery.message), []).append(delivery)
            for channel, deliveries in due.items():
                await self._ack(channel, deliveries)

    async def _ack(self, channel: object | None, deliveries: list[Delivery]) -> None:
        if channel is not None and channel not in self._unclean:
            last = max(deliveries, key=lambda d: d.message.delivery_tag or 0)
            if not await self.settle_one(last.message, Settle.ACK, multiple=True):
                self._note_unclean(last.message)
        else:
            for delivery in deliveries:
                await self.settle_one(delivery.message, Settle.ACK)
        for delivery in deliveries:
            # Counted even when the ack was lost: the work was done, and a redelivery of the
            # report changes nothing.
            assert delivery.ack_count is not None
            self.counters.add(delivery.ack_count)

    def _note_unclean(self, message: AbstractIncomingMessage) -> None:
        channel = channel_of(message)
        if channel is not None:
            self._unclean.add(channel)

    async def settle_one(
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
            log.debug("could not %s %s: %r", settle.value, message.message_id, exc)
            return False
        return True


def channel_of(message: AbstractIncomingMessage) -> object | None:
    """The (client) channel the message came on, None once it is closed."""
    try:
        return message.channel
    except ChannelInvalidStateError:
        return None
