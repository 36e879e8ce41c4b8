"""Fixtures for hostile-input tests: the API without its event relay (these tests are about the
request path), every JSON route with a valid body to start from, and a log watcher."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared_models.settings import Settings
from tests.conftest import USER, api_client, controller_headers, seed_nodepool_body

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
