"""The Redis side of watching: the projects' watch streams and the callers' watcher leases.

Every write of a resource appends its change to its project's stream (``Names.watch_stream``,
see ``records.py``). A watcher reads its projects' streams with one ``XREAD BLOCK`` at a time,
on a client of its own (``blocking``): an idle watcher costs one blocking call per heartbeat,
not a round trip per second, and a blocked call does not hold a connection the requests need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared_models.names import Names

# The position before every entry of a stream.
START = "0-0"


class Change(NamedTuple):
    """One entry of a watch stream."""

    project_id: str
    entry_id: str
    type: str  # ADDED, MODIFIED, DELETED
    kind: str
    resource_id: str
    view: str  # the resource as GET returns it (its last view, for DELETED)


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as something ordered ("1700000000000-3" -> (1700000000000, 3))."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class WatchStore:
    def __init__(self, redis: Redis, blocking: Redis, names: Names) -> None:
        self._redis = redis
        self._blocking = blocking
        self.names = names

    async def tails(self, project_ids: Sequence[str]) -> dict[str, str]:
        """The id of each project's latest change (``START`` when it has none): reading on
        from there gives only what changes after this call."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for project_id in project_ids:
                pipe.xrevrange(self.names.watch_stream(project_id), count=1)
            replies = await pipe.execute()
        return {
            project_id: str(reply[0][0]) if reply else START
            for project_id, reply in zip(project_ids, replies, strict=True)
        }

    async def expired(self, positions: Mapping[str, str]) -> list[str]:
        """The projects whose position is older than what their stream still keeps: the
        trimming took entries away (more were added than it holds) and its first kept entry is
        after the position. (A position whose own entry alone went is judged expired too.)"""
        async with self._redis.pipeline(transaction=False) as pipe:
            for project_id in positions:
                pipe.xinfo_stream(self.names.watch_stream(project_id))
            replies = await pipe.execute(raise_on_error=False)
        gone = []
        for (project_id, position), info in zip(positions.items(), replies, strict=True):
            if isinstance(info, ResponseError):  # no such stream: nothing was ever trimmed
                continue
            if isinstance(info, Exception):
                raise info
            if int(info.get("entries-added", 0)) <= int(info.get("length", 0)):
                continue
            first = info.get("recorded-first-entry-id") or (info.get("first-entry") or [START])[0]
            if entry_key(position) < entry_key(str(first)):
                gone.append(project_id)
        return gone

    async def read(
        self, positions: Mapping[str, str], block_ms: int, count: int = 200
    ) -> list[Change]:
        """The changes after each project's position, waiting up to ``block_ms`` for one (an
        empty list when none came)."""
        streams: dict[Any, Any] = {self.names.watch_stream(p): pos for p, pos in positions.items()}
        project_of = {self.names.watch_stream(p): p for p in positions}
        reply: Any = await self._blocking.xread(streams, count=count, block=block_ms)
        changes = []
        for stream, entries in reply or []:
            project_id = project_of[str(stream)]
            for entry_id, fields in entries:
                changes.append(
                    Change(
                        project_id,
                        str(entry_id),
                        str(fields.get("type", "")),
                        str(fields.get("kind", "")),
                        str(fields.get("id", "")),
                        str(fields.get("view", "")),
                    )
                )
        return changes

    # ---- watcher leases: the open watch connections of a caller, on every replica ---------
    async def acquire_watcher(
        self, email: str, watcher_id: str, limit: int, now: float, ttl: float
    ) -> bool:
        """Count one more watch connection of ``email``, unless ``limit`` are open already. A
        lease ends ``ttl`` seconds after it was last renewed (a replica that died mid-watch
        frees its leases so)."""
        key = self.names.watchers(email)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zcard(key)
            _, open_now = await pipe.execute()
        if int(open_now) >= limit:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {watcher_id: now + ttl})
            pipe.expire(key, max(1, int(ttl) + 1))
            pipe.zcard(key)
            _, _, after = await pipe.execute()
        if int(after) > limit:  # another replica took the last place meanwhile
            await self.release_watcher(email, watcher_id)
            return False
        return True

    async def renew_watcher(self, email: str, watcher_id: str, now: float, ttl: float) -> None:
        key = self.names.watchers(email)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {watcher_id: now + ttl}, xx=True)
            pipe.expire(key, max(1, int(ttl) + 1))
            await pipe.execute()

    async def release_watcher(self, email: str, watcher_id: str) -> None:
        await self._redis.zrem(self.names.watchers(email), watcher_id)

    async def aclose(self) -> None:
        await self._blocking.aclose()
