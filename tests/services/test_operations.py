"""Operations in the domain services, called directly: the purge's hook, and the status path
the ingester's windows take (``StatusService.apply_many``)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from cls_core.services.clusters import ClusterService
from cls_core.services.common import utcnow
from cls_core.services.nodepools import NodePoolService
from cls_core.services.status import ApplyResult, Outcome, ReportFor, StatusService
from cls_core.store import RedisStore, Txn
from cls_runtime.settings import Settings
from shared_models.operations import OperationState, OperationType
from shared_models.status import ControllerReport
from tests.services.conftest import new_cluster, new_nodepool


@pytest.fixture
def status(store: RedisStore, settings: Settings) -> StatusService:
    return StatusService(store, settings)


def ready(generation: int = 1) -> ControllerReport:
    return ControllerReport.model_validate(
        {
            "controller_name": "gcp-nodepool-controller",
            "observed_generation": generation,
            "conditions": [{"type": "Ready", "status": "True", "reason": "NodesReady"}],
            "metadata": {"active_nodes": 3},
        }
    )


async def stored(redis: Redis, settings: Settings, operation_id: str) -> dict[str, Any]:
    fields: Any = await redis.hgetall(settings.names.operation(operation_id))
    return dict(fields)


async def test_finish_deleted_ends_the_current_operation_and_keeps_the_history_for_the_retention(
    clusters: ClusterService, nodepools: NodePoolService, redis: Redis, settings: Settings
) -> None:
    """What the deletion lifecycle's purge calls, in its own transaction."""
    pool = await new_nodepool(nodepools, (await new_cluster(clusters)).id)
    txn = Txn()
    nodepools.operations.finish_deleted(
        txn, "nodepool", pool.id, pool.ops, utcnow(), retention_seconds=60
    )
    await nodepools.store.run(txn)
    [operation_id] = pool.ops
    assert (await stored(redis, settings, operation_id))["state"] == OperationState.SUCCEEDED
    assert (await stored(redis, settings, operation_id))["finished_at"]
    for key in (
        settings.names.operation(operation_id),
        settings.names.resource_operations("nodepool", pool.id),
    ):
        assert 0 < await redis.pttl(key) <= 60_000
    record = settings.names.record("nodepool", pool.id)
    assert await redis.hmget(record, ["ops", "op_run"]) == [None, None]


async def test_a_window_of_reports_ends_the_operations_its_reports_make_ready(
    clusters: ClusterService,
    nodepools: NodePoolService,
    status: StatusService,
    redis: Redis,
    settings: Settings,
) -> None:
    cluster = await new_cluster(clusters)
    pools = [await new_nodepool(nodepools, cluster.id, f"pool-{i}") for i in range(3)]
    items = [ReportFor("nodepool", pool.id, ready()) for pool in pools]
    results = await status.apply_many(items)
    assert all(isinstance(r, ApplyResult) and r.outcome is Outcome.APPLIED for r in results)
    for pool in pools:
        [operation_id] = pool.ops
        ended = await stored(redis, settings, operation_id)
        assert ended["state"] == OperationState.SUCCEEDED, ended
        assert '"active_nodes":3' in ended["progress"]
        record = settings.names.record("nodepool", pool.id)
        assert await redis.hget(record, "op_run") is None


async def test_a_report_after_the_end_writes_nothing_more_to_the_operation(
    clusters: ClusterService,
    nodepools: NodePoolService,
    status: StatusService,
    redis: Redis,
    settings: Settings,
) -> None:
    pool = await new_nodepool(nodepools, (await new_cluster(clusters)).id)
    await status.apply(pool.kind, pool.id, ready())
    ended = await stored(redis, settings, pool.ops[0])
    again = ready().model_copy(update={"metadata": {"active_nodes": 4}})
    await status.apply(pool.kind, pool.id, again)
    assert await stored(redis, settings, pool.ops[0]) == ended


async def test_a_force_delete_supersedes_the_running_delete_and_succeeds_at_the_purge(
    clusters: ClusterService, nodepools: NodePoolService, redis: Redis, settings: Settings
) -> None:
    """The deletion lifecycle's calls: ``start`` a delete (the record kept, Deleting), then
    ``start`` a force_delete with its reason and ``finish_deleted`` in the purge's transaction."""
    pool = await new_nodepool(nodepools, (await new_cluster(clusters)).id)
    log, now = nodepools.operations, utcnow()
    txn = Txn()
    delete_id, deleting = log.start(
        txn,
        record=pool,
        before=pool,
        cluster_id=pool.cluster_id,
        type_=OperationType.DELETE,
        generation=pool.generation + 1,
        actor="owner@example.com",
        now=now,
    )
    await nodepools.store.run(txn)
    txn = Txn()
    force_id, forced = log.start(
        txn,
        record=deleting,
        before=deleting,
        cluster_id=pool.cluster_id,
        type_=OperationType.FORCE_DELETE,
        generation=pool.generation + 1,
        actor="admin@example.com",
        now=utcnow(),
        reason="the cloud project is gone",
    )
    log.finish_deleted(txn, "nodepool", pool.id, forced.ops, utcnow())
    await nodepools.store.run(txn)
    assert (await stored(redis, settings, pool.ops[0]))["state"] == OperationState.CANCELLED
    delete = await stored(redis, settings, delete_id)
    assert (delete["state"], delete["superseded_by"]) == (OperationState.SUPERSEDED, force_id)
    force = await stored(redis, settings, force_id)
    assert force["state"] == OperationState.SUCCEEDED
    assert '"reason":"the cloud project is gone"' in force["doc"]
