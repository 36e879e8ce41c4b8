"""The ingester's ledger alone: in what order and with which frames deliveries are settled.

The messages are stand-ins that record the frames a real channel would send; the broker side of
the same rules is proven over RabbitMQ in tests/ingest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

from status_ingester.counters import Count, IngestCounters
from status_ingester.decode import Poison
from status_ingester.settling import Delivery, Ledger, Settle


@dataclass(eq=False)  # hashable by identity, as a real channel
class Channel:
    frames: list[tuple[str, int, bool]] = field(default_factory=list)
    refuse: bool = False  # the channel died: every settle fails


@dataclass
class Message:
    """Records ack/reject/nack as frames on its channel."""

    channel_: Channel | None
    delivery_tag: int
    message_id: str = "m"

    @property
    def channel(self) -> Channel:
        if self.channel_ is None:
            raise ChannelInvalidStateError("closed")
        return self.channel_

    async def _frame(self, kind: str, multiple: bool = False) -> None:
        if self.channel.refuse:
            raise ConnectionError("channel is gone")
        self.channel.frames.append((kind, self.delivery_tag, multiple))

    async def ack(self, multiple: bool = False) -> None:
        await self._frame("ack", multiple)

    async def reject(self, requeue: bool = False) -> None:
        await self._frame("reject")

    async def nack(self, requeue: bool = True) -> None:
        await self._frame("nack")


class Counters:
    def __init__(self) -> None:
        self.counts: list[Count] = []

    def add(self, count: Count) -> None:
        self.counts.append(count)


def ledger_with(counters: Counters) -> Ledger:
    return Ledger(cast(IngestCounters, counters))


def delivered(ledger: Ledger, channel: Channel | None, tags: range) -> list[Delivery]:
    deliveries = [
        Delivery(cast(AbstractIncomingMessage, Message(channel, tag)), Poison("x")) for tag in tags
    ]
    for delivery in deliveries:
        ledger.add(delivery)
    return deliveries


def acks(deliveries: list[Delivery], count: Count = Count.APPLIED) -> list[Any]:
    return [(delivery, Settle.ACK, count) for delivery in deliveries]


async def test_a_window_of_acks_is_one_multiple_ack_of_its_last_delivery() -> None:
    counters, channel = Counters(), Channel()
    ledger = ledger_with(counters)
    window = delivered(ledger, channel, range(1, 5))
    await ledger.settle(window, acks(window))
    assert channel.frames == [("ack", 4, True)]
    assert counters.counts == [Count.APPLIED] * 4
    assert len(ledger) == 0


async def test_acks_wait_for_an_earlier_delivery_still_in_hand() -> None:
    counters, channel = Counters(), Channel()
    ledger = ledger_with(counters)
    first, second = delivered(ledger, channel, range(1, 2)), delivered(ledger, channel, range(2, 3))
    await ledger.settle(second, acks(second))
    assert channel.frames == []  # an ack of 2 would not say whether 1 was done
    await ledger.settle(first, acks(first))
    assert channel.frames == [("ack", 2, True)]


async def test_a_dead_letter_goes_at_once_and_the_acks_around_it_still_go_in_one_frame() -> None:
    counters, channel = Counters(), Channel()
    ledger = ledger_with(counters)
    window = delivered(ledger, channel, range(1, 4))
    verdicts = [
        (window[0], Settle.ACK, Count.APPLIED),
        (window[1], Settle.DEAD, Count.DEAD_LETTERED),
        (window[2], Settle.ACK, Count.STALE),
    ]
    await ledger.settle(window, verdicts)
    assert channel.frames == [("reject", 2, False), ("ack", 3, True)]
    assert sorted(counters.counts) == sorted([Count.APPLIED, Count.DEAD_LETTERED, Count.STALE])


async def test_after_a_failed_settle_the_channel_is_acked_one_by_one() -> None:
    counters, channel = Counters(), Channel(refuse=True)
    ledger = ledger_with(counters)
    window = delivered(ledger, channel, range(1, 3))
    await ledger.settle(window, [(window[0], Settle.DEAD, Count.DEAD_LETTERED)])
    channel.refuse = False
    later = delivered(ledger, channel, range(3, 5))
    await ledger.settle(later, acks(later))
    assert channel.frames == [("ack", 3, False), ("ack", 4, False)]


async def test_a_delivery_whose_channel_died_is_dropped_unsettled() -> None:
    counters = Counters()
    ledger = ledger_with(counters)
    window = delivered(ledger, None, range(1, 3))
    await ledger.settle(window, [])  # judged nothing: both died before they were applied
    assert len(ledger) == 0
    assert counters.counts == []


async def test_requeue_unsettled_hands_back_only_what_is_not_settled_yet() -> None:
    counters, channel = Counters(), Channel()
    ledger = ledger_with(counters)
    window = delivered(ledger, channel, range(1, 4))
    window[0].finished, window[0].ack_count = True, Count.APPLIED
    await ledger.requeue_unsettled(window)
    assert channel.frames == [("nack", 2, False), ("nack", 3, False), ("ack", 1, True)]
    assert counters.counts.count(Count.REQUEUED) == 2
