"""Controller reports on clusters: over AMQP as over HTTP, and the cluster list filter."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from status_ingester.consumer import StatusIngester
from tests.conftest import USER, controller_headers
from tests.ingest.conftest import (
    CLUSTER_CONTROLLER,
    Publisher,
    cluster_report,
    counters,
    create_cluster_id,
    report,
    without_times,
)
from tests.support.polling import eventually


async def cluster_status(api: httpx.AsyncClient, cluster_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/v1/clusters/{cluster_id}/status", headers=USER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_cluster_report_over_amqp_is_stored_as_over_http(
    api: httpx.AsyncClient,
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    over_amqp, over_http = await create_cluster_id(api, "a"), await create_cluster_id(api, "b")
    body = report(1, controller=CLUSTER_CONTROLLER, ready=True, step=3)
    await publisher.report({**body, "cluster_id": over_amqp})
    response = await api.put(
        f"/api/v1/clusters/{over_http}/status",
        json=body,
        headers=controller_headers(CLUSTER_CONTROLLER),
    )
    assert response.status_code == 200, response.text
    await eventually(
        lambda: counters(redis, settings.names), lambda c: c.get("applied") == 1, what="applied"
    )
    via_amqp, via_http = await cluster_status(api, over_amqp), await cluster_status(api, over_http)
    assert via_amqp["status"]["phase"] == "Ready"
    assert without_times(via_amqp["status"]) == without_times(via_http["status"])
    assert without_times(via_amqp["controller_status"]) == without_times(
        via_http["controller_status"]
    )
    cluster = (await api.get(f"/api/v1/clusters/{over_amqp}", headers=USER)).json()
    assert cluster["status"] == via_amqp["status"]


async def test_cluster_status_filter_follows_reports(
    api: httpx.AsyncClient,
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    ready, failed, pending = [await create_cluster_id(api, n) for n in ("r", "f", "p")]
    await publisher.reports(
        [cluster_report(ready, ready=True), cluster_report(failed, error="no quota")]
    )
    await eventually(
        lambda: counters(redis, settings.names), lambda c: c.get("applied") == 2, what="applied"
    )

    async def listed(phase: str) -> set[str]:
        response = await api.get("/api/v1/clusters", params={"status": phase}, headers=USER)
        return {c["id"] for c in response.json()["clusters"]}

    assert await listed("Ready") == {ready}
    assert await listed("Failed") == {failed}
    assert await listed("Pending") == {pending}


async def test_cluster_report_on_unknown_cluster_is_counted(
    publisher: Publisher, ingester: StatusIngester, redis: Redis, settings: Settings
) -> None:
    await publisher.report(cluster_report(str(uuid.uuid4()), ready=True))
    await eventually(
        lambda: counters(redis, settings.names), lambda c: c.get("unknown") == 1, what="unknown"
    )
