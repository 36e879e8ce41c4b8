"""A leader lock in Redis: a key holding the holder's token, set with ``NX PX ttl``, extended and
released only by its holder (compare-and-extend, compare-and-delete). ``event_jobs.leader`` keeps
one held for a job.
"""

from __future__ import annotations

import os
import secrets
import socket

from redis.asyncio import Redis

from cls_core.store.scripts import LuaScript

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def instance_token() -> str:
    """Who holds a lock, readable by an operator: host, process id, and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaderLock:
    """The lock itself: acquire, extend and release, each one atomic command or script."""

    def __init__(self, redis: Redis, key: str, ttl: float, token: str | None = None) -> None:
        self._redis = redis
        self.key = key
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = token or instance_token()
        self._renew = LuaScript(redis, _RENEW)
        self._release = LuaScript(redis, _RELEASE)

    async def acquire(self) -> bool:
        return bool(await self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Extend the expiry, only if this instance still holds the lock."""
        return bool(await self._renew([self.key], [self.token, self.ttl_ms]))

    async def release(self) -> bool:
        """Delete the lock, only if this instance still holds it."""
        return bool(await self._release([self.key], [self.token]))

    async def holder(self) -> str | None:
        value = await self._redis.get(self.key)
        return None if value is None else str(value)
