"""The ``status`` and ``health`` list filters follow the aggregates the ingester writes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from status_ingester.consumer import StatusIngester
from tests.conftest import USER
from tests.ingest.conftest import (
    Publisher,
    counters,
    create_cluster_id,
    create_nodepools,
    nodepool_report,
)
from tests.support.polling import eventually

# Two controllers with broker users of their own (`make test` creates the simulated ones').
A, B = "gcp-nodepool-controller", "aws-nodepool-controller"

# name -> the reports it gets, and the (phase, health) they must produce.
SCENARIOS: dict[str, tuple[list[dict[str, Any]], tuple[str, str]]] = {
    "ready": ([{"controller": A, "ready": True}], ("Ready", "Healthy")),
    "degraded": (
        [{"controller": A, "ready": True}, {"controller": B, "error": "quota exceeded"}],
        ("Progressing", "Degraded"),
    ),
    "failed": ([{"controller": A, "failed": True}], ("Failed", "Unhealthy")),
    "partial": (
        [{"controller": A, "ready": True}, {"controller": B, "ready": False}],
        ("Progressing", "Unknown"),
    ),
    "pending": ([], ("Pending", "Unknown")),
}


@pytest.fixture
async def pools(
    api: httpx.AsyncClient,
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> dict[str, str]:
    """One nodepool per scenario (in two clusters), with its reports applied."""
    clusters = [await create_cluster_id(api, "c1"), await create_cluster_id(api, "c2")]
    ids: dict[str, str] = {}
    for i, name in enumerate(SCENARIOS):
        (ids[name],) = await create_nodepools(api, clusters[i % 2], 1, prefix=name)
    bodies = [
        nodepool_report(ids[name], **kwargs)
        for name, (reports, _) in SCENARIOS.items()
        for kwargs in reports
    ]
    await publisher.reports(bodies)
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("applied") == len(bodies),
        what="every report applied",
    )
    return ids


async def listed(api: httpx.AsyncClient, **params: str) -> set[str]:
    response = await api.get("/api/v1/nodepools", params={**params, "limit": "100"}, headers=USER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["nodepools"])
    return {item["id"] for item in body["nodepools"]}


async def test_each_nodepool_has_its_expected_phase_and_health(
    api: httpx.AsyncClient, pools: dict[str, str]
) -> None:
    for name, (_, expected) in SCENARIOS.items():
        nodepool = (await api.get(f"/api/v1/nodepools/{pools[name]}", headers=USER)).json()
        assert (nodepool["status"]["phase"], nodepool["status"]["health"]) == expected, name


@pytest.mark.parametrize("phase", ["Pending", "Progressing", "Ready", "Failed"])
async def test_status_filter_returns_exactly_the_nodepools_in_that_phase(
    api: httpx.AsyncClient, pools: dict[str, str], phase: str
) -> None:
    expected = {pools[name] for name, (_, (p, _)) in SCENARIOS.items() if p == phase}
    assert await listed(api, status=phase) == expected


@pytest.mark.parametrize("health", ["Healthy", "Degraded", "Unhealthy", "Unknown"])
async def test_health_filter_returns_exactly_the_nodepools_with_that_health(
    api: httpx.AsyncClient, pools: dict[str, str], health: str
) -> None:
    expected = {pools[name] for name, (_, (_, h)) in SCENARIOS.items() if h == health}
    assert await listed(api, health=health) == expected


async def test_status_and_health_filters_combine(
    api: httpx.AsyncClient, pools: dict[str, str]
) -> None:
    assert await listed(api, status="Progressing", health="Degraded") == {pools["degraded"]}
    assert await listed(api, status="Progressing", health="Unknown") == {pools["partial"]}
    assert await listed(api, status="Ready", health="Unhealthy") == set()


async def test_filters_follow_a_nodepool_that_changes_phase(
    api: httpx.AsyncClient,
    pools: dict[str, str],
    publisher: Publisher,
    redis: Redis,
    settings: Settings,
) -> None:
    before = (await counters(redis, settings.names))["applied"]
    await publisher.report(nodepool_report(pools["failed"], controller=A, ready=True, step=1))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c["applied"] == before + 1,
        what="the recovery applied",
    )
    assert pools["failed"] not in await listed(api, status="Failed")
    assert pools["failed"] not in await listed(api, health="Unhealthy")
    assert await listed(api, status="Ready") == {pools["ready"], pools["failed"]}
