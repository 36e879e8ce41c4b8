"""Quotas: nodepools per cluster and clusters per project. A create beyond one answers 403
QUOTA_EXCEEDED naming the limit, writes nothing, and is counted in the create's own transaction,
so concurrent creates never pass a quota together. Most tests run with quotas of ``QUOTA``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import API, QUOTA, assert_error, create_nodepool
from tests.conftest import OTHER_USER, USER, gcp_cluster_body, seed_nodepool_body
from tests.support.deletion import delete_nodepool, purge_cluster
from tests.support.resources import create_cluster

NODEPOOL_ROUTES = ["/nodepools", "/clusters/{cl}/nodepools"]


async def fill_cluster(api: httpx.AsyncClient, cluster_id: str, count: int = QUOTA) -> None:
    for i in range(count):
        await create_nodepool(api, cluster_id, f"pool-{i}")


async def fill_project(api: httpx.AsyncClient, count: int = QUOTA) -> None:
    for i in range(count):
        await create_cluster(api, gcp_cluster_body(f"cluster-{i}"))


async def total(api: httpx.AsyncClient, what: str, user: dict[str, str] = USER) -> int:
    listed: int = (await api.get(f"{API}/{what}", headers=user)).json()["total"]
    return listed


async def outbox_length(redis: Redis, settings: Settings) -> int:
    return int(await redis.xlen(settings.names.outbox))


def test_the_default_quotas_are_100_nodepools_per_cluster_and_100_clusters_per_project(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NODEPOOLS_PER_CLUSTER", "CLUSTERS_PER_PROJECT", "CLUSTERS_PER_OWNER"):
        monkeypatch.delenv(f"CLS_MAX_{name}", raising=False)
    defaults = Settings()
    assert (defaults.max_nodepools_per_cluster, defaults.max_clusters_per_project) == (100, 100)


def test_the_quotas_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLS_MAX_NODEPOOLS_PER_CLUSTER", "7")
    monkeypatch.setenv("CLS_MAX_CLUSTERS_PER_PROJECT", "9")
    configured = Settings()
    assert (configured.max_nodepools_per_cluster, configured.max_clusters_per_project) == (7, 9)


def test_the_cluster_quota_is_still_read_under_its_name_before_projects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CLS_MAX_CLUSTERS_PER_PROJECT", raising=False)
    monkeypatch.setenv("CLS_MAX_CLUSTERS_PER_OWNER", "9")
    assert Settings().max_clusters_per_project == 9


@pytest.mark.parametrize("route", NODEPOOL_ROUTES)
async def test_a_nodepool_beyond_the_quota_is_403_naming_the_limit(
    quota_api: httpx.AsyncClient, redis: Redis, quota_settings: Settings, route: str
) -> None:
    cluster = await create_cluster(quota_api)
    await fill_cluster(quota_api, cluster["id"])
    events = await outbox_length(redis, quota_settings)
    body = seed_nodepool_body(cluster["id"], "one-too-many")
    response = await quota_api.post(API + route.format(cl=cluster["id"]), json=body, headers=USER)
    error = assert_error(response, 403, "QUOTA_EXCEEDED")
    assert error["message"] == f"Quota exceeded: at most {QUOTA} nodepools per cluster"
    assert str(QUOTA) in error["details"]
    assert await total(quota_api, "nodepools") == QUOTA
    assert await outbox_length(redis, quota_settings) == events


async def test_a_cluster_beyond_the_quota_is_403_naming_the_limit(
    quota_api: httpx.AsyncClient, redis: Redis, quota_settings: Settings
) -> None:
    await fill_project(quota_api)
    events = await outbox_length(redis, quota_settings)
    response = await quota_api.post(
        f"{API}/clusters", json=gcp_cluster_body("one-too-many"), headers=USER
    )
    error = assert_error(response, 403, "QUOTA_EXCEEDED")
    assert error["message"] == f"Quota exceeded: at most {QUOTA} clusters per project"
    assert str(QUOTA) in error["details"]
    assert await total(quota_api, "clusters") == QUOTA
    assert await outbox_length(redis, quota_settings) == events


async def test_the_default_nodepool_quota_refuses_the_101st(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    await asyncio.gather(*(create_nodepool(api, cluster["id"], f"pool-{i}") for i in range(100)))
    body = seed_nodepool_body(cluster["id"], "pool-100")
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    error = assert_error(response, 403, "QUOTA_EXCEEDED")
    assert error["message"] == "Quota exceeded: at most 100 nodepools per cluster"


async def test_the_nodepool_quota_is_per_cluster(quota_api: httpx.AsyncClient) -> None:
    full = await create_cluster(quota_api, gcp_cluster_body("full"))
    await fill_cluster(quota_api, full["id"])
    other = await create_cluster(quota_api, gcp_cluster_body("other"))
    await create_nodepool(quota_api, other["id"])


async def test_the_cluster_quota_is_per_project(quota_api: httpx.AsyncClient) -> None:
    await fill_project(quota_api)
    await create_cluster(quota_api, gcp_cluster_body("theirs"), user=OTHER_USER)


async def test_deleting_a_nodepool_makes_room_for_another_once_purged(
    quota_api: httpx.AsyncClient,
) -> None:
    cluster = await create_cluster(quota_api)
    await fill_cluster(quota_api, cluster["id"], QUOTA - 1)
    last = await create_nodepool(quota_api, cluster["id"], "last")
    await delete_nodepool(quota_api, last["id"])
    await create_nodepool(quota_api, cluster["id"], "instead")


async def test_deleting_a_cluster_makes_room_for_another_once_purged(
    quota_api: httpx.AsyncClient, quota_settings: Settings
) -> None:
    await fill_project(quota_api, QUOTA - 1)
    last = await create_cluster(quota_api, gcp_cluster_body("last"))
    await purge_cluster(quota_api, quota_settings, last["id"])
    await create_cluster(quota_api, gcp_cluster_body("instead"))


async def test_a_dry_run_nodepool_create_beyond_the_quota_is_403(
    quota_api: httpx.AsyncClient,
) -> None:
    cluster = await create_cluster(quota_api)
    await fill_cluster(quota_api, cluster["id"])
    body = seed_nodepool_body(cluster["id"], "dry")
    response = await quota_api.post(f"{API}/nodepools?dryRun=true", json=body, headers=USER)
    assert_error(response, 403, "QUOTA_EXCEEDED")


async def test_a_dry_run_cluster_create_beyond_the_quota_is_403(
    quota_api: httpx.AsyncClient,
) -> None:
    await fill_project(quota_api)
    response = await quota_api.post(
        f"{API}/clusters?dryRun=true", json=gcp_cluster_body("dry"), headers=USER
    )
    assert_error(response, 403, "QUOTA_EXCEEDED")


async def test_concurrent_nodepool_creates_at_the_limit_create_exactly_the_remaining_number(
    quota_api: httpx.AsyncClient,
) -> None:
    cluster = await create_cluster(quota_api)
    await fill_cluster(quota_api, cluster["id"], QUOTA - 2)
    responses = await asyncio.gather(
        *(
            quota_api.post(
                f"{API}/nodepools",
                json=seed_nodepool_body(cluster["id"], f"racer-{i}"),
                headers=USER,
            )
            for i in range(12)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 2 + [403] * 10, [r.text for r in responses]
    assert await total(quota_api, "nodepools") == QUOTA


async def test_concurrent_cluster_creates_at_the_limit_create_exactly_the_remaining_number(
    quota_api: httpx.AsyncClient,
) -> None:
    await fill_project(quota_api, QUOTA - 2)
    responses = await asyncio.gather(
        *(
            quota_api.post(f"{API}/clusters", json=gcp_cluster_body(f"racer-{i}"), headers=USER)
            for i in range(12)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 2 + [403] * 10, [r.text for r in responses]
    assert await total(quota_api, "clusters") == QUOTA


async def test_a_create_refused_by_the_quota_stores_no_idempotency_key(
    quota_api: httpx.AsyncClient, redis: Redis, quota_settings: Settings
) -> None:
    await fill_project(quota_api)
    keyed = {**USER, "Idempotency-Key": "k"}
    response = await quota_api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=keyed)
    assert_error(response, 403, "QUOTA_EXCEEDED")
    assert await redis.get(quota_settings.names.idempotency(USER["X-User-Email"], "k")) is None


async def test_a_retried_create_that_filled_the_quota_is_still_a_replay(
    quota_api: httpx.AsyncClient,
) -> None:
    await fill_project(quota_api, QUOTA - 1)
    keyed = {**USER, "Idempotency-Key": "k"}
    body = gcp_cluster_body("last")
    first = await quota_api.post(f"{API}/clusters", json=body, headers=keyed)
    again = await quota_api.post(f"{API}/clusters", json=body, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]


async def test_openapi_documents_quota_exceeded_on_the_create_routes(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()
    paths = document["paths"]
    for path in ("/api/v1/clusters", "/api/v1/nodepools", "/api/v1/clusters/{clusterId}/nodepools"):
        assert "QUOTA_EXCEEDED" in paths[path]["post"]["responses"]["403"]["description"], path
    assert "QUOTA_EXCEEDED" in document["components"]["schemas"]["ErrorCode"]["enum"]
