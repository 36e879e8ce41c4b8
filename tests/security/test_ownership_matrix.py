"""Object-level authorization, over every endpoint of the OpenAPI document: user B, who has no
role in user A's personal project, against A's clusters, nodepools, their status and A's project
gets exactly what a resource that does not exist gets (404, or 403 for status writes, which
users never may make), lists and their totals never count A's resources, and nothing of A's
changes. (What each role may do within a project: test_role_matrix.py.)

The matrix must name every /api/v1 operation: a new endpoint fails the completeness test until
someone decides what a caller without a role gets from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from shared_models.projects import personal_project_id
from tests.api.conftest import MERGE_PATCH, assert_error, update_body
from tests.conftest import OTHER_USER, USER, gcp_cluster_body, seed_nodepool_body

API = "/api/v1"
NO_SUCH_ID = "0f0f0f0f-0000-4000-8000-000000000000"
B = OTHER_USER
A_EMAIL = USER["X-User-Email"]
B_PROJECT = personal_project_id(B["X-User-Email"])


@dataclass(frozen=True)
class Probe:
    """B's request against A's resource ({np}, {cl}), and the same against nothing at all."""

    method: str
    path: str  # with {np} / {cl}, and any query
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def operation(self) -> tuple[str, str]:
        template = self.path.split("?")[0].replace("{np}", "{id}").replace("{pj}", "{id}")
        template = template.replace("{op}", "{id}")
        template = template.replace("/clusters/{cl}/nodepools", "/clusters/{clusterId}/nodepools")
        return self.method, API + template.replace("{cl}", "{id}")

    def request(self, ids: dict[str, str]) -> dict[str, Any]:
        body = self.body(ids["cl"]) if callable(self.body) else self.body
        headers = {**B, **dict(self.headers)}
        if self.method == "PATCH":
            headers.update(MERGE_PATCH)
        return {
            "method": self.method,
            "url": API + self.path.format(**ids, email=A_EMAIL, group="sre"),
            "json": body,
            "headers": headers,
        }


def nodepool_in(cluster_id: str) -> dict[str, Any]:
    return seed_nodepool_body(cluster_id, "intruder")


IF_MATCH = (("If-Match", "*"),)
ITEM_PROBES = [
    Probe("GET", "/nodepools/{np}"),
    Probe("PUT", "/nodepools/{np}", update_body("taken-over", 1)),
    Probe("PUT", "/nodepools/{np}?dryRun=true", update_body("taken-over", 1)),
    Probe("PUT", "/nodepools/{np}", update_body("taken-over", 1), IF_MATCH),
    Probe("PATCH", "/nodepools/{np}", {"spec": {"nodeCount": 0}}),
    Probe("PATCH", "/nodepools/{np}?dryRun=true", {"spec": {"nodeCount": 0}}),
    Probe("DELETE", "/nodepools/{np}"),
    Probe("DELETE", "/nodepools/{np}", None, IF_MATCH),
    Probe("GET", "/nodepools/{np}/status"),
    Probe("GET", "/clusters/{cl}"),
    Probe("PUT", "/clusters/{cl}", gcp_cluster_body("taken-over")),
    Probe("PUT", "/clusters/{cl}?dryRun=true", gcp_cluster_body("taken-over")),
    Probe("DELETE", "/clusters/{cl}"),
    Probe("DELETE", "/clusters/{cl}?force=true"),
    Probe("DELETE", "/clusters/{cl}?force=true", None, IF_MATCH),
    Probe("GET", "/clusters/{cl}/status"),
    Probe("GET", "/clusters/{cl}/nodepools"),
    Probe("GET", "/clusters/{cl}/nodepools?status=Pending&health=Unknown"),
    Probe("POST", "/clusters/{cl}/nodepools", nodepool_in),
    Probe("POST", "/clusters/{cl}/nodepools?dryRun=true", nodepool_in),
    Probe("POST", "/nodepools", nodepool_in),
    Probe("POST", "/nodepools?dryRun=true", nodepool_in),
    Probe("POST", "/nodepools", nodepool_in, (("Idempotency-Key", "k"),)),
    Probe("POST", "/clusters/{cl}/transfer", {"project_id": B_PROJECT}),
    Probe("POST", "/clusters/{cl}/transfer?dryRun=true", {"project_id": B_PROJECT}),
    Probe("GET", "/projects/{pj}"),
    Probe("PATCH", "/projects/{pj}", {"description": "taken over"}),
    Probe("DELETE", "/projects/{pj}"),
    Probe("GET", "/projects/{pj}/members"),
    Probe("PUT", "/projects/{pj}/members/{email}", {"role": "viewer"}),
    Probe("DELETE", "/projects/{pj}/members/{email}"),
    Probe("GET", "/projects/{pj}/groups"),
    Probe("PUT", "/projects/{pj}/groups/{group}", {"role": "admin"}),
    Probe("DELETE", "/projects/{pj}/groups/{group}"),
    Probe("GET", "/projects/{pj}/operations"),
    Probe("GET", "/nodepools/{np}/operations"),
    Probe("GET", "/clusters/{cl}/operations"),
    Probe("GET", "/operations/{op}"),
    # Status writes are for controllers: a user gets 403 whoever owns the resource.
    Probe("PUT", "/nodepools/{np}/status", {"controller_name": "x", "observed_generation": 1}),
    Probe("PUT", "/clusters/{cl}/status", {"controller_name": "x", "observed_generation": 1}),
]
LIST_PROBES = [
    "/nodepools",
    "/nodepools?status=Pending",
    "/nodepools?health=Unknown",
    "/nodepools?status=Pending&health=Unknown",
    "/nodepools?cluster_id={cl}",
    "/nodepools?cluster_id={cl}&status=Pending&health=Unknown",
    "/nodepools?limit=100&offset=0",
    "/clusters",
    "/clusters?platform=gcp",
    "/clusters?status=Pending",
    "/clusters?platform=gcp&status=Pending",
]
# These target nothing of A's: B creates B's own (names are per project or per creator), and
# lists B's own projects (test_b_never_lists_a_s_project).
OWN_CREATES = {("POST", f"{API}/clusters"), ("POST", f"{API}/projects"), ("GET", f"{API}/projects")}


@pytest.fixture
async def owned_by_a(api: httpx.AsyncClient) -> dict[str, str]:
    cluster = (await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)).json()
    body = seed_nodepool_body(cluster["id"])
    created = await api.post(f"{API}/nodepools", json=body, headers=USER)
    nodepool = created.json()
    return {
        "np": nodepool["id"],
        "cl": cluster["id"],
        "pj": cluster["project_id"],
        "op": created.headers["X-Operation-Id"],
    }


async def a_view(api: httpx.AsyncClient, ids: dict[str, str]) -> list[Any]:
    paths = [
        f"/nodepools/{ids['np']}",
        f"/nodepools/{ids['np']}/status",
        f"/clusters/{ids['cl']}",
        f"/clusters/{ids['cl']}/status",
        "/nodepools",
        "/clusters",
        f"/projects/{ids['pj']}",
        f"/projects/{ids['pj']}/members",
        f"/projects/{ids['pj']}/groups",
        f"/projects/{ids['pj']}/operations",
        f"/nodepools/{ids['np']}/operations",
        f"/operations/{ids['op']}",
    ]
    return [(await api.get(API + p, headers=USER)).json() for p in paths]


def test_the_matrix_covers_every_operation(settings: Settings) -> None:
    from api_service.app import create_app

    documented = {
        (method.upper(), path)
        for path, operations in create_app(settings).openapi()["paths"].items()
        if path.startswith(API)
        for method in operations
    }
    covered = {probe.operation for probe in ITEM_PROBES}
    covered |= {("GET", API + p.split("?")[0]) for p in LIST_PROBES}
    assert documented - covered - OWN_CREATES == set()


@pytest.mark.parametrize(
    "probe", ITEM_PROBES, ids=lambda p: f"{p.method} {p.path}{dict(p.headers)}"
)
async def test_another_owners_resource_answers_as_if_it_did_not_exist(
    api: httpx.AsyncClient,
    owned_by_a: dict[str, str],
    redis: Redis,
    settings: Settings,
    probe: Probe,
) -> None:
    before = await a_view(api, owned_by_a)
    outbox = await redis.xlen(settings.names.outbox)
    foreign = await api.request(**probe.request(owned_by_a))
    missing = await api.request(
        **probe.request({"np": NO_SUCH_ID, "cl": NO_SUCH_ID, "pj": NO_SUCH_ID, "op": NO_SUCH_ID})
    )
    expected = 403 if probe.path.endswith("/status") and probe.method == "PUT" else 404
    error = assert_error(foreign, expected, "FORBIDDEN" if expected == 403 else "NOT_FOUND")
    # Nothing tells A's resource from no resource at all.
    assert (missing.status_code, missing.json()["error"]) == (expected, error)
    assert await a_view(api, owned_by_a) == before
    assert await redis.xlen(settings.names.outbox) == outbox


@pytest.mark.parametrize("path", LIST_PROBES)
async def test_lists_never_count_another_owners_resources(
    api: httpx.AsyncClient, owned_by_a: dict[str, str], path: str
) -> None:
    # B owns something too, so that an empty answer is not just an empty store.
    mine = (await api.post(f"{API}/clusters", json=gcp_cluster_body("b-own"), headers=B)).json()
    await api.post(f"{API}/nodepools", json=seed_nodepool_body(mine["id"], "b-pool"), headers=B)
    listing = (await api.get(API + path.format(**owned_by_a), headers=B)).json()
    items = listing.get("nodepools", listing.get("clusters"))
    assert all(item["id"] not in owned_by_a.values() for item in items)
    assert all(item["created_by"] == "other@example.com" for item in items)
    assert listing["total"] == len(items)
    assert listing["total"] == (0 if "cluster_id" in path else 1)


async def test_b_creating_with_a_s_names_makes_b_s_own(
    api: httpx.AsyncClient, owned_by_a: dict[str, str]
) -> None:
    created = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=B)
    assert created.status_code == 201, created.text
    assert created.json()["id"] != owned_by_a["cl"]
    a_cluster = (await api.get(f"{API}/clusters/{owned_by_a['cl']}", headers=USER)).json()
    assert a_cluster["name"] == created.json()["name"]


async def test_b_never_lists_a_s_project(
    api: httpx.AsyncClient, owned_by_a: dict[str, str]
) -> None:
    listing = (await api.get(f"{API}/projects", headers=B)).json()
    assert [p["id"] for p in listing["projects"]] == [B_PROJECT]
    assert owned_by_a["pj"] != B_PROJECT
