"""Move resources stored before projects existed into their creators' personal projects.

Before projects, a record named its creator in the hash field ``owner``, and its indexes and
(for clusters) its name were keyed by that email. Now a record names its ``project``, and those
keys are keyed by the project's id. For each such record this writes, in one guarded
transaction: its ``project`` (the creator's personal project, created if needed), its view (a
cluster's shows ``project_id``), its index entries moved, and a cluster's name moved. Its
resource_version is kept: the resource itself did not change, and clients' ETags stay valid.

Idempotent and resumable: a record already moved is skipped, so running it again, or after an
interruption, finishes the job. Run it with the API stopped (``scripts/migrate_to_projects.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from cls_core.services.access import Caller
from cls_core.services.common import RV_CHANGED
from cls_core.services.projects import ProjectService
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, Txn, TxnFailed
from cls_core.store.records import RECORD_FIELDS
from cls_runtime.settings import Settings
from shared_models.names import Kind
from shared_models.projects import personal_project_id

_MOVED = "moved"


@dataclass
class MigrationReport:
    moved: dict[str, int] = field(default_factory=lambda: {"cluster": 0, "nodepool": 0})
    already: int = 0
    raced: list[str] = field(default_factory=list)  # changed while being moved: run again


async def migrate_to_projects(redis: Redis, settings: Settings) -> MigrationReport:
    store = RedisStore(redis, settings.names)
    projects = ProjectService(store, settings)
    report = MigrationReport()
    for kind in ("cluster", "nodepool"):
        async for resource_id, raw in _records(redis, settings, kind):
            if raw.get("project"):
                report.already += 1
                continue
            await projects.ensure_personal(Caller(raw["owner"]))
            try:
                await store.run(_move(store, kind, resource_id, raw))
                report.moved[kind] += 1
            except TxnFailed as failed:
                if failed.code == _MOVED:
                    report.already += 1
                elif failed.code == RV_CHANGED:
                    report.raced.append(f"{kind} {resource_id}")
                else:
                    raise
    return report


async def _records(
    redis: Redis, settings: Settings, kind: Kind
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Every record hash of ``kind`` (``<ns>:<kind>:<id>``, not its reports or indexes)."""
    prefix = settings.names.record(kind, "")
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000, _type="hash"):
        resource_id = str(key)[len(prefix) :]
        if ":" in resource_id:
            continue
        values = await redis.hmget(str(key), [*RECORD_FIELDS, "owner"])
        raw = dict(zip([*RECORD_FIELDS, "owner"], values, strict=True))
        if raw["rv"] is not None:
            yield resource_id, raw


def _move(store: RedisStore, kind: Kind, resource_id: str, raw: dict[str, Any]) -> Txn:
    names = store.names
    email = str(raw["owner"])
    project_id = personal_project_id(email)
    # Read as if the email were its project: its index keys are then the old ones exactly.
    as_stored = {**raw, "project": email}
    old: ClusterRecord | NodePoolRecord
    new: ClusterRecord | NodePoolRecord
    if kind == "cluster":
        old = ClusterRecord.from_hash(resource_id, as_stored)
        new = old.with_changes(project_id=project_id, doc={**old.doc, "project_id": project_id})
    else:
        old = NodePoolRecord.from_hash(resource_id, as_stored)
        new = old.with_changes(project_id=project_id)
    record_key = names.record(kind, resource_id)
    txn = Txn()
    txn.expect_field(record_key, "project", None, _MOVED)
    txn.expect_field(record_key, "rv", old.rv, RV_CHANGED)
    txn.hdel(record_key, "owner")
    new.put(txn, names)
    txn.move_in_indexes(old.index_keys(names), new.index_keys(names), old.seq, resource_id)
    if kind == "cluster":
        txn.hdel(names.cluster_names(email), old.name)
        txn.hset(names.cluster_names(project_id), {old.name: resource_id})
    return txn
