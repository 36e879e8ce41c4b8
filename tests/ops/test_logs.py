"""Structured logs: every response carries an X-Request-ID, every request gets one access line
with its route, status, duration and resource, lines are JSON, and credentials never appear."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.logs import JsonFormatter, TextFormatter, log_context, without_password
from cls_runtime.settings import Settings
from tests.conftest import (
    CONTROLLER_TOKENS,
    USER,
    api_client,
    controller_headers,
    gcp_cluster_body,
    seed_nodepool_body,
)
from tests.support.services import api_process, base_url

API = "/api/v1"
GENERATED = re.compile(r"[0-9a-f]{32}")
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access lines, as the JSON formatter writes them."""
    formatter = JsonFormatter()
    return [
        orjson.loads(formatter.format(r)) for r in caplog.records if r.name == "api_service.access"
    ]


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> Any:
    async with api_client(settings, relay_events=False) as client:
        yield client


async def test_every_response_carries_a_request_id_errors_included(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    too_big = b"x" * (settings.max_body_bytes + 1)
    responses = [
        await api.get("/health"),
        await api.get(f"{API}/nodepools", headers=USER),
        await api.get(f"{API}/nodepools"),  # 401
        await api.get(f"{API}/nodepools/{uuid.uuid4()}", headers=USER),  # 404
        await api.get("/nowhere"),  # 404 without a route
        await api.post(f"{API}/clusters", content=too_big, headers={**USER, **JSON}),  # 413
        await api.post(f"{API}/clusters", content=b'{"a":1,"a":1}', headers={**USER, **JSON}),
        await api.delete(f"{API}/clusters", headers=USER),  # 405
    ]
    ids = [r.headers.get("X-Request-ID", "") for r in responses]
    assert all(GENERATED.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


async def test_a_500_carries_a_request_id_and_is_logged_once_with_it(
    api: httpx.AsyncClient, redis: Redis, settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    created = (await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)).json()
    # A doc that cannot be read, and no view to send instead.
    await redis.hset(settings.names.record("cluster", created["id"]), "doc", "{not json")
    await redis.delete(settings.names.view("cluster", created["id"]))
    response = await api.get(f"{API}/clusters/{created['id']}", headers=USER)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL"
    request_id = response.headers["X-Request-ID"]
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    line = orjson.loads(JsonFormatter().format(errors[0]))
    assert line["request_id"] == request_id
    assert "Traceback" in line["exc"]


@pytest.mark.parametrize(
    "request_id", ["abc-123", "4bf92f3577b34da6a3ce929d0e0e4736", "a.b:c/d=e+f"]
)
async def test_a_safe_request_id_is_kept_and_echoed(
    api: httpx.AsyncClient, request_id: str
) -> None:
    response = await api.get("/health", headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [b"", b"a b", b"x" * 129, b"<script>", "\u00e9t\u00e9".encode(), b'"quoted"'],
    ids=repr,
)
async def test_an_unsafe_request_id_is_replaced(api: httpx.AsyncClient, request_id: bytes) -> None:
    response = await api.get("/health", headers=[(b"X-Request-ID", request_id)])
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


async def test_one_access_line_per_request_with_route_status_and_duration(
    api: httpx.AsyncClient, logs: pytest.LogCaptureFixture
) -> None:
    missing = uuid.uuid4()
    response = await api.get(
        f"{API}/nodepools/{missing}", headers={**USER, "X-Request-ID": "trace-1"}
    )
    [line] = access_lines(logs)
    assert line["request_id"] == "trace-1" == response.headers["X-Request-ID"]
    assert line["route"] == "/api/v1/nodepools/{id}"
    assert line["path"] == f"/api/v1/nodepools/{missing}"
    assert (line["method"], line["status"]) == ("GET", 404)
    assert line["duration_ms"] > 0
    assert line["nodepool_id"] == str(missing)
    assert line["level"] == "INFO"


async def test_write_lines_name_the_resource_and_its_generation(
    api: httpx.AsyncClient, logs: pytest.LogCaptureFixture
) -> None:
    cluster = (await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)).json()
    body = seed_nodepool_body(cluster["id"])
    pool = (await api.post(f"{API}/nodepools", json=body, headers=USER)).json()
    await api.patch(f"{API}/nodepools/{pool['id']}", json={"spec": {"nodeCount": 4}}, headers=USER)
    report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 2}
    await api.put(f"{API}/nodepools/{pool['id']}/status", json=report, headers=controller_headers())
    await api.delete(f"{API}/nodepools/{pool['id']}", headers=USER)
    lines = access_lines(logs)
    assert [(line["method"], line["status"]) for line in lines] == [
        ("POST", 201),
        ("POST", 201),
        ("PATCH", 200),
        ("PUT", 200),
        ("DELETE", 204),
    ]
    created_cluster, created, patched, reported, deleted = lines
    assert (created_cluster["cluster_id"], created_cluster["generation"]) == (cluster["id"], 1)
    assert (created["nodepool_id"], created["cluster_id"], created["generation"]) == (
        pool["id"],
        cluster["id"],
        1,
    )
    assert (patched["nodepool_id"], patched["generation"]) == (pool["id"], 2)
    assert (reported["nodepool_id"], reported["generation"]) == (pool["id"], 2)
    assert (reported["controller"], reported["observed_generation"]) == (
        "gcp-nodepool-controller",
        2,
    )
    assert reported["outcome"] == "applied"
    assert deleted["nodepool_id"] == pool["id"]


async def test_no_credential_reaches_a_log_line(
    api: httpx.AsyncClient, logs: pytest.LogCaptureFixture
) -> None:
    cluster = (await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)).json()
    pool = (
        await api.post(f"{API}/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER)
    ).json()
    url = f"{API}/nodepools/{pool['id']}/status"
    report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 1}
    await api.put(url, json=report, headers=controller_headers())  # applied
    await api.put(url, json=report, headers=controller_headers())  # unchanged
    await api.put(url, json=report, headers=controller_headers("aws-nodepool-controller"))  # 403
    await api.put(url, json=report, headers={"Authorization": "Bearer not-a-token-xyz"})  # 401
    await api.put(url, content=b"{bad", headers={**controller_headers(), **JSON})  # 400
    await api.get(f"{API}/nodepools", headers=controller_headers())  # 403 on a user route
    text = "\n".join(
        formatter.format(r)
        for r in logs.records
        for formatter in (JsonFormatter(), TextFormatter())
    )
    assert len(logs.records) >= 8
    for secret in [*CONTROLLER_TOKENS.values(), "not-a-token-xyz", "Bearer"]:
        assert secret not in text


def test_a_connection_url_is_logged_without_its_password() -> None:
    assert without_password("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert without_password("amqp://guest:s3cret@mq:5672/") == "amqp://guest:***@mq:5672/"
    assert without_password("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_json_lines_carry_context_and_extra_fields() -> None:
    logger = logging.getLogger("tests.ops.json")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        with log_context(request_id="r-1", nodepool_id="np-1"):
            logger.warning('with "quotes"\nand a newline', extra={"generation": 3})
    finally:
        logger.removeHandler(handler)
    line = JsonFormatter().format(records[0])
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert parsed["msg"] == 'with "quotes"\nand a newline'
    assert (parsed["request_id"], parsed["nodepool_id"], parsed["generation"]) == ("r-1", "np-1", 3)
    assert (parsed["level"], parsed["logger"]) == ("WARNING", "tests.ops.json")


def test_the_running_service_logs_json_lines_without_credentials(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    with (
        api_process(settings, tmp_path, CLS_LOG_LEVEL="DEBUG") as service,
        httpx.Client(base_url=base_url(service), timeout=10) as client,
    ):
        cluster = client.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER).json()
        pool = client.post(
            f"{API}/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
        ).json()
        report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 1}
        put = client.put(
            f"{API}/nodepools/{pool['id']}/status",
            json=report,
            headers={**controller_headers(), "X-Request-ID": "e2e-status-put"},
        )
        assert put.status_code == 200, put.text
    lines = [orjson.loads(line) for line in service.log_path.read_text().splitlines() if line]
    put_line = next(line for line in lines if line.get("request_id") == "e2e-status-put")
    assert (put_line["route"], put_line["status"]) == ("/api/v1/nodepools/{id}/status", 200)
    assert (put_line["nodepool_id"], put_line["generation"]) == (pool["id"], 1)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # its lines are JSON too
    text = service.log_path.read_text()
    assert all(token not in text for token in CONTROLLER_TOKENS.values())
