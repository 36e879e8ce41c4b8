"""The outbox stream as the relay sees it: read from the start, remove what the broker confirmed.

Writes append an entry (fields ``id``, ``rk``, ``res``, ``gen``, ``body``) in the same atomic
transaction as their change (``services.common.append_event``). An entry is deleted once the
broker has confirmed its event, so the stream holds exactly the events not yet published, in
commit order, and reading it from its start is reading the backlog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from shared_models.events import Event
from shared_models.names import Names


@dataclass(frozen=True)
class OutboxEntry:
    stream_id: str
    fields: dict[str, str]
    event: Event | None  # None when the body is not a valid event (see ``error``)
    error: str | None = None

    @property
    def committed_at(self) -> float:
        """Unix time of the commit (stream ids start with the server's clock in milliseconds)."""
        return int(self.stream_id.split("-", 1)[0]) / 1000

    def log_fields(self) -> dict[str, str]:
        """The entry's resource, for log lines (``res`` is a nodepool or a cluster id)."""
        kind = self.fields.get("rk", "").partition(".")[0] or "resource"
        return {
            "outbox_id": self.stream_id,
            "event_id": self.fields.get("id", ""),
            f"{kind}_id": self.fields.get("res", ""),
            "generation": self.fields.get("gen", ""),
        }

    @classmethod
    def parse(cls, stream_id: str, fields: dict[str, str]) -> OutboxEntry:
        try:
            event = Event.model_validate_json(fields.get("body", ""))
        except ValidationError as exc:
            return cls(stream_id, fields, None, f"not an event: {exc.errors()[:3]}")
        return cls(stream_id, fields, event)


class Outbox:
    def __init__(self, redis: Redis, names: Names) -> None:
        self.redis = redis
        self.key = names.outbox
        self.dead_key = names.outbox_dead

    async def read(self, count: int, block_ms: int) -> list[OutboxEntry]:
        """The oldest ``count`` entries; when there are none, wait up to ``block_ms`` for one.

        XREAD from id 0 answers at once when the stream holds anything and blocks otherwise,
        so a new entry committed while we wait is seen without polling.
        """
        reply: Any = await self.redis.xread({self.key: "0-0"}, count=count, block=block_ms)
        if not reply:
            return []
        _, entries = reply[0]  # one stream asked, one answered: [[key, [(id, fields), ...]]]
        return [OutboxEntry.parse(str(stream_id), fields) for stream_id, fields in entries]

    async def remove(self, entries: list[OutboxEntry]) -> None:
        if entries:
            await self.redis.xdel(self.key, *(entry.stream_id for entry in entries))

    async def dead_letter(self, entries: list[OutboxEntry]) -> None:
        """Move unreadable entries aside, atomically, so they neither block nor vanish."""
        if not entries:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry in entries:
                dead: dict[Any, Any] = {**entry.fields, "error": entry.error or ""}
                pipe.xadd(self.dead_key, {**dead, "was": entry.stream_id})
                pipe.xdel(self.key, entry.stream_id)
            await pipe.execute()

    async def size(self) -> int:
        return int(await self.redis.xlen(self.key))

    async def oldest_age(self) -> float:
        """Seconds since the oldest waiting entry was committed (0 when nothing waits)."""
        oldest: Any = await self.redis.xrange(self.key, count=1)
        if not oldest:
            return 0.0
        stream_id, fields = oldest[0]
        return max(0.0, time.time() - OutboxEntry(str(stream_id), fields, None).committed_at)
