"""Periodic reconciliation: ``nodepool.reconcile`` for what has not converged, at the configured
cadence, rarely for what is Ready, in bounded batches."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_core.store import RedisStore
from cls_core.store.leader_lock import LeaderLock
from cls_runtime.settings import Settings
from event_jobs.leader import Leadership
from event_jobs.reconcile import ReconcileLoop
from tests.conftest import (
    USER,
    api_client,
    controller_headers,
    gcp_cluster_body,
    seed_nodepool_body,
)
from tests.events.conftest import EventsConsumer, Received, settings_with

INTERVAL = 0.5
READY_INTERVAL = 3.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every app in this module reconciles on short intervals, so the tests are quick."""
    return settings_with(
        settings, reconcile_interval=INTERVAL, reconcile_ready_interval=READY_INTERVAL
    )


def stamps(events: list[Received]) -> list[float]:
    return [datetime.fromisoformat(e.body["timestamp"]).timestamp() for e in events]


def gaps(events: list[Received]) -> list[float]:
    times = stamps(events)
    return [b - a for a, b in itertools.pairwise(times)]


async def make_ready(api: httpx.AsyncClient, nodepool_id: str, generation: int = 1) -> None:
    report = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": generation,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Done"}],
    }
    response = await api.put(
        f"/api/v1/nodepools/{nodepool_id}/status", json=report, headers=controller_headers()
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"]["phase"] == "Ready"


async def test_a_nodepool_not_ready_gets_reconcile_events_at_the_interval(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: Any
) -> None:
    created = await api.post(
        "/api/v1/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    nodepool = created.json()
    await events_consumer.wait_until(
        lambda: len(events_consumer.of(nodepool["id"], "nodepool.reconcile")) >= 3, within=10
    )
    reconciles = events_consumer.of(nodepool["id"], "nodepool.reconcile")
    assert {e.routing_key for e in reconciles} == {"nodepool.reconcile.gcp"}
    assert all(INTERVAL <= gap <= INTERVAL + 2 for gap in gaps(reconciles)), gaps(reconciles)
    current = (await api.get(f"/api/v1/nodepools/{nodepool['id']}", headers=USER)).json()
    assert reconciles[-1].body["generation"] == 1
    assert reconciles[-1].body["resource"] == current
    assert reconciles[-1].headers == {"platform": "gcp", "generation": 1}


async def test_reconcile_events_carry_the_current_generation_after_a_spec_change(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: Any
) -> None:
    created = await api.post(
        "/api/v1/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    nodepool_id = created.json()["id"]
    patched = await api.patch(
        f"/api/v1/nodepools/{nodepool_id}",
        json={"spec": {"nodeCount": 7}},
        headers={**USER, "Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200
    await events_consumer.wait_until(
        lambda: bool(events_consumer.of(nodepool_id, "nodepool.reconcile")), within=10
    )
    [first, *_] = events_consumer.of(nodepool_id, "nodepool.reconcile")
    assert first.body["generation"] == 2
    assert first.body["resource"]["spec"]["nodeCount"] == 7


async def test_a_ready_nodepool_gets_no_reconcile_until_the_ready_interval(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: Any
) -> None:
    created = await api.post(
        "/api/v1/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    nodepool_id = created.json()["id"]
    await events_consumer.wait_until(
        lambda: bool(events_consumer.of(nodepool_id, "nodepool.reconcile")), within=10
    )
    ready_sent = time.time()  # the status write rescheduled it after this
    await make_ready(api, nodepool_id)
    await events_consumer.sync()
    seen = len(events_consumer.of(nodepool_id, "nodepool.reconcile"))
    # Several intervals pass without one; then, after the ready interval, one comes.
    await asyncio.sleep(INTERVAL * 4)
    await events_consumer.sync()
    assert len(events_consumer.of(nodepool_id, "nodepool.reconcile")) == seen
    await events_consumer.wait_until(
        lambda: len(events_consumer.of(nodepool_id, "nodepool.reconcile")) > seen,
        within=READY_INTERVAL + 5,
    )
    late = events_consumer.of(nodepool_id, "nodepool.reconcile")[seen]
    assert stamps([late])[0] - ready_sent >= READY_INTERVAL
    assert late.body["resource"]["status"]["phase"] == "Ready"


async def test_a_ready_nodepool_being_deleted_is_reconciled_at_the_short_interval(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: Any
) -> None:
    # A controller killed mid-deletion lost the deleted event: it is asked again, soon.
    created = await api.post(
        "/api/v1/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    nodepool_id = created.json()["id"]
    await make_ready(api, nodepool_id)
    deleted = await api.delete(f"/api/v1/nodepools/{nodepool_id}", headers=USER)
    assert deleted.status_code == 204, deleted.text
    await events_consumer.wait_until(
        lambda: bool(events_consumer.of(nodepool_id, "nodepool.reconcile")),
        within=READY_INTERVAL - INTERVAL,
    )
    [first, *_] = events_consumer.of(nodepool_id, "nodepool.reconcile")
    assert first.body["generation"] == 2
    assert first.body["resource"]["status"]["phase"] == "Deleting"


async def test_a_nodepool_that_leaves_ready_is_reconciled_at_the_short_interval_again(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: Any
) -> None:
    created = await api.post(
        "/api/v1/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    nodepool_id = created.json()["id"]
    await make_ready(api, nodepool_id)
    await events_consumer.sync()
    before = len(events_consumer.of(nodepool_id, "nodepool.reconcile"))
    patched = await api.patch(
        f"/api/v1/nodepools/{nodepool_id}",
        json={"spec": {"nodeCount": 4}},
        headers={**USER, "Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200
    assert patched.json()["status"]["phase"] != "Ready"
    await events_consumer.wait_until(
        lambda: len(events_consumer.of(nodepool_id, "nodepool.reconcile")) > before,
        within=READY_INTERVAL * 0.8,
    )


# ---- one tick, driven directly ----------------------------------------------------------------
async def leader_loop(settings: Settings, redis: Redis, name: str = "") -> ReconcileLoop:
    """A reconcile loop of our own, already leader (on a lock of its own)."""
    store = RedisStore(redis, settings.names)
    lock = LeaderLock(redis, settings.names.lock(f"test-reconcile{name}"), 10.0)
    lease = Leadership(lock, 10.0, "test-reconcile")
    task = asyncio.create_task(lease.run())
    await asyncio.wait_for(lease.wait_leader(), 5)
    task.cancel()
    return ReconcileLoop(store, settings, lease)


async def create_pools(settings: Settings, cluster_count: int) -> list[str]:
    """Nodepools made through an API that is then stopped (its own loop must not interfere)."""
    async with api_client(settings) as api:
        cluster = await api.post("/api/v1/clusters", json=gcp_cluster_body("c"), headers=USER)
        ids = []
        for i in range(cluster_count):
            body = seed_nodepool_body(cluster.json()["id"], f"pool-{i}")
            ids.append((await api.post("/api/v1/nodepools", json=body, headers=USER)).json()["id"])
    return ids


async def test_a_tick_handles_at_most_one_batch_of_due_nodepools(
    settings: Settings, redis: Redis, amqp: Any
) -> None:
    small = settings_with(settings, reconcile_batch_size=2)
    ids = await create_pools(small, 5)
    names = small.names
    await redis.delete(names.outbox)
    for nodepool_id in ids:
        await redis.zadd(names.reconcile_due, {f"nodepool:{nodepool_id}": 0})
    loop = await leader_loop(small, redis)
    assert await loop.tick() == 2
    assert await redis.xlen(names.outbox) == 2
    assert await redis.zcount(names.reconcile_due, "-inf", time.time()) == 3
    assert await loop.tick() == 2
    assert await loop.tick() == 1
    assert await loop.tick() == 0
    assert await redis.xlen(names.outbox) == 5


async def test_a_tick_schedules_the_next_reconcile_with_the_event(
    settings: Settings, redis: Redis, amqp: Any
) -> None:
    [nodepool_id] = await create_pools(settings, 1)
    names = settings.names
    await redis.zadd(names.reconcile_due, {f"nodepool:{nodepool_id}": 0})
    loop = await leader_loop(settings, redis)
    before = time.time()
    assert await loop.tick() == 1
    due = await redis.zscore(names.reconcile_due, f"nodepool:{nodepool_id}")
    assert due is not None
    assert before + settings.reconcile_interval <= due <= time.time() + settings.reconcile_interval


async def test_a_tick_schedules_a_nodepool_ready_at_its_generation_at_the_ready_interval(
    settings: Settings, redis: Redis, amqp: Any
) -> None:
    [nodepool_id] = await create_pools(settings, 1)
    async with api_client(settings) as api:
        await make_ready(api, nodepool_id)
    names = settings.names
    await redis.zadd(names.reconcile_due, {f"nodepool:{nodepool_id}": 0})
    loop = await leader_loop(settings, redis)
    before = time.time()
    assert await loop.tick() == 1
    due = await redis.zscore(names.reconcile_due, f"nodepool:{nodepool_id}")
    assert due is not None
    assert due >= before + settings.reconcile_ready_interval


async def test_a_due_nodepool_seen_by_two_loops_is_reconciled_once(
    settings: Settings, redis: Redis, amqp: Any
) -> None:
    """Two loops that both found it due (say, both believed they led during a hand-over)
    commit one reconcile: the commit requires the member to be still due."""
    [nodepool_id] = await create_pools(settings, 1)
    names = settings.names
    await redis.delete(names.outbox)
    member = f"nodepool:{nodepool_id}"
    await redis.zadd(names.reconcile_due, {member: 0})
    first, second = await leader_loop(settings, redis), await leader_loop(settings, redis, "2")
    now = time.time()
    assert await first.handle([member], now) == 1
    assert await second.handle([member], now) == 0
    assert await redis.xlen(names.outbox) == 1


async def test_a_tick_forgets_members_whose_resource_is_gone(
    settings: Settings, redis: Redis
) -> None:
    names = settings.names
    await redis.zadd(names.reconcile_due, {"nodepool:00000000-0000-4000-8000-000000000000": 0})
    loop = await leader_loop(settings, redis)
    assert await loop.tick() == 1
    assert await redis.zcard(names.reconcile_due) == 0
    assert await redis.xlen(names.outbox) == 0


async def test_a_due_cluster_gets_cluster_reconcile(
    settings: Settings, redis: Redis, amqp: Any
) -> None:
    async with api_client(settings) as api:
        cluster = (
            await api.post("/api/v1/clusters", json=gcp_cluster_body("c"), headers=USER)
        ).json()
    names = settings.names
    await redis.delete(names.outbox)
    await redis.zadd(names.reconcile_due, {f"cluster:{cluster['id']}": 0})
    loop = await leader_loop(settings, redis)
    assert await loop.tick() == 1
    entries: Any = await redis.xrange(names.outbox)
    [(_, fields)] = entries
    assert fields["rk"] == "cluster.reconcile.gcp"
    assert fields["res"] == cluster["id"]


async def test_a_tick_does_nothing_without_leadership(
    settings: Settings, redis: Redis, amqp: Any
) -> None:
    [nodepool_id] = await create_pools(settings, 1)
    names = settings.names
    await redis.delete(names.outbox)
    await redis.zadd(names.reconcile_due, {f"nodepool:{nodepool_id}": 0})
    store = RedisStore(redis, names)
    lease = Leadership(LeaderLock(redis, names.lock("never-acquired"), 10.0), 10.0, "x")
    assert await ReconcileLoop(store, settings, lease).tick() == 0
    assert await redis.xlen(names.outbox) == 0
