"""Operations: every change a user makes, recorded in the transaction of the change, and ended
by the controllers' reports (see docs/user-guide.md, "Operations").

``OperationLog`` adds an operation's writes to a change's guarded transaction: starting one
(``start``, called by ``ResourceService._emit`` for every write that publishes an event), ending
one when the aggregated status reaches Ready or Failed at its generation (``end_by_status``,
called by ``StatusService`` for the API and the ingester alike), and ending a deletion when the
resource is purged (``finish_deleted``). None of them reads anything: what they need is in the
resource's record (``ops``, ``op_run``, see cls_core/store/records.py), which the write has
read and guards with its resource_version.

``OperationService`` answers the reads: a resource's operations, newest first, and one
operation; a running operation's progress is computed from the resource's current status and
reports, so that no status report writes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import orjson

from cls_core.errors import NotFound
from cls_core.services.access import Access, Caller
from cls_core.services.common import iso, new_id
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, Txn
from cls_core.store.operation_store import OperationStore, StoredOperation
from cls_runtime.settings import Settings
from shared_models.aggregation import StoredStatus, controller_of_json
from shared_models.names import Kind, Names
from shared_models.operations import (
    ENDED_BY_STATUS,
    Operation,
    OperationState,
    OperationType,
    Progress,
)
from shared_models.projects import Role
from shared_models.specs import DELETION_PROTECTION

Record = ClusterRecord | NodePoolRecord
R = TypeVar("R", ClusterRecord, NodePoolRecord)

NODE_COUNT = "nodeCount"
_DELETES = (OperationType.DELETE, OperationType.FORCE_DELETE)


# ---- what a change is --------------------------------------------------------------------------


def _flatten(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf of ``value`` (a list is one leaf)."""
    if isinstance(value, Mapping) and value:
        for key in sorted(value):
            yield from _flatten(value[key], f"{path}.{key}")
    else:
        yield path, value


def changes_of(
    old_spec: Mapping[str, Any] | None,
    new_spec: Mapping[str, Any],
    old_name: str | None = None,
    new_name: str | None = None,
) -> list[dict[str, Any]]:
    """The fields a change set, as {field, old, new} (``old_spec`` None: a create)."""
    old = {} if old_spec is None else dict(_flatten(old_spec, "spec"))
    new = dict(_flatten(new_spec, "spec"))
    changes = []
    if old_name != new_name and new_name is not None and old_spec is not None:
        changes.append({"field": "name", "old": old_name, "new": new_name})
    for path in sorted(old.keys() | new.keys()):
        if old.get(path) != new.get(path):
            changes.append({"field": path, "old": old.get(path), "new": new.get(path)})
    return changes


def update_type(
    kind: Kind, old_spec: Mapping[str, Any], new_spec: Mapping[str, Any]
) -> OperationType:
    """``scale`` for a nodepool change of ``spec.nodeCount`` alone, else ``update``."""
    if kind != "nodepool" or old_spec.get(NODE_COUNT) == new_spec.get(NODE_COUNT):
        return OperationType.UPDATE
    rest_old = {k: v for k, v in old_spec.items() if k not in (NODE_COUNT, DELETION_PROTECTION)}
    rest_new = {k: v for k, v in new_spec.items() if k not in (NODE_COUNT, DELETION_PROTECTION)}
    same_protection = old_spec.get(DELETION_PROTECTION) == new_spec.get(DELETION_PROTECTION)
    return OperationType.SCALE if rest_old == rest_new and same_protection else OperationType.UPDATE


def desired_nodes(spec: Mapping[str, Any]) -> int | None:
    """What a nodepool's controllers should run: nodeCount within the autoscaling bounds."""
    count = spec.get(NODE_COUNT)
    if not isinstance(count, int):
        return None
    auto = spec.get("autoscaling") or {}
    low, high = auto.get("minNodes"), auto.get("maxNodes")
    if not auto.get("enabled") or low is None or high is None:
        return count
    return int(max(low, min(high, count)))


# ---- progress and ending -----------------------------------------------------------------------


def progress_of(
    generation: int,
    status: StoredStatus,
    status_generation: int,
    reports: Mapping[str, str],
    nodes_wanted: int | None,
) -> Progress:
    """How far the controllers got with ``generation``, from a resource's status (aggregated
    at ``status_generation``) and its reports (controller -> JSON): nothing of a newer
    generation's status counts."""
    if status_generation != generation:
        return Progress(desired_nodes=nodes_wanted)
    reported = ready = 0
    active: list[int] = []
    for raw in reports.values():
        report = orjson.loads(raw)
        if report.get("observed_generation") != generation:
            continue
        reported += 1
        controller = controller_of_json(report)
        ready += controller.ready and not controller.in_error
        nodes = (report.get("metadata") or {}).get("active_nodes")
        if isinstance(nodes, int) and not isinstance(nodes, bool):
            active.append(nodes)
    return Progress(
        phase=status["phase"],
        controllers_ready=ready,
        controllers_reported=reported,
        desired_nodes=nodes_wanted,
        active_nodes=min(active) if active else None,
    )


class Running(NamedTuple):
    """A resource's current operation while it runs (its record's ``op_run``)."""

    id: str
    type: str
    generation: int

    @classmethod
    def of(cls, record: Record) -> Running | None:
        if record.op_run is None or not record.ops:
            return None
        type_, generation = record.op_run.split()
        return cls(record.ops[-1], type_, int(generation))

    def field(self) -> str:
        return f"{self.type} {self.generation}"


def ending(running: Running | None, status: StoredStatus) -> OperationState | None:
    """The state a status ends the running operation in: Succeeded when it is Ready at the
    operation's generation, Failed when Failed there; None while it runs (or for a deletion,
    which the purge ends). A Ready of an older generation ends nothing."""
    if running is None or running.type not in ENDED_BY_STATUS:
        return None
    if status["observedGeneration"] != running.generation:
        return None
    if status["phase"] == "Ready":
        return OperationState.SUCCEEDED
    if status["phase"] == "Failed":
        return OperationState.FAILED
    return None


# ---- the writes, added to a change's transaction -----------------------------------------------


class OperationLog:
    def __init__(self, names: Names, settings: Settings) -> None:
        self.names = names
        self.keep = settings.operations_per_resource
        self.retention_ms = int(settings.operations_retention * 1000)

    def start(
        self,
        txn: Txn,
        *,
        record: R,
        before: R | None,
        cluster_id: str,
        type_: str,
        generation: int,
        actor: str,
        now: datetime,
        reports: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> tuple[str, R]:
        """Start an operation of ``type_`` for the change from ``before`` (as read; None for a
        create) to ``record`` (as the change stores it, already put in ``txn``): the
        operation, the resource's history and record fields, the running operation it ends
        (Superseded; Cancelled by a deletion), and the trim of the history to its bound.

        Returns the operation's id and ``record`` with its operation fields."""
        names = self.names
        kind: Kind = record.kind
        op_id = new_id()
        stamp = iso(now)
        spec = record.doc["spec"]
        if type_ in _DELETES:
            changes: list[dict[str, Any]] = []
        elif before is None:
            changes = changes_of(None, spec)
        else:
            changes = changes_of(before.doc["spec"], spec, before.name, record.name)
        doc = {
            "id": op_id,
            "type": type_,
            "resource_kind": kind,
            "resource_id": record.id,
            "cluster_id": cluster_id,
            "project_id": record.project_id,
            "generation": generation,
            "actor": actor,
            "created_at": stamp,
            "changes": changes,
            "desired_nodes": desired_nodes(spec) if kind == "nodepool" else None,
            "reason": reason,
        }
        txn.hset(
            names.operation(op_id),
            {"doc": orjson.dumps(doc).decode(), "state": OperationState.RUNNING},
        )
        history = names.resource_operations(kind, record.id)
        score = float(now.timestamp() * 1_000_000)
        txn.zadd(history, score, op_id)
        running = None if before is None else Running.of(before)
        if running is not None and before is not None:
            superseded = type_ not in _DELETES or running.type in _DELETES
            state = OperationState.SUPERSEDED if superseded else OperationState.CANCELLED
            self._end(txn, running.id, state, before, reports, now, superseded_by=op_id)
        ops = (*(() if before is None else before.ops), op_id)
        for old in ops[: max(0, len(ops) - self.keep)]:
            txn.delete(names.operation(old))
            txn.zrem(history, old)
        ops = ops[-self.keep :]
        op_run = Running(op_id, type_, generation).field()
        txn.hset(names.record(kind, record.id), {"ops": " ".join(ops), "op_run": op_run})
        return op_id, record.with_operation(ops, op_run, op_id)

    def end_by_status(
        self, txn: Txn, record: Record, reports: Mapping[str, str], now: datetime
    ) -> None:
        """End the running operation of ``record`` (as a status write stores it) if its status
        reached Ready or Failed at the operation's generation; nothing otherwise (the usual
        case: no write at all)."""
        running = Running.of(record)
        state = ending(running, record.status)
        if state is None or running is None:
            return
        self._end(txn, running.id, state, record, reports, now)
        txn.hdel(self.names.record(record.kind, record.id), "op_run")

    def _end(
        self,
        txn: Txn,
        op_id: str,
        state: OperationState,
        record: Record,
        reports: Mapping[str, str] | None,
        now: datetime,
        superseded_by: str | None = None,
    ) -> None:
        """Write the end of ``op_id``, its progress frozen from ``record`` and ``reports``."""
        running = Running.of(record)
        generation = running.generation if running is not None else record.generation
        wanted = desired_nodes(record.doc["spec"]) if record.kind == "nodepool" else None
        progress = progress_of(generation, record.status, record.generation, reports or {}, wanted)
        fields = {
            "state": state,
            "finished_at": iso(now),
            "progress": progress.model_dump_json(),
        }
        if state is OperationState.FAILED:
            fields["error"] = orjson.dumps(record.status.get("errors") or []).decode()
        if state is OperationState.SUPERSEDED and superseded_by is not None:
            fields["superseded_by"] = superseded_by
        txn.hset(self.names.operation(op_id), fields)

    def finish_deleted(
        self,
        txn: Txn,
        kind: Kind,
        resource_id: str,
        ops: Sequence[str],
        now: datetime,
        *,
        state: OperationState = OperationState.SUCCEEDED,
        retention_seconds: float | None = None,
    ) -> None:
        """The purge of a deleted resource: its current operation (the last of ``ops``, its
        record's history, a delete or force_delete) ends in ``state``, and the resource's
        operations expire after ``retention_seconds`` (default: ``CLS_OPERATIONS_RETENTION``;
        the deletion lifecycle passes its tombstone retention), readable until then.

        Call it in the purge's transaction, with the record as last read (its ``ops``); it
        reads nothing. The record's operation fields are removed (the purge deletes the record
        itself)."""
        names = self.names
        if ops:
            txn.hset(names.operation(ops[-1]), {"state": state, "finished_at": iso(now)})
        ms = self.retention_ms if retention_seconds is None else int(retention_seconds * 1000)
        for op_id in ops:
            txn.pexpire(names.operation(op_id), ms)
        txn.pexpire(names.resource_operations(kind, resource_id), ms)
        # A purge that removed the record before starting the delete's operation in the same
        # transaction would otherwise leave a hash of these two fields alone.
        txn.hdel(names.record(kind, resource_id), "ops", "op_run")


# ---- reads -------------------------------------------------------------------------------------


def operation_not_found() -> NotFound:
    return NotFound("Operation not found")


def _not_found(kind: Kind) -> NotFound:
    return NotFound("NodePool not found" if kind == "nodepool" else "Cluster not found")


class OperationService:
    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store: OperationStore = store.operation_store()
        self.access = Access(store.projects)

    async def list(
        self, caller: Caller, kind: Kind, resource_id: str, limit: int, offset: int
    ) -> tuple[int, list[Operation]]:
        """(total, a page of the resource's operations, newest first), for a viewer of the
        resource's project (of a deleted one: the project of its last operation)."""
        page = await self.store.page(kind, resource_id, offset, limit)
        if page.record is None and page.total == 0:
            raise _not_found(kind)
        project = await self._project_of(page.record, page.newest)
        if project is None:
            raise _not_found(kind)
        await self.access.require(caller, project, Role.VIEWER, lambda: _not_found(kind))
        shown = [self._shown(op, page.record, page.reports) for op in page.operations]
        return page.total, shown

    async def get(self, caller: Caller, operation_id: str) -> Operation:
        stored = await self.store.get(operation_id)
        if stored is None:
            raise operation_not_found()
        kind: Kind = stored.doc["resource_kind"]
        page = await self.store.page(kind, stored.doc["resource_id"], 0, 0)
        project = await self._project_of(page.record, page.newest)
        await self.access.require(
            caller, project or stored.doc["project_id"], Role.VIEWER, operation_not_found
        )
        return self._shown(stored, page.record, page.reports)

    async def _project_of(self, record: Record | None, newest: str | None) -> str | None:
        """The project whose members see a resource's operations: the resource's own, or, once
        it is deleted, that of its last operation."""
        if record is not None:
            return record.project_id
        if newest is None:
            return None
        last = await self.store.get(newest)
        return None if last is None else str(last.doc["project_id"])

    @staticmethod
    def _shown(
        stored: StoredOperation, record: Record | None, reports: Mapping[str, str]
    ) -> Operation:
        doc = stored.doc
        fields: dict[str, Any] = {k: v for k, v in doc.items() if k != "desired_nodes"}
        fields.update(stored.end)
        if stored.end.get("state", OperationState.RUNNING) == OperationState.RUNNING:
            wanted = doc.get("desired_nodes")
            if record is not None:
                fields["progress"] = progress_of(
                    doc["generation"], record.status, record.generation, reports, wanted
                )
            else:
                fields["progress"] = Progress(desired_nodes=wanted)
        return Operation.model_validate(fields)


__all__ = [
    "OperationLog",
    "OperationService",
    "Running",
    "changes_of",
    "ending",
    "progress_of",
    "update_type",
]
