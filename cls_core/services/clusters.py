"""Cluster rules: create, read, list, replace and delete (with an optional cascade)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cls_core.errors import Conflict, NotFound, QuotaExceeded, Unavailable, ValidationFailed
from cls_core.services.common import (
    RV_CHANGED,
    WRITE_RETRY_SECONDS,
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
from cls_core.services.nodepools import NodePoolService
from cls_core.services.reconcile_schedule import ReconcileSchedule, member
from cls_core.store import ClusterRecord, RedisStore, Txn, TxnFailed
from cls_runtime.settings import Settings
from shared_models.aggregation import aggregate_stored
from shared_models.events import EventType
from shared_models.names import ANY
from shared_models.resources import ClusterCreate, ClusterUpdate

NAME_TAKEN = "name_taken"
ID_TAKEN = "id_taken"
ID_RETIRED = "id_retired"
NODEPOOLS_LEFT = "nodepools_left"
QUOTA = "cluster_quota"
# How many nodepools a forced delete removes per round trip.
CASCADE_BATCH = 100


def cluster_not_found() -> NotFound:
    return NotFound("Cluster not found")


class ClusterService:
    def __init__(self, store: RedisStore, settings: Settings, nodepools: NodePoolService) -> None:
        self.store = store
        self.names = store.names
        self.settings = settings
        self.nodepools = nodepools
        self._writing = KeyedLocks()
        self._schedule = ReconcileSchedule(store.names, settings)

    async def get(self, owner: str, cluster_id: str) -> ClusterRecord:
        record = await self.store.get_cluster(cluster_id)
        if record is None or record.owner != owner:
            raise cluster_not_found()
        return record

    async def get_view(self, owner: str, cluster_id: str) -> tuple[str, str]:
        """(resource_version, the cluster as JSON) for a GET: no parsing, no re-serialising."""
        found = await self.store.get_view("cluster", cluster_id)
        if found is None or found[0] != owner:
            raise cluster_not_found()
        return found[1], found[2]

    async def list(
        self, owner: str, *, platform: str | None, phase: str | None, limit: int, offset: int
    ) -> tuple[int, str]:
        """(total, the page's clusters as JSON documents joined with ",")."""
        index = self.names.cluster_index(owner, platform or ANY, phase or ANY)
        return await self.store.list_page("cluster", index, offset, limit)

    async def status_view(self, owner: str, cluster_id: str) -> dict[str, Any]:
        record = await self.get(owner, cluster_id)
        reports = await self.store.controller_reports("cluster", cluster_id)
        return status_document("cluster_id", cluster_id, record.generation, record.status, reports)

    async def create(
        self,
        owner: str,
        body: ClusterCreate,
        dry_run: bool,
        idempotency: IdempotentCreate | None = None,
    ) -> ClusterRecord | Replay:
        now = utcnow()
        cluster_id = (body.id or new_id()).lower()
        status = aggregate_stored(1, {}, None, now)
        record = ClusterRecord(
            id=cluster_id,
            doc={
                "id": cluster_id,
                "name": body.name,
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
            idem_key=None if idempotency is None else idempotency.client_key,
        )
        names = self.names
        txn = Txn()
        if idempotency is not None:
            idempotency.guard(txn, "cluster", cluster_id)
        if body.id is not None:
            # A chosen id must never have been used: not by a live cluster, and not by a
            # deleted one, whose reports and events might still be in flight.
            txn.expect_field(names.record("cluster", cluster_id), "owner", None, ID_TAKEN)
            txn.expect_field(names.retired_cluster_ids, cluster_id, None, ID_RETIRED)
        else:
            txn.expect_field(names.record("cluster", cluster_id), "rv", None, ID_TAKEN)
        txn.expect_field(names.cluster_names(owner), body.name, None, NAME_TAKEN)
        # Counted in the transaction, so concurrent creates cannot pass the quota together.
        quota = self.settings.max_clusters_per_owner
        txn.expect_count_below(names.cluster_index(owner, ANY, ANY), quota, QUOTA)
        txn.hset(names.record("cluster", cluster_id), record.to_hash())
        txn.hset(names.cluster_names(owner), {body.name: cluster_id})
        txn.move_in_indexes(set(), record.index_keys(names), record.seq, cluster_id)
        self._emit(txn, "cluster.created", record, 1, now)
        replay = await commit_create(
            self.store, lambda: self._run(txn, body.name, dry_run, owner), idempotency
        )
        return replay or record

    async def replace(
        self,
        owner: str,
        cluster_id: str,
        body: ClusterUpdate,
        preconditions: Preconditions,
        dry_run: bool,
    ) -> ClusterRecord:
        async def attempt() -> ClusterRecord:
            record = await self.get(owner, cluster_id)
            return await self._replace(record, body, preconditions, dry_run)

        async with self._writing.hold(cluster_id):
            return await retry_on_race(attempt, "Cluster")

    async def delete(
        self,
        owner: str,
        cluster_id: str,
        preconditions: Preconditions,
        force: bool,
        dry_run: bool,
    ) -> ClusterRecord:
        """Delete a cluster (with ``force``, its nodepools first); the cluster as it was.

        Everything is judged before anything is written: ownership, the preconditions, and
        nodepools left without ``force``. A dry run stops there. Once the nodepools are being
        deleted, the cascade finishes whatever the controllers keep reporting meanwhile.
        """
        record = await self.get(owner, cluster_id)
        preconditions.check(record.rv, record.generation, "Cluster")
        nodepool_ids = await self.store.cluster_nodepool_ids(cluster_id)
        if nodepool_ids and not force:
            raise self._has_nodepools(len(nodepool_ids))
        if dry_run:
            return record
        async with self._writing.hold(cluster_id):
            return await self._delete_with_nodepools(owner, cluster_id, force)

    async def _delete_with_nodepools(
        self, owner: str, cluster_id: str, force: bool
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
                await self._delete_nodepools(nodepool_ids[start : start + CASCADE_BATCH])
            record = await self.get(owner, cluster_id)
            txn = Txn()
            txn.expect_count(self.names.cluster_nodepools(cluster_id), 0, NODEPOOLS_LEFT)
            self._add_delete(txn, record, utcnow())
            try:
                await self.store.run(txn)
                return record
            except TxnFailed as failed:
                if failed.code not in (RV_CHANGED, NODEPOOLS_LEFT):
                    raise
            if time.monotonic() >= deadline:
                raise Unavailable(
                    "Cluster is being changed by too many writers at once; retry shortly",
                    "nodepools deleted so far stay deleted",
                    retry_after=1,
                )

    async def _delete_nodepools(self, nodepool_ids: Sequence[str]) -> None:
        now = utcnow()
        nodepools = await self.store.get_nodepools([*nodepool_ids])
        txns = [Txn() for _ in nodepools]
        for txn, nodepool in zip(txns, nodepools, strict=True):
            self.nodepools.add_delete(txn, nodepool, now)
        await self.store.run_each(txns)  # a raced one is still there: the next round gets it

    async def _replace(
        self,
        record: ClusterRecord,
        body: ClusterUpdate,
        preconditions: Preconditions,
        dry_run: bool,
    ) -> ClusterRecord:
        preconditions.check(record.rv, record.generation, "Cluster")
        old_platform = record.doc["spec"]["platform"]
        if body.spec.platform.type != old_platform["type"]:
            raise ValidationFailed.of("spec.platform.type", "spec.platform.type is immutable")
        if body.spec.platform.region != _region_of(old_platform):
            raise ValidationFailed.of(
                f"spec.platform.{old_platform['type']}",
                f"spec.platform.{old_platform['type']}: the region (location) is immutable",
            )
        new_spec = body.spec.model_dump(mode="json", exclude_none=True)
        spec_changed = new_spec != record.doc["spec"]
        name = record.name if body.name is None else body.name  # no name: unchanged
        renamed = name != record.name
        if not spec_changed and not renamed:
            return record
        now = utcnow()
        generation = record.generation + 1 if spec_changed else record.generation
        status = record.status
        if spec_changed:
            reports = await self.store.controller_reports("cluster", record.id)
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
        txn.expect_field(names.record("cluster", record.id), "rv", record.rv, RV_CHANGED)
        if renamed:
            txn.expect_field(names.cluster_names(record.owner), name, None, NAME_TAKEN)
            txn.hdel(names.cluster_names(record.owner), record.name)
            txn.hset(names.cluster_names(record.owner), {name: record.id})
        txn.hset(names.record("cluster", record.id), updated.to_hash())
        txn.move_in_indexes(
            record.index_keys(names), updated.index_keys(names), record.seq, record.id
        )
        if spec_changed:
            self._emit(txn, "cluster.updated", updated, generation, now)
        await self._run(txn, name, dry_run)
        return updated

    def _add_delete(self, txn: Txn, record: ClusterRecord, now: datetime) -> None:
        names = self.names
        txn.expect_field(names.record("cluster", record.id), "rv", record.rv, RV_CHANGED)
        txn.delete(names.record("cluster", record.id))
        txn.delete(names.controller_reports("cluster", record.id))
        txn.move_in_indexes(record.index_keys(names), set(), record.seq, record.id)
        txn.hdel(names.cluster_names(record.owner), record.name)
        self._schedule.forget(txn, member("cluster", record.id))
        txn.hset(names.retired_cluster_ids, {record.id: iso(now)})
        delete_key_with(txn, names, record.owner, record.idem_key, record.id)
        self._emit(txn, "cluster.deleted", record, record.generation + 1, now)

    def _emit(
        self,
        txn: Txn,
        event_type: EventType,
        record: ClusterRecord,
        generation: int,
        now: datetime,
    ) -> None:
        event = build_event(
            event_type,
            cluster_id=record.id,
            nodepool_id=None,
            generation=generation,
            platform=record.platform,
            resource=record.view(),
            moment=now,
        )
        append_event(txn, self.names, event)

    @staticmethod
    def _has_nodepools(count: int) -> Conflict:
        return Conflict(
            "Cluster still has nodepools",
            f"{count} nodepool(s) exist; delete them first or use ?force=true",
        )

    async def _run(self, txn: Txn, name: str, dry_run: bool, owner: str | None = None) -> None:
        try:
            await self.store.run(txn, dry_run=dry_run)
        except TxnFailed as failed:
            if failed.code == NAME_TAKEN:
                raise Conflict(
                    f"Cluster with name '{name}' already exists",
                    f"existing cluster id: {failed.actual}",
                ) from failed
            if failed.code == ID_TAKEN and failed.actual == owner:
                raise Conflict("A cluster with this id already exists") from failed
            if failed.code in (ID_TAKEN, ID_RETIRED):
                # The same answer whoever holds or held the id: it tells no one that another
                # owner's cluster exists.
                raise Conflict(
                    "Cluster id is not available",
                    "ids are never reused; omit id to have one assigned",
                ) from failed
            if failed.code == QUOTA:
                raise QuotaExceeded(
                    "Quota exceeded: at most "
                    f"{self.settings.max_clusters_per_owner} clusters per owner",
                    f"you own {failed.actual} clusters; delete one to create another",
                ) from failed
            raise


def _region_of(platform: dict[str, Any]) -> str:
    block = platform[platform["type"]]
    return str(block.get("region") or block.get("location"))
