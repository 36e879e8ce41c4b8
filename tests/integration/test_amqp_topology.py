"""The status queue topology on the real broker: quorum queue, delivery limit, dead-lettering."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractRobustConnection

from cls_runtime import amqp as topology
from shared_models.names import Names

REPORT = {"nodepool_id": "x"}


async def test_report_reaches_status_queue(amqp: AbstractRobustConnection, namespace: str) -> None:
    names = Names(namespace)
    channel = await amqp.channel(publisher_confirms=True)
    queue = await topology.declare_status_queue(channel, names, delivery_limit=5)
    status = await channel.get_exchange(names.status_exchange)
    await status.publish(
        topology.report_message(REPORT), routing_key="nodepool.status", mandatory=True
    )
    message = await queue.get(timeout=5)
    assert message.body == b'{"nodepool_id":"x"}'
    assert message.delivery_mode == 2
    await message.ack()


async def test_message_requeued_past_delivery_limit_is_dead_lettered(
    amqp: AbstractRobustConnection, namespace: str
) -> None:
    names = Names(namespace)
    channel = await amqp.channel(publisher_confirms=True)
    queue = await topology.declare_status_queue(channel, names, delivery_limit=2)
    status = await channel.get_exchange(names.status_exchange)
    await status.publish(
        topology.report_message(REPORT), routing_key="nodepool.status", mandatory=True
    )
    for _ in range(3):
        message = await queue.get(timeout=5)
        await message.nack(requeue=True)
    dead = await channel.get_queue(names.status_dead_queue)
    for _ in range(50):
        got = await dead.get(fail=False)
        if got is not None:
            assert got.body == b'{"nodepool_id":"x"}'
            await got.ack()
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the message never reached the dead-letter queue")
