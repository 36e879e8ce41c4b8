"""A cluster's deletion over many nodepools: the deletion loop of the event jobs deletes them in
bounded batches (one transaction each, never one over all of them) while their controllers keep
reporting, leaves nothing behind, and resumes from Redis after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest
from redis.asyncio import Redis

from cls_core.services.access import Caller
from cls_core.services.clusters import ClusterService
from cls_core.services.common import Preconditions
from cls_core.services.nodepools import NodePoolService
from cls_core.services.status import ApplyResult, ReportFor, StatusService
from cls_core.store import RedisStore
from cls_runtime.settings import Settings
from shared_models.status import ControllerReport
from tests.services.conftest import OWNER, new_cluster, new_nodepool
from tests.support.deletion import deletion_loop

MANY = 1000
BATCH = 50
many_nodepools = pytest.mark.settings_update(
    max_nodepools_per_cluster=MANY, deletion_batch_size=BATCH
)


async def fill(clusters: ClusterService, nodepools: NodePoolService, count: int) -> list[str]:
    cluster = await new_cluster(clusters)
    ids: list[str] = []
    for start in range(0, count, 50):
        created = await asyncio.gather(
            *(new_nodepool(nodepools, cluster.id, f"pool-{i}") for i in range(start, start + 50))
        )
        ids += [pool.id for pool in created]
    return [cluster.id, *ids]


async def keep_reporting(
    status: StatusService, ids: list[str], stop: asyncio.Event, outcomes: list[Any]
) -> None:
    """The nodepools' controller reporting Ready on random ones, as fast as it can."""
    tick = 0
    while not stop.is_set():
        tick += 1
        chosen = random.sample(ids, 20)
        items = [
            ReportFor(
                "nodepool",
                nodepool_id,
                ControllerReport.model_validate(
                    {
                        "controller_name": "gcp-nodepool-controller",
                        "observed_generation": 1,
                        "conditions": [
                            {"type": "Ready", "status": "True", "message": f"tick {tick}"}
                        ],
                    }
                ),
            )
            for nodepool_id in chosen
        ]
        outcomes += await status.apply_many(items)
        await asyncio.sleep(0)


async def left_behind(redis: Redis, settings: Settings, cluster_id: str, ids: list[str]) -> int:
    names = settings.names
    keys = [names.record("nodepool", i) for i in ids] + [names.view("nodepool", i) for i in ids]
    keys += [names.controller_reports("nodepool", i) for i in ids]
    keys += [names.record("cluster", cluster_id), names.cluster_nodepools(cluster_id)]
    keys.append(names.nodepool_names(cluster_id))
    return int(await redis.exists(*keys))


async def forced_delete(clusters: ClusterService, cluster_id: str) -> None:
    await clusters.delete(
        Caller(OWNER.email), cluster_id, Preconditions(), dry_run=False, forced_reason="cascade"
    )


@many_nodepools
async def test_a_cascade_of_a_thousand_nodepools_finishes_while_their_controller_reports(
    clusters: ClusterService,
    nodepools: NodePoolService,
    status: StatusService,
    store: RedisStore,
    redis: Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster_id, *ids = await fill(clusters, nodepools, MANY)
    await forced_delete(clusters, cluster_id)
    # Every transaction of the cascade holds at most one nodepool.
    largest: list[int] = []
    run_each = RedisStore.run_each

    async def watched(self: RedisStore, txns: Any) -> Any:
        largest.append(max((len(t.ops) for t in txns), default=0))
        return await run_each(self, txns)

    monkeypatch.setattr(RedisStore, "run_each", watched)
    stop = asyncio.Event()
    outcomes: list[Any] = []
    reporter = asyncio.create_task(keep_reporting(status, ids, stop, outcomes))
    loop = deletion_loop(settings, store)
    steps = 0
    try:
        while await redis.exists(settings.names.record("cluster", cluster_id)):
            await loop.tick()
            steps += 1
            assert steps < 500, "the cascade does not finish"
    finally:
        stop.set()
        await reporter
    assert steps >= MANY // BATCH
    assert await left_behind(redis, settings, cluster_id, ids) == 0
    assert not await redis.hexists(settings.names.deleting_clusters, cluster_id)
    # The reports raced the cascade: applied, or about a nodepool already gone. None refused.
    assert all(isinstance(o, ApplyResult) for o in outcomes), [
        o for o in outcomes if not isinstance(o, ApplyResult)
    ][:3]
    tombstones = [await redis.exists(settings.names.tombstone("nodepool", i)) for i in ids]
    assert sum(tombstones) == MANY
    assert max(largest) < 100  # one nodepool's writes (with its operation), not a batch's


@pytest.mark.settings_update(max_nodepools_per_cluster=300, deletion_batch_size=20)
async def test_a_cascade_killed_mid_batch_resumes_from_redis_on_restart(
    clusters: ClusterService,
    nodepools: NodePoolService,
    store: RedisStore,
    redis: Redis,
    settings: Settings,
) -> None:
    cluster_id, *ids = await fill(clusters, nodepools, 300)
    await forced_delete(clusters, cluster_id)
    first = deletion_loop(settings, store)
    stop = asyncio.Event()
    running = asyncio.create_task(first.run(stop))
    names = settings.names
    for _ in range(10_000):  # until a few batches are done
        if await redis.zcard(names.cluster_nodepools(cluster_id)) <= 200:
            break
        await asyncio.sleep(0.001)
    running.cancel()  # killed wherever it is: between batches or within one
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert await redis.exists(names.record("cluster", cluster_id))
    assert await redis.hexists(names.deleting_clusters, cluster_id)
    # A new process: nothing of the first survives but what Redis holds.
    restarted = deletion_loop(settings, store)
    for _ in range(100):
        await restarted.tick()
        if not await redis.exists(names.record("cluster", cluster_id)):
            break
    assert await left_behind(redis, settings, cluster_id, ids) == 0
    assert not await redis.hexists(names.deleting_clusters, cluster_id)
