"""Fixtures of the security tests: the API in-process without the event relay (these tests
read the outbox themselves, or need no broker), and a cluster with a nodepool of USER's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import USER, api_client, gcp_cluster_body, seed_nodepool_body

API = "/api/v1"


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, relay_events=False) as client:
        yield client


@pytest.fixture
async def owned(api: httpx.AsyncClient) -> dict[str, Any]:
    """USER's cluster ("cl") and its nodepool ("np"), as created."""
    cluster = (await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)).json()
    body = seed_nodepool_body(cluster["id"])
    nodepool = (await api.post(f"{API}/nodepools", json=body, headers=USER)).json()
    return {"np": nodepool, "cl": cluster}
