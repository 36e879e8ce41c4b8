"""Reads of operations (their writes are ops of the changes' guarded transactions, added by
``cls_core.services.operations.OperationLog``).

An operation is a hash (``Names.operation``): ``doc``, the change as started (JSON), and the
fields its end writes (``state``, ``finished_at``, ``progress``, ``error``, ``superseded_by``).
A resource's history is a sorted set of operation ids by creation time
(``Names.resource_operations``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from cls_core.store.records import RECORD_FIELDS, ClusterRecord, NodePoolRecord
from shared_models.names import Kind, Names

_JSON_FIELDS = ("progress", "error")


@dataclass(frozen=True)
class StoredOperation:
    doc: dict[str, Any]
    end: dict[str, Any]  # the fields beyond ``doc``, decoded

    @classmethod
    def of(cls, raw: dict[Any, Any]) -> StoredOperation | None:
        if not raw or "doc" not in raw:
            return None
        end: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "doc":
                continue
            end[str(name)] = orjson.loads(value) if name in _JSON_FIELDS else str(value)
        return cls(orjson.loads(raw["doc"]), end)


@dataclass(frozen=True)
class Page:
    """A page of a resource's operations, newest first, and what their progress needs."""

    total: int
    operations: list[StoredOperation]
    record: ClusterRecord | NodePoolRecord | None  # None: the resource is gone
    reports: dict[str, str] = field(default_factory=dict)
    newest: str | None = None  # the id of the resource's latest operation


class OperationStore:
    def __init__(self, redis: Redis, names: Names) -> None:
        self._redis = redis
        self.names = names

    async def get(self, operation_id: str) -> StoredOperation | None:
        return StoredOperation.of(await self._redis.hgetall(self.names.operation(operation_id)))

    async def page(self, kind: Kind, resource_id: str, offset: int, limit: int) -> Page:
        """The resource's record and reports, its number of operations, the ids of a page of
        them (newest first) and its newest: one round trip; then the page's operations."""
        names = self.names
        history = names.resource_operations(kind, resource_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(names.record(kind, resource_id), RECORD_FIELDS)
            pipe.hgetall(names.controller_reports(kind, resource_id))
            pipe.zcard(history)
            pipe.zrevrange(history, offset, offset + max(limit, 1) - 1)
            pipe.zrevrange(history, 0, 0)
            values, reports, total, ids, newest = await pipe.execute()
        record: ClusterRecord | NodePoolRecord | None = None
        if values[0] is not None:
            raw = dict(zip(RECORD_FIELDS, values, strict=True))
            record_type = NodePoolRecord if kind == "nodepool" else ClusterRecord
            record = record_type.from_hash(resource_id, raw)
        ids = list(ids)[:limit]
        operations: list[StoredOperation] = []
        if ids:
            async with self._redis.pipeline(transaction=False) as pipe:
                for operation_id in ids:
                    pipe.hgetall(names.operation(str(operation_id)))
                rows = await pipe.execute()
            operations = [op for row in rows if (op := StoredOperation.of(row)) is not None]
        return Page(
            total=int(total),
            operations=operations,
            record=record,
            reports={str(k): str(v) for k, v in reports.items()},
            newest=str(newest[0]) if newest else None,
        )
