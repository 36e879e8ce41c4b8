"""Nodepool rules: create, read, list, replace, merge-patch and delete, each one guarded write."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cls_core.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed
from cls_core.services.cluster_snapshots import ClusterSnapshots
from cls_core.services.common import (
    RV_CHANGED,
    KeyedLocks,
    Preconditions,
    append_event,
    build_event,
    creation_score,
    iso,
    new_id,
    new_resource_version,
    retry_on_race,
    status_document,
    utcnow,
)
from cls_core.services.idempotency import (
    IdempotentCreate,
    Replay,
    commit_create,
    delete_key_with,
)
from cls_core.services.merge_patch import merge_patch
from cls_core.services.reconcile_schedule import ReconcileSchedule, is_ready, member
from cls_core.services.validation import field_errors, validate_nodepool_against_cluster
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, Txn, TxnFailed
from cls_runtime.settings import Settings
from shared_models.aggregation import aggregate_stored
from shared_models.names import ANY
from shared_models.resources import NodePoolCreate, NodePoolUpdate

NAME_TAKEN = "name_taken"
CLUSTER_GONE = "cluster_gone"
CLUSTER_CHANGED = "cluster_changed"
QUOTA = "nodepool_quota"


def cluster_not_found() -> NotFound:
    return NotFound("Cluster not found")


def nodepool_not_found() -> NotFound:
    return NotFound("NodePool not found")


def name_conflict(name: str, existing_id: str) -> Conflict:
    return Conflict(
        f"NodePool with name '{name}' already exists in cluster",
        f"existing nodepool id: {existing_id}",
    )


class NodePoolService:
    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store = store
        self.names = store.names
        self.settings = settings
        self._clusters = ClusterSnapshots()
        self._writing = KeyedLocks()
        self._schedule = ReconcileSchedule(store.names, settings)

    # ---- reads -----------------------------------------------------------------------------
    async def get(self, owner: str, nodepool_id: str) -> NodePoolRecord:
        record = await self.store.get_nodepool(nodepool_id)
        if record is None or record.owner != owner:
            raise nodepool_not_found()
        return record

    async def get_view(self, owner: str, nodepool_id: str) -> tuple[str, str]:
        """(resource_version, the nodepool as JSON) for a GET: no parsing, no re-serialising."""
        found = await self.store.get_view("nodepool", nodepool_id)
        if found is None or found[0] != owner:
            raise nodepool_not_found()
        return found[1], found[2]

    async def owned_cluster(self, owner: str, cluster_id: str) -> ClusterRecord:
        cluster = await self.store.get_cluster(cluster_id)
        if cluster is None or cluster.owner != owner:
            raise cluster_not_found()
        return cluster

    async def list(
        self,
        owner: str,
        *,
        cluster_id: str | None,
        phase: str | None,
        health: str | None,
        limit: int,
        offset: int,
    ) -> tuple[int, str]:
        """(total, the page's nodepools as JSON documents joined with ",")."""
        index = self.names.nodepool_index(owner, cluster_id or ANY, phase or ANY, health or ANY)
        return await self.store.list_page("nodepool", index, offset, limit)

    async def status_view(self, owner: str, nodepool_id: str) -> dict[str, Any]:
        record = await self.get(owner, nodepool_id)
        reports = await self.store.controller_reports("nodepool", nodepool_id)
        return status_document(
            "nodepool_id", nodepool_id, record.generation, record.status, reports
        )

    # ---- writes ----------------------------------------------------------------------------
    async def create(
        self,
        owner: str,
        body: NodePoolCreate,
        path_cluster_id: str | None,
        dry_run: bool,
        idempotency: IdempotentCreate | None = None,
    ) -> NodePoolRecord | Replay:
        cluster_id = self._target_cluster(body.cluster_id, path_cluster_id)
        snapshot = self._clusters.get(cluster_id)
        if snapshot is not None and snapshot.owner == owner:
            try:
                return await self._create(owner, body, snapshot, dry_run, idempotency)
            except ValidationFailed:
                pass  # perhaps only by an outdated snapshot: the fresh read below decides
            except TxnFailed as failed:
                if failed.code != CLUSTER_CHANGED:
                    raise
            self._clusters.forget(cluster_id)
        cluster = await self.owned_cluster(owner, cluster_id)
        self._clusters.keep(cluster)
        return await self._create(owner, body, cluster, dry_run, idempotency, snapshot=False)

    async def _create(
        self,
        owner: str,
        body: NodePoolCreate,
        cluster: ClusterRecord,
        dry_run: bool,
        idempotency: IdempotentCreate | None,
        *,
        snapshot: bool = True,
    ) -> NodePoolRecord | Replay:
        """One attempt at a create, validated against ``cluster``. A ``snapshot`` (a cluster
        read by an earlier request) must still be current when the create commits; a cluster
        just read only has to still exist and be the owner's, as any write checks."""
        cluster_id = cluster.id
        validate_nodepool_against_cluster(body.spec, cluster)
        now = utcnow()
        nodepool_id = new_id()
        status = aggregate_stored(1, {}, None, now)
        record = NodePoolRecord(
            id=nodepool_id,
            doc={
                "id": nodepool_id,
                "name": body.name,
                "cluster_id": cluster_id,
                "generation": 1,
                "spec": body.spec.model_dump(mode="json", exclude_none=True),
                "created_at": iso(now),
                "updated_at": iso(now),
                "created_by": owner,
            },
            rv=new_resource_version(),
            generation=1,
            status=status,
            owner=owner,
            name=body.name,
            platform=body.spec.platform.type,
            seq=creation_score(),
            cluster_id=cluster_id,
            idem_key=None if idempotency is None else idempotency.client_key,
        )
        txn = Txn()
        if idempotency is not None:
            idempotency.guard(txn, "nodepool", nodepool_id)
        cluster_key = self.names.record("cluster", cluster_id)
        if snapshot:
            txn.expect_field(cluster_key, "rv", cluster.rv, CLUSTER_CHANGED)
        else:
            txn.expect_field(cluster_key, "owner", owner, CLUSTER_GONE)
        txn.expect_field(self.names.nodepool_names(cluster_id), body.name, None, NAME_TAKEN)
        # Counted in the transaction, so concurrent creates cannot pass the quota together.
        quota = self.settings.max_nodepools_per_cluster
        txn.expect_count_below(self.names.cluster_nodepools(cluster_id), quota, QUOTA)
        txn.hset(self.names.record("nodepool", nodepool_id), record.to_hash())
        txn.hset(self.names.nodepool_names(cluster_id), {body.name: nodepool_id})
        txn.move_in_indexes(set(), record.index_keys(self.names), record.seq, nodepool_id)
        txn.zadd(self.names.cluster_nodepools(cluster_id), record.seq, nodepool_id)
        self._schedule_reconcile(txn, nodepool_id, status, record.generation)
        self._emit(txn, "nodepool.created", record, record.generation, now)
        replay = await commit_create(
            self.store, lambda: self._run(txn, body.name, dry_run), idempotency
        )
        return replay or record

    async def replace(
        self,
        owner: str,
        nodepool_id: str,
        body: NodePoolUpdate,
        preconditions: Preconditions,
        dry_run: bool,
    ) -> NodePoolRecord:
        async def attempt() -> NodePoolRecord:
            record, reports, cluster = await self._owned_for_write(owner, nodepool_id)
            return await self._replace(record, reports, cluster, body, preconditions, dry_run)

        async with self._writing.hold(nodepool_id):
            return await retry_on_race(attempt, "NodePool")

    async def patch(
        self,
        owner: str,
        nodepool_id: str,
        patch: Any,
        preconditions: Preconditions,
        dry_run: bool,
    ) -> NodePoolRecord:
        if not isinstance(patch, dict):
            raise ValidationFailed.of("body", "a merge patch must be a JSON object")

        async def attempt() -> NodePoolRecord:
            record, reports, cluster = await self._owned_for_write(owner, nodepool_id)
            current = {"name": record.name, "spec": record.doc["spec"]}
            merged = merge_patch(current, patch)
            if merged.get("name") is None:  # PUT may omit the name; a patch cannot remove it
                raise ValidationFailed.of("name", "name cannot be removed")
            try:
                body = NodePoolUpdate.model_validate(merged)
            except ValidationError as exc:
                fields = field_errors(exc, prefix="")
                raise ValidationFailed(fields, total=exc.error_count()) from exc
            return await self._replace(record, reports, cluster, body, preconditions, dry_run)

        async with self._writing.hold(nodepool_id):
            return await retry_on_race(attempt, "NodePool")

    async def delete(
        self, owner: str, nodepool_id: str, preconditions: Preconditions, dry_run: bool
    ) -> None:
        """Delete a nodepool; a dry run judges everything a real one would and writes nothing."""

        async def attempt() -> None:
            record = await self.get(owner, nodepool_id)
            preconditions.check(record.rv, record.generation, "NodePool")
            txn = Txn()
            self.add_delete(txn, record, utcnow())
            await self.store.run(txn, dry_run=dry_run)

        async with self._writing.hold(nodepool_id):
            await retry_on_race(attempt, "NodePool")

    def add_delete(self, txn: Txn, record: NodePoolRecord, now: Any) -> None:
        """Everything that removing one nodepool writes; shared with the cluster cascade."""
        names = self.names
        txn.expect_field(names.record("nodepool", record.id), "rv", record.rv, RV_CHANGED)
        txn.delete(names.record("nodepool", record.id))
        txn.delete(names.controller_reports("nodepool", record.id))
        txn.move_in_indexes(record.index_keys(names), set(), record.seq, record.id)
        txn.hdel(names.nodepool_names(record.cluster_id), record.name)
        txn.zrem(names.cluster_nodepools(record.cluster_id), record.id)
        self._schedule.forget(txn, member("nodepool", record.id))
        delete_key_with(txn, names, record.owner, record.idem_key, record.id)
        # Deletion is a change of desired state: it gets the next generation, so consumers that
        # ignore generations they have already handled still act on it.
        self._emit(txn, "nodepool.deleted", record, record.generation + 1, now)

    # ---- internals -------------------------------------------------------------------------
    async def _owned_for_write(
        self, owner: str, nodepool_id: str
    ) -> tuple[NodePoolRecord, dict[str, str], ClusterRecord]:
        """The nodepool, its controllers' reports (for a new aggregate) and its cluster (for the
        rules that depend on it), in one round trip."""
        record, reports, cluster = await self.store.get_nodepool_for_write(nodepool_id)
        if record is None or record.owner != owner or cluster is None:
            raise nodepool_not_found()
        return record, reports, cluster

    async def _replace(
        self,
        record: NodePoolRecord,
        reports: dict[str, str],
        cluster: ClusterRecord,
        body: NodePoolUpdate,
        preconditions: Preconditions,
        dry_run: bool,
    ) -> NodePoolRecord:
        if body.cluster_id is not None and body.cluster_id != record.cluster_id:
            raise ValidationFailed.of("cluster_id", "cluster_id cannot be changed")
        preconditions.check(record.rv, record.generation, "NodePool")
        validate_nodepool_against_cluster(body.spec, cluster)
        new_spec = body.spec.model_dump(mode="json", exclude_none=True)
        spec_changed = new_spec != record.doc["spec"]
        name = record.name if body.name is None else body.name  # no name: unchanged
        renamed = name != record.name
        if not spec_changed and not renamed:
            return record  # an identical PUT changes nothing, not even resource_version
        now = utcnow()
        generation = record.generation + 1 if spec_changed else record.generation
        status = record.status
        if spec_changed:
            status = aggregate_stored(generation, reports, record.status, now)
        doc = {
            **record.doc,
            "name": name,
            "generation": generation,
            "spec": new_spec,
            "updated_at": iso(now),
        }
        updated = record.with_changes(
            doc=doc,
            rv=new_resource_version(),
            generation=generation,
            status=status,
            name=name,
        )
        names = self.names
        txn = Txn()
        txn.expect_field(names.record("nodepool", record.id), "rv", record.rv, RV_CHANGED)
        if renamed:
            txn.expect_field(names.nodepool_names(record.cluster_id), name, None, NAME_TAKEN)
            txn.hdel(names.nodepool_names(record.cluster_id), record.name)
            txn.hset(names.nodepool_names(record.cluster_id), {name: record.id})
        txn.hset(names.record("nodepool", record.id), updated.to_hash())
        txn.move_in_indexes(
            record.index_keys(names), updated.index_keys(names), record.seq, record.id
        )
        if spec_changed:
            self._schedule_reconcile(txn, record.id, status, generation)
            self._emit(txn, "nodepool.updated", updated, generation, now)
        await self._run(txn, name, dry_run)
        return updated

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

    def _schedule_reconcile(
        self, txn: Txn, nodepool_id: str, status: dict[str, Any], generation: int
    ) -> None:
        """Due for a reconcile event if it has not converged by then."""
        ready = is_ready(status, generation)
        self._schedule.schedule(txn, "nodepool", nodepool_id, ready, utcnow().timestamp())

    def _emit(
        self, txn: Txn, event_type: Any, record: NodePoolRecord, generation: int, now: Any
    ) -> None:
        event = build_event(
            event_type,
            cluster_id=record.cluster_id,
            nodepool_id=record.id,
            generation=generation,
            platform=record.platform,
            resource=record.view(),
            moment=now,
        )
        append_event(txn, self.names, event)

    async def _run(self, txn: Txn, name: str, dry_run: bool) -> None:
        try:
            await self.store.run(txn, dry_run=dry_run)
        except TxnFailed as failed:
            if failed.code == NAME_TAKEN:
                raise name_conflict(name, failed.actual) from failed
            if failed.code == CLUSTER_GONE:
                raise cluster_not_found() from failed
            if failed.code == QUOTA:
                raise QuotaExceeded(
                    "Quota exceeded: at most "
                    f"{self.settings.max_nodepools_per_cluster} nodepools per cluster",
                    f"the cluster has {failed.actual} nodepools; delete one to create another",
                ) from failed
            raise


__all__ = ["NodePoolService", "field_errors"]
