"""Helpers and fixtures for the API tests: request bodies per platform, the error-envelope
check every error test uses, and the app over a Redis of the test's own (PrivateRedis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from api_service.app import create_app
from bench.bodies import largest_gcp_lists
from cls_core.services.status import ReportFor, StatusService
from cls_core.store import RedisStore
from cls_core.store.redis_store import connect_redis
from cls_runtime.settings import Settings
from shared_models.status import ControllerReport
from tests.conftest import USER, api_client, seed_nodepool_body
from tests.support.redis_server import PrivateRedis
from tests.support.services import api_process, base_url

API = "/api/v1"
JSON = {"Content-Type": "application/json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
# The seed's cluster id, which POST /clusters lets a client choose.
SEED_CLUSTER_ID = "550e8400-e29b-41d4-a716-446655440000"
ERROR_FIELDS = {"code", "message", "details", "fields"}


def aws_cluster_body(
    name: str = "aws-demo", region: str = "us-west-2", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {"platform": {"type": "aws", "aws": {"region": region}}},
        **extra,
    }


def azure_cluster_body(
    name: str = "azure-demo", location: str = "eastus", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {"platform": {"type": "azure", "azure": {"location": location}}},
        **extra,
    }


def aws_nodepool_body(cluster_id: str, name: str = "aws-workers") -> dict[str, Any]:
    """The user guide's AWS block, in a us-west-2 cluster."""
    return {
        "name": name,
        "cluster_id": cluster_id,
        "spec": {
            "platform": {
                "type": "aws",
                "aws": {
                    "instanceType": "m5.xlarge",
                    "volumeSize": 100,
                    "volumeType": "gp3",
                    "availabilityZones": ["us-west-2a", "us-west-2b"],
                    "spotInstances": False,
                    "userData": "#!/bin/bash\necho 'Custom initialization'",
                },
            },
            "nodeCount": 3,
        },
    }


def azure_nodepool_body(cluster_id: str, name: str = "azure-workers") -> dict[str, Any]:
    """The user guide's Azure block."""
    return {
        "name": name,
        "cluster_id": cluster_id,
        "spec": {
            "platform": {
                "type": "azure",
                "azure": {
                    "vmSize": "Standard_D4s_v3",
                    "osDiskSizeGB": 100,
                    "osDiskType": "Premium_LRS",
                    "availabilityZones": ["1", "2"],
                    "spotInstances": False,
                },
            },
            "nodeCount": 3,
        },
    }


def update_body(name: str = "production-workers", node_count: int = 6) -> dict[str, Any]:
    """The user guide's 'Scale the NodePool' PUT body."""
    return {
        "name": name,
        "spec": {
            "platform": {"type": "gcp", "gcp": {"machineType": "n1-standard-4", "diskSize": 100}},
            "nodeCount": node_count,
        },
    }


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is ``status`` in the API's envelope with ``code``, and nothing else: no
    framework body (FastAPI's {"detail": ...}, Starlette's plain text). Returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "details"} <= set(error) <= ERROR_FIELDS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], str), error
    return error


def error_fields(response: httpx.Response) -> set[str]:
    """The field paths a 400 names."""
    error = assert_error(response, 400, "VALIDATION_ERROR")
    return {f["field"] for f in error.get("fields", [])}


async def create_nodepool(
    api: httpx.AsyncClient,
    cluster_id: str,
    name: str = "production-workers",
    user: dict[str, str] = USER,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload = body or seed_nodepool_body(cluster_id, name)
    response = await api.post(f"{API}/nodepools", json=payload, headers=user)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def window_of_reports(api: httpx.AsyncClient, cluster_id: str, count: int) -> list[ReportFor]:
    """A window as the ingester applies one: a report on each of ``count`` new nodepools (each
    changing its phase, so its indexes and its reconcile schedule move too), one on the cluster,
    and one on a nodepool that does not exist."""
    ready: dict[str, Any] = {
        "observed_generation": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "NodesReady"}],
    }
    items: list[ReportFor] = []
    for i in range(count):
        nodepool = await create_nodepool(api, cluster_id, f"window-{i}")
        report = {"controller_name": "gcp-nodepool-controller", **ready}
        items.append(ReportFor("nodepool", nodepool["id"], ControllerReport.model_validate(report)))
    report = {"controller_name": "gcp-cluster-controller", **ready}
    items.append(ReportFor("cluster", cluster_id, ControllerReport.model_validate(report)))
    missing = "00000000-0000-4000-8000-000000000000"
    items.append(ReportFor("nodepool", missing, ControllerReport.model_validate(report)))
    return items


@contextlib.asynccontextmanager
async def serve(
    settings: Settings, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process over ``settings`` (lifespan included), without the event relay: these
    tests are about the request path (the relay's own outages are tested in tests/events)."""
    app = create_app(settings, relay_events=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
def private_settings(settings: Settings, private_redis: PrivateRedis) -> Settings:
    return settings.model_copy(update={"redis_url": private_redis.url})


@pytest.fixture
async def private_api(private_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(private_settings) as client:
        yield client


@pytest.fixture
async def private_store(private_settings: Settings) -> AsyncIterator[RedisStore]:
    """The services' store over the private Redis."""
    store = RedisStore(connect_redis(private_settings.redis_url), private_settings.names)
    yield store
    await store.aclose()


@pytest.fixture
def private_status(private_store: RedisStore, private_settings: Settings) -> StatusService:
    """The status service (what the ingester applies a window of reports with) over the
    private Redis."""
    return StatusService(private_store, private_settings)


@pytest.fixture
async def private_client(private_redis: PrivateRedis) -> AsyncIterator[Redis]:
    """A direct client of the private Redis, to look at what the API stored."""
    client = Redis.from_url(private_redis.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def running_api(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection, tmp_path: Path
) -> Iterator[str]:
    """``python -m api_service`` as a process, on a free port, in this test's namespace."""
    with api_process(settings, tmp_path) as service:
        yield base_url(service)


@contextlib.asynccontextmanager
async def recorded_commands(client: Redis) -> AsyncIterator[list[tuple[str, str]]]:
    """Every command the Redis server runs meanwhile, as (origin, command) pairs; origin is
    'lua' for commands a script ran."""
    seen: list[tuple[str, str]] = []
    monitor = client.monitor()
    async with monitor as feed:

        async def collect() -> None:
            while True:
                info = await feed.next_command()
                seen.append((info["client_type"], info["command"]))

        task = asyncio.create_task(collect())
        await client.ping()  # MONITOR is on once a command can be seen
        try:
            yield seen
        finally:
            await client.echo("end-of-recording")
            for _ in range(100):
                if any("end-of-recording" in command for _, command in seen):
                    break
                await asyncio.sleep(0.02)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def verbs(seen: list[tuple[str, str]]) -> list[str]:
    return [command.split()[0].upper() for _, command in seen]


SCRIPT_CALLS = {"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"}


def script_runs(seen: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Each script run among recorded commands: (the call, the commands the script ran)."""
    runs: list[tuple[str, list[str]]] = []
    for origin, command in seen:
        if origin != "lua" and command.split()[0].upper() in SCRIPT_CALLS:
            runs.append((command, []))
        elif origin == "lua" and runs:
            runs[-1][1].append(command)
    return runs


def largest_nodepool(cluster_id: str, name: str) -> dict[str, Any]:
    """The largest GCP nodepool the API accepts: every list and map at its bound, long strings
    (its response is about 22 KB)."""
    body = seed_nodepool_body(cluster_id, name)
    body["spec"]["platform"]["gcp"].update(largest_gcp_lists())
    return body


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process without its event relay: these tests check what each write commits to
    the outbox, so nothing may drain it. Publishing is tested in tests/events."""
    async with api_client(settings, relay_events=False) as client:
        yield client


# Small quotas, so that tests reach them in a few creates.
QUOTA = 3


@pytest.fixture
def quota_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"max_nodepools_per_cluster": QUOTA, "max_clusters_per_project": QUOTA}
    )


@pytest.fixture
async def quota_api(quota_settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The API (no event relay) with quotas of ``QUOTA`` nodepools per cluster and clusters per
    owner."""
    async with api_client(quota_settings, relay_events=False) as client:
        yield client


# Long enough for a create and its retry, short enough to wait out in a test.
SHORT_TTL = 0.5


@pytest.fixture
async def short_ttl_api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The API (no event relay) remembering an Idempotency-Key ``SHORT_TTL`` seconds at most."""
    short = settings.model_copy(update={"idempotency_ttl": SHORT_TTL})
    async with api_client(short, relay_events=False) as client:
        yield client
