"""Fixtures and helpers for the project tests: callers by email, projects and roles made
through the API, and the API in-process without its event relay (these tests are about who may
do what, not about publishing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_core.services.clusters import ClusterService
from cls_core.services.nodepools import NodePoolService
from cls_core.services.projects import ProjectService
from cls_core.store import RedisStore
from cls_runtime.settings import Settings
from tests.conftest import api_client, gcp_cluster_body, seed_nodepool_body

API = "/api/v1"
Json = dict[str, Any]

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
DAVE = "dave@example.com"
ERIN = "erin@example.com"


def as_user(email: str, **extra: str) -> dict[str, str]:
    """The headers of a request by ``email`` (and any others, e.g. a groups header)."""
    return {"X-User-Email": email, **extra}


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process, without its event relay."""
    async with api_client(settings, relay_events=False) as client:
        yield client


async def create_project(
    api: httpx.AsyncClient, name: str = "platform", by: str = ALICE, description: str = ""
) -> Json:
    """A project ``by`` creates (its first admin), asserting 201."""
    body: Json = {"name": name, "description": description}
    response = await api.post(f"{API}/projects", json=body, headers=as_user(by))
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def put_member(
    api: httpx.AsyncClient, project_id: str, email: str, role: str, by: str = ALICE
) -> httpx.Response:
    return await api.put(
        f"{API}/projects/{project_id}/members/{email}", json={"role": role}, headers=as_user(by)
    )


async def grant(
    api: httpx.AsyncClient, project_id: str, email: str, role: str, by: str = ALICE
) -> Json:
    """``email`` holds ``role`` in the project (``by`` an admin), asserting 200."""
    response = await put_member(api, project_id, email, role, by)
    assert response.status_code == 200, response.text
    member: Json = response.json()
    return member


async def put_group(
    api: httpx.AsyncClient, project_id: str, group: str, role: str, by: str = ALICE
) -> httpx.Response:
    return await api.put(
        f"{API}/projects/{project_id}/groups/{group}", json={"role": role}, headers=as_user(by)
    )


async def cluster_in(
    api: httpx.AsyncClient, project_id: str | None, name: str = "demo", by: str = ALICE
) -> Json:
    """A GCP cluster created in ``project_id`` (None: the caller's personal project)."""
    body = gcp_cluster_body(name)
    if project_id is not None:
        body["project_id"] = project_id
    response = await api.post(f"{API}/clusters", json=body, headers=as_user(by))
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def nodepool_in(
    api: httpx.AsyncClient, cluster_id: str, name: str = "workers", by: str = ALICE
) -> Json:
    response = await api.post(
        f"{API}/nodepools", json=seed_nodepool_body(cluster_id, name), headers=as_user(by)
    )
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def project_ids(api: httpx.AsyncClient, email: str, **extra: str) -> list[str]:
    """The ids of the projects ``email`` lists, in order."""
    response = await api.get(f"{API}/projects?limit=100", headers=as_user(email, **extra))
    assert response.status_code == 200, response.text
    return [p["id"] for p in response.json()["projects"]]


async def listed_ids(
    api: httpx.AsyncClient, what: str, email: str, query: str = "", **extra: str
) -> list[str]:
    """The ids ``GET /{what}?limit=100&{query}`` lists for ``email``, in order."""
    response = await api.get(f"{API}/{what}?limit=100&{query}", headers=as_user(email, **extra))
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()[what]
    assert response.json()["total"] == len(items)
    return [item["id"] for item in items]


async def operations(api: httpx.AsyncClient, project_id: str, by: str = ALICE) -> list[Json]:
    """The project's operations, newest first."""
    response = await api.get(f"{API}/projects/{project_id}/operations", headers=as_user(by))
    assert response.status_code == 200, response.text
    found: list[Json] = response.json()["operations"]
    return found


@dataclass(frozen=True)
class Services:
    """The services the API calls, over the test's store (for races a test sets up between a
    service's steps)."""

    projects: ProjectService
    clusters: ClusterService


@pytest.fixture
def services(store: RedisStore, settings: Settings) -> Services:
    projects = ProjectService(store, settings)
    nodepools = NodePoolService(store, settings)
    return Services(projects, ClusterService(store, settings, nodepools, projects))
