"""The role matrix: every user operation on a project's clusters, nodepools and the project
itself, for each kind of caller. A caller with no role in the project (nobody's member, or a
member of another project) gets exactly what a resource that does not exist gets (404); a role
too weak gets 403 FORBIDDEN; a role strong enough succeeds. A refused call changes nothing.

Viewers read; editors create, change and delete clusters and nodepools; admins also manage
members and groups, force the deletion of a cluster with nodepools, transfer clusters and
change or delete the project. The matrix must name every /api/v1 operation a user makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from shared_models.projects import personal_project_id
from tests.api.conftest import MERGE_PATCH, assert_error, update_body
from tests.conftest import gcp_cluster_body, seed_nodepool_body
from tests.support.deletion import delete_nodepool, purge_cluster

API = "/api/v1"
NO_SUCH_ID = "0f0f0f0f-0000-4000-8000-000000000000"
CREATOR = "alice@example.com"
SPARE = "spare@example.com"  # a viewer of the project, whom admins may remove
# Who calls, and the role each holds in the project under test (None: no role at all).
CALLERS: dict[str, tuple[str, str | None]] = {
    "nobody": ("nobody@example.com", None),
    "other-project": ("erin@example.com", None),  # admin of a project of their own
    "viewer": ("bob@example.com", "viewer"),
    "editor": ("carol@example.com", "editor"),
    "admin": ("dave@example.com", "admin"),
}
RANK = {"viewer": 1, "editor": 2, "admin": 3}

Ids = dict[str, str]
Body = Callable[[Ids, str], Any]


@dataclass(frozen=True)
class Probe:
    """A call on the project's resources ({p}: the project, {e}: an empty project with the
    same members, {cl}: a cluster with a nodepool, {empty}: a cluster without, {np}: the
    nodepool), the role it needs and what it answers when allowed."""

    method: str
    path: str
    needs: str
    ok: int
    body: Body | Any = None

    @property
    def operation(self) -> tuple[str, str]:
        template = self.path.split("?")[0]
        template = template.replace("/clusters/{cl}/nodepools", "/clusters/{clusterId}/nodepools")
        for name in ("{np}", "{cl}", "{empty}", "{p}", "{e}", "{op}"):
            template = template.replace(name, "{id}")
        template = template.replace(SPARE, "{email}").replace("new@example.com", "{email}")
        template = template.replace("/groups/sre", "/groups/{group}")
        template = template.replace("/groups/ops", "/groups/{group}")
        return self.method, API + template

    def request(self, ids: Ids, email: str) -> dict[str, Any]:
        body = self.body(ids, email) if callable(self.body) else self.body
        headers = {"X-User-Email": email}
        if self.method == "PATCH" and "/nodepools/" in self.path:
            headers.update(MERGE_PATCH)
        return {
            "method": self.method,
            "url": API + self.path.format(**ids),
            "json": body,
            "headers": headers,
        }


def cluster_in_project(ids: Ids, email: str) -> dict[str, Any]:
    return gcp_cluster_body("new-cluster", project_id=ids["p"])


def nodepool_body(ids: Ids, email: str) -> dict[str, Any]:
    return seed_nodepool_body(ids["cl"], "new-pool")


def to_personal(ids: Ids, email: str) -> dict[str, str]:
    """A transfer to the caller's personal project (where every caller is admin)."""
    return {"project_id": personal_project_id(email)}


VIEWER_ROLE = {"role": "viewer"}
PROBES = [
    # clusters
    Probe("POST", "/clusters", "editor", 201, cluster_in_project),
    Probe("GET", "/clusters/{cl}", "viewer", 200),
    Probe("GET", "/clusters/{cl}/status", "viewer", 200),
    Probe("PUT", "/clusters/{cl}", "editor", 200, gcp_cluster_body("renamed")),
    Probe("DELETE", "/clusters/{empty}", "editor", 202),
    Probe("DELETE", "/clusters/{empty}?force=true", "editor", 202),
    Probe("DELETE", "/clusters/{cl}?force=true", "admin", 202),
    Probe("POST", "/clusters/{cl}/transfer", "admin", 200, to_personal),
    # nodepools
    Probe("POST", "/nodepools", "editor", 201, nodepool_body),
    Probe("POST", "/clusters/{cl}/nodepools", "editor", 201, nodepool_body),
    Probe("GET", "/clusters/{cl}/nodepools", "viewer", 200),
    Probe("GET", "/nodepools/{np}", "viewer", 200),
    Probe("GET", "/nodepools/{np}/status", "viewer", 200),
    Probe("PUT", "/nodepools/{np}", "editor", 200, update_body("production-workers", 4)),
    Probe("PATCH", "/nodepools/{np}", "editor", 200, {"spec": {"nodeCount": 5}}),
    Probe("DELETE", "/nodepools/{np}", "editor", 204),
    # the project
    Probe("GET", "/projects/{p}", "viewer", 200),
    Probe("PATCH", "/projects/{p}", "admin", 200, {"description": "changed"}),
    Probe("DELETE", "/projects/{e}", "admin", 204),
    Probe("GET", "/projects/{p}/members", "viewer", 200),
    Probe("PUT", "/projects/{p}/members/new@example.com", "admin", 200, VIEWER_ROLE),
    Probe("DELETE", f"/projects/{{p}}/members/{SPARE}", "admin", 204),
    Probe("GET", "/projects/{p}/groups", "viewer", 200),
    Probe("PUT", "/projects/{p}/groups/ops", "admin", 200, VIEWER_ROLE),
    Probe("DELETE", "/projects/{p}/groups/sre", "admin", 204),
    Probe("GET", "/projects/{p}/operations", "viewer", 200),
    # operations: their resource's rules
    Probe("GET", "/nodepools/{np}/operations", "viewer", 200),
    Probe("GET", "/clusters/{cl}/operations", "viewer", 200),
    Probe("GET", "/operations/{op}", "viewer", 200),
]
# Lists never refuse: they show what the caller may read. (path, what it lists, the ids a
# member of the project sees; an outsider sees none of them.)
LISTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("/clusters", "clusters", ("cl", "empty")),
    ("/clusters?project_id={p}", "clusters", ("cl", "empty")),
    ("/clusters?project_id={p}&platform=gcp&status=Pending", "clusters", ("cl", "empty")),
    ("/nodepools", "nodepools", ("np",)),
    ("/nodepools?project_id={p}", "nodepools", ("np",)),
    ("/nodepools?cluster_id={cl}", "nodepools", ("np",)),
    ("/nodepools?project_id={p}&cluster_id={cl}&status=Pending", "nodepools", ("np",)),
    ("/projects", "projects", ("p", "e")),
]
# Operations no project role governs: status writes are the controllers' (a user gets 403
# whatever they hold), and a project is created by anyone.
NOT_IN_THE_MATRIX = {
    ("PUT", f"{API}/nodepools/{{id}}/status"),
    ("PUT", f"{API}/clusters/{{id}}/status"),
    ("POST", f"{API}/projects"),
}


def user(email: str) -> dict[str, str]:
    return {"X-User-Email": email}


async def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201, 204), response.text
    body: dict[str, Any] = response.json() if response.content else {}
    return body


@pytest.fixture
async def project(api: httpx.AsyncClient) -> Ids:
    """A project with a cluster and its nodepool, an empty cluster, a group, and a member of
    each role; an empty project with the same members; and a project the "other-project"
    caller administers, with a cluster of its own."""
    alice = user(CREATOR)
    ids: Ids = {}
    for key, name in (("p", "platform"), ("e", "empty")):
        made = await created(await api.post(f"{API}/projects", json={"name": name}, headers=alice))
        ids[key] = made["id"]
        for email, role in [*CALLERS.values(), (SPARE, "viewer")]:
            if role is not None:
                url = f"{API}/projects/{made['id']}/members/{email}"
                await created(await api.put(url, json={"role": role}, headers=alice))
    await created(
        await api.put(f"{API}/projects/{ids['p']}/groups/sre", json=VIEWER_ROLE, headers=alice)
    )
    body = gcp_cluster_body("demo", project_id=ids["p"])
    ids["cl"] = (await created(await api.post(f"{API}/clusters", json=body, headers=alice)))["id"]
    body = gcp_cluster_body("spare", project_id=ids["p"])
    cluster = await created(await api.post(f"{API}/clusters", json=body, headers=alice))
    ids["empty"] = cluster["id"]
    pool = seed_nodepool_body(ids["cl"])
    made_pool = await api.post(f"{API}/nodepools", json=pool, headers=alice)
    ids["np"] = (await created(made_pool))["id"]
    ids["op"] = made_pool.headers["X-Operation-Id"]
    erin = user(CALLERS["other-project"][0])
    theirs = await created(await api.post(f"{API}/projects", json={"name": "q"}, headers=erin))
    body = gcp_cluster_body("erin-s", project_id=theirs["id"])
    await created(await api.post(f"{API}/clusters", json=body, headers=erin))
    return ids


async def creator_view(api: httpx.AsyncClient, ids: Ids) -> list[Any]:
    """What the creator reads of everything a call might change."""
    paths = [
        f"/clusters/{ids['cl']}",
        f"/clusters/{ids['empty']}",
        f"/nodepools/{ids['np']}",
        f"/projects/{ids['p']}",
        f"/projects/{ids['e']}",
        f"/projects/{ids['p']}/members",
        f"/projects/{ids['p']}/groups",
        f"/projects/{ids['p']}/operations",
        "/clusters",
        "/nodepools",
    ]
    return [(await api.get(API + p, headers=user(CREATOR))).json() for p in paths]


def test_the_matrix_covers_every_user_operation(settings: Settings) -> None:
    from api_service.app import create_app

    documented = {
        (method.upper(), path)
        for path, operations in create_app(settings).openapi()["paths"].items()
        if path.startswith(API)
        for method in operations
    }
    covered = {probe.operation for probe in PROBES}
    covered |= {("GET", API + path.split("?")[0]) for path, _, _ in LISTS}
    assert documented - covered - NOT_IN_THE_MATRIX == set()
    assert covered - documented == set()


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("probe", PROBES, ids=lambda p: f"{p.method} {p.path}")
async def test_each_role_may_do_what_it_allows(
    api: httpx.AsyncClient,
    project: Ids,
    redis: Redis,
    settings: Settings,
    probe: Probe,
    caller: str,
) -> None:
    email, role = CALLERS[caller]
    before = await creator_view(api, project)
    outbox = await redis.xlen(settings.names.outbox)
    response = await api.request(**probe.request(project, email))
    if role is None:
        error = assert_error(response, 404, "NOT_FOUND")
        # Nothing tells the project's resources from none at all.
        nothing = {key: NO_SUCH_ID for key in project}
        missing = await api.request(**probe.request(nothing, email))
        assert (missing.status_code, missing.json()["error"]) == (404, error)
    elif RANK[role] < RANK[probe.needs]:
        error = assert_error(response, 403, "FORBIDDEN")
        assert role in error["message"] and probe.needs in error["details"]
    else:
        assert response.status_code == probe.ok, response.text
        return
    assert await creator_view(api, project) == before
    assert await redis.xlen(settings.names.outbox) == outbox


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(("path", "what", "visible"), LISTS, ids=[p for p, _, _ in LISTS])
async def test_lists_show_the_project_s_resources_to_its_members_only(
    api: httpx.AsyncClient,
    project: Ids,
    path: str,
    what: str,
    visible: tuple[str, ...],
    caller: str,
) -> None:
    email, role = CALLERS[caller]
    response = await api.get(API + path.format(**project), headers=user(email))
    assert response.status_code == 200, response.text
    listing = response.json()
    listed = {item["id"] for item in listing[what]}
    assert listing["total"] == len(listed)
    expected = {project[key] for key in visible}
    if role is None:
        assert listed.isdisjoint(expected)
        if "project_id=" in path or "cluster_id=" in path:
            assert listed == set()
    else:
        assert expected <= listed


async def test_a_project_filter_on_someone_else_s_project_is_an_empty_page(
    api: httpx.AsyncClient, project: Ids
) -> None:
    for what in ("clusters", "nodepools"):
        response = await api.get(
            f"{API}/{what}?project_id={project['p']}", headers=user("nobody@example.com")
        )
        assert response.json() == {what: [], "total": 0, "limit": 50, "offset": 0}


async def test_a_forced_delete_of_an_empty_cluster_needs_no_admin(
    api: httpx.AsyncClient, project: Ids
) -> None:
    editor = user(CALLERS["editor"][0])
    response = await api.delete(f"{API}/clusters/{project['empty']}?force=true", headers=editor)
    assert response.status_code == 202, response.text


async def test_a_plain_delete_of_a_cluster_with_nodepools_is_409_for_an_editor(
    api: httpx.AsyncClient, project: Ids
) -> None:
    editor = user(CALLERS["editor"][0])
    response = await api.delete(f"{API}/clusters/{project['cl']}", headers=editor)
    assert_error(response, 409, "CONFLICT")


async def test_a_cluster_view_names_its_project_and_a_nodepool_view_does_not(
    api: httpx.AsyncClient, project: Ids
) -> None:
    viewer = user(CALLERS["viewer"][0])
    cluster = (await api.get(f"{API}/clusters/{project['cl']}", headers=viewer)).json()
    nodepool = (await api.get(f"{API}/nodepools/{project['np']}", headers=viewer)).json()
    assert cluster["project_id"] == project["p"]
    assert "project_id" not in nodepool


# ---- a user with no project works as before projects ---------------------------------------


async def test_the_guide_s_workflow_works_for_a_user_with_no_project(
    api: httpx.AsyncClient, project: Ids, settings: Settings
) -> None:
    frank = user("frank@example.com")
    response = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=frank)
    assert response.status_code == 201, response.text
    cluster = response.json()
    assert cluster["project_id"] == personal_project_id("frank@example.com")
    body = seed_nodepool_body(cluster["id"])
    response = await api.post(f"{API}/nodepools", json=body, headers=frank)
    assert response.status_code == 201, response.text
    nodepool = response.json()
    clusters = (await api.get(f"{API}/clusters", headers=frank)).json()
    nodepools = (await api.get(f"{API}/nodepools", headers=frank)).json()
    assert [c["id"] for c in clusters["clusters"]] == [cluster["id"]]
    assert [n["id"] for n in nodepools["nodepools"]] == [nodepool["id"]]
    assert (clusters["total"], nodepools["total"]) == (1, 1)
    status = await api.get(f"{API}/nodepools/{nodepool['id']}/status", headers=frank)
    assert status.status_code == 200, status.text
    scaled = await api.put(
        f"{API}/nodepools/{nodepool['id']}", json=update_body(node_count=6), headers=frank
    )
    assert scaled.status_code == 200, scaled.text
    assert scaled.json()["spec"]["nodeCount"] == 6
    await delete_nodepool(api, nodepool["id"], frank)  # 204, then confirmed
    await purge_cluster(api, settings, cluster["id"], frank)  # 202, then confirmed
    # The same name in another user's project is no conflict.
    again = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=frank)
    assert again.status_code == 201, again.text
