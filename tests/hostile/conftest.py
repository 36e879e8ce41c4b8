"""Fixtures for hostile-input tests: the API without its event relay (these tests are about the
request path), every JSON route with a valid body to start from, and a log watcher."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from api_service.app import create_app
from cls_runtime.settings import Settings
from tests.conftest import (
    AMQP_URL,
    CONTROLLER_TOKENS,
    OTHER_USER,
    REDIS_URL,
    USER,
    api_client,
    controller_headers,
    seed_nodepool_body,
)
from tests.support.threaded_server import served_in_thread

API = "/api/v1"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, relay_events=False) as client:
        yield client


@dataclass(frozen=True)
class JsonRoute:
    """A route that reads a JSON body, with a valid body for it and who may call it."""

    method: str
    path: str  # {np} and {cl}: the fixture nodepool and its cluster

    def url(self, nodepool: dict[str, Any]) -> str:
        return API + self.path.format(np=nodepool["id"], cl=nodepool["cluster_id"])

    def headers(self) -> dict[str, str]:
        if self.path.endswith("/status"):
            return {**controller_headers(self.controller), **JSON}
        return {**USER, **JSON}

    @property
    def controller(self) -> str:
        return (
            "gcp-cluster-controller"
            if self.path.startswith("/clusters")
            else ("gcp-nodepool-controller")
        )

    def body(self, nodepool: dict[str, Any]) -> dict[str, Any]:
        if self.path.endswith("/status"):
            return {"controller_name": self.controller, "observed_generation": 1}
        if self.path.startswith("/clusters/{cl}/nodepools") or self.path == "/nodepools":
            return seed_nodepool_body(nodepool["cluster_id"], "another-pool")
        if self.path.startswith("/clusters"):
            name = "demo" if self.method == "PUT" else "another-cluster"
            return {
                "name": name,
                "spec": {
                    "platform": {
                        "type": "gcp",
                        "gcp": {"projectID": "my-project-123", "region": "us-central1"},
                    }
                },
            }
        if self.method == "PATCH":
            return {"spec": {"nodeCount": 4}}
        return {"name": nodepool["name"], "spec": {**nodepool["spec"], "nodeCount": 4}}


JSON_ROUTES = [
    JsonRoute("POST", "/clusters"),
    JsonRoute("PUT", "/clusters/{cl}"),
    JsonRoute("POST", "/nodepools"),
    JsonRoute("POST", "/clusters/{cl}/nodepools"),
    JsonRoute("PUT", "/nodepools/{np}"),
    JsonRoute("PATCH", "/nodepools/{np}"),
    JsonRoute("PUT", "/nodepools/{np}/status"),
    JsonRoute("PUT", "/clusters/{cl}/status"),
]
ROUTE_IDS = [f"{r.method} {r.path}" for r in JSON_ROUTES]


@pytest.fixture
def app_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record the services log at DEBUG and above, to check that nothing went wrong."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def trouble(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records that say something failed: warnings and above, or any with a traceback."""
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING or r.exc_info or "RecursionError" in r.getMessage()
    ]


# ---- the API as a real server for the OpenAPI fuzzer (test_fuzz_openapi.py) ----------------

FUZZ_USER = {"X-User-Email": "fuzzer@example.com"}
# Far above the creates of one run (a few hundred examples in all).
FUZZ_QUOTA = 100_000
# The controller each status route is fuzzed as (its token is in CONTROLLER_TOKENS).
FUZZ_CONTROLLERS = {"nodepool": "gcp-nodepool-controller", "cluster": "gcp-cluster-controller"}


@dataclass
class FuzzTarget:
    """The API served by uvicorn over real Redis, with resources for path ids to hit.

    ``own_*`` belong to the fuzzing user, ``foreign_*`` to another user (they must answer exactly
    like ids that exist nowhere). A fuzzed DELETE may remove the fuzzing user's resources;
    ``reseed`` makes new ones (ids are never reused), so later examples still hit resources.
    """

    base_url: str
    http: httpx.Client
    own_cluster: str = ""
    own_nodepool: str = ""
    foreign_cluster: str = ""
    foreign_nodepool: str = ""

    def seed(self) -> None:
        self.foreign_cluster, self.foreign_nodepool = self._create(OTHER_USER, None)
        self.reseed()

    def reseed(self) -> None:
        """Make sure the fuzzing user's cluster and nodepool exist (one GET when they do)."""
        if self.own_nodepool:
            found = self.http.get(f"{API}/nodepools/{self.own_nodepool}", headers=FUZZ_USER)
            if found.status_code == 200:
                return
        self.own_cluster, self.own_nodepool = self._create(FUZZ_USER, self.own_cluster or None)

    def _create(self, user: dict[str, str], cluster_id: str | None) -> tuple[str, str]:
        cluster = (
            self.http.get(f"{API}/clusters/{cluster_id}", headers=user) if cluster_id else None
        )
        if cluster is None or cluster.status_code != 200:
            body: dict[str, Any] = {"name": f"fuzz-{uuid.uuid4().hex[:8]}", "spec": GCP_CLUSTER}
            cluster = self.http.post(f"{API}/clusters", json=body, headers=user)
            assert cluster.status_code == 201, cluster.text
        pool = seed_nodepool_body(cluster.json()["id"], f"pool-{uuid.uuid4().hex[:8]}")
        created = self.http.post(f"{API}/nodepools", json=pool, headers=user)
        assert created.status_code == 201, created.text
        return cluster.json()["id"], created.json()["id"]


GCP_CLUSTER = {
    "platform": {"type": "gcp", "gcp": {"projectID": "my-project-123", "region": "us-central1"}}
}


@pytest.fixture(scope="module")
def fuzz_target() -> Iterator[FuzzTarget]:
    """``create_app`` (event relay off: the fuzzer is about the request path) served by uvicorn
    in a thread of this process, in a namespace of its own that is removed afterwards."""
    namespace = f"t{uuid.uuid4().hex[:12]}"
    settings = Settings(
        namespace=namespace,
        redis_url=REDIS_URL,
        amqp_url=AMQP_URL,
        controller_tokens=",".join(f"{n}={t}" for n, t in CONTROLLER_TOKENS.items()),
        # Every example may create in the one namespace: quotas would turn late creates into
        # 403s and hide what the fuzzer generated (tests/api/test_quotas.py tests quotas).
        max_nodepools_per_cluster=FUZZ_QUOTA,
        max_clusters_per_project=FUZZ_QUOTA,
    )
    app = create_app(settings, relay_events=False)
    try:
        with (
            served_in_thread(app, log_level="warning", access_log=False, lifespan="on") as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
        ):
            target = FuzzTarget(base_url=f"http://127.0.0.1:{port}", http=http)
            target.seed()
            yield target
    finally:
        cleanup = SyncRedis.from_url(REDIS_URL)
        try:
            for key in cleanup.scan_iter(match=f"{namespace}:*", count=1000):
                cleanup.delete(key)
        finally:
            cleanup.close()
