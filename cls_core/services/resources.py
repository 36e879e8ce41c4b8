"""The rules every kind of resource shares; a kind's service plugs in only what differs.

Clusters and nodepools are stored, versioned, renamed, replaced, deleted and published the same
way: one guarded transaction per write, an outbox event with every change of desired state,
names unique within a scope, a quota counted in the transaction. ``ResourceService`` holds those
rules once. A kind's subclass says where its names are unique, what its quota counts, which ids
its events carry, and adds its own checks (a nodepool against its cluster, a cluster's chosen
id) around the shared steps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, NamedTuple, TypedDict, TypeVar

from cls_core.errors import (
    ApiError,
    Conflict,
    DeletionProtected,
    Forbidden,
    NotFound,
    QuotaExceeded,
    ResourceDeleting,
)
from cls_core.services import deletion
from cls_core.services.access import Access, Caller, judge, role_of
from cls_core.services.common import (
    RV_CHANGED,
    KeyedLocks,
    append_event,
    build_event,
    creation_score,
    iso,
    new_resource_version,
    retry_on_race,
    status_document,
    utcnow,
)
from cls_core.services.deletion import Forced
from cls_core.services.idempotency import (
    IdempotentCreate,
    Replay,
    commit_create,
)
from cls_core.services.operations import OperationLog, update_type
from cls_core.services.reconcile_schedule import ReconcileSchedule
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, StoredDoc, Txn, TxnFailed
from cls_core.store.hints import Hints
from cls_core.store.records import PROTECTED
from cls_core.store.redis_store import CallerProjects
from cls_runtime.settings import Settings
from shared_models.aggregation import StoredStatus, aggregate_stored
from shared_models.events import EventType
from shared_models.names import Kind, Names
from shared_models.operations import OperationType
from shared_models.projects import Role
from shared_models.resources import ClusterCreate, NodePoolCreate
from shared_models.specs import DELETION_PROTECTION

R = TypeVar("R", ClusterRecord, NodePoolRecord)
T = TypeVar("T")

# Resources whose project a process remembers for its reads (an id each: a few MB at most).
_PROJECTS_REMEMBERED = 50_000

# Codes of the checks every create or rename makes (TxnFailed.code).
NAME_TAKEN = "name_taken"
QUOTA = "quota"


def protected(spec: Mapping[str, Any]) -> bool:
    """Whether a stored spec guards its resource against deletion (absent or false: no)."""
    return spec.get(DELETION_PROTECTION) is True


def for_controllers(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored spec as the controllers see a change of it: deletion_protection is not theirs,
    so changing it alone is no new generation and no event."""
    return {key: value for key, value in spec.items() if key != DELETION_PROTECTION}


def protection_too_weak(role: Role) -> Forbidden:
    return Forbidden(
        f"Your role in this project ({role}) does not allow changing spec.deletion_protection",
        f"it needs the {Role.ADMIN} role; a project admin can grant it. To leave it unchanged, "
        "send it back as stored (a PUT without it turns the protection off)",
    )


class Lifecycle(NamedTuple):
    """The events a kind publishes when it is created, its spec changes, it is deleted."""

    created: EventType
    updated: EventType
    deleted: EventType


class FirstVersion(TypedDict):
    """What a record of any kind holds when it is created (its constructor's arguments)."""

    id: str
    doc: StoredDoc
    rv: str
    generation: int
    status: StoredStatus
    project_id: str
    name: str
    platform: str
    seq: float
    idem_key: str | None


def first_version(
    resource_id: str,
    body: ClusterCreate | NodePoolCreate,
    creator: str,
    project_id: str,
    now: datetime,
    idempotency: IdempotentCreate | None,
    required: Collection[str],
) -> FirstVersion:
    """Generation 1 of a resource created from ``body``: no controller has reported yet, and
    its status names the ``required`` controllers it waits for."""
    stamp = iso(now)
    doc: StoredDoc = {
        "id": resource_id,
        "name": body.name,
        "generation": 1,
        "spec": body.spec.model_dump(mode="json", exclude_none=True),
        "created_at": stamp,
        "updated_at": stamp,
        "created_by": creator,
    }
    return {
        "id": resource_id,
        "doc": doc,
        "rv": new_resource_version(),
        "generation": 1,
        "status": aggregate_stored(1, {}, None, now, required=required),
        "project_id": project_id,
        "name": body.name,
        "platform": body.spec.platform.type,
        "seq": creation_score(),
        "idem_key": None if idempotency is None else idempotency.client_key,
    }


class ResourceService(Generic[R]):
    kind: ClassVar[Kind]
    label: ClassVar[str]  # the kind as messages name it: "Cluster", "NodePool"
    events: ClassVar[Lifecycle]

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store = store
        self.names: Names = store.names
        self.settings = settings
        self._writing = KeyedLocks()
        self._schedule = ReconcileSchedule(store.names, settings)
        self.access = Access(store.projects)
        self.operations = OperationLog(store.names, settings)
        # resource id -> the project it was last read in (a hint get_view checks)
        self._project_of: Hints[str, str] = Hints(_PROJECTS_REMEMBERED)

    def _required(self, platform: str) -> tuple[str, ...]:
        """The controllers a resource of this kind on ``platform`` is not Ready without."""
        return self.settings.controller_registry.required_for(self.kind, platform)

    def _aggregate(
        self, record: R, generation: int, reports: dict[str, str], now: datetime
    ) -> StoredStatus:
        """The status of ``record`` at a new ``generation``: the reports of the controllers the
        registry lists for it count (as ``StatusService`` counts them), the others do not."""
        counted = self.settings.controller_registry.counted(reports, self.kind, record.platform)
        required = self._required(record.platform)
        return aggregate_stored(generation, counted, record.status, now, required=required)

    # ---- what a kind says about itself ---------------------------------------------------------
    async def _read(self, resource_id: str) -> R | None:
        raise NotImplementedError

    def _names_key(self, record: R) -> str:
        """The hash of names this record's name must be unique in (name -> id)."""
        raise NotImplementedError

    def _quota(self, record: R) -> tuple[str, int]:
        """(the sorted set a create of ``record`` is counted in, the most it may hold)."""
        raise NotImplementedError

    def _quota_exceeded(self, count: str) -> QuotaExceeded:
        """The refusal of a create when the quota's set already holds ``count`` members."""
        raise NotImplementedError

    def _name_taken(self, name: str, existing_id: str) -> Conflict:
        raise NotImplementedError

    def _event_ids(self, record: R) -> tuple[str, str | None]:
        """(cluster_id, nodepool_id) of the events about ``record``."""
        raise NotImplementedError

    def _refusal(self, failed: TxnFailed, record: R) -> ApiError | None:
        """The error a failed check of the kind's own means, if it is one (``record``: the
        resource as the failed write would have stored it)."""
        return None

    def _add_created(self, txn: Txn, record: R) -> None:
        """The kind's own writes of a create (beyond the record, its name and its indexes)."""

    def _add_spec_changed(self, txn: Txn, record: R) -> None:
        """The kind's own writes when a replace changes the spec."""

    # ---- reads ---------------------------------------------------------------------------------
    def not_found(self) -> NotFound:
        return NotFound(f"{self.label} not found")

    def _projects_of(
        self, caller: Caller, index_of: Callable[[str], str], project_filter: str | None
    ) -> CallerProjects:
        """What a list of the caller's resources reads: their memberships (their own and their
        groups'), and the index of a project for the list's filters."""
        names: Names = self.names
        memberships = [names.user_projects(caller.email)]
        memberships += [names.group_projects(group) for group in caller.groups]
        return CallerProjects(
            membership_keys=memberships,
            personal=caller.personal_project,
            index_of=index_of,
            project_filter=project_filter,
        )

    async def get(self, caller: Caller, resource_id: str, needed: Role = Role.VIEWER) -> R:
        """The resource, if the caller's role in its project allows ``needed``."""
        return (await self.get_with_role(caller, resource_id, needed))[0]

    async def get_with_role(
        self, caller: Caller, resource_id: str, needed: Role = Role.VIEWER
    ) -> tuple[R, Role]:
        """``get``, and the caller's role (what a write's own rules may ask more of)."""
        record = await self._read(resource_id)
        if record is None:
            raise self.not_found()
        role = await self.access.require(caller, record.project_id, needed, self.not_found)
        return record, role

    async def get_view(self, caller: Caller, resource_id: str) -> tuple[str, str]:
        """(resource_version, the resource as JSON) for a GET: no parsing, no re-serialising.

        In the caller's personal project one round trip. In another project, the caller's
        grants there are read in the same round trip when this process has seen the resource
        in that project before (a hint the read checks), else in a second one."""
        guess = self._project_of.get(resource_id)
        grants = None
        if guess is None or guess == caller.personal_project:
            found = await self.store.get_view(self.kind, resource_id)
        else:
            found, grants = await self.store.get_view_with_grants(
                self.kind, resource_id, guess, caller.email, caller.groups
            )
        if found is None:
            raise self.not_found()
        project_id, rv, view = found
        self._project_of.keep(resource_id, project_id)
        if grants is None:
            await self.access.require(caller, project_id, Role.VIEWER, self.not_found)
        else:
            judge(role_of(grants), Role.VIEWER, self.not_found)
        return rv, view

    async def status_view(self, caller: Caller, resource_id: str) -> dict[str, Any]:
        record = await self.get(caller, resource_id)
        reports = await self.store.controller_reports(self.kind, resource_id)
        return status_document(
            f"{self.kind}_id", resource_id, record.generation, record.status, reports
        )

    async def controller_view(self, resource_id: str) -> tuple[str, str]:
        """``get_view`` for a controller, whatever the project: controllers work on every
        project's resources, and re-read one to check the generation an event claims."""
        found = await self.store.get_view(self.kind, resource_id)
        if found is None:
            raise self.not_found()
        return found[1], found[2]

    # ---- the shared steps of a write -----------------------------------------------------------
    async def _write(self, resource_id: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """One read-decide-write at a time per resource in this process, retried on lost races."""
        async with self._writing.hold(resource_id):
            return await retry_on_race(attempt, self.label)

    def _add_create(self, txn: Txn, record: R, now: datetime) -> R:
        """Everything a create writes, after the kind's own checks: its name (unique in its
        scope), its quota (counted in the transaction, so concurrent creates cannot pass it
        together), the record, its indexes, the created event and its operation; the record
        with its operation."""
        names_key = self._names_key(record)
        quota_key, quota = self._quota(record)
        txn.expect_field(names_key, record.name, None, NAME_TAKEN)
        txn.expect_count_below(quota_key, quota, QUOTA)
        record.put(txn, self.names, created=True)
        txn.hset(names_key, {record.name: record.id})
        txn.move_in_indexes(set(), record.index_keys(self.names), record.seq, record.id)
        self._add_created(txn, record)
        actor = record.doc["created_by"]
        return self._emit(
            txn, self.events.created, record, record.generation, now, OperationType.CREATE, actor
        )

    async def _commit_create(
        self, txn: Txn, record: R, dry_run: bool, idempotency: IdempotentCreate | None
    ) -> R | Replay:
        replay = await commit_create(
            self.store, lambda: self._run(txn, record, dry_run), idempotency
        )
        return replay or (
            record.with_operation(record.ops, record.op_run, None) if dry_run else record
        )

    async def _replaced(
        self,
        record: R,
        spec: dict[str, Any],
        name: str | None,
        dry_run: bool,
        reports: dict[str, str] | None = None,
        txn: Txn | None = None,
        *,
        role: Role,
        actor: str,
    ) -> R:
        """Store ``record`` with a new spec and name (None: unchanged), once the kind has judged
        them and the caller's preconditions. A new spec is a new generation, with a status
        aggregated afresh from the controllers' ``reports`` (read here when not given); an
        identical replace changes nothing, not even the resource_version. ``txn`` may hold the
        kind's own checks, which the write then also needs to hold.

        deletion_protection is not the controllers': a write that changes only it is stored as
        a rename is (a new resource_version and updated_at; the same generation and status, no
        event). Turning it on or off needs the caller's ``role`` to be admin."""
        self.refuse_if_deleting(record)
        stored = record.doc["spec"]
        doc_changed = spec != stored
        spec_changed = for_controllers(spec) != for_controllers(stored)
        name = record.name if name is None else name
        renamed = name != record.name
        if not doc_changed and not renamed:
            return record
        if protected(spec) != protected(stored) and not role.allows(Role.ADMIN):
            raise protection_too_weak(role)
        now = utcnow()
        generation = record.generation + 1 if spec_changed else record.generation
        status = record.status
        if spec_changed:
            if reports is None:
                reports = await self.store.controller_reports(self.kind, record.id)
            status = self._aggregate(record, generation, reports, now)
        doc: StoredDoc = {
            **record.doc,
            "name": name,
            "generation": generation,
            "spec": spec,
            "updated_at": iso(now),
        }
        updated = record.with_changes(
            doc=doc, rv=new_resource_version(), generation=generation, status=status, name=name
        )
        txn = Txn() if txn is None else txn
        record_key = self.names.record(self.kind, record.id)
        txn.expect_field(record_key, "rv", record.rv, RV_CHANGED)
        if renamed:
            names_key = self._names_key(record)
            txn.expect_field(names_key, name, None, NAME_TAKEN)
            txn.hdel(names_key, record.name)
            txn.hset(names_key, {name: record.id})
        updated.put(txn, self.names)
        txn.move_in_indexes(
            record.index_keys(self.names), updated.index_keys(self.names), record.seq, record.id
        )
        if spec_changed:
            self._add_spec_changed(txn, updated)
            op_type = update_type(self.kind, stored, spec)
            updated = self._emit(
                txn, self.events.updated, updated, generation, now, op_type, actor, record, reports
            )
        await self._run(txn, updated, dry_run)
        return updated.with_operation(updated.ops, updated.op_run, None) if dry_run else updated

    def deletion_protected(self, record: R) -> DeletionProtected:
        return DeletionProtected(
            f"{self.label} '{record.name}' is protected against deletion",
            "its spec.deletion_protection is true (force does not override it); a project "
            "admin's write that sets it to false allows the deletion",
        )

    def deleting(self, record: R) -> ResourceDeleting:
        return ResourceDeleting(
            f"{self.label} '{record.name}' is being deleted",
            f"its deletion started at {record.deletion_timestamp} and waits for its "
            "controllers; its spec cannot change any more. Wait for the deletion to finish "
            "(a GET then answers 404), or force it (DELETE with ?force=true&reason=...)",
        )

    def refuse_if_deleting(self, record: R) -> None:
        """A resource in phase Deleting is frozen: a write to it answers 409."""
        if record.deletion_timestamp is not None:
            raise self.deleting(record)

    def add_delete(
        self,
        txn: Txn,
        record: R,
        reports: Mapping[str, str],
        now: datetime,
        actor: str,
        forced: Forced | None = None,
        *,
        may_purge: bool = True,
        cascade: bool = False,
    ) -> tuple[R, bool]:
        """Everything a DELETE of ``record`` writes; (the resource as it is then, whether it
        is purged).

        A resource not yet being deleted enters phase Deleting at the next generation, with
        the deleted event (a change of desired state: consumers that ignore generations they
        have handled still act on it). It is purged at once when forced, or when no controller
        is required to confirm; else ``StatusService`` purges it on the last confirmation. A
        resource already Deleting is purged when forced, left as it is otherwise (a second
        DELETE writes nothing).

        A protected ``record`` is refused here, force or not. The transaction expects the
        resource_version it was read at, so a write that turned the protection on since then
        fails it too: the delete is decided again on a fresh read.

        ``may_purge`` False: never purged here (a cluster whose nodepools must go first).
        ``cascade``: the transaction expects only what the delete depends on (the generation,
        the phase and health its index entries are under, no deletion protection), not the
        resource_version, so that the status reports controllers keep sending do not fail a
        cascade's batches."""
        names = self.names
        if record.deletion_timestamp is None and protected(record.doc["spec"]):
            raise self.deletion_protected(record)
        record_key = names.record(self.kind, record.id)
        if cascade:
            # A spec change needs the cluster unchanged, so none can happen while its cascade
            # runs; a report that moved phase or health moved the index entries too.
            txn.expect_field(record_key, "gen", str(record.generation), RV_CHANGED)
            txn.expect_field(record_key, "phase", record.phase, RV_CHANGED)
            txn.expect_field(record_key, "health", record.health, RV_CHANGED)
            txn.expect_field_not(record_key, PROTECTED, "1", RV_CHANGED)
        else:
            txn.expect_field(record_key, "rv", record.rv, RV_CHANGED)
        state = record
        if record.deletion_timestamp is None:
            registry = self.settings.controller_registry
            state = deletion.start(record, reports, registry, now)
            state.put(txn, names)
            txn.move_in_indexes(
                record.index_keys(names), state.index_keys(names), record.seq, record.id
            )
            deletion.schedule_timeout(txn, names, state, self.settings)
            # Reconciled every reconcile_interval until purged: a controller that lost the
            # deleted event (killed mid-deletion) is asked again, by a reconcile event.
            self._schedule.schedule(txn, self.kind, record.id, False, now.timestamp())
            self._add_deletion_started(txn, state, forced)
            op_type = OperationType.DELETE if forced is None else OperationType.FORCE_DELETE
            state = self._emit(
                txn,
                self.events.deleted,
                state,
                state.generation,
                now,
                op_type,
                actor,
                record,
                reason=None if forced is None else forced.reason,
            )
            purge = forced is not None or not self._required(record.platform)
        else:
            purge = forced is not None
            if purge and forced is not None:
                # A force on a deletion under way: an operation of its own (no new generation,
                # no event), which supersedes the delete's.
                cluster_id, _ = self._event_ids(record)
                _, state = self.operations.start(
                    txn,
                    record=record,
                    before=record,
                    cluster_id=cluster_id,
                    type_=OperationType.FORCE_DELETE,
                    generation=record.generation,
                    actor=actor,
                    now=now,
                    reason=forced.reason,
                )
        purge = purge and may_purge
        if purge:
            self._add_purge(txn, state, now, forced)
        return state, purge

    def _add_deletion_started(self, txn: Txn, record: R, forced: Forced | None) -> None:
        """The kind's own writes when its deletion starts."""

    def _add_purge(self, txn: Txn, record: R, now: datetime, forced: Forced | None) -> None:
        """A purge of ``record`` (the kind may add checks); its deletion's operation ends
        with it, and its operations are kept as long as its tombstone."""
        deletion.add_purge(txn, self.names, record, now, self.settings, forced)
        self.operations.finish_deleted(
            txn,
            self.kind,
            record.id,
            record.ops,
            now,
            retention_seconds=self.settings.tombstone_retention,
        )

    def _emit(
        self,
        txn: Txn,
        event_type: EventType,
        record: R,
        generation: int,
        now: datetime,
        op_type: OperationType,
        actor: str,
        before: R | None = None,
        reports: Mapping[str, str] | None = None,
        *,
        reason: str | None = None,
    ) -> R:
        """Publish the change of ``record`` (as stored; ``before``: as read) with the
        operation it starts (``reason``: a force's); ``record`` with that operation."""
        cluster_id, nodepool_id = self._event_ids(record)
        op_id, started = self.operations.start(
            txn,
            record=record,
            before=before,
            cluster_id=cluster_id,
            type_=op_type,
            generation=generation,
            actor=actor,
            now=now,
            reports=reports,
            reason=reason,
        )
        event = build_event(
            event_type,
            cluster_id=cluster_id,
            nodepool_id=nodepool_id,
            generation=generation,
            platform=record.platform,
            resource=record.view(),
            moment=now,
            operation_id=op_id,
        )
        append_event(txn, self.names, event)
        return started

    async def _run(self, txn: Txn, record: R, dry_run: bool) -> None:
        """Commit ``txn``, the write of ``record`` (or only judge it, for a dry run); a failed
        check becomes the error it means."""
        try:
            await self.store.run(txn, dry_run=dry_run)
        except TxnFailed as failed:
            if failed.code == NAME_TAKEN:
                raise self._name_taken(record.name, failed.actual) from failed
            if failed.code == QUOTA:
                raise self._quota_exceeded(failed.actual) from failed
            refusal = self._refusal(failed, record)
            if refusal is not None:
                raise refusal from failed
            raise
