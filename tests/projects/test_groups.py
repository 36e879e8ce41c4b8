"""Gateway groups: with CLS_GROUPS_HEADER set, a role granted to a group is held by everyone the
gateway puts in it, on the next request; the strongest of a caller's member and group roles
counts. The header is read only when configured, must be well formed, and (with
CLS_TRUSTED_PROXIES) is accepted only from the gateway, like X-User-Email."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from shared_models.projects import personal_project_id
from tests.api.conftest import assert_error
from tests.events.conftest import settings_with
from tests.projects.conftest import (
    ALICE,
    API,
    BOB,
    as_user,
    cluster_in,
    create_project,
    grant,
    listed_ids,
    project_ids,
    put_group,
)
from tests.security.test_trusted_proxies import ELSEWHERE, GATEWAY, serve_from

GROUPS = "X-Groups"
pytestmark = pytest.mark.settings_update(groups_header=GROUPS)


def in_groups(email: str, *groups: str) -> dict[str, str]:
    return as_user(email, **{GROUPS: ",".join(groups)})


async def set_group(api: httpx.AsyncClient, project_id: str, group: str, role: str) -> None:
    response = await put_group(api, project_id, group, role)
    assert response.status_code == 200, response.text


async def role_of(api: httpx.AsyncClient, project_id: str, headers: dict[str, str]) -> str | None:
    response = await api.get(f"{API}/projects/{project_id}", headers=headers)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    role: str = response.json()["role"]
    return role


async def test_a_group_s_role_is_held_by_its_members(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await set_group(api, project["id"], "sre", "editor")
    bob = in_groups(BOB, "dev", "sre")
    assert await role_of(api, project["id"], bob) == "editor"
    body = {"name": "by-group", "project_id": project["id"], "spec": _gcp_spec()}
    response = await api.post(f"{API}/clusters", json=body, headers=bob)
    assert response.status_code == 201, response.text
    assert response.json()["created_by"] == BOB


async def test_without_the_group_there_is_no_role(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await set_group(api, project["id"], "sre", "admin")
    assert await role_of(api, project["id"], in_groups(BOB, "dev")) is None
    assert await role_of(api, project["id"], as_user(BOB)) is None


async def test_a_group_s_projects_are_listed_with_their_resources(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    cluster = await cluster_in(api, project["id"])
    await set_group(api, project["id"], "sre", "viewer")
    bob = {GROUPS: "sre"}
    assert await project_ids(api, BOB, **bob) == [personal_project_id(BOB), project["id"]]
    assert await listed_ids(api, "clusters", BOB, **bob) == [cluster["id"]]
    filtered = await listed_ids(api, "clusters", BOB, f"project_id={project['id']}", **bob)
    assert filtered == [cluster["id"]]
    listed = (await api.get(f"{API}/projects", headers=in_groups(BOB, "sre"))).json()
    assert listed["projects"][1]["role"] == "viewer"


async def test_removing_a_group_takes_its_role_away_at_once(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    cluster = await cluster_in(api, project["id"])
    await set_group(api, project["id"], "sre", "editor")
    bob = in_groups(BOB, "sre")
    assert (await api.get(f"{API}/clusters/{cluster['id']}", headers=bob)).status_code == 200
    removed = await api.delete(f"{API}/projects/{project['id']}/groups/sre", headers=as_user(ALICE))
    assert removed.status_code == 204, removed.text
    assert_error(await api.get(f"{API}/clusters/{cluster['id']}", headers=bob), 404, "NOT_FOUND")
    assert await listed_ids(api, "clusters", BOB, **{GROUPS: "sre"}) == []
    assert await project_ids(api, BOB, **{GROUPS: "sre"}) == [personal_project_id(BOB)]


async def test_a_deleted_project_is_no_longer_listed_for_its_groups(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    project = await create_project(api)
    await set_group(api, project["id"], "sre", "viewer")
    deleted = await api.delete(f"{API}/projects/{project['id']}", headers=as_user(ALICE))
    assert deleted.status_code == 204, deleted.text
    assert await project_ids(api, BOB, **{GROUPS: "sre"}) == [personal_project_id(BOB)]
    assert await redis.zcard(settings.names.group_projects("sre")) == 0


@pytest.mark.parametrize(
    ("member", "group", "held"),
    [
        ("viewer", "editor", "editor"),
        ("editor", "viewer", "editor"),
        ("admin", "viewer", "admin"),
        ("viewer", "admin", "admin"),
    ],
)
async def test_the_strongest_of_member_and_group_roles_counts(
    api: httpx.AsyncClient, member: str, group: str, held: str
) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, member)
    await set_group(api, project["id"], "sre", group)
    assert await role_of(api, project["id"], in_groups(BOB, "sre")) == held
    assert await role_of(api, project["id"], as_user(BOB)) == member


async def test_the_strongest_of_several_groups_counts(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await set_group(api, project["id"], "dev", "viewer")
    await set_group(api, project["id"], "sre", "admin")
    await set_group(api, project["id"], "qa", "editor")
    assert await role_of(api, project["id"], in_groups(BOB, "dev", "qa")) == "editor"
    assert await role_of(api, project["id"], in_groups(BOB, "dev", "sre", "qa")) == "admin"


async def test_a_group_admin_manages_members(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await set_group(api, project["id"], "sre", "admin")
    response = await api.put(
        f"{API}/projects/{project['id']}/members/carol@example.com",
        json={"role": "viewer"},
        headers=in_groups(BOB, "sre"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["added_by"] == BOB


async def test_a_role_held_only_through_a_group_cannot_be_left(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await set_group(api, project["id"], "sre", "viewer")
    response = await api.delete(
        f"{API}/projects/{project['id']}/members/{BOB}", headers=in_groups(BOB, "sre")
    )
    assert_error(response, 404, "NOT_FOUND")


async def test_groups_are_listed_for_viewers(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await set_group(api, project["id"], "sre", "editor")
    await set_group(api, project["id"], "dev", "viewer")
    response = await api.get(
        f"{API}/projects/{project['id']}/groups", headers=in_groups(BOB, "dev")
    )
    assert response.status_code == 200, response.text
    assert [(g["group"], g["role"], g["added_by"]) for g in response.json()["groups"]] == [
        ("dev", "viewer", ALICE),
        ("sre", "editor", ALICE),
    ]


async def test_removing_a_group_without_a_role_is_404(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    response = await api.delete(
        f"{API}/projects/{project['id']}/groups/sre", headers=as_user(ALICE)
    )
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.settings_update(max_projects_per_member=2)
async def test_a_group_belongs_to_at_most_max_projects_per_member(api: httpx.AsyncClient) -> None:
    first = await create_project(api, "one")
    await set_group(api, first["id"], "sre", "viewer")
    second = await create_project(api, "two", by=BOB)
    response = await api.put(
        f"{API}/projects/{second['id']}/groups/sre", json={"role": "viewer"}, headers=as_user(BOB)
    )
    assert response.status_code == 200, response.text
    third = await create_project(api, "three", by="carol@example.com")
    response = await api.put(
        f"{API}/projects/{third['id']}/groups/sre",
        json={"role": "viewer"},
        headers=as_user("carol@example.com"),
    )
    assert_error(response, 403, "QUOTA_EXCEEDED")


# ---- the header ---------------------------------------------------------------------------


@pytest.mark.settings_update(groups_header="")
async def test_groups_are_ignored_when_the_header_is_not_configured(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    assert settings.groups_header == ""
    project = await create_project(api)
    await set_group(api, project["id"], "sre", "admin")
    assert await role_of(api, project["id"], in_groups(BOB, "sre")) is None
    # Not read at all: not even a malformed value is refused.
    response = await api.get(f"{API}/projects", headers=in_groups(BOB, "not a group!"))
    assert response.status_code == 200, response.text


def test_the_header_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLS_GROUPS_HEADER", raising=False)
    assert Settings().groups_header == ""


@pytest.mark.parametrize("value", ["-sre", "sre team", "sre,dev/ops", "x" * 129, "sre;ops"])
async def test_a_malformed_group_is_401(api: httpx.AsyncClient, value: str) -> None:
    response = await api.get(f"{API}/clusters", headers=as_user(BOB, **{GROUPS: value}))
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert GROUPS in error["details"]


async def test_more_than_64_groups_is_401(api: httpx.AsyncClient) -> None:
    groups = [f"g{i}" for i in range(65)]
    response = await api.get(f"{API}/clusters", headers=in_groups(BOB, *groups))
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert "64" in error["details"]


async def test_64_groups_and_blank_entries_are_accepted(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await set_group(api, project["id"], "g63", "viewer")
    groups = [f"g{i}" for i in range(64)]
    assert await role_of(api, project["id"], in_groups(BOB, *groups)) == "viewer"
    # Repeated and blank entries are not groups: ", ,g63,g63, " is one group.
    headers = as_user(BOB, **{GROUPS: ", ,g63,g63, "})
    assert await role_of(api, project["id"], headers) == "viewer"
    headers = as_user(BOB, **{GROUPS: ",".join(groups + ["g0"] * 10)})
    assert await role_of(api, project["id"], headers) == "viewer"


async def test_an_empty_header_is_no_groups(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{API}/projects", headers=as_user(BOB, **{GROUPS: ""}))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", ["sre", "not a group!"])
async def test_the_groups_header_from_an_untrusted_peer_is_401(
    settings: Settings, redis: Redis, value: str
) -> None:
    gated = settings_with(settings, trusted_proxies="10.0.0.0/8")
    async with serve_from(gated, ELSEWHERE) as api:
        response = await api.get(f"{API}/clusters", headers=as_user(BOB, **{GROUPS: value}))
        error = assert_error(response, 401, "UNAUTHORIZED")
        assert "CLS_TRUSTED_PROXIES" in error["details"]
        # Even alone, without an email: it asserts an identity.
        alone = await api.get(f"{API}/clusters", headers={GROUPS: value})
        assert "CLS_TRUSTED_PROXIES" in assert_error(alone, 401, "UNAUTHORIZED")["details"]


async def test_the_groups_header_from_the_gateway_counts(settings: Settings, redis: Redis) -> None:
    gated = settings_with(settings, trusted_proxies="10.0.0.0/8")
    async with serve_from(gated, GATEWAY) as api:
        project = await create_project(api)
        await set_group(api, project["id"], "sre", "editor")
        assert await role_of(api, project["id"], in_groups(BOB, "sre")) == "editor"


def _gcp_spec() -> dict[str, object]:
    return {
        "platform": {"type": "gcp", "gcp": {"projectID": "my-project-123", "region": "us-central1"}}
    }
