"""Telling "Redis is away" from "this report is broken", and waiting for Redis to come back.

The difference matters: a report that failed because Redis was away is good and must be retried
once Redis answers, without being handed back to the broker (each return counts against the
queue's delivery limit and would end with good reports dead-lettered).
"""

from __future__ import annotations

import asyncio

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
