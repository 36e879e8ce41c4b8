"""The bare ingestion baseline: an aio-pika consumer that acks each report after one Redis write.

Same queue topology (``declare_status_queue``) and prefetch as the status ingester, no
validation, no aggregation. Run as ``python -m bench.baseline_consumer`` with CLS_NAMESPACE.
"""

from __future__ import annotations

import asyncio
import signal

from aio_pika.abc import AbstractIncomingMessage

from cls_core.store.redis_store import connect_redis
from cls_runtime import amqp
from cls_runtime.settings import Settings


async def consume(settings: Settings) -> None:
    redis = connect_redis(settings.redis_url)
    connection = await amqp.connect(settings.amqp_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    key = f"{settings.namespace}:bench:reports"

    async def on_message(message: AbstractIncomingMessage) -> None:
        await redis.hset(key, str(message.message_id), message.body)
        await message.ack()

    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=settings.ingest_prefetch)
        queue = await amqp.declare_status_queue(
            channel, settings.names, settings.ingest_delivery_limit
        )
        await queue.consume(on_message)
        await stop.wait()
    finally:
        await connection.close()
        await redis.aclose()


def main() -> None:
    asyncio.run(consume(Settings()))


if __name__ == "__main__":
    main()
