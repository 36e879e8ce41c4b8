"""Roles are read on every request, by every replica: a membership or group grant changed through
one API process holds on another on the very next request (no replica serves a stale role).

Each test first makes replica B serve the caller with the role it is about to lose, so that
anything B could have kept (a cache of roles, of project lists) would be warm when A changes it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import gcp_cluster_body
from tests.e2e.conftest import GROUPS_HEADER, ApiReplica
from tests.support.resources import create_cluster
from tests.support.stack import create_body

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

Json = dict[str, Any]
OWNER = {"X-User-Email": "owner@example.com"}
MEMBER_EMAIL = "member@example.com"
MEMBER = {"X-User-Email": MEMBER_EMAIL}
GROUP = "platform-team"
GROUPED = {"X-User-Email": "grouped@example.com", GROUPS_HEADER: f"other-team,{GROUP}"}


async def shared_cluster(http: httpx.AsyncClient) -> tuple[str, str]:
    """(project id, cluster id): a project of OWNER's with one cluster in it."""
    response = await http.post("/api/v1/projects", json={"name": "team"}, headers=OWNER)
    assert response.status_code == 201, response.text
    project_id = str(response.json()["id"])
    cluster = await create_cluster(http, gcp_cluster_body("shared", project_id=project_id), OWNER)
    assert cluster["project_id"] == project_id
    return project_id, str(cluster["id"])


async def grant(http: httpx.AsyncClient, project_id: str, who: str, role: str) -> None:
    """PUT a member (``who`` an email) or a group's role, as OWNER."""
    kind = "groups" if "@" not in who else "members"
    response = await http.put(
        f"/api/v1/projects/{project_id}/{kind}/{who}", json={"role": role}, headers=OWNER
    )
    assert response.status_code == 200, response.text


async def revoke(http: httpx.AsyncClient, project_id: str, who: str) -> None:
    kind = "groups" if "@" not in who else "members"
    response = await http.delete(f"/api/v1/projects/{project_id}/{kind}/{who}", headers=OWNER)
    assert response.status_code == 204, response.text


async def get_status(http: httpx.AsyncClient, cluster_id: str, user: dict[str, str]) -> int:
    return (await http.get(f"/api/v1/clusters/{cluster_id}", headers=user)).status_code


async def listed(http: httpx.AsyncClient, user: dict[str, str]) -> set[str]:
    """The ids of the clusters the user's list shows (every project they belong to)."""
    response = await http.get("/api/v1/clusters", params={"limit": 100}, headers=user)
    assert response.status_code == 200, response.text
    return {c["id"] for c in response.json()["clusters"]}


async def rename(http: httpx.AsyncClient, cluster_id: str, user: dict[str, str], name: str) -> int:
    """PUT the cluster with a new name (an editor's write); the status code."""
    body = {"name": name, "spec": gcp_cluster_body()["spec"]}
    response = await http.put(f"/api/v1/clusters/{cluster_id}", json=body, headers=user)
    return response.status_code


async def test_member_removed_on_one_replica_gets_404_on_the_other_at_once(
    replicas: tuple[ApiReplica, ApiReplica],
) -> None:
    a, b = replicas
    project_id, cluster_id = await shared_cluster(a.http)
    await grant(a.http, project_id, MEMBER_EMAIL, "viewer")
    assert await get_status(b.http, cluster_id, MEMBER) == 200
    await revoke(a.http, project_id, MEMBER_EMAIL)
    assert await get_status(b.http, cluster_id, MEMBER) == 404


async def test_member_removed_on_one_replica_leaves_the_others_list_at_once(
    replicas: tuple[ApiReplica, ApiReplica],
) -> None:
    a, b = replicas
    project_id, cluster_id = await shared_cluster(a.http)
    own = await create_cluster(b.http, gcp_cluster_body("own"), MEMBER)  # a personal project's
    await grant(a.http, project_id, MEMBER_EMAIL, "viewer")
    assert await listed(b.http, MEMBER) == {cluster_id, own["id"]}
    await revoke(a.http, project_id, MEMBER_EMAIL)
    assert await listed(b.http, MEMBER) == {own["id"]}


async def test_editor_demoted_on_one_replica_is_refused_a_write_on_the_other_at_once(
    replicas: tuple[ApiReplica, ApiReplica],
) -> None:
    a, b = replicas
    project_id, cluster_id = await shared_cluster(a.http)
    await grant(a.http, project_id, MEMBER_EMAIL, "editor")
    assert await rename(b.http, cluster_id, MEMBER, "renamed-once") == 200
    await grant(a.http, project_id, MEMBER_EMAIL, "viewer")
    assert await rename(b.http, cluster_id, MEMBER, "renamed-twice") == 403
    assert await get_status(b.http, cluster_id, MEMBER) == 200  # still a viewer


async def test_group_grant_revoked_on_one_replica_ends_access_on_the_other_at_once(
    replicas: tuple[ApiReplica, ApiReplica],
) -> None:
    a, b = replicas
    project_id, cluster_id = await shared_cluster(a.http)
    await grant(a.http, project_id, GROUP, "viewer")
    assert await get_status(b.http, cluster_id, GROUPED) == 200
    assert cluster_id in await listed(b.http, GROUPED)
    await revoke(a.http, project_id, GROUP)
    assert await get_status(b.http, cluster_id, GROUPED) == 404
    assert cluster_id not in await listed(b.http, GROUPED)


async def test_cluster_transferred_on_one_replica_takes_no_nodepool_on_the_other_at_once(
    replicas: tuple[ApiReplica, ApiReplica],
) -> None:
    """B keeps a snapshot of a cluster its creates used; a transfer through A to a project the
    member has no role in must still refuse the member's next create on B."""
    a, b = replicas
    project_id, cluster_id = await shared_cluster(a.http)
    response = await a.http.post("/api/v1/projects", json={"name": "elsewhere"}, headers=OWNER)
    assert response.status_code == 201, response.text
    elsewhere = response.json()["id"]
    await grant(a.http, project_id, MEMBER_EMAIL, "editor")
    first = await b.http.post(
        "/api/v1/nodepools", json=create_body(cluster_id, name="first"), headers=MEMBER
    )
    assert first.status_code == 201, first.text
    moved = await a.http.post(
        f"/api/v1/clusters/{cluster_id}/transfer", json={"project_id": elsewhere}, headers=OWNER
    )
    assert moved.status_code == 200, moved.text
    second = await b.http.post(
        "/api/v1/nodepools", json=create_body(cluster_id, name="second"), headers=MEMBER
    )
    assert second.status_code == 404, second.text
