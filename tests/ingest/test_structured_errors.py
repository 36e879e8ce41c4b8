"""``last_error`` as a string or as the original system's object, over HTTP and over AMQP: the
same validation, the same stored report, the same aggregate, shown in every view."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from status_ingester.consumer import StatusIngester
from tests.conftest import USER, controller_headers
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    StartIngester,
    counters,
    create_cluster_id,
    create_nodepools,
    dead_letters,
    nodepool_report,
    report,
    stored_reports,
    without_times,
)
from tests.support.polling import eventually

# As a controller of the original system sends it (Go's encoding/json of its ErrorInfo).
QUOTA: dict[str, Any] = {
    "controllerName": CONTROLLER,
    "errorType": "Configuration",
    "errorCode": "QUOTA_EXCEEDED",
    "message": "Quota CPUS exceeded in us-central1: 24 of 24 in use",
    "userActionable": True,
    "suggestions": ["Request a CPUS quota increase", "Lower nodeCount"],
    "details": {"quota": "CPUS", "region": "us-central1"},
    "retryAfter": 1_800_000_000_000,  # a time.Duration of 30 minutes, in nanoseconds
    "timestamp": "2025-10-17T10:30:00Z",
}
QUOTA_STORED = {**QUOTA, "retryAfter": "30m"}
QUOTA_ENTRY = {
    "controller": CONTROLLER,
    "errorType": "Configuration",
    "errorCode": "QUOTA_EXCEEDED",
    "message": "Quota CPUS exceeded in us-central1: 24 of 24 in use",
    "userActionable": True,
    "suggestions": ["Request a CPUS quota increase", "Lower nodeCount"],
    "retryAfter": "30m",
}
TEXT = "instance template not found"
TEXT_ENTRY = {
    "controller": CONTROLLER,
    "errorType": "Unknown",
    "errorCode": "",
    "message": TEXT,
    "userActionable": False,
    "suggestions": [],
    "retryAfter": None,
}
FORMS = [
    pytest.param(QUOTA, QUOTA_STORED, QUOTA_ENTRY, id="object"),
    pytest.param(TEXT, TEXT, TEXT_ENTRY, id="string"),
]


def with_error(body: dict[str, Any], last_error: Any) -> dict[str, Any]:
    return {**body, "last_error": last_error}


async def put_report(
    api: httpx.AsyncClient, nodepool_id: str, body: dict[str, Any]
) -> httpx.Response:
    return await api.put(
        f"/api/v1/nodepools/{nodepool_id}/status", json=body, headers=controller_headers()
    )


async def get_json(api: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await api.get(path, headers=USER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_counter(redis: Redis, settings: Settings, name: str, value: int) -> None:
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get(name, 0) >= value,
        what=f"counter {name} >= {value}",
    )


# ---- both forms, both paths -------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "stored", "entry"), FORMS)
async def test_both_forms_are_stored_and_aggregated_alike_over_amqp_and_http(
    api: httpx.AsyncClient,
    cluster: dict[str, Any],
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
    sent: Any,
    stored: Any,
    entry: dict[str, Any],
) -> None:
    over_amqp, over_http = await create_nodepools(api, cluster["id"], 2)
    body = with_error(report(1), sent)
    await publisher.report({**body, "nodepool_id": over_amqp})
    response = await put_report(api, over_http, body)
    assert response.status_code == 200, response.text
    await wait_counter(redis, settings, "applied", 1)

    via_amqp = await get_json(api, f"/api/v1/nodepools/{over_amqp}/status")
    via_http = await get_json(api, f"/api/v1/nodepools/{over_http}/status")
    for part in ("status", "controller_status"):
        assert without_times(via_amqp[part]) == without_times(via_http[part])
    assert via_amqp["controller_status"][0]["last_error"] == stored
    assert via_amqp["status"]["errors"] == [entry]
    assert (await stored_reports(redis, settings.names, over_amqp))[CONTROLLER][
        "last_error"
    ] == stored


# ---- what the aggregate shows -----------------------------------------------------------------


async def test_failed_nodepool_shows_the_structured_error_in_every_view(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    nodepool_id = nodepool["id"]
    response = await put_report(api, nodepool_id, with_error(report(1), QUOTA))
    assert response.status_code == 200, response.text

    status = response.json()["status"]
    assert (status["phase"], status["health"], status["reason"]) == (
        "Failed",
        "Unhealthy",
        "ControllersFailed",
    )
    assert status["message"] == (
        "0 of 1 controller ready at generation 1; failing: gcp-nodepool-controller: "
        "Configuration error QUOTA_EXCEEDED: Quota CPUS exceeded in us-central1: 24 of 24 in use"
    )
    assert status["errors"] == [QUOTA_ENTRY]
    # Every view serves the stored status as it is.
    assert (await get_json(api, f"/api/v1/nodepools/{nodepool_id}"))["status"] == status
    assert (await get_json(api, f"/api/v1/nodepools/{nodepool_id}/status"))["status"] == status
    (listed,) = (await get_json(api, "/api/v1/nodepools?status=Failed"))["nodepools"]
    assert listed["id"] == nodepool_id and listed["status"] == status


async def test_degraded_nodepool_shows_the_structured_error(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await put_report(api, nodepool["id"], with_error(report(1, ready=True), QUOTA))
    assert response.status_code == 200, response.text

    status = response.json()["status"]
    assert (status["phase"], status["health"], status["reason"]) == (
        "Progressing",
        "Degraded",
        "ControllersWithErrors",
    )
    assert "gcp-nodepool-controller: Configuration error QUOTA_EXCEEDED: " in status["message"]
    assert status["errors"] == [QUOTA_ENTRY]
    listed = (await get_json(api, "/api/v1/nodepools?health=Degraded"))["nodepools"]
    assert [n["status"]["errors"] for n in listed] == [[QUOTA_ENTRY]]


async def test_errors_disappear_once_the_controller_recovers(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    await put_report(api, nodepool["id"], with_error(report(1), QUOTA))
    response = await put_report(api, nodepool["id"], report(1, ready=True, step=1))

    status = response.json()["status"]
    assert status["phase"] == "Ready" and "errors" not in status
    view = await get_json(api, f"/api/v1/nodepools/{nodepool['id']}/status")
    assert view["controller_status"][0]["last_error"] is None


async def test_cluster_status_shows_the_structured_error(api: httpx.AsyncClient) -> None:
    cluster_id = await create_cluster_id(api)
    body = with_error(report(1, controller="gcp-cluster-controller"), QUOTA)
    response = await api.put(
        f"/api/v1/clusters/{cluster_id}/status",
        json=body,
        headers=controller_headers("gcp-cluster-controller"),
    )
    assert response.status_code == 200, response.text

    entry = {**QUOTA_ENTRY, "controller": "gcp-cluster-controller"}
    assert response.json()["status"]["errors"] == [entry]
    (listed,) = (await get_json(api, "/api/v1/clusters"))["clusters"]
    assert listed["status"]["errors"] == [entry]


# ---- the same report twice --------------------------------------------------------------------


async def test_same_structured_report_twice_over_http_writes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    body = with_error(report(1), QUOTA)
    first = await put_report(api, nodepool["id"], body)
    record_before = await redis.hgetall(settings.names.record("nodepool", nodepool["id"]))
    # The same error as a duration string: normalised, it is the same report.
    second = await put_report(api, nodepool["id"], with_error(body, {**QUOTA, "retryAfter": "30m"}))

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert await redis.hgetall(settings.names.record("nodepool", nodepool["id"])) == record_before


async def test_same_structured_report_twice_over_amqp_writes_nothing(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    publisher: Publisher,
    ingester: StatusIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    body = with_error(nodepool_report(nodepool["id"]), QUOTA)
    await publisher.report(body)
    await wait_counter(redis, settings, "applied", 1)
    record_before = await redis.hgetall(settings.names.record("nodepool", nodepool["id"]))

    await publisher.report(body)
    await wait_counter(redis, settings, "unchanged", 1)

    assert await redis.hgetall(settings.names.record("nodepool", nodepool["id"])) == record_before


# ---- refused ----------------------------------------------------------------------------------

REFUSED = [
    pytest.param({**QUOTA, "errorType": "Permanent"}, "last_error.errorType", id="bad-error-type"),
    pytest.param({**QUOTA, "severity": "high"}, "last_error.severity", id="unknown-key"),
    pytest.param({**QUOTA, "message": "m" * 4097}, "last_error.message", id="oversize-message"),
    pytest.param(
        {**QUOTA, "suggestions": ["retry"] * 11}, "last_error.suggestions", id="11-suggestions"
    ),
    pytest.param({**QUOTA, "retryAfter": "soon"}, "last_error.retryAfter", id="bad-retry-after"),
    pytest.param(7, "last_error", id="a-number"),
]


@pytest.mark.parametrize(("last_error", "field"), REFUSED)
async def test_invalid_error_over_http_is_refused_with_the_field_named(
    api: httpx.AsyncClient, nodepool: dict[str, Any], last_error: Any, field: str
) -> None:
    response = await put_report(api, nodepool["id"], with_error(report(1), last_error))

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [f["field"] for f in error["fields"]] == [field]
    assert error["fields"][0]["message"].startswith(field)
    view = await get_json(api, f"/api/v1/nodepools/{nodepool['id']}/status")
    assert view["controller_status"] == [] and view["status"]["phase"] == "Pending"


@pytest.mark.parametrize(("last_error", "field"), REFUSED[:3])
async def test_invalid_error_over_amqp_is_dead_lettered(
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
    last_error: Any,
    field: str,
) -> None:
    await start_ingester()
    await publisher.report(with_error(nodepool_report(nodepool["id"]), last_error))
    await publisher.report(nodepool_report(nodepool["id"], ready=True, step=7))

    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("dead_lettered") == 1 and c.get("applied") == 1,
        what="one dead-lettered, one applied",
    )
    assert len(await dead_letters(amqp, settings.names)) == 1
    stored = await stored_reports(redis, settings.names, nodepool["id"])
    assert stored[CONTROLLER]["metadata"]["step"] == 7 and stored[CONTROLLER]["last_error"] is None
