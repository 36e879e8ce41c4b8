"""Fixtures shared by every test: a namespace per test, real Redis, the API in-process.

Tests run against the real Redis and RabbitMQ of this machine (CLS_REDIS_URL / CLS_AMQP_URL).
Each test gets its own random CLS_NAMESPACE, so its keys, exchanges and queues never meet
another test's, and everything under it is removed afterwards. A missing server fails loudly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from redis.asyncio import Redis

from api_service.app import create_app
from cls_core.services import validation
from cls_core.store import RedisStore
from cls_core.store.redis_store import connect_redis
from cls_runtime import amqp as amqp_topology
from cls_runtime.settings import Settings
from shared_models.names import Names
from tests.support.redis_server import PrivateRedis
from tests.support.status_reports import Reports, watch_reports

if TYPE_CHECKING:
    from tests.support.stack import Stack

# Fixtures defined in tests/support, for every test: cuttable paths to the broker and Redis.
pytest_plugins = ["tests.support.tcp_proxy"]

REDIS_URL = os.environ.get("CLS_REDIS_URL", "redis://localhost:6379/0")
AMQP_URL = os.environ.get("CLS_AMQP_URL", "amqp://guest:guest@localhost:5672/")

USER = {"X-User-Email": "user@example.com"}
OTHER_USER = {"X-User-Email": "other@example.com"}
CONTROLLER_TOKENS = {
    "gcp-nodepool-controller": "gcp-token",
    "aws-nodepool-controller": "aws-token",
    "azure-nodepool-controller": "azure-token",
    "gcp-cluster-controller": "gcp-cluster-token",
    "aws-cluster-controller": "aws-cluster-token",
    "azure-cluster-controller": "azure-cluster-token",
}


def controller_headers(name: str = "gcp-nodepool-controller") -> dict[str, str]:
    return {"Authorization": f"Bearer {CONTROLLER_TOKENS[name]}"}


# The registry of the tests that report as optional guests (tests/support/registry.py).
EXTRAS_FILE = Path(__file__).parent / "support" / "controllers-with-extras.yaml"
BROKER_USERS_SCRIPT = Path(__file__).parent.parent / "scripts" / "broker_users.py"


@pytest.fixture(scope="session", autouse=True)
def extra_broker_users() -> None:
    """Broker users for every controller of EXTRAS_FILE, a superset of the default registry
    whose users `make test` creates: a report is applied only when published as its controller.
    One ``rabbitmqctl import_definitions`` (about a second), idempotent."""
    env = {**os.environ, "CLS_CONTROLLERS_FILE": str(EXTRAS_FILE)}
    done = subprocess.run(
        [sys.executable, str(BROKER_USERS_SCRIPT)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"could not create the tests' broker users: {done.stderr.strip()}")


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path of every pydantic error turned into a field error message, in this process (a
    spy on the real conversion, ``cls_core.services.validation._describe``)."""
    converted: list[str] = []
    describe = validation._describe

    def counting(error: dict[str, Any], path: str, resource: str) -> str:
        converted.append(path)
        return describe(error, path, resource)

    monkeypatch.setattr(validation, "_describe", counting)
    return converted


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(namespace: str, request: pytest.FixtureRequest) -> Settings:
    """The test's settings; ``@pytest.mark.settings_update(max_nodepools_per_cluster=250)``
    changes some (a test creating more resources than the quotas allow raises them so). The
    markers of a module and of its tests add up; the test's win where both set a field."""
    fields: dict[str, Any] = {
        "namespace": namespace,
        "redis_url": REDIS_URL,
        "amqp_url": AMQP_URL,
        "controller_tokens": ",".join(f"{n}={t}" for n, t in CONTROLLER_TOKENS.items()),
    }
    for marker in reversed(list(request.node.iter_markers("settings_update"))):
        fields.update(marker.kwargs)
    return Settings(**fields)


# Keys a SCAN call looks at: the shared Redis may hold ~100k keys of other runs, and SCAN's
# default of 10 makes one sweep thousands of round trips (seconds per test).
SCAN_COUNT = 10_000


async def matching_keys(redis: Redis, pattern: str) -> list[str]:
    """Every key matching ``pattern`` (SCAN is fine in a test, never in the service)."""
    return [key async for key in redis.scan_iter(match=pattern, count=SCAN_COUNT)]


async def delete_namespace(redis: Redis, namespace: str) -> None:
    """Remove every key of one test namespace."""
    keys = await matching_keys(redis, f"{namespace}:*")
    for start in range(0, len(keys), 1000):
        await redis.delete(*keys[start : start + 1000])


@pytest.fixture
async def redis(namespace: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.fail(f"Redis at {REDIS_URL} is not answering ({exc}); run `make services`")
    yield client
    await delete_namespace(client, namespace)
    await client.aclose()


STUB_CONTROLLERS = (
    "gcp-nodepool-controller",
    "aws-nodepool-controller",
    "azure-nodepool-controller",
    "gcp-cluster-controller",
    "aws-cluster-controller",
    "azure-cluster-controller",
)


@pytest.fixture
async def store(settings: Settings, redis: Redis) -> AsyncIterator[RedisStore]:
    """The services' store over the real Redis, in the test's namespace."""
    client = RedisStore(connect_redis(settings.redis_url), settings.names)
    yield client
    await client.aclose()


async def delete_amqp_namespace(channel: AbstractChannel, names: Names) -> None:
    """Remove the queues and exchanges a test namespace may have declared."""
    queues = [names.status_queue, names.status_dead_queue]
    queues += [names.controller_queue(c) for c in STUB_CONTROLLERS]
    for queue in queues:
        await channel.queue_delete(queue, if_unused=False, if_empty=False)
    for exchange in (names.events_exchange, names.status_exchange, names.status_dead_exchange):
        await channel.exchange_delete(exchange)


@pytest.fixture
async def amqp(namespace: str) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection to the real broker; the namespace's topology is removed after."""
    try:
        connection = await amqp_topology.connect(AMQP_URL)
    except Exception as exc:
        pytest.fail(f"RabbitMQ at {AMQP_URL} is not answering ({exc}); run `make services`")
    yield connection
    channel = await connection.channel()
    await delete_amqp_namespace(channel, Names(namespace))
    await connection.close()


@asynccontextmanager
async def api_client(
    settings: Settings, relay_events: bool | None = True
) -> AsyncIterator[httpx.AsyncClient]:
    """An API app in-process with its lifespan (event relay and reconcile loop included, unless
    ``relay_events`` is False; None: as ``settings.event_jobs`` says)."""
    app = create_app(settings, relay_events=relay_events)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
async def api(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection
) -> AsyncIterator[httpx.AsyncClient]:
    """The API app in-process (lifespan included), over real Redis and RabbitMQ.

    It depends on ``amqp`` so that the events exchange its relay declares is removed after.
    """
    async with api_client(settings) as client:
        yield client


def gcp_cluster_body(name: str = "demo", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "platform": {
                "type": "gcp",
                "gcp": {"projectID": "my-project-123", "region": "us-central1"},
            }
        },
        **extra,
    }


def seed_nodepool_body(cluster_id: str, name: str = "production-workers") -> dict[str, Any]:
    """The nodepool of the user guide's complete example workflow."""
    return {
        "name": name,
        "cluster_id": cluster_id,
        "spec": {
            "platform": {
                "type": "gcp",
                "gcp": {
                    "machineType": "n1-standard-4",
                    "diskSize": 100,
                    "diskType": "pd-ssd",
                    "zones": ["us-central1-a", "us-central1-b"],
                },
            },
            "autoscaling": {"enabled": True, "minNodes": 2, "maxNodes": 10},
            "nodeCount": 3,
        },
    }


@pytest.fixture
async def cluster(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.post("/api/v1/clusters", json=gcp_cluster_body(), headers=USER)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def nodepool(api: httpx.AsyncClient, cluster: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(
        "/api/v1/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test's own (AOF, appendfsync always): it may be stopped without
    touching the shared one."""
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.kill()


# ---- markers by directory ----------------------------------------------------------------

# A test's directory says what it needs; a module adds ``e2e``/``slow`` itself when it runs
# processes from a directory of in-process tests. ``make test-quick`` runs ``not e2e and not slow``.
DIRECTORY_MARKERS = {
    "unit": ("unit",),
    "e2e": ("e2e", "slow"),
    "faults": ("e2e", "slow"),
    "bench": ("e2e", "slow"),
}
IN_PROCESS_MARKERS = ("redis", "rabbitmq")
TESTS_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        directory = item.path.relative_to(TESTS_ROOT).parts[0]
        for name in DIRECTORY_MARKERS.get(directory, IN_PROCESS_MARKERS):
            item.add_marker(name)


# ---- the whole stack as real processes (tests/e2e, tests/faults) ---------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's outcome on the test item, so a fixture can tell a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def stack_overrides(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment of the stack's services on top of the defaults: the ``stack_env`` marker's.

    A test module overrides this fixture to point the services elsewhere (a proxy, a Redis of
    its own) at run time.
    """
    marker = request.node.get_closest_marker("stack_env")
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
async def stack(
    request: pytest.FixtureRequest,
    settings: Settings,
    redis: Redis,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
    stack_overrides: dict[str, str],
) -> AsyncIterator[Stack]:
    """The stack as deployed, as real processes (tests/support/stack.py), started together (they
    may start in any order).

    ``@pytest.mark.stack_env(CLS_STUB_DELAY_MS="200")`` overrides their environment. On a
    failure, the tail of each service's log is printed with the test report.
    """
    # Imported here: tests.support.stack reads this module's constants.
    from tests.support.redis_server import free_port
    from tests.support.services import ServiceProcess
    from tests.support.stack import PACKAGES, Stack, stack_env

    port = free_port()
    env = stack_env(settings.names, port, **stack_overrides)
    services = {package: ServiceProcess(package, env, tmp_path) for package in PACKAGES}
    base_url = f"http://127.0.0.1:{port}"
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so a
    # request never goes out on a connection the server is closing.
    limits = httpx.Limits(keepalive_expiry=2.0)
    async with httpx.AsyncClient(
        base_url=base_url, headers=USER, timeout=10, limits=limits
    ) as http:
        running = Stack(settings.names, base_url, services, http, amqp)
        try:
            await running.start(*PACKAGES)
            yield running
        finally:
            codes = await running.stop()
            failed = getattr(request.node, "report_call", None)
            if failed is not None and failed.failed:
                print(f"\nservice exit codes: {codes}\n{running.logs()}")


@pytest.fixture
async def reports(stack: Stack) -> AsyncIterator[Reports]:
    """Every report the controllers publish (a copy; the ingester gets its own)."""
    async with watch_reports(stack.amqp, stack.names) as collected:
        yield collected
