"""Telling "Redis is away" from "this report is broken", and waiting for Redis to come back.

The difference matters: a report that failed because Redis was away is good and must be retried
once Redis answers, without being handed back to the broker (each return counts against the
queue's delivery limit and would end with good reports dead-lettered).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

log = logging.getLogger("status_ingester")

# Redis answers these while it cannot take writes (yet): loading its data, out of memory, a
# replica, a failed background save. They pass; the report stays good.
_TRANSIENT = (
    RedisConnectionError,  # includes BusyLoadingError (loading the AOF after a restart)
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    MasterDownError,
    TryAgainError,
    ConnectionError,
    TimeoutError,
)
_TRANSIENT_REPLIES = ("MISCONF", "BUSY ", "LOADING")


def is_redis_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES)


async def redis_answers(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except (RedisError, OSError):
        return False


async def wait_for_redis(redis: Redis, interval: float) -> None:
    """Return once Redis answers PING; polls every ``interval`` seconds."""
    # Polling is the only way: Redis does not announce that it is back.
    while True:
        if await redis_answers(redis):
            return
        await asyncio.sleep(interval)


class RedisGate:
    """Whether reports may be applied now: shut while Redis is away, open once it answers.

    A window that finds Redis away calls ``lost``; ``reopen`` (the ingester's supervisor) waits
    for Redis and opens the gate again, and the windows held at ``passage`` go on.
    """

    def __init__(self, redis: Redis, probe_interval: float) -> None:
        self.redis = redis
        self.probe_interval = probe_interval
        self._open = asyncio.Event()
        self._lost = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def passage(self) -> None:
        await self._open.wait()

    def lost(self) -> None:
        self._open.clear()
        self._lost.set()

    async def wait_lost(self) -> None:
        await self._lost.wait()

    async def reopen(self, why: str) -> None:
        """Open the gate once Redis answers (logs when it has to wait)."""
        if not await redis_answers(self.redis):
            log.warning("redis unavailable: waiting for it %s", why)
            await wait_for_redis(self.redis, self.probe_interval)
        self._lost.clear()
        self._open.set()
