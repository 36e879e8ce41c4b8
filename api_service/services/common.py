"""Small pieces every write shares: clocks, versions, If-Match, outbox entries, retries."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from api_service.errors import Conflict
from api_service.store import RedisStore, Txn, TxnFailed
from shared_models.events import EVENT_SOURCE, Event, EventType
from shared_models.names import Names

T = TypeVar("T")

# How often a write is retried when a concurrent write (say, a status report) got there first.
MAX_WRITE_ATTEMPTS = 25

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


def check_if_match(header: str | None, resource_version: str, what: str) -> None:
    if not if_match_allows(header, resource_version):
        raise Conflict(
            f"{what} has changed since you read it",
            f"If-Match {header} does not match resource_version {resource_version!r}",
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
) -> Event:
    return Event.model_validate(
        {
            "id": new_id(),
            "type": event_type,
            "cluster_id": cluster_id,
            "nodepool_id": nodepool_id,
            "generation": generation,
            "timestamp": moment,
            "source": EVENT_SOURCE,
            "platform": platform,
            "resource": resource,
        }
    )


def outbox_fields(event: Event) -> dict[str, str]:
    """An event as an outbox stream entry (the relay publishes ``body``; the rest is for people)."""
    return {
        "id": event.id,
        "rk": event.routing_key,
        "res": event.nodepool_id or event.cluster_id,
        "gen": str(event.generation),
        "body": orjson.dumps(event.model_dump(mode="json")).decode(),
    }


def append_event(txn: Txn, names: Names, event: Event) -> None:
    """Commit the event with the change: the relay publishes it once the change is stored."""
    txn.xadd(names.outbox, outbox_fields(event))


async def retry_on_race(attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """Run a read-decide-write attempt again when another write changed the record meanwhile."""
    for _ in range(MAX_WRITE_ATTEMPTS):
        try:
            return await attempt()
        except TxnFailed as failed:
            if failed.code != RV_CHANGED:
                raise
    raise Conflict(f"{what} is being changed too often; try again")


__all__ = ["RedisStore", "Txn", "TxnFailed"]
