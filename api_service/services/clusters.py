"""Cluster rules: create, read, list, replace and delete (with an optional cascade)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api_service.errors import Conflict, NotFound, ValidationFailed
from api_service.services.common import (
    RV_CHANGED,
    append_event,
    build_event,
    check_if_match,
    creation_score,
    iso,
    new_id,
    new_resource_version,
    retry_on_race,
    status_document,
    utcnow,
)
from api_service.services.idempotency import IdempotentCreate, commit_create
from api_service.services.nodepools import NodePoolService
from api_service.store import ClusterRecord, RedisStore, Txn, TxnFailed
from shared_models.aggregation import aggregate_stored
from shared_models.events import EventType
from shared_models.names import ANY
from shared_models.resources import ClusterCreate, ClusterUpdate
from shared_models.settings import Settings

NAME_TAKEN = "name_taken"
ID_TAKEN = "id_taken"
HAS_NODEPOOLS = "has_nodepools"


def cluster_not_found() -> NotFound:
    return NotFound("Cluster not found")


class ClusterService:
    def __init__(self, store: RedisStore, settings: Settings, nodepools: NodePoolService) -> None:
        self.store = store
        self.names = store.names
        self.settings = settings
        self.nodepools = nodepools

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
    ) -> ClusterRecord:
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
        )
        names = self.names
        txn = Txn()
        if idempotency is not None:
            idempotency.guard(txn, "cluster", record.view())
        txn.expect_field(names.record("cluster", cluster_id), "rv", None, ID_TAKEN)
        txn.expect_field(names.cluster_names(owner), body.name, None, NAME_TAKEN)
        txn.hset(names.record("cluster", cluster_id), record.to_hash())
        txn.hset(names.cluster_names(owner), {body.name: cluster_id})
        txn.move_in_indexes(set(), record.index_keys(names), record.seq, cluster_id)
        self._emit(txn, "cluster.created", record, 1, now)
        await commit_create(self._run(txn, body.name, dry_run), idempotency)
        return record

    async def replace(
        self,
        owner: str,
        cluster_id: str,
        body: ClusterUpdate,
        if_match: str | None,
        dry_run: bool,
    ) -> ClusterRecord:
        async def attempt() -> ClusterRecord:
            record = await self.get(owner, cluster_id)
            return await self._replace(record, body, if_match, dry_run)

        return await retry_on_race(attempt, "Cluster")

    async def delete(self, owner: str, cluster_id: str, if_match: str | None, force: bool) -> None:
        async def attempt() -> None:
            record = await self.get(owner, cluster_id)
            check_if_match(if_match, record.rv, "Cluster")
            now = utcnow()
            txn = Txn()
            nodepool_ids = await self.store.cluster_nodepool_ids(cluster_id)
            if nodepool_ids and not force:
                raise self._has_nodepools(len(nodepool_ids))
            nodepools = await self.store.get_nodepools(nodepool_ids)
            # The nodepools read are exactly the cluster's: a concurrent create retries us.
            txn.expect_count(self.names.cluster_nodepools(cluster_id), len(nodepools), RV_CHANGED)
            for nodepool in nodepools:
                self.nodepools.add_delete(txn, nodepool, now)
            self._add_delete(txn, record, now)
            await self.store.run(txn)

        await retry_on_race(attempt, "Cluster")

    async def _replace(
        self, record: ClusterRecord, body: ClusterUpdate, if_match: str | None, dry_run: bool
    ) -> ClusterRecord:
        check_if_match(if_match, record.rv, "Cluster")
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
        renamed = body.name != record.name
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
            "name": body.name,
            "generation": generation,
            "spec": new_spec,
            "updated_at": iso(now),
        }
        updated = record.with_changes(
            doc=doc,
            rv=new_resource_version(),
            generation=generation,
            status=status,
            name=body.name,
        )
        names = self.names
        txn = Txn()
        txn.expect_field(names.record("cluster", record.id), "rv", record.rv, RV_CHANGED)
        if renamed:
            txn.expect_field(names.cluster_names(record.owner), body.name, None, NAME_TAKEN)
            txn.hdel(names.cluster_names(record.owner), record.name)
            txn.hset(names.cluster_names(record.owner), {body.name: record.id})
        txn.hset(names.record("cluster", record.id), updated.to_hash())
        txn.move_in_indexes(
            record.index_keys(names), updated.index_keys(names), record.seq, record.id
        )
        if spec_changed:
            self._emit(txn, "cluster.updated", updated, generation, now)
        await self._run(txn, body.name, dry_run)
        return updated

    def _add_delete(self, txn: Txn, record: ClusterRecord, now: datetime) -> None:
        names = self.names
        txn.expect_field(names.record("cluster", record.id), "rv", record.rv, RV_CHANGED)
        txn.delete(names.record("cluster", record.id))
        txn.delete(names.controller_reports("cluster", record.id))
        txn.move_in_indexes(record.index_keys(names), set(), record.seq, record.id)
        txn.hdel(names.cluster_names(record.owner), record.name)
        txn.zrem(names.reconcile_due, f"cluster:{record.id}")
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

    async def _run(self, txn: Txn, name: str, dry_run: bool) -> None:
        try:
            await self.store.run(txn, dry_run=dry_run)
        except TxnFailed as failed:
            if failed.code == NAME_TAKEN:
                raise Conflict(
                    f"Cluster with name '{name}' already exists",
                    f"existing cluster id: {failed.actual}",
                ) from failed
            if failed.code == ID_TAKEN:
                raise Conflict("A cluster with this id already exists") from failed
            raise


def _region_of(platform: dict[str, Any]) -> str:
    block = platform[platform["type"]]
    return str(block.get("region") or block.get("location"))
