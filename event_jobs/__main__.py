"""``python -m event_jobs``: the event jobs as a process of their own.

Runs the outbox relay and the reconcile loop (``EventPipeline``), with its own Redis client and
broker link, so that publishing and a backlog drained after a broker outage take no CPU from the
API's requests (run the API with ``CLS_EVENT_JOBS=separate``). Both jobs are leader-elected: any
number of these processes, and API processes still running the jobs in-process, may run at once;
one of them does each job at a time.

On SIGTERM or SIGINT: the batch in flight is finished, the leader locks are released (another
instance takes over at once, not a lock TTL later), the broker connection is closed, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from cls_core.store import RedisStore
from cls_core.store.redis_store import connect_redis
from cls_runtime.logs import without_password
from cls_runtime.process import launch
from cls_runtime.settings import Settings
from event_jobs.pipeline import EventPipeline

log = logging.getLogger("event_jobs")


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    store = RedisStore(connect_redis(settings.redis_url), settings.names)
    pipeline = EventPipeline(settings, store)
    pipeline.start()
    try:
        await stop.wait()
        log.info("stopping: finishing the batch in flight, releasing the leader locks")
    finally:
        await pipeline.stop()
        await store.aclose()
    log.info("stopped")


def banner(settings: Settings) -> str:
    return (
        f"the event jobs (outbox relay, reconcile): namespace={settings.namespace} "
        f"redis={without_password(settings.redis_url)} "
        f"broker={without_password(settings.amqp_url)} as {settings.amqp_relay_user}"
    )


if __name__ == "__main__":
    sys.exit(launch("event_jobs", serve, banner))
