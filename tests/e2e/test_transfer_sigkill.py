"""A cluster transfer moves the cluster and every one of its nodepools, or nothing, even when the
API process is SIGKILLed in the middle of it: the move is one guarded Lua transaction.

Each round sends a transfer, SIGKILLs the API a random few milliseconds later (before, during or
after the request's work), starts it again, and checks in Redis itself that the cluster and all
its nodepools are in one project, wholly: their records, every index and the name hash.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from itertools import product
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from shared_models.names import ANY, Names
from tests.conftest import gcp_cluster_body, matching_keys
from tests.e2e.conftest import ApiReplica
from tests.support.resources import create_cluster
from tests.support.services import base_url
from tests.support.stack import create_body

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OWNER = {"X-User-Email": "owner@example.com"}
POOLS = 50  # half the per-cluster quota
ROUNDS = 20
MAX_DELAY = 0.030
Json = dict[str, Any]


async def new_project(http: httpx.AsyncClient, name: str) -> str:
    response = await http.post("/api/v1/projects", json={"name": name}, headers=OWNER)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def cluster_with_pools(http: httpx.AsyncClient, project_id: str) -> tuple[str, set[str]]:
    """(cluster id, its nodepool ids): a cluster of ``project_id`` with POOLS nodepools."""
    cluster = await create_cluster(http, gcp_cluster_body("moving", project_id=project_id), OWNER)
    gate = asyncio.Semaphore(8)

    async def one(index: int) -> Json:
        async with gate:
            body = create_body(cluster["id"], name=f"pool-{index:02d}")
            response = await http.post("/api/v1/nodepools", json=body, headers=OWNER)
            assert response.status_code == 201, response.text
            created: Json = response.json()
            return created

    pools = await asyncio.gather(*(one(i) for i in range(POOLS)))
    return str(cluster["id"]), {p["id"] for p in pools}


async def record(redis: Redis, key: str) -> dict[str, str]:
    """A record's hash (the client decodes responses: every field and value is a str)."""
    return {str(field): str(value) for field, value in (await redis.hgetall(key)).items()}


async def keys_holding(redis: Redis, keys: list[str], member: str) -> set[str]:
    return {key for key in keys if await redis.zscore(key, member) is not None}


async def wholly_in_one_project(
    redis: Redis, names: Names, cluster_id: str, pool_ids: set[str], projects: tuple[str, str]
) -> str:
    """The project the cluster is in, asserting that it and every nodepool are there and only
    there: records, views, indexes and the name hash."""
    cluster = await record(redis, names.record("cluster", cluster_id))
    project = cluster["project"]
    assert project in projects
    view = await redis.get(names.view("cluster", cluster_id))
    assert view is not None and f'"project_id":"{project}"' in view

    cluster_keys = [
        key
        for p in projects
        for key in await matching_keys(redis, names.cluster_index(p, ANY, ANY))
    ]
    expected = {
        names.cluster_index(project, platform, phase)
        for platform, phase in product((cluster["platform"], ANY), (cluster["phase"], ANY))
    }
    assert await keys_holding(redis, cluster_keys, cluster_id) == expected
    for p in projects:
        held = await redis.hget(names.cluster_names(p), cluster["name"])
        assert held == (cluster_id if p == project else None), f"name hash of project {p}"

    assert set(await redis.zrange(names.cluster_nodepools(cluster_id), 0, -1)) == pool_ids
    pool_keys = [
        key
        for p in projects
        for key in await matching_keys(redis, names.nodepool_index(p, ANY, ANY, ANY))
    ]
    for pool_id in pool_ids:
        pool = await record(redis, names.record("nodepool", pool_id))
        assert pool["project"] == project, f"nodepool {pool_id} in {pool['project']}"
        expected = {
            names.nodepool_index(project, c, phase, health)
            for c, phase, health in product(
                (cluster_id, ANY), (pool["phase"], ANY), (pool["health"], ANY)
            )
        }
        assert await keys_holding(redis, pool_keys, pool_id) == expected, f"nodepool {pool_id}"
    return str(project)


async def transfer_killed(api: ApiReplica, cluster_id: str, target: str, delay: float) -> str:
    """Send a transfer, SIGKILL the API ``delay`` seconds later, start it again; what the client
    saw: "answered <status>" or "cut" (no answer)."""
    async with httpx.AsyncClient(base_url=base_url(api.service), timeout=10) as http:
        request = asyncio.create_task(
            http.post(
                f"/api/v1/clusters/{cluster_id}/transfer",
                json={"project_id": target},
                headers=OWNER,
            )
        )
        await asyncio.sleep(delay)
        await asyncio.to_thread(api.kill)
        try:
            response = await request
            seen = f"answered {response.status_code}"
        except httpx.TransportError:
            seen = "cut"
    await api.start()
    return seen


async def test_transfer_moves_every_nodepool_or_none_under_sigkill(
    killable_api: ApiReplica, redis: Redis, settings: Settings
) -> None:
    names = settings.names
    http = killable_api.http
    projects = (await new_project(http, "first"), await new_project(http, "second"))
    cluster_id, pool_ids = await cluster_with_pools(http, projects[0])
    rng = random.Random()
    seen: Counter[str] = Counter()
    moves = 0
    where = projects[0]
    for _ in range(ROUNDS):
        target = projects[1] if where == projects[0] else projects[0]
        outcome = await transfer_killed(killable_api, cluster_id, target, rng.uniform(0, MAX_DELAY))
        seen[outcome] += 1
        now = await wholly_in_one_project(redis, names, cluster_id, pool_ids, projects)
        moves += now != where
        where = now
    assert seen["cut"] > 0, f"no kill landed while a transfer was in flight: {dict(seen)}"
    assert set(seen) <= {"cut", "answered 200"}, dict(seen)

    target = projects[1] if where == projects[0] else projects[0]
    response = await http.post(
        f"/api/v1/clusters/{cluster_id}/transfer", json={"project_id": target}, headers=OWNER
    )
    assert response.status_code == 200, response.text
    assert await wholly_in_one_project(redis, names, cluster_id, pool_ids, projects) == target
    got = await http.get(f"/api/v1/clusters/{cluster_id}", headers=OWNER)
    assert got.json()["project_id"] == target
    for project, count in ((target, POOLS), (where, 0)):
        listed = await http.get(
            "/api/v1/nodepools",
            params={"project_id": project, "cluster_id": cluster_id, "limit": 1},
            headers=OWNER,
        )
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == count, f"nodepools listed in project {project}"
    print(f"rounds: {dict(seen)}, moved in {moves} of {ROUNDS}")
