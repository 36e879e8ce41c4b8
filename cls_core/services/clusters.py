"""Cluster rules: what a cluster adds to the shared resource rules (chosen ids, the cascade)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from cls_core.errors import (
    ApiError,
    Conflict,
    DeletionProtected,
    QuotaExceeded,
    ValidationFailed,
)
from cls_core.services import deletion
from cls_core.services.access import Caller
from cls_core.services.common import (
    RV_CHANGED,
    Preconditions,
    iso,
    new_id,
    new_resource_version,
    utcnow,
)
from cls_core.services.deletion import Forced
from cls_core.services.idempotency import IdempotentCreate, Replay
from cls_core.services.nodepools import NodePoolService
from cls_core.services.projects import ProjectService, project_not_found, record_operation
from cls_core.services.resources import (
    NAME_TAKEN,
    QUOTA,
    Lifecycle,
    ResourceService,
    first_version,
    protected,
)
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, StoredDoc, Txn, TxnFailed
from cls_runtime.settings import Settings
from shared_models.aggregation import controller_of_json, deletion_confirmed
from shared_models.names import ANY
from shared_models.projects import Role
from shared_models.resources import ClusterCreate, ClusterUpdate
from shared_models.specs import DELETION_PROTECTION

log = logging.getLogger("cls_core.clusters")

# Who deletes the nodepools of a cluster whose deletion was not forced (its cascade).
CASCADE_ACTOR = "cluster-deletion"
ID_TAKEN = "id_taken"
ID_RETIRED = "id_retired"
PROJECT_GONE = "project_gone"
# How many protected nodepools a refused forced delete names.
PROTECTED_NAMED = 10


class ClusterService(ResourceService[ClusterRecord]):
    kind = "cluster"
    label = "Cluster"
    events = Lifecycle("cluster.created", "cluster.updated", "cluster.deleted")

    def __init__(
        self,
        store: RedisStore,
        settings: Settings,
        nodepools: NodePoolService,
        projects: ProjectService,
    ) -> None:
        super().__init__(store, settings)
        self.nodepools = nodepools
        self.projects = projects

    # ---- what a cluster is -----------------------------------------------------------------
    async def _read(self, resource_id: str) -> ClusterRecord | None:
        return await self.store.get_cluster(resource_id)

    def _names_key(self, record: ClusterRecord) -> str:
        return self.names.cluster_names(record.project_id)

    def _quota(self, record: ClusterRecord) -> tuple[str, int]:
        index = self.names.cluster_index(record.project_id, ANY, ANY)
        return index, self.settings.max_clusters_per_project

    def _quota_exceeded(self, count: str) -> QuotaExceeded:
        return QuotaExceeded(
            "Quota exceeded: at most "
            f"{self.settings.max_clusters_per_project} clusters per project",
            f"the project has {count} clusters; delete one to create another",
        )

    def _name_taken(self, name: str, existing_id: str) -> Conflict:
        return Conflict(
            f"Cluster with name '{name}' already exists", f"existing cluster id: {existing_id}"
        )

    def _event_ids(self, record: ClusterRecord) -> tuple[str, str | None]:
        return record.id, None

    def _refusal(self, failed: TxnFailed, record: ClusterRecord) -> ApiError | None:
        if failed.code == ID_TAKEN and failed.actual == record.project_id:
            return Conflict("A cluster with this id already exists")
        if failed.code == PROJECT_GONE:
            return project_not_found()
        if failed.code in (ID_TAKEN, ID_RETIRED):
            # The same answer whoever holds or held the id: it tells no one that another
            # owner's cluster exists.
            return Conflict(
                "Cluster id is not available", "ids are never reused; omit id to have one assigned"
            )
        return None

    def _add_deletion_started(self, txn: Txn, record: ClusterRecord, forced: Forced | None) -> None:
        # The cascade job's pending work: kept in Redis, so a restart resumes it.
        txn.hset(self.names.deleting_clusters, {record.id: _deletion_json(forced)})

    def _add_purge(
        self, txn: Txn, record: ClusterRecord, now: datetime, forced: Forced | None
    ) -> None:
        # A nodepool created since the cluster was read must not outlive it.
        txn.expect_count(self.names.cluster_nodepools(record.id), 0, RV_CHANGED)
        super()._add_purge(txn, record, now, forced)

    # ---- reads -----------------------------------------------------------------------------
    async def list(
        self,
        caller: Caller,
        *,
        platform: str | None,
        phase: str | None,
        project_id: str | None = None,
        limit: int,
        offset: int,
    ) -> tuple[int, str]:
        """(total, the page's clusters as JSON documents joined with ","): of every project
        the caller belongs to, or of ``project_id`` only."""
        names = self.names

        def index_of(project: str) -> str:
            return names.cluster_index(project, platform or ANY, phase or ANY)

        projects = self._projects_of(caller, index_of, project_id)
        return await self.store.caller_page(self.kind, projects, offset, limit)

    # ---- writes ----------------------------------------------------------------------------
    async def create(
        self,
        caller: Caller,
        body: ClusterCreate,
        dry_run: bool,
        idempotency: IdempotentCreate | None = None,
    ) -> ClusterRecord | Replay:
        """Create a cluster in ``body.project_id`` (an editor's), or in the caller's personal
        project (created on first use) when it is not given."""
        project_id = body.project_id or caller.personal_project
        personal = project_id == caller.personal_project
        if personal and not dry_run:  # a dry run writes nothing, not even the project
            await self.projects.ensure_personal(caller)
        else:
            await self.access.require(caller, project_id, Role.EDITOR, project_not_found)
        now = utcnow()
        cluster_id = (body.id or new_id()).lower()
        required = self._required(body.spec.platform.type)
        fields = first_version(
            cluster_id, body, caller.email, project_id, now, idempotency, required
        )
        fields["doc"]["project_id"] = project_id
        record = ClusterRecord(**fields)
        names = self.names
        txn = Txn()
        if idempotency is not None:
            idempotency.guard(txn, self.kind, cluster_id)
        if not personal:  # a personal project is never deleted
            txn.expect_present(names.project(project_id), "rv", PROJECT_GONE)
        if body.id is not None:
            # A chosen id must never have been used: not by a live cluster, and not by a
            # deleted one, whose reports and events might still be in flight.
            txn.expect_field(names.record(self.kind, cluster_id), "project", None, ID_TAKEN)
            txn.expect_field(names.retired_cluster_ids, cluster_id, None, ID_RETIRED)
            txn.expect_field(names.tombstone(self.kind, cluster_id), "deleted_at", None, ID_RETIRED)
        else:
            txn.expect_field(names.record(self.kind, cluster_id), "rv", None, ID_TAKEN)
        record = self._add_create(txn, record, now)
        return await self._commit_create(txn, record, dry_run, idempotency)

    async def replace(
        self,
        caller: Caller,
        cluster_id: str,
        body: ClusterUpdate,
        preconditions: Preconditions,
        dry_run: bool,
    ) -> ClusterRecord:
        async def attempt() -> ClusterRecord:
            record, role = await self.get_with_role(caller, cluster_id, Role.EDITOR)
            return await self._replace(record, role, body, preconditions, dry_run, caller.email)

        return await self._write(cluster_id, attempt)

    async def delete(
        self,
        caller: Caller,
        cluster_id: str,
        preconditions: Preconditions,
        dry_run: bool,
        forced_reason: str | None = None,
    ) -> ClusterRecord:
        """Delete a cluster; the cluster as it is then (phase Deleting, or purged).

        Without force, a cluster with nodepools is refused (409, as the guide says); one
        without enters phase Deleting and the cascade job (``continue_deletion``) purges it once
        its required controllers confirm. ``forced_reason`` (a force) deletes its nodepools too
        (an admin's call) and purges the cluster and them without waiting for any controller.

        Everything is judged before anything is written: the caller's role, the preconditions,
        the cluster's deletion protection, and with force the nodepools' (``force`` overrides
        none). A dry run stops there. The nodepools are deleted by the cascade job in bounded
        batches, after the response: no request holds a transaction over thousands of them.
        """

        async def attempt() -> ClusterRecord:
            record = await self.get(caller, cluster_id, Role.EDITOR)
            preconditions.check(record.rv, record.generation, self.label)
            now = utcnow()
            forced = (
                None if forced_reason is None else Forced(caller.email, forced_reason, iso(now))
            )
            if record.deletion_timestamp is not None and forced is None:
                return record  # already being deleted: a second DELETE writes nothing
            if protected(record.doc["spec"]) and record.deletion_timestamp is None:
                raise self.deletion_protected(record)
            nodepool_ids = await self.store.cluster_nodepool_ids(cluster_id)
            if nodepool_ids and forced is None:
                raise self._has_nodepools(len(nodepool_ids))
            if nodepool_ids:
                await self.access.require(caller, record.project_id, Role.ADMIN, self.not_found)
                self._refuse_protected_nodepools(await self.store.get_nodepools(nodepool_ids))
            txn = Txn()
            # A nodepool created or deleted since they were read: judge again.
            count = len(nodepool_ids)
            txn.expect_count(self.names.cluster_nodepools(cluster_id), count, RV_CHANGED)
            if record.deletion_timestamp is not None:
                # A force on a deletion under way: purged now, or by the cascade without waiting.
                txn.expect_field(
                    self.names.record(self.kind, record.id), "rv", record.rv, RV_CHANGED
                )
                if nodepool_ids:
                    txn.hset(self.names.deleting_clusters, {record.id: _deletion_json(forced)})
                else:
                    self._add_purge(txn, record, now, forced)
                state = record
            else:
                reports = await self.store.controller_reports(self.kind, cluster_id)
                state, _ = self.add_delete(
                    txn, record, reports, now, caller.email, forced, may_purge=not nodepool_ids
                )
            await self._run(txn, state, dry_run)
            if forced is not None and not dry_run:
                deletion.log_forced(state, forced)
            return state

        return await self._write(cluster_id, attempt)

    async def continue_deletion(self, cluster_id: str, held: str) -> bool:
        """One step of a cluster's deletion (the cascade job's, as leader); True when it was a
        batch of nodepools (the next step may follow at once).

        A batch of at most ``deletion_batch_size`` of its nodepools goes through their own
        deletion (with the cluster's force, purged at once; without, into phase Deleting:
        their controllers then confirm each), each in its own guarded transaction that a
        status report does not fail (``add_delete``'s ``cascade``). Once no nodepool is left,
        the cluster is purged if forced or confirmed by its required controllers. Every step
        is idempotent: after a crash, the next leader starts again from what Redis holds."""
        forced = Forced.from_json(held)
        ((record, reports),) = _reads(
            await self.store.get_many_with_reports([("cluster", cluster_id)])
        )
        if record is None or not isinstance(record, ClusterRecord):
            txn = Txn().expect_field(
                self.names.record(self.kind, cluster_id), "rv", None, RV_CHANGED
            )
            await self.store.run_each([txn.hdel(self.names.deleting_clusters, cluster_id)])
            return False
        if record.deletion_timestamp is None:  # not ours to delete (a bug, or hand-written)
            await self.store.run_each([Txn().hdel(self.names.deleting_clusters, cluster_id)])
            return False
        batch = await self.store.cluster_nodepool_page(
            cluster_id, self.settings.deletion_batch_size
        )
        if batch:
            return await self._delete_nodepools(batch, forced) > 0
        if forced is None:
            required = self._required(record.platform)
            registry = self.settings.controller_registry
            counted = registry.counted(reports, self.kind, record.platform)
            controllers = [controller_of_json(orjson.loads(raw)) for raw in counted.values()]
            if not deletion_confirmed(record.generation, controllers, required):
                return False  # waits for its controllers (the timeout shows when it is late)
        txn = Txn().expect_field(
            self.names.record(self.kind, cluster_id), "rv", record.rv, RV_CHANGED
        )
        self._add_purge(txn, record, utcnow(), forced)
        (failed,) = await self.store.run_each([txn])
        if failed is None and forced is not None:
            deletion.log_forced(record, forced)
        return False  # purged, or raced (a report): the next step decides again

    async def _delete_nodepools(self, nodepool_ids: Sequence[str], forced: Forced | None) -> int:
        """A batch of a cluster's cascade: each nodepool in its own transaction; one that a
        report raced stays for the next step."""
        now = utcnow()
        reads = _reads(
            await self.store.get_many_with_reports([("nodepool", i) for i in nodepool_ids])
        )
        txns: list[Txn] = []
        for nodepool, reports in reads:
            if not isinstance(nodepool, NodePoolRecord):
                continue
            if nodepool.deletion_timestamp is not None and forced is None:
                continue  # already Deleting: its controllers' confirmations purge it
            if protected(nodepool.doc["spec"]) and nodepool.deletion_timestamp is None:
                log.warning(
                    "cluster deletion: nodepool %s is protected; left in place",
                    nodepool.id,
                    extra={"cluster_id": nodepool.cluster_id, "nodepool_id": nodepool.id},
                )
                continue
            txn = Txn()
            actor = CASCADE_ACTOR if forced is None else forced.by
            self.nodepools.add_delete(txn, nodepool, reports, now, actor, forced, cascade=True)
            txns.append(txn)
        await self.store.run_each(txns)
        return len(txns)

    async def transfer(
        self,
        caller: Caller,
        cluster_id: str,
        target: str,
        preconditions: Preconditions,
        dry_run: bool = False,
    ) -> ClusterRecord:
        """Move a cluster and all its nodepools to project ``target`` (the caller must be an
        admin of both), in one guarded transaction: every nodepool moves, or none does. A dry
        run judges it all and moves nothing."""

        async def attempt() -> ClusterRecord:
            record = await self.get(caller, cluster_id, Role.ADMIN)
            preconditions.check(record.rv, record.generation, self.label)
            self.refuse_if_deleting(record)
            if target == record.project_id:
                return record
            await self.access.require(caller, target, Role.ADMIN, project_not_found)
            if target == caller.personal_project:
                await self.projects.ensure_personal(caller)  # first use, as a create's
            nodepools = await self.store.get_nodepools(
                await self.store.cluster_nodepool_ids(cluster_id)
            )
            moved, txn = self._transfer_txn(record, nodepools, target)
            now = utcnow()
            names = self.names
            record_operation(
                txn,
                names,
                record.project_id,
                "cluster.transferred_out",
                caller.email,
                now,
                target=cluster_id,
                detail=f"to project {target}",
            )
            record_operation(
                txn,
                names,
                target,
                "cluster.transferred_in",
                caller.email,
                now,
                target=cluster_id,
                detail=f"from project {record.project_id}",
            )
            await self._run(txn, moved, dry_run)
            return moved

        return await self._write(cluster_id, attempt)

    def _transfer_txn(
        self, record: ClusterRecord, nodepools: Sequence[NodePoolRecord], target: str
    ) -> tuple[ClusterRecord, Txn]:
        """The cluster in ``target``, and the transaction that moves it there with its
        nodepools: each record with a new resource_version (a status write that read the old
        project must not index it there), its indexes, and the cluster's name."""
        names = self.names
        now = utcnow()
        doc: StoredDoc = {**record.doc, "project_id": target, "updated_at": iso(now)}
        moved = record.with_changes(project_id=target, doc=doc, rv=new_resource_version())
        txn = Txn()
        txn.expect_field(names.record(self.kind, record.id), "rv", record.rv, RV_CHANGED)
        txn.expect_present(names.project(target), "rv", PROJECT_GONE)
        # A nodepool created or deleted since they were read: read them again.
        txn.expect_count(names.cluster_nodepools(record.id), len(nodepools), RV_CHANGED)
        quota_key, quota = self._quota(moved)
        txn.expect_field(self._names_key(moved), record.name, None, NAME_TAKEN)
        txn.expect_count_below(quota_key, quota, QUOTA)
        txn.hdel(self._names_key(record), record.name)
        txn.hset(self._names_key(moved), {record.name: record.id})
        moved.put(txn, names)
        txn.move_in_indexes(
            record.index_keys(names), moved.index_keys(names), record.seq, record.id
        )
        for nodepool in nodepools:
            txn.expect_field(names.record("nodepool", nodepool.id), "rv", nodepool.rv, RV_CHANGED)
            there = nodepool.with_changes(project_id=target, rv=new_resource_version())
            there.put(txn, names)
            txn.move_in_indexes(
                nodepool.index_keys(names), there.index_keys(names), nodepool.seq, nodepool.id
            )
        return moved, txn

    async def _replace(
        self,
        record: ClusterRecord,
        role: Role,
        body: ClusterUpdate,
        preconditions: Preconditions,
        dry_run: bool,
        actor: str,
    ) -> ClusterRecord:
        preconditions.check(record.rv, record.generation, self.label)
        self.refuse_if_deleting(record)
        old_platform = record.doc["spec"]["platform"]
        if body.spec.platform.type != old_platform["type"]:
            raise ValidationFailed.of("spec.platform.type", "spec.platform.type is immutable")
        if body.spec.platform.region != _region_of(old_platform):
            raise ValidationFailed.of(
                f"spec.platform.{old_platform['type']}",
                f"spec.platform.{old_platform['type']}: the region (location) is immutable",
            )
        spec = body.spec.model_dump(mode="json", exclude_none=True)
        return await self._replaced(record, spec, body.name, dry_run, role=role, actor=actor)

    @staticmethod
    def _refuse_protected_nodepools(nodepools: Sequence[NodePoolRecord]) -> None:
        """A forced delete deletes no nodepool while any of the cluster's is protected."""
        guarded = [n for n in nodepools if protected(n.doc["spec"])]
        if not guarded:
            return
        shown = ", ".join(f"'{n.name}' ({n.id})" for n in guarded[:PROTECTED_NAMED])
        more = len(guarded) - PROTECTED_NAMED
        if more > 0:
            shown += f" and {more} more"
        raise DeletionProtected(
            f"Cluster has {len(guarded)} nodepool(s) protected against deletion",
            f"nodepool(s) {shown}: spec.{DELETION_PROTECTION} is true (force does not override "
            "it); nothing was deleted",
        )

    @staticmethod
    def _has_nodepools(count: int) -> Conflict:
        return Conflict(
            "Cluster still has nodepools",
            f"{count} nodepool(s) exist; delete them first or use ?force=true",
        )


def _deletion_json(forced: Forced | None) -> str:
    return "{}" if forced is None else forced.as_json()


def _reads(
    reads: Sequence[tuple[NodePoolRecord | ClusterRecord | None, dict[str, str]] | Exception],
) -> list[tuple[NodePoolRecord | ClusterRecord | None, dict[str, str]]]:
    """The reads of a job's step; an error reply fails the step (the next one tries again)."""
    for read in reads:
        if isinstance(read, Exception):
            raise read
    return [read for read in reads if not isinstance(read, Exception)]


def _region_of(platform: dict[str, Any]) -> str:
    block = platform[platform["type"]]
    return str(block.get("region") or block.get("location"))
