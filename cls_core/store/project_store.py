"""Reads of projects and memberships. Their writes are guarded transactions like any other
(``RedisStore.run``); the keys are in ``Names`` (project, project_members, user_projects...).

Roles are read from Redis on every request, never cached: a member removed on one replica has
no access on the next request to any replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from shared_models.names import Names

PROJECT_FIELDS = ("doc", "rv", "name", "creator", "seq")


@dataclass(frozen=True)
class ProjectRecord:
    """A project's hash: ``doc`` is what the API shows (without the caller's role)."""

    id: str
    doc: dict[str, Any]
    rv: str
    name: str
    creator: str
    seq: float

    @property
    def personal(self) -> bool:
        return bool(self.doc.get("personal"))

    def to_hash(self) -> dict[str, str]:
        return {
            "doc": orjson.dumps(self.doc).decode(),
            "rv": self.rv,
            "name": self.name,
            "creator": self.creator,
            "seq": repr(self.seq),
        }


@dataclass(frozen=True)
class Grant:
    """A role held by a member or a group, as stored (JSON) in the project's hashes."""

    role: str
    added_by: str
    added_at: str

    def encode(self) -> str:
        return orjson.dumps(
            {"role": self.role, "added_by": self.added_by, "added_at": self.added_at}
        ).decode()

    @classmethod
    def decode(cls, stored: str) -> Grant:
        doc = orjson.loads(stored)
        return cls(doc["role"], doc["added_by"], doc["added_at"])


class ProjectStore:
    def __init__(self, redis: Redis, names: Names) -> None:
        self._redis = redis
        self.names = names

    async def grants(self, project_id: str, email: str, groups: Sequence[str]) -> list[Grant]:
        """The grants that give ``email`` (a member of ``groups``) a role in the project, in
        one round trip."""
        (found,) = await self.grants_many([project_id], email, groups)
        return found

    async def grants_many(
        self, project_ids: Sequence[str], email: str, groups: Sequence[str]
    ) -> list[list[Grant]]:
        """``grants`` for several projects, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for project_id in project_ids:
                pipe.hget(self.names.project_members(project_id), email)
                if groups:
                    pipe.hmget(self.names.project_groups(project_id), list(groups))
            replies = iter(await pipe.execute())
        found = []
        for _ in project_ids:
            stored = [next(replies), *(next(replies) if groups else [])]
            found.append([Grant.decode(s) for s in stored if s is not None])
        return found

    async def get(self, project_id: str) -> ProjectRecord | None:
        values = await self._redis.hmget(self.names.project(project_id), PROJECT_FIELDS)
        return None if values[0] is None else _project(project_id, values)

    async def get_many(self, ids: Sequence[str]) -> list[ProjectRecord]:
        """The projects of ``ids`` that exist, in the order given."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for project_id in ids:
                pipe.hmget(self.names.project(project_id), PROJECT_FIELDS)
            rows = await pipe.execute()
        return [
            _project(project_id, row)
            for project_id, row in zip(ids, rows, strict=True)
            if row[0] is not None
        ]

    async def with_grants(
        self, project_id: str
    ) -> tuple[ProjectRecord | None, dict[str, Grant], dict[str, Grant]]:
        """A project, its members and its groups, as of one moment (a transaction)."""
        names = self.names
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(names.project(project_id), PROJECT_FIELDS)
            pipe.hgetall(names.project_members(project_id))
            pipe.hgetall(names.project_groups(project_id))
            values, members, groups = await pipe.execute()
        if values[0] is None:
            return None, {}, {}
        return (
            _project(project_id, values),
            {str(k): Grant.decode(v) for k, v in members.items()},
            {str(k): Grant.decode(v) for k, v in groups.items()},
        )

    async def member_of(self, email: str, groups: Sequence[str]) -> list[str]:
        """The ids of every project ``email`` or one of ``groups`` has a role in."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrange(self.names.user_projects(email), 0, -1)
            for group in groups:
                pipe.zrange(self.names.group_projects(group), 0, -1)
            replies = await pipe.execute()
        return list(dict.fromkeys(str(p) for reply in replies for p in reply))

    async def operations(self, project_id: str, limit: int) -> list[tuple[str, dict[str, str]]]:
        """The project's latest operations, newest first: (stream id, fields)."""
        entries: Any = await self._redis.xrevrange(
            self.names.project_operations(project_id), count=limit
        )
        return [(str(i), {str(k): str(v) for k, v in f.items()}) for i, f in entries]


def _project(project_id: str, values: Sequence[Any]) -> ProjectRecord:
    raw = dict(zip(PROJECT_FIELDS, values, strict=True))
    return ProjectRecord(
        id=project_id,
        doc=orjson.loads(raw["doc"]),
        rv=str(raw["rv"]),
        name=str(raw["name"]),
        creator=str(raw["creator"]),
        seq=float(raw["seq"]),
    )
