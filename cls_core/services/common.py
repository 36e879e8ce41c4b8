"""Small pieces every write shares: clocks, versions, If-Match, outbox entries, retries."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import orjson

from cls_core.errors import Conflict, Unavailable
from cls_core.store import RedisStore, Txn, TxnFailed
from shared_models.events import EVENT_SOURCE, Event, EventType
from shared_models.names import Names
from shared_models.specs import Platform

T = TypeVar("T")

# How long a write keeps retrying when concurrent writes (status reports, other replicas) got
# there first. Without a precondition a write must win in the end: past this it is a 503.
WRITE_RETRY_SECONDS = 5.0
_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.05

RV_CHANGED = "rv_changed"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 with milliseconds and 'Z', e.g. 2025-10-17T10:00:00.000Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_resource_version() -> str:
    return secrets.token_hex(8)


def new_id() -> str:
    return str(uuid.uuid4())


def creation_score() -> float:
    """Score ordering resources by creation (microseconds; exact in a double until 2255)."""
    return float(time.time_ns() // 1000)


def etag(resource_version: str) -> str:
    return f'"{resource_version}"'


def if_match_allows(header: str | None, resource_version: str) -> bool:
    """RFC 9110 If-Match against the current version (weak tags compared as strong ones)."""
    if header is None:
        return True
    for raw in header.split(","):
        tag = raw.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/").strip('"')
        if tag == resource_version:
            return True
    return False


@dataclass(frozen=True)
class Preconditions:
    """What a write requires of the resource it changes (none: last writer wins).

    ``If-Match`` compares the ``resource_version``, which every write changes, status reports
    included. ``If-Generation-Match`` compares the ``generation``, which only spec changes move,
    so a client can guard its read-modify-write of the spec without racing the controllers.
    """

    if_match: str | None = None
    if_generation_match: int | None = None

    def check(self, resource_version: str, generation: int, what: str) -> None:
        if not if_match_allows(self.if_match, resource_version):
            raise Conflict(
                f"{what} has changed since you read it",
                f"If-Match {self.if_match} does not match resource_version {resource_version!r}",
            )
        if self.if_generation_match is not None and self.if_generation_match != generation:
            raise Conflict(
                f"{what} spec has changed since you read it",
                f"If-Generation-Match {self.if_generation_match} does not match generation "
                f"{generation}",
            )


def build_event(
    event_type: EventType,
    *,
    cluster_id: str,
    nodepool_id: str | None,
    generation: int,
    platform: str,
    resource: dict[str, Any],
    moment: datetime,
    operation_id: str | None = None,
) -> Event:
    """An event about a write that has just been judged. Every field comes from values already
    validated (the resource is the view the write rendered), so the model is constructed, not
    validated again; tests/unit/test_events.py holds each kind's events to the contract."""
    return Event.model_construct(
        id=new_id(),
        type=event_type,
        cluster_id=cluster_id,
        nodepool_id=nodepool_id,
        generation=generation,
        timestamp=moment,
        source=EVENT_SOURCE,
        platform=cast(Platform, platform),  # a record's platform came from a validated spec
        resource=resource,
        operation_id=operation_id,
    )


def outbox_fields(event: Event) -> dict[str, str]:
    """An event as an outbox stream entry (the relay publishes ``body``; the rest is for people)."""
    return {
        "id": event.id,
        "rk": event.routing_key,
        "res": event.nodepool_id or event.cluster_id,
        "gen": str(event.generation),
        "body": event.model_dump_json(),
    }


def append_event(txn: Txn, names: Names, event: Event) -> None:
    """Commit the event with the change: the relay publishes it once the change is stored."""
    txn.xadd(names.outbox, outbox_fields(event))


def status_document(
    id_field: str, resource_id: str, generation: int, status: Any, reports: dict[str, str]
) -> dict[str, Any]:
    """What GET/PUT .../status answer: the aggregate and every controller's last report."""
    return {
        id_field: resource_id,
        "generation": generation,
        "status": status,
        "controller_status": [orjson.loads(reports[name]) for name in sorted(reports)],
    }


async def retry_on_race(attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """Run a read-decide-write attempt again when another write changed the record meanwhile.

    Each attempt re-reads, so its preconditions are judged afresh: a stale one is a 409 from
    the attempt itself. Losing races is never a 409 (a client could not tell it from a stale
    precondition): after ``WRITE_RETRY_SECONDS`` of lost races it is a 503 with Retry-After.
    """
    deadline = time.monotonic() + WRITE_RETRY_SECONDS
    backoff = _FIRST_BACKOFF
    while True:
        try:
            return await attempt()
        except TxnFailed as failed:
            if failed.code != RV_CHANGED:
                raise
        if time.monotonic() >= deadline:
            raise Unavailable(
                f"{what} is being changed by too many writers at once; retry shortly",
                retry_after=1,
            )
        # Jittered, so writers that collided do not collide again in lockstep.
        await asyncio.sleep(random.uniform(0, backoff))
        backoff = min(backoff * 2, _MAX_BACKOFF)


class KeyedLocks:
    """One asyncio lock per resource id, held only while someone wants it.

    Writes to one resource from one process take turns instead of racing each other's
    guarded transactions, each losing race costing a round trip: fifty concurrent PUTs would
    otherwise retry about fifty times each. Other processes still race, and retry.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


__all__ = ["RedisStore", "Txn", "TxnFailed"]
