"""Nodepool rules: what a nodepool adds to the shared resource rules (its cluster, its patch)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cls_core.errors import (
    ApiError,
    ClusterDeleting,
    Conflict,
    NotFound,
    QuotaExceeded,
    ValidationFailed,
)
from cls_core.services import deletion
from cls_core.services.access import Caller
from cls_core.services.cluster_snapshots import ClusterSnapshots
from cls_core.services.common import (
    RV_CHANGED,
    Preconditions,
    iso,
    new_id,
    retry_on_race,
    utcnow,
)
from cls_core.services.deletion import Forced
from cls_core.services.idempotency import IdempotentCreate, Replay
from cls_core.services.merge_patch import merge_patch
from cls_core.services.reconcile_schedule import is_ready
from cls_core.services.resources import (
    Lifecycle,
    ResourceService,
    first_version,
    for_controllers,
)
from cls_core.services.validation import field_errors, validate_nodepool_against_cluster
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, Txn, TxnFailed
from cls_core.store.records import DELETING
from cls_runtime.settings import Settings
from shared_models.names import ANY
from shared_models.projects import Role
from shared_models.resources import NodePoolCreate, NodePoolUpdate

CLUSTER_GONE = "cluster_gone"
CLUSTER_CHANGED = "cluster_changed"
CLUSTER_DELETING = "cluster_deleting"


def cluster_not_found() -> NotFound:
    return NotFound("Cluster not found")


def cluster_deleting(cluster: ClusterRecord) -> ClusterDeleting:
    return ClusterDeleting(
        f"Cluster '{cluster.name}' is being deleted",
        f"its deletion started at {cluster.deletion_timestamp}; its nodepools are being "
        "deleted with it, and none can be created or changed in it any more",
    )


class NodePoolService(ResourceService[NodePoolRecord]):
    kind = "nodepool"
    label = "NodePool"
    events = Lifecycle("nodepool.created", "nodepool.updated", "nodepool.deleted")

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        super().__init__(store, settings)
        self._clusters = ClusterSnapshots()

    # ---- what a nodepool is ----------------------------------------------------------------
    async def _read(self, resource_id: str) -> NodePoolRecord | None:
        return await self.store.get_nodepool(resource_id)

    def _names_key(self, record: NodePoolRecord) -> str:
        return self.names.nodepool_names(record.cluster_id)

    def _quota(self, record: NodePoolRecord) -> tuple[str, int]:
        return (
            self.names.cluster_nodepools(record.cluster_id),
            self.settings.max_nodepools_per_cluster,
        )

    def _quota_exceeded(self, count: str) -> QuotaExceeded:
        return QuotaExceeded(
            "Quota exceeded: at most "
            f"{self.settings.max_nodepools_per_cluster} nodepools per cluster",
            f"the cluster has {count} nodepools; delete one to create another",
        )

    def _name_taken(self, name: str, existing_id: str) -> Conflict:
        return Conflict(
            f"NodePool with name '{name}' already exists in cluster",
            f"existing nodepool id: {existing_id}",
        )

    def _event_ids(self, record: NodePoolRecord) -> tuple[str, str | None]:
        return record.cluster_id, record.id

    def _refusal(self, failed: TxnFailed, record: NodePoolRecord) -> ApiError | None:
        # CLUSTER_GONE with a project: the cluster moved (a transfer), not gone; see create.
        gone = failed.code == CLUSTER_GONE and failed.actual == ""
        if failed.code == CLUSTER_DELETING:
            return ClusterDeleting(
                "Cluster is being deleted",
                "no nodepool can be created in a cluster whose deletion has started",
            )
        return cluster_not_found() if gone else None

    def _add_created(self, txn: Txn, record: NodePoolRecord) -> None:
        txn.zadd(self.names.cluster_nodepools(record.cluster_id), record.seq, record.id)
        self._schedule_reconcile(txn, record)

    def _add_spec_changed(self, txn: Txn, record: NodePoolRecord) -> None:
        self._schedule_reconcile(txn, record)

    def _schedule_reconcile(self, txn: Txn, record: NodePoolRecord) -> None:
        """Due for a reconcile event if it has not converged by then."""
        ready = is_ready(record.status, record.generation)
        self._schedule.schedule(txn, self.kind, record.id, ready, utcnow().timestamp())

    # ---- reads -----------------------------------------------------------------------------
    async def cluster_for(
        self, caller: Caller, cluster_id: str, needed: Role = Role.VIEWER
    ) -> ClusterRecord:
        """A cluster, if the caller's role in its project allows ``needed``."""
        cluster = await self.store.get_cluster(cluster_id)
        if cluster is None:
            raise cluster_not_found()
        await self.access.require(caller, cluster.project_id, needed, cluster_not_found)
        return cluster

    async def list(
        self,
        caller: Caller,
        *,
        cluster_id: str | None,
        phase: str | None,
        health: str | None,
        project_id: str | None = None,
        limit: int,
        offset: int,
    ) -> tuple[int, str]:
        """(total, the page's nodepools as JSON documents joined with ","): of every project
        the caller belongs to, or of ``project_id`` only."""
        names = self.names

        def index_of(project: str) -> str:
            return names.nodepool_index(project, cluster_id or ANY, phase or ANY, health or ANY)

        projects = self._projects_of(caller, index_of, project_id)
        return await self.store.caller_page(self.kind, projects, offset, limit)

    # ---- writes ----------------------------------------------------------------------------
    async def create(
        self,
        caller: Caller,
        body: NodePoolCreate,
        path_cluster_id: str | None,
        dry_run: bool,
        idempotency: IdempotentCreate | None = None,
    ) -> NodePoolRecord | Replay:
        """Create a nodepool in a cluster of a project where the caller is an editor."""
        cluster_id = self._target_cluster(body.cluster_id, path_cluster_id)
        snapshot = self._clusters.get(cluster_id)
        if snapshot is not None and await self.access.allows(
            caller, snapshot.project_id, Role.EDITOR
        ):
            try:
                return await self._create(caller, body, snapshot, dry_run, idempotency)
            except ValidationFailed:
                pass  # perhaps only by an outdated snapshot: the fresh read below decides
            except TxnFailed as failed:
                if failed.code != CLUSTER_CHANGED:
                    raise
            self._clusters.forget(cluster_id)

        async def fresh() -> NodePoolRecord | Replay:
            cluster = await self.cluster_for(caller, cluster_id, Role.EDITOR)
            self._clusters.keep(cluster)
            try:
                return await self._create(
                    caller, body, cluster, dry_run, idempotency, snapshot=False
                )
            except TxnFailed as failed:
                if failed.code != CLUSTER_GONE:
                    raise
                # The cluster moved to another project since it was read: read it again (the
                # caller's role there decides).
                self._clusters.forget(cluster_id)
                raise TxnFailed(RV_CHANGED, failed.actual) from failed

        return await retry_on_race(fresh, self.label)

    async def _create(
        self,
        caller: Caller,
        body: NodePoolCreate,
        cluster: ClusterRecord,
        dry_run: bool,
        idempotency: IdempotentCreate | None,
        *,
        snapshot: bool = True,
    ) -> NodePoolRecord | Replay:
        """One attempt at a create, validated against ``cluster``. A ``snapshot`` (a cluster
        read by an earlier request) must still be current when the create commits; a cluster
        just read only has to still exist in the same project, as any write checks (and not
        be being deleted)."""
        if cluster.deletion_timestamp is not None:
            raise cluster_deleting(cluster)
        validate_nodepool_against_cluster(body.spec, cluster)
        now = utcnow()
        nodepool_id = new_id()
        required = self._required(body.spec.platform.type)
        fields = first_version(
            nodepool_id, body, caller.email, cluster.project_id, now, idempotency, required
        )
        fields["doc"]["cluster_id"] = cluster.id
        record = NodePoolRecord(**fields, cluster_id=cluster.id)
        txn = Txn()
        if idempotency is not None:
            idempotency.guard(txn, self.kind, nodepool_id)
        cluster_key = self.names.record("cluster", cluster.id)
        if snapshot:
            txn.expect_field(cluster_key, "rv", cluster.rv, CLUSTER_CHANGED)
        else:
            txn.expect_field(cluster_key, "project", cluster.project_id, CLUSTER_GONE)
            txn.expect_field(cluster_key, DELETING, None, CLUSTER_DELETING)
        record = self._add_create(txn, record, now)
        return await self._commit_create(txn, record, dry_run, idempotency)

    async def replace(
        self,
        caller: Caller,
        nodepool_id: str,
        body: NodePoolUpdate,
        preconditions: Preconditions,
        dry_run: bool,
    ) -> NodePoolRecord:
        async def attempt() -> NodePoolRecord:
            record, role, reports, cluster = await self._owned_for_write(caller, nodepool_id)
            return await self._replace(
                record, role, reports, cluster, body, preconditions, dry_run, caller.email
            )

        return await self._write(nodepool_id, attempt)

    async def patch(
        self,
        caller: Caller,
        nodepool_id: str,
        patch: Any,
        preconditions: Preconditions,
        dry_run: bool,
    ) -> NodePoolRecord:
        if not isinstance(patch, dict):
            raise ValidationFailed.of("body", "a merge patch must be a JSON object")

        async def attempt() -> NodePoolRecord:
            record, role, reports, cluster = await self._owned_for_write(caller, nodepool_id)
            current = {"name": record.name, "spec": record.doc["spec"]}
            merged = merge_patch(current, patch)
            if merged.get("name") is None:  # PUT may omit the name; a patch cannot remove it
                raise ValidationFailed.of("name", "name cannot be removed")
            try:
                body = NodePoolUpdate.model_validate(merged)
            except ValidationError as exc:
                fields = field_errors(exc, prefix="")
                raise ValidationFailed(fields, total=exc.error_count()) from exc
            return await self._replace(
                record, role, reports, cluster, body, preconditions, dry_run, caller.email
            )

        return await self._write(nodepool_id, attempt)

    async def delete(
        self,
        caller: Caller,
        nodepool_id: str,
        preconditions: Preconditions,
        dry_run: bool,
        forced_reason: str | None = None,
    ) -> str | None:
        """Delete a nodepool: it enters phase Deleting until its controllers confirm (see
        ``ResourceService.add_delete``); ``forced_reason`` (a force) purges it at once, and
        the tombstone records the caller and the reason. A dry run judges everything a real one
        would and writes nothing (its deletion protection included). The id of the operation
        it started (None for a dry run, or a second DELETE of a Deleting nodepool)."""

        async def attempt() -> str | None:
            record, reports = await self.store.get_nodepool_with_reports(nodepool_id)
            if record is None:
                raise self.not_found()
            await self.access.require(caller, record.project_id, Role.EDITOR, self.not_found)
            preconditions.check(record.rv, record.generation, self.label)
            now = utcnow()
            forced = (
                None if forced_reason is None else Forced(caller.email, forced_reason, iso(now))
            )
            if record.deletion_timestamp is not None and forced is None:
                return None  # already being deleted: nothing more to write, no second event
            txn = Txn()
            state, purged = self.add_delete(txn, record, reports, now, caller.email, forced)
            await self._run(txn, state, dry_run)
            if forced is not None and purged and not dry_run:
                deletion.log_forced(state, forced)
            return None if dry_run else state.started_op

        return await self._write(nodepool_id, attempt)

    # ---- internals -------------------------------------------------------------------------
    async def _owned_for_write(
        self, caller: Caller, nodepool_id: str
    ) -> tuple[NodePoolRecord, Role, dict[str, str], ClusterRecord]:
        """The nodepool, the caller's role, and its controllers' reports (for a new aggregate),
        in one round trip, and its cluster (for the rules that depend on it): the snapshot an
        earlier request took, read only when there is none. The write commits only if it is
        still current."""
        record, reports = await self.store.get_nodepool_with_reports(nodepool_id)
        if record is None:
            raise self.not_found()
        role = await self.access.require(caller, record.project_id, Role.EDITOR, self.not_found)
        cluster = self._clusters.get(record.cluster_id)
        if cluster is None:
            cluster = await self.store.get_cluster(record.cluster_id)
            if cluster is None:
                raise self.not_found()
            self._clusters.keep(cluster)
        return record, role, reports, cluster

    async def _replace(
        self,
        record: NodePoolRecord,
        role: Role,
        reports: dict[str, str],
        cluster: ClusterRecord,
        body: NodePoolUpdate,
        preconditions: Preconditions,
        dry_run: bool,
        actor: str,
    ) -> NodePoolRecord:
        if body.cluster_id is not None and body.cluster_id != record.cluster_id:
            raise ValidationFailed.of("cluster_id", "cluster_id cannot be changed")
        preconditions.check(record.rv, record.generation, self.label)
        self.refuse_if_deleting(record)
        spec = body.spec.model_dump(mode="json", exclude_none=True)
        if cluster.deletion_timestamp is not None:
            # Only its deletion protection may still change (an admin lifting it lets the
            # cluster's cascade delete it).
            renamed = body.name is not None and body.name != record.name
            if renamed or for_controllers(spec) != for_controllers(record.doc["spec"]):
                raise cluster_deleting(cluster)
        validate_nodepool_against_cluster(body.spec, cluster)
        cluster_key = self.names.record("cluster", cluster.id)
        txn = Txn().expect_field(cluster_key, "rv", cluster.rv, CLUSTER_CHANGED)
        try:
            return await self._replaced(
                record, spec, body.name, dry_run, reports, txn, role=role, actor=actor
            )
        except TxnFailed as failed:
            if failed.code != CLUSTER_CHANGED:
                raise
            self._clusters.forget(cluster.id)
            # Decide again on a fresh read, as after any other write that got there first.
            raise TxnFailed(RV_CHANGED, failed.actual) from failed

    @staticmethod
    def _target_cluster(body_cluster_id: str | None, path_cluster_id: str | None) -> str:
        if path_cluster_id is not None:
            if body_cluster_id is not None and body_cluster_id != path_cluster_id:
                raise ValidationFailed.of(
                    "cluster_id", "cluster_id in the body does not match the cluster in the path"
                )
            return path_cluster_id
        if body_cluster_id is None:
            raise ValidationFailed.of("cluster_id", "nodepool cluster_id is required")
        return body_cluster_id


__all__ = ["NodePoolService", "field_errors"]
