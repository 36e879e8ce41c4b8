"""Cluster rules: what a cluster adds to the shared resource rules (chosen ids, the cascade)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cls_core.errors import ApiError, Conflict, QuotaExceeded, Unavailable, ValidationFailed
from cls_core.services.common import (
    RV_CHANGED,
    WRITE_RETRY_SECONDS,
    Preconditions,
    iso,
    new_id,
    utcnow,
)
from cls_core.services.idempotency import IdempotentCreate, Replay
from cls_core.services.nodepools import NodePoolService
from cls_core.services.resources import Lifecycle, ResourceService, first_version
from cls_core.store import ClusterRecord, RedisStore, Txn, TxnFailed
from cls_runtime.settings import Settings
from shared_models.names import ANY
from shared_models.resources import ClusterCreate, ClusterUpdate

ID_TAKEN = "id_taken"
ID_RETIRED = "id_retired"
NODEPOOLS_LEFT = "nodepools_left"
# How many nodepools a forced delete removes per round trip.
CASCADE_BATCH = 100


class ClusterService(ResourceService[ClusterRecord]):
    kind = "cluster"
    label = "Cluster"
    events = Lifecycle("cluster.created", "cluster.updated", "cluster.deleted")

    def __init__(self, store: RedisStore, settings: Settings, nodepools: NodePoolService) -> None:
        super().__init__(store, settings)
        self.nodepools = nodepools

    # ---- what a cluster is -----------------------------------------------------------------
    async def _read(self, resource_id: str) -> ClusterRecord | None:
        return await self.store.get_cluster(resource_id)

    def _names_key(self, record: ClusterRecord) -> str:
        return self.names.cluster_names(record.owner)

    def _quota(self, record: ClusterRecord) -> tuple[str, int]:
        index = self.names.cluster_index(record.owner, ANY, ANY)
        return index, self.settings.max_clusters_per_owner

    def _quota_exceeded(self, count: str) -> QuotaExceeded:
        return QuotaExceeded(
            f"Quota exceeded: at most {self.settings.max_clusters_per_owner} clusters per owner",
            f"you own {count} clusters; delete one to create another",
        )

    def _name_taken(self, name: str, existing_id: str) -> Conflict:
        return Conflict(
            f"Cluster with name '{name}' already exists", f"existing cluster id: {existing_id}"
        )

    def _event_ids(self, record: ClusterRecord) -> tuple[str, str | None]:
        return record.id, None

    def _refusal(self, failed: TxnFailed, record: ClusterRecord) -> ApiError | None:
        if failed.code == ID_TAKEN and failed.actual == record.owner:
            return Conflict("A cluster with this id already exists")
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
        self, owner: str, *, platform: str | None, phase: str | None, limit: int, offset: int
    ) -> tuple[int, str]:
        """(total, the page's clusters as JSON documents joined with ",")."""
        index = self.names.cluster_index(owner, platform or ANY, phase or ANY)
        return await self.store.list_page(self.kind, index, offset, limit)

    # ---- writes ----------------------------------------------------------------------------
    async def create(
        self,
        owner: str,
        body: ClusterCreate,
        dry_run: bool,
        idempotency: IdempotentCreate | None = None,
    ) -> ClusterRecord | Replay:
        now = utcnow()
        cluster_id = (body.id or new_id()).lower()
        required = self._required(body.spec.platform.type)
        record = ClusterRecord(**first_version(cluster_id, body, owner, now, idempotency, required))
        names = self.names
        txn = Txn()
        if idempotency is not None:
            idempotency.guard(txn, self.kind, cluster_id)
        if body.id is not None:
            # A chosen id must never have been used: not by a live cluster, and not by a
            # deleted one, whose reports and events might still be in flight.
            txn.expect_field(names.record(self.kind, cluster_id), "owner", None, ID_TAKEN)
            txn.expect_field(names.retired_cluster_ids, cluster_id, None, ID_RETIRED)
        else:
            txn.expect_field(names.record(self.kind, cluster_id), "rv", None, ID_TAKEN)
        self._add_create(txn, record, now)
        return await self._commit_create(txn, record, dry_run, idempotency)

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

        return await self._write(cluster_id, attempt)

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
        preconditions.check(record.rv, record.generation, self.label)
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
            self.add_delete(txn, record, utcnow())
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
        return await self._replaced(record, spec, body.name, dry_run)

    @staticmethod
    def _has_nodepools(count: int) -> Conflict:
        return Conflict(
            "Cluster still has nodepools",
            f"{count} nodepool(s) exist; delete them first or use ?force=true",
        )


def _region_of(platform: dict[str, Any]) -> str:
    block = platform[platform["type"]]
    return str(block.get("region") or block.get("location"))
