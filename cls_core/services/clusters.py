"""Cluster rules: what a cluster adds to the shared resource rules (chosen ids, the cascade)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cls_core.errors import (
    ApiError,
    Conflict,
    DeletionProtected,
    QuotaExceeded,
    Unavailable,
    ValidationFailed,
)
from cls_core.services.access import Caller
from cls_core.services.common import (
    RV_CHANGED,
    WRITE_RETRY_SECONDS,
    Preconditions,
    iso,
    new_id,
    new_resource_version,
    utcnow,
)
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
from shared_models.names import ANY
from shared_models.projects import Role
from shared_models.resources import ClusterCreate, ClusterUpdate
from shared_models.specs import DELETION_PROTECTION

ID_TAKEN = "id_taken"
ID_RETIRED = "id_retired"
NODEPOOLS_LEFT = "nodepools_left"
PROJECT_GONE = "project_gone"
# How many nodepools a forced delete removes per round trip.
CASCADE_BATCH = 100
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

    def _add_deleted(self, txn: Txn, record: ClusterRecord, now: datetime) -> None:
        txn.hset(self.names.retired_cluster_ids, {record.id: iso(now)})

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
        force: bool,
        dry_run: bool,
    ) -> ClusterRecord:
        """Delete a cluster (with ``force``, its nodepools first); the cluster as it was.

        Everything is judged before anything is written: the caller's role (an editor's; an
        admin's to force the deletion of nodepools), the preconditions, the cluster's deletion
        protection, nodepools left without ``force``, and with ``force`` the nodepools'
        deletion protection (``force`` overrides none). A dry run stops there. Once the
        nodepools are being deleted, the cascade finishes whatever the controllers keep
        reporting meanwhile.
        """
        record = await self.get(caller, cluster_id, Role.EDITOR)
        preconditions.check(record.rv, record.generation, self.label)
        if protected(record.doc["spec"]):
            raise self.deletion_protected(record)
        nodepool_ids = await self.store.cluster_nodepool_ids(cluster_id)
        if nodepool_ids and not force:
            raise self._has_nodepools(len(nodepool_ids))
        if nodepool_ids:
            await self.access.require(caller, record.project_id, Role.ADMIN, self.not_found)
            self._refuse_protected_nodepools(await self.store.get_nodepools(nodepool_ids))
        if dry_run:
            return record
        async with self._writing.hold(cluster_id):
            return await self._delete_with_nodepools(caller, cluster_id, force)

    async def _delete_with_nodepools(
        self, caller: Caller, cluster_id: str, force: bool
    ) -> ClusterRecord:
        """With ``force``, delete the nodepools in batches, each nodepool in its own guarded
        transaction (one that a status report raced is read again); then the cluster, in a
        transaction that checks it has no nodepool left (one may have been created meanwhile)."""
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        while True:
            nodepool_ids = await self.store.cluster_nodepool_ids(cluster_id)
            if nodepool_ids and not force:
                raise self._has_nodepools(len(nodepool_ids))
            for start in range(0, len(nodepool_ids), CASCADE_BATCH):
                batch = nodepool_ids[start : start + CASCADE_BATCH]
                await self._delete_nodepools(batch, caller.email)
            record = await self.get(caller, cluster_id, Role.EDITOR)
            txn = Txn()
            txn.expect_count(self.names.cluster_nodepools(cluster_id), 0, NODEPOOLS_LEFT)
            operation_id = self.add_delete(txn, record, utcnow(), caller.email)
            try:
                await self.store.run(txn)
                return record.with_operation(record.ops, record.op_run, operation_id)
            except TxnFailed as failed:
                if failed.code not in (RV_CHANGED, NODEPOOLS_LEFT):
                    raise
            if time.monotonic() >= deadline:
                raise Unavailable(
                    "Cluster is being changed by too many writers at once; retry shortly",
                    "nodepools deleted so far stay deleted",
                    retry_after=1,
                )

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

    async def _delete_nodepools(self, nodepool_ids: Sequence[str], actor: str) -> None:
        now = utcnow()
        nodepools = await self.store.get_nodepools([*nodepool_ids])
        # One protected since the delete was judged stops the cascade before this batch (each
        # transaction also expects the resource_version its nodepool was read at).
        self._refuse_protected_nodepools(nodepools)
        txns = [Txn() for _ in nodepools]
        for txn, nodepool in zip(txns, nodepools, strict=True):
            self.nodepools.add_delete(txn, nodepool, now, actor)
        await self.store.run_each(txns)  # a raced one is still there: the next round gets it

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


def _region_of(platform: dict[str, Any]) -> str:
    block = platform[platform["type"]]
    return str(block.get("region") or block.get("location"))
