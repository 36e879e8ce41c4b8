"""Reports over AMQP: stored exactly as over HTTP, idempotent, never regressing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from status_ingester.consumer import StatusIngester
from tests.conftest import USER, controller_headers, seed_nodepool_body
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    counters,
    create_nodepools,
    dead_letter_count,
    nodepool_report,
    queue_counts,
    report,
    stored_reports,
    without_times,
)
from tests.support.deletion import delete_nodepool
from tests.support.polling import eventually


async def status_of(api: httpx.AsyncClient, nodepool_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/v1/nodepools/{nodepool_id}/status", headers=USER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_counter(redis: Redis, settings: Settings, name: str, value: int) -> None:
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get(name, 0) >= value,
        what=f"counter {name} >= {value}",
    )


async def test_report_over_amqp_is_stored_as_the_same_report_over_http(
    api: httpx.AsyncClient,
    cluster: dict[str, Any],
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    over_amqp, over_http = await create_nodepools(api, cluster["id"], 2)
    body = report(1, ready=True, step=5)
    await publisher.report({**body, "nodepool_id": over_amqp})
    response = await api.put(
        f"/api/v1/nodepools/{over_http}/status", json=body, headers=controller_headers()
    )
    assert response.status_code == 200, response.text
    await wait_counter(redis, settings, "applied", 1)

    via_amqp, via_http = await status_of(api, over_amqp), await status_of(api, over_http)
    assert via_amqp["status"]["phase"] == "Ready"
    assert without_times(via_amqp["status"]) == without_times(via_http["status"])
    assert without_times(via_amqp["controller_status"]) == without_times(
        via_http["controller_status"]
    )
    assert via_amqp["controller_status"][0]["metadata"] == body["metadata"]
    # The nodepool's own status is the same aggregate.
    nodepool = (await api.get(f"/api/v1/nodepools/{over_amqp}", headers=USER)).json()
    assert nodepool["status"] == via_amqp["status"]


async def test_duplicate_report_changes_nothing(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    body = nodepool_report(nodepool["id"], ready=True, step=1)
    await publisher.report(body)
    await wait_counter(redis, settings, "applied", 1)
    before = (await api.get(f"/api/v1/nodepools/{nodepool['id']}", headers=USER)).json()
    stored_before = await stored_reports(redis, settings.names, nodepool["id"])

    await publisher.report(body)
    await wait_counter(redis, settings, "unchanged", 1)

    after = (await api.get(f"/api/v1/nodepools/{nodepool['id']}", headers=USER)).json()
    assert after == before  # resource_version, lastTransitionTime and lastUpdateTime included
    assert await stored_reports(redis, settings.names, nodepool["id"]) == stored_before


async def test_late_generation_1_report_after_generation_2_is_ignored(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    await bump_generation(api, nodepool)
    await publisher.report(nodepool_report(nodepool["id"], 2, ready=True, step=2))
    await publisher.report(nodepool_report(nodepool["id"], 1, ready=False, step=1))
    await wait_counter(redis, settings, "stale", 1)

    status = await status_of(api, nodepool["id"])
    (stored,) = status["controller_status"]
    assert (stored["observed_generation"], stored["metadata"]["step"]) == (2, 2)
    assert status["status"]["phase"] == "Ready"
    assert status["status"]["observedGeneration"] == 2


async def test_spec_change_makes_old_reports_stop_counting(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    await publisher.report(nodepool_report(nodepool["id"], 1, ready=True, step=1))
    await wait_counter(redis, settings, "applied", 1)
    assert (await status_of(api, nodepool["id"]))["status"]["phase"] == "Ready"

    await bump_generation(api, nodepool)
    status = (await status_of(api, nodepool["id"]))["status"]
    assert (status["phase"], status["reason"]) == ("Progressing", "NewGenerationPending")
    # A new report of the old generation does not count either.
    await publisher.report(nodepool_report(nodepool["id"], 1, ready=True, step=9))
    await wait_counter(redis, settings, "applied", 2)
    status = (await status_of(api, nodepool["id"]))["status"]
    assert (status["phase"], status["reason"]) == ("Progressing", "NewGenerationPending")

    await publisher.report(nodepool_report(nodepool["id"], 2, ready=True, step=10))
    await wait_counter(redis, settings, "applied", 3)
    status = (await status_of(api, nodepool["id"]))["status"]
    assert (status["phase"], status["observedGeneration"]) == ("Ready", 2)


async def test_report_on_unknown_nodepool_is_acked_and_counted(
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    unknown = str(uuid.uuid4())
    await publisher.report(nodepool_report(unknown, ready=True))
    await wait_counter(redis, settings, "unknown", 1)
    assert await stored_reports(redis, settings.names, unknown) == {}
    assert not await redis.exists(settings.names.record("nodepool", unknown))
    assert (await queue_counts(amqp, settings.names))[0] == 0
    assert await dead_letter_count(amqp, settings.names) == 0


async def test_report_on_deleted_nodepool_is_not_stored(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    await delete_nodepool(api, nodepool["id"])  # and confirmed: purged, a tombstone left
    await publisher.report(nodepool_report(nodepool["id"], ready=True))
    await wait_counter(redis, settings, "unknown", 1)
    assert await stored_reports(redis, settings.names, nodepool["id"]) == {}
    assert not await redis.exists(settings.names.record("nodepool", nodepool["id"]))


async def test_reports_on_one_nodepool_are_applied_in_publish_order(
    api: httpx.AsyncClient,
    cluster: dict[str, Any],
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    # Many steps on few nodepools, interleaved: with the prefetch window full of reports on
    # the same nodepool, applying them concurrently would end on a random step.
    nodepool_ids = await create_nodepools(api, cluster["id"], 3)
    steps = 150
    bodies = [
        nodepool_report(nodepool_id, step=step, ready=step == steps)
        for step in range(1, steps + 1)
        for nodepool_id in nodepool_ids
    ]
    await publisher.reports(bodies)
    await wait_counter(redis, settings, "applied", len(bodies))
    for nodepool_id in nodepool_ids:
        stored = await stored_reports(redis, settings.names, nodepool_id)
        assert stored[CONTROLLER]["metadata"]["step"] == steps


async def bump_generation(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    body = seed_nodepool_body(nodepool["cluster_id"], name=nodepool["name"])
    body.pop("cluster_id")
    body["spec"]["nodeCount"] = body["spec"]["nodeCount"] + 1
    response = await api.put(f"/api/v1/nodepools/{nodepool['id']}", json=body, headers=USER)
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == nodepool["generation"] + 1
