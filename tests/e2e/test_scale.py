"""Many nodepools at once: 200 created together all reach Ready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from tests.support.polling import eventually
from tests.support.resources import create_cluster
from tests.support.stack import Json, Stack, cluster_body, create_body, create_nodepool

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

COUNT = 200
CONCURRENCY = 32


async def ready_total(http: httpx.AsyncClient) -> int:
    response = await http.get("/api/v1/nodepools", params={"status": "Ready", "limit": 1})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


async def test_200_nodepools_created_at_once_all_reach_ready(
    stack: Stack, record_property: Callable[[str, object], None]
) -> None:
    http = stack.http
    clusters = [
        await create_cluster(http, cluster_body(p, f"c-{p}")) for p in ("gcp", "aws", "azure")
    ]
    platforms = ("gcp", "aws", "azure")
    gate = asyncio.Semaphore(CONCURRENCY)

    async def create(i: int) -> Json:
        platform = platforms[i % 3]
        body = create_body(clusters[i % 3]["id"], platform, name=f"pool-{i:03d}")
        async with gate:
            return await create_nodepool(http, body)

    started = time.monotonic()
    await asyncio.gather(*(create(i) for i in range(COUNT)))
    created_in = time.monotonic() - started

    async def all_ready() -> Json | None:
        total = await ready_total(http)
        return {"total": total} if total == COUNT else None

    await eventually(all_ready, what=f"{COUNT} nodepools Ready", within=180)
    elapsed = time.monotonic() - started
    record_property("created_seconds", round(created_in, 2))
    record_property("ready_seconds", round(elapsed, 2))
    print(f"\n{COUNT} nodepools: created in {created_in:.2f}s, all Ready after {elapsed:.2f}s")
