"""Deletion that waits for the controllers: the rules every writer of a deletion shares.

A DELETE puts a resource in phase Deleting (``deletion_timestamp``, the next generation, the
deleted event); its required controllers confirm with a report at that generation carrying
condition ``Deleted=True``; the last confirmation purges it (``add_purge``: the record and
everything about it go, a tombstone stays). A force purges without confirmation and the
tombstone says who forced it and why. The API, the status path and the event jobs all write a
deletion through these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple, TypeVar

import orjson

from cls_core.services.common import iso, new_resource_version
from cls_core.services.idempotency import delete_key_with
from cls_core.services.reconcile_schedule import member
from cls_core.store import ClusterRecord, NodePoolRecord, StoredDoc, Txn
from cls_runtime.settings import Settings
from shared_models.aggregation import StoredStatus, aggregate_stored
from shared_models.controllers import ControllerRegistry
from shared_models.names import Names

log = logging.getLogger("cls_core.deletion")

Record = NodePoolRecord | ClusterRecord
R = TypeVar("R", NodePoolRecord, ClusterRecord)

# A forced cluster deletion without a reason (the guide's documented curl sends none).
NO_REASON = "no reason given"


class Forced(NamedTuple):
    """Who forced a deletion, why and when (kept in the tombstone)."""

    by: str
    reason: str
    at: str

    def as_json(self) -> str:
        return orjson.dumps(
            {"forced_by": self.by, "reason": self.reason, "forced_at": self.at}
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> Forced | None:
        data = orjson.loads(text) if text else {}
        if not data:
            return None
        return cls(data["forced_by"], data["reason"], data["forced_at"])


def overdue(record: Record, settings: Settings, now: datetime) -> bool:
    """Its deletion was not confirmed within ``deletion_timeout``."""
    started = record.deletion_timestamp
    if started is None:
        return False
    elapsed = now.timestamp() - datetime.fromisoformat(started).timestamp()
    return elapsed >= settings.deletion_timeout


def deleting_status(
    record: Record,
    reports: Mapping[str, str],
    registry: ControllerRegistry,
    now: datetime,
    *,
    is_overdue: bool,
) -> StoredStatus:
    """The status of a Deleting ``record`` (at its deletion generation) from its reports."""
    counted = registry.counted(reports, record.kind, record.platform)
    required = registry.required_for(record.kind, record.platform)
    return aggregate_stored(
        record.generation,
        counted,
        record.status,
        now,
        required=required,
        deleting=True,
        overdue=is_overdue,
    )


def start(record: R, reports: Mapping[str, str], registry: ControllerRegistry, now: datetime) -> R:
    """``record`` in phase Deleting: the next generation (the deletion's), its
    deletion_timestamp, and a status that waits for the confirmations."""
    generation = record.generation + 1
    stamp = iso(now)
    doc: StoredDoc = {
        **record.doc,
        "generation": generation,
        "updated_at": stamp,
        "deletion_timestamp": stamp,
    }
    deleting = record.with_changes(doc=doc, generation=generation, rv=new_resource_version())
    status = deleting_status(deleting, reports, registry, now, is_overdue=False)
    return deleting.with_changes(status=status)


def schedule_timeout(txn: Txn, names: Names, record: Record, settings: Settings) -> None:
    """Due for the timeout check ``deletion_timeout`` after the deletion started (the event
    jobs' deletion loop marks it Unhealthy then, if it is still there)."""
    started = record.deletion_timestamp
    assert started is not None
    due = datetime.fromisoformat(started).timestamp() + settings.deletion_timeout
    txn.zadd(names.deletion_due, due, member(record.kind, record.id))


def names_key(names: Names, record: Record) -> str:
    """The hash its name is unique in."""
    if isinstance(record, NodePoolRecord):
        return names.nodepool_names(record.cluster_id)
    return names.cluster_names(record.project_id)


def add_purge(
    txn: Txn,
    names: Names,
    record: Record,
    now: datetime,
    settings: Settings,
    forced: Forced | None = None,
) -> None:
    """Everything a purge writes (the caller guards the record): the record and its view,
    its reports, indexes, name, schedules, the Idempotency-Key that created it, its cluster's
    membership; and its tombstone (kept ``tombstone_retention``), so that its id is never used
    again and late reports for it are dropped."""
    kind = record.kind
    record.remove(txn, names)
    txn.delete(names.controller_reports(kind, record.id))
    txn.move_in_indexes(record.index_keys(names), set(), record.seq, record.id)
    txn.hdel(names_key(names, record), record.name)
    txn.zrem(names.reconcile_due, member(kind, record.id))
    txn.zrem(names.deletion_due, member(kind, record.id))
    delete_key_with(txn, names, record.doc["created_by"], record.idem_key, record.id)
    if isinstance(record, NodePoolRecord):
        txn.zrem(names.cluster_nodepools(record.cluster_id), record.id)
    else:
        txn.hset(names.retired_cluster_ids, {record.id: iso(now)})
        txn.hdel(names.deleting_clusters, record.id)
    tombstone = names.tombstone(kind, record.id)
    fields = {
        "deleted_at": iso(now),
        "generation": str(record.generation),
        "name": record.name,
        "project_id": record.project_id,
    }
    if forced is not None:
        fields |= {"forced_by": forced.by, "reason": forced.reason, "forced_at": forced.at}
    txn.hset(tombstone, fields)
    txn.expire(tombstone, settings.tombstone_retention)


def log_forced(record: Record, forced: Forced) -> None:
    log.warning(
        "forced deletion of %s %s by %s: %s",
        record.kind,
        record.id,
        forced.by,
        forced.reason,
        extra={f"{record.kind}_id": record.id, "forced_by": forced.by, "reason": forced.reason},
    )
