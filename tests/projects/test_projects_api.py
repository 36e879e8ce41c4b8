"""Projects over the API: create, read, rename and delete them; their members, roles and
operations; the rules that keep an admin in every project; and the quotas on memberships."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_core.errors import NotFound
from cls_core.services.access import Caller
from cls_runtime.settings import Settings
from shared_models.projects import ProjectCreate, personal_project_id
from shared_models.resources import ClusterCreate
from tests.api.conftest import assert_error, error_fields
from tests.conftest import gcp_cluster_body, matching_keys
from tests.projects.conftest import (
    ALICE,
    API,
    BOB,
    CAROL,
    DAVE,
    Services,
    as_user,
    cluster_in,
    create_project,
    grant,
    operations,
    project_ids,
    put_group,
    put_member,
)
from tests.support.deletion import purge_cluster

NO_SUCH_PROJECT = "0f0f0f0f-0000-4000-8000-000000000000"


# ---- create and read ------------------------------------------------------------------------


async def test_a_created_project_has_its_creator_as_admin(api: httpx.AsyncClient) -> None:
    created = await create_project(api, "platform", description="the platform team")
    assert created["name"] == "platform"
    assert created["description"] == "the platform team"
    assert (created["personal"], created["role"], created["created_by"]) == (False, "admin", ALICE)
    fetched = await api.get(f"{API}/projects/{created['id']}", headers=as_user(ALICE))
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == created
    members = await api.get(f"{API}/projects/{created['id']}/members", headers=as_user(ALICE))
    assert [(m["email"], m["role"]) for m in members.json()["members"]] == [(ALICE, "admin")]


async def test_a_create_answers_with_the_project_s_location(api: httpx.AsyncClient) -> None:
    response = await api.post(f"{API}/projects", json={"name": "infra"}, headers=as_user(ALICE))
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/api/v1/projects/{response.json()['id']}"


async def test_a_name_is_unique_among_its_creator_s_projects(api: httpx.AsyncClient) -> None:
    first = await create_project(api, "platform")
    again = await api.post(f"{API}/projects", json={"name": "platform"}, headers=as_user(ALICE))
    error = assert_error(again, 409, "CONFLICT")
    assert first["id"] in error["details"]
    assert await project_ids(api, ALICE) == [personal_project_id(ALICE), first["id"]]


async def test_two_creators_may_use_the_same_name(api: httpx.AsyncClient) -> None:
    alice_s = await create_project(api, "platform", by=ALICE)
    bob_s = await create_project(api, "platform", by=BOB)
    assert alice_s["id"] != bob_s["id"]


async def test_the_personal_name_is_reserved(api: httpx.AsyncClient) -> None:
    response = await api.post(f"{API}/projects", json={"name": "personal"}, headers=as_user(ALICE))
    assert error_fields(response) == {"name"}


async def test_a_new_user_lists_their_personal_project_as_its_admin(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get(f"{API}/projects", headers=as_user(BOB))
    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (1, 50, 0)
    [personal] = page["projects"]
    assert personal["id"] == personal_project_id(BOB)
    assert (personal["name"], personal["personal"], personal["role"]) == ("personal", True, "admin")
    assert personal["created_by"] == BOB


async def test_the_personal_project_is_listed_first_then_by_creation(
    api: httpx.AsyncClient,
) -> None:
    made = [(await create_project(api, f"team-{i}"))["id"] for i in range(3)]
    assert await project_ids(api, ALICE) == [personal_project_id(ALICE), *made]


async def test_the_project_list_pages(api: httpx.AsyncClient) -> None:
    made = [(await create_project(api, f"team-{i}"))["id"] for i in range(4)]
    everything = [personal_project_id(ALICE), *made]
    seen: list[str] = []
    for offset in range(0, 5, 2):
        response = await api.get(f"{API}/projects?limit=2&offset={offset}", headers=as_user(ALICE))
        page = response.json()
        assert page["total"] == 5
        seen += [p["id"] for p in page["projects"]]
    assert seen == everything


async def test_a_project_lists_the_role_each_caller_holds(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "viewer")
    listed = (await api.get(f"{API}/projects", headers=as_user(BOB))).json()["projects"]
    assert [(p["id"], p["role"]) for p in listed] == [
        (personal_project_id(BOB), "admin"),
        (project["id"], "viewer"),
    ]
    fetched = (await api.get(f"{API}/projects/{project['id']}", headers=as_user(BOB))).json()
    assert fetched["role"] == "viewer"


async def test_a_project_without_a_role_is_404_like_no_project(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    foreign = await api.get(f"{API}/projects/{project['id']}", headers=as_user(BOB))
    missing = await api.get(f"{API}/projects/{NO_SUCH_PROJECT}", headers=as_user(BOB))
    assert assert_error(foreign, 404, "NOT_FOUND") == assert_error(missing, 404, "NOT_FOUND")


async def test_another_user_s_personal_project_is_404(api: httpx.AsyncClient) -> None:
    await cluster_in(api, None, by=ALICE)  # Alice's personal project exists
    response = await api.get(f"{API}/projects/{personal_project_id(ALICE)}", headers=as_user(BOB))
    assert_error(response, 404, "NOT_FOUND")


# ---- patch ----------------------------------------------------------------------------------


async def test_an_admin_renames_a_project_and_changes_its_description(
    api: httpx.AsyncClient,
) -> None:
    project = await create_project(api, "platform", description="old")
    response = await api.patch(
        f"{API}/projects/{project['id']}",
        json={"name": "infra", "description": "new"},
        headers=as_user(ALICE),
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["name"], patched["description"]) == ("infra", "new")
    assert patched["resource_version"] != project["resource_version"]
    # The old name is free again; the new one is taken.
    await create_project(api, "platform")
    again = await api.post(f"{API}/projects", json={"name": "infra"}, headers=as_user(ALICE))
    assert_error(again, 409, "CONFLICT")


async def test_a_patch_of_the_description_alone_keeps_the_name(api: httpx.AsyncClient) -> None:
    project = await create_project(api, "platform")
    response = await api.patch(
        f"{API}/projects/{project['id']}", json={"description": "d"}, headers=as_user(ALICE)
    )
    assert (response.json()["name"], response.json()["description"]) == ("platform", "d")


async def test_a_rename_to_a_name_taken_is_409(api: httpx.AsyncClient) -> None:
    await create_project(api, "infra")
    project = await create_project(api, "platform")
    response = await api.patch(
        f"{API}/projects/{project['id']}", json={"name": "infra"}, headers=as_user(ALICE)
    )
    assert_error(response, 409, "CONFLICT")


async def test_a_rename_to_personal_is_400(api: httpx.AsyncClient) -> None:
    project = await create_project(api, "platform")
    response = await api.patch(
        f"{API}/projects/{project['id']}", json={"name": "personal"}, headers=as_user(ALICE)
    )
    assert error_fields(response) == {"name"}


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_only_an_admin_may_patch_a_project(api: httpx.AsyncClient, role: str) -> None:
    project = await create_project(api, "platform")
    await grant(api, project["id"], BOB, role)
    response = await api.patch(
        f"{API}/projects/{project['id']}", json={"name": "taken"}, headers=as_user(BOB)
    )
    assert_error(response, 403, "FORBIDDEN")
    fetched = (await api.get(f"{API}/projects/{project['id']}", headers=as_user(ALICE))).json()
    assert fetched["name"] == "platform"


# ---- delete ---------------------------------------------------------------------------------


async def test_a_personal_project_cannot_be_deleted(api: httpx.AsyncClient) -> None:
    response = await api.delete(
        f"{API}/projects/{personal_project_id(ALICE)}", headers=as_user(ALICE)
    )
    assert_error(response, 409, "CONFLICT")
    assert await project_ids(api, ALICE) == [personal_project_id(ALICE)]


async def test_a_project_with_clusters_cannot_be_deleted(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await cluster_in(api, project["id"])
    response = await api.delete(f"{API}/projects/{project['id']}", headers=as_user(ALICE))
    assert_error(response, 409, "CONFLICT")
    assert (await api.get(f"{API}/projects/{project['id']}", headers=as_user(ALICE))).is_success


async def test_an_emptied_project_can_be_deleted(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    project = await create_project(api)
    cluster = await cluster_in(api, project["id"])
    await purge_cluster(api, settings, cluster["id"], as_user(ALICE))
    response = await api.delete(f"{API}/projects/{project['id']}", headers=as_user(ALICE))
    assert response.status_code == 204, response.text


async def test_a_deleted_project_is_gone_for_every_member(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "viewer")
    await grant(api, project["id"], CAROL, "admin")
    response = await api.delete(f"{API}/projects/{project['id']}", headers=as_user(ALICE))
    assert response.status_code == 204, response.text
    for email in (ALICE, BOB, CAROL):
        fetched = await api.get(f"{API}/projects/{project['id']}", headers=as_user(email))
        assert_error(fetched, 404, "NOT_FOUND")
        assert await project_ids(api, email) == [personal_project_id(email)]
    # Its name is free again.
    await create_project(api, project["name"])


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_only_an_admin_may_delete_a_project(api: httpx.AsyncClient, role: str) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, role)
    response = await api.delete(f"{API}/projects/{project['id']}", headers=as_user(BOB))
    assert_error(response, 403, "FORBIDDEN")


async def test_a_cluster_cannot_be_created_in_a_deleted_project(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await api.delete(f"{API}/projects/{project['id']}", headers=as_user(ALICE))
    body = gcp_cluster_body("late", project_id=project["id"])
    response = await api.post(f"{API}/clusters", json=body, headers=as_user(ALICE))
    assert_error(response, 404, "NOT_FOUND")


# ---- members --------------------------------------------------------------------------------


async def test_an_admin_adds_a_member_with_a_role(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    member = await grant(api, project["id"], BOB, "editor")
    assert (member["email"], member["role"], member["added_by"]) == (BOB, "editor", ALICE)
    listed = await api.get(f"{API}/projects/{project['id']}/members", headers=as_user(BOB))
    assert listed.status_code == 200, listed.text
    assert [(m["email"], m["role"]) for m in listed.json()["members"]] == [
        (ALICE, "admin"),
        (BOB, "editor"),
    ]
    assert project["id"] in await project_ids(api, BOB)


async def test_a_member_s_email_is_normalised(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    member = await grant(api, project["id"], "Bob@Example.COM", "viewer")
    assert member["email"] == BOB
    fetched = await api.get(f"{API}/projects/{project['id']}", headers=as_user(BOB))
    assert fetched.json()["role"] == "viewer"


async def test_an_admin_changes_a_member_s_role(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    added = await grant(api, project["id"], BOB, "viewer")
    changed = await grant(api, project["id"], BOB, "admin")
    assert changed["role"] == "admin"
    assert changed["added_at"] == added["added_at"]
    fetched = await api.get(f"{API}/projects/{project['id']}", headers=as_user(BOB))
    assert fetched.json()["role"] == "admin"


async def test_granting_the_role_held_changes_nothing(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "viewer")
    before = await operations(api, project["id"])
    again = await grant(api, project["id"], BOB, "viewer")
    assert again["role"] == "viewer"
    assert await operations(api, project["id"]) == before


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_only_an_admin_manages_members(api: httpx.AsyncClient, role: str) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, role)
    await grant(api, project["id"], CAROL, "viewer")
    assert_error(await put_member(api, project["id"], DAVE, "viewer", by=BOB), 403, "FORBIDDEN")
    assert_error(await put_member(api, project["id"], BOB, "admin", by=BOB), 403, "FORBIDDEN")
    removed = await api.delete(
        f"{API}/projects/{project['id']}/members/{CAROL}", headers=as_user(BOB)
    )
    assert_error(removed, 403, "FORBIDDEN")


async def test_a_non_member_managing_members_gets_404(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    assert_error(await put_member(api, project["id"], DAVE, "admin", by=DAVE), 404, "NOT_FOUND")


async def test_an_admin_removes_a_member_who_loses_access_at_once(
    api: httpx.AsyncClient,
) -> None:
    project = await create_project(api)
    cluster = await cluster_in(api, project["id"])
    await grant(api, project["id"], BOB, "editor")
    assert (await api.get(f"{API}/clusters/{cluster['id']}", headers=as_user(BOB))).is_success
    response = await api.delete(
        f"{API}/projects/{project['id']}/members/{BOB}", headers=as_user(ALICE)
    )
    assert response.status_code == 204, response.text
    assert_error(
        await api.get(f"{API}/clusters/{cluster['id']}", headers=as_user(BOB)), 404, "NOT_FOUND"
    )
    assert await project_ids(api, BOB) == [personal_project_id(BOB)]


async def test_removing_someone_who_is_not_a_member_is_404(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    response = await api.delete(
        f"{API}/projects/{project['id']}/members/{DAVE}", headers=as_user(ALICE)
    )
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
async def test_any_member_may_leave(api: httpx.AsyncClient, role: str) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, role)
    response = await api.delete(
        f"{API}/projects/{project['id']}/members/{BOB}", headers=as_user(BOB)
    )
    assert response.status_code == 204, response.text
    assert_error(
        await api.get(f"{API}/projects/{project['id']}", headers=as_user(BOB)), 404, "NOT_FOUND"
    )


async def test_the_last_admin_cannot_leave(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "editor")
    response = await api.delete(
        f"{API}/projects/{project['id']}/members/{ALICE}", headers=as_user(ALICE)
    )
    assert_error(response, 409, "CONFLICT")
    assert project["id"] in await project_ids(api, ALICE)


async def test_the_last_admin_cannot_be_demoted(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    assert_error(await put_member(api, project["id"], ALICE, "editor"), 409, "CONFLICT")
    fetched = await api.get(f"{API}/projects/{project['id']}", headers=as_user(ALICE))
    assert fetched.json()["role"] == "admin"


async def test_an_admin_may_leave_when_another_admin_stays(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "admin")
    response = await api.delete(
        f"{API}/projects/{project['id']}/members/{ALICE}", headers=as_user(ALICE)
    )
    assert response.status_code == 204, response.text
    members = await api.get(f"{API}/projects/{project['id']}/members", headers=as_user(BOB))
    assert [(m["email"], m["role"]) for m in members.json()["members"]] == [(BOB, "admin")]


async def test_two_admins_demoting_each_other_at_once_leave_an_admin(
    api: httpx.AsyncClient,
) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "admin")
    for _ in range(5):
        answers = await asyncio.gather(
            put_member(api, project["id"], BOB, "viewer", by=ALICE),
            put_member(api, project["id"], ALICE, "viewer", by=BOB),
        )
        codes = sorted(a.status_code for a in answers)
        assert codes in ([200, 403], [200, 409]), [a.text for a in answers]
        members = await api.get(f"{API}/projects/{project['id']}/members", headers=as_user(ALICE))
        if members.status_code != 200:
            members = await api.get(f"{API}/projects/{project['id']}/members", headers=as_user(BOB))
        admins = [m["email"] for m in members.json()["members"] if m["role"] == "admin"]
        assert len(admins) == 1, members.json()
        # Both admins again, for the next round.
        await grant(api, project["id"], BOB if admins == [ALICE] else ALICE, "admin", admins[0])


async def test_the_owner_of_a_personal_project_stays_its_admin(api: httpx.AsyncClient) -> None:
    personal = personal_project_id(ALICE)
    await cluster_in(api, None)  # creates it
    await grant(api, personal, BOB, "admin")
    for by in (ALICE, BOB):
        assert_error(await put_member(api, personal, ALICE, "viewer", by=by), 409, "CONFLICT")
        removed = await api.delete(
            f"{API}/projects/{personal}/members/{ALICE}", headers=as_user(by)
        )
        assert_error(removed, 409, "CONFLICT")
    fetched = await api.get(f"{API}/projects/{personal}", headers=as_user(ALICE))
    assert fetched.json()["role"] == "admin"


async def test_a_personal_project_may_be_shared(api: httpx.AsyncClient) -> None:
    cluster = await cluster_in(api, None)
    await grant(api, personal_project_id(ALICE), BOB, "viewer")
    response = await api.get(f"{API}/clusters/{cluster['id']}", headers=as_user(BOB))
    assert response.status_code == 200, response.text


# ---- quotas ---------------------------------------------------------------------------------


@pytest.mark.settings_update(max_projects_per_member=3)
async def test_a_user_belongs_to_at_most_max_projects_per_member(api: httpx.AsyncClient) -> None:
    # The personal project counts: 1 + 2 created.
    await create_project(api, "one")
    await create_project(api, "two")
    response = await api.post(f"{API}/projects", json={"name": "three"}, headers=as_user(ALICE))
    error = assert_error(response, 403, "QUOTA_EXCEEDED")
    assert "3 projects per member" in error["message"]
    assert len(await project_ids(api, ALICE)) == 3


@pytest.mark.settings_update(max_projects_per_member=2)
async def test_a_member_cannot_be_added_beyond_their_project_quota(
    api: httpx.AsyncClient,
) -> None:
    await project_ids(api, BOB)  # Bob's personal project
    await create_project(api, "bob-s", by=BOB)
    project = await create_project(api, "platform")
    assert_error(await put_member(api, project["id"], BOB, "viewer"), 403, "QUOTA_EXCEEDED")
    members = await api.get(f"{API}/projects/{project['id']}/members", headers=as_user(ALICE))
    assert [m["email"] for m in members.json()["members"]] == [ALICE]


@pytest.mark.settings_update(max_projects_per_member=2)
async def test_changing_a_member_s_role_is_not_counted_again(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await project_ids(api, BOB)
    await grant(api, project["id"], BOB, "viewer")
    assert (await grant(api, project["id"], BOB, "editor"))["role"] == "editor"


@pytest.mark.settings_update(max_members_per_project=3)
async def test_a_project_has_at_most_max_members_per_project(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "viewer")
    await grant(api, project["id"], CAROL, "viewer")
    error = assert_error(
        await put_member(api, project["id"], DAVE, "viewer"), 403, "QUOTA_EXCEEDED"
    )
    assert "3 members" in error["message"]
    # Groups have a quota of their own, of the same size.
    for group in ("g1", "g2", "g3"):
        response = await put_group(api, project["id"], group, "viewer")
        assert response.status_code == 200, response.text
    assert_error(await put_group(api, project["id"], "g4", "viewer"), 403, "QUOTA_EXCEEDED")


@pytest.mark.settings_update(max_members_per_project=2)
async def test_concurrent_additions_never_pass_the_member_quota(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    emails = [f"user-{i}@example.com" for i in range(6)]
    answers = await asyncio.gather(*(put_member(api, project["id"], e, "viewer") for e in emails))
    assert sorted(a.status_code for a in answers) == [200] + [403] * 5
    members = await api.get(f"{API}/projects/{project['id']}/members", headers=as_user(ALICE))
    assert len(members.json()["members"]) == 2


# ---- operations -----------------------------------------------------------------------------


async def test_operations_record_each_membership_change_with_its_actor(
    api: httpx.AsyncClient,
) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "viewer")
    await grant(api, project["id"], BOB, "admin")
    await grant(api, project["id"], CAROL, "editor", by=BOB)
    await api.delete(f"{API}/projects/{project['id']}/members/{CAROL}", headers=as_user(BOB))
    await api.delete(f"{API}/projects/{project['id']}/members/{BOB}", headers=as_user(BOB))
    found = await operations(api, project["id"])
    summary = [
        (o["type"], o["actor"], o.get("target"), o.get("role"), o.get("previous_role"))
        for o in found
    ]
    assert summary == [
        ("member.removed", BOB, BOB, None, "admin"),
        ("member.removed", BOB, CAROL, None, "editor"),
        ("member.set", BOB, CAROL, "editor", None),
        ("member.set", ALICE, BOB, "admin", "viewer"),
        ("member.set", ALICE, BOB, "viewer", None),
        ("project.created", ALICE, None, None, None),
    ]
    assert all(o["at"] for o in found)
    assert [o["id"] for o in found] == sorted((o["id"] for o in found), reverse=True)


async def test_operations_record_group_changes_and_renames(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    assert (await put_group(api, project["id"], "sre", "editor")).status_code == 200
    await api.delete(f"{API}/projects/{project['id']}/groups/sre", headers=as_user(ALICE))
    await api.patch(f"{API}/projects/{project['id']}", json={"name": "x"}, headers=as_user(ALICE))
    found = await operations(api, project["id"])
    assert [(o["type"], o.get("target"), o.get("role"), o.get("previous_role")) for o in found][
        :3
    ] == [
        ("project.updated", None, None, None),
        ("group.removed", "sre", None, "editor"),
        ("group.set", "sre", "editor", None),
    ]
    assert found[0]["detail"] == "x"


async def test_operations_are_limited_newest_first(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    for email in (BOB, CAROL, DAVE):
        await grant(api, project["id"], email, "viewer")
    response = await api.get(
        f"{API}/projects/{project['id']}/operations?limit=2", headers=as_user(ALICE)
    )
    assert [o["target"] for o in response.json()["operations"]] == [DAVE, CAROL]


async def test_a_viewer_reads_operations(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "viewer")
    assert (await operations(api, project["id"], by=BOB))[0]["target"] == BOB


# ---- validation -----------------------------------------------------------------------------


async def test_an_unknown_role_is_400(api: httpx.AsyncClient) -> None:
    project = await create_project(api)
    assert error_fields(await put_member(api, project["id"], BOB, "owner")) == {"role"}
    assert error_fields(await put_group(api, project["id"], "sre", "root")) == {"role"}


@pytest.mark.parametrize("body", [{}, {"role": "viewer", "extra": 1}, {"role": 3}])
async def test_a_malformed_grant_is_400(api: httpx.AsyncClient, body: dict[str, object]) -> None:
    project = await create_project(api)
    response = await api.put(
        f"{API}/projects/{project['id']}/members/{BOB}", json=body, headers=as_user(ALICE)
    )
    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("email", ["not-an-email", "bob%40", "a@b@c"])
async def test_a_member_path_that_is_not_an_email_is_400(
    api: httpx.AsyncClient, email: str
) -> None:
    project = await create_project(api)
    assert error_fields(await put_member(api, project["id"], email, "viewer")) == {"email"}
    removed = await api.delete(
        f"{API}/projects/{project['id']}/members/{email}", headers=as_user(ALICE)
    )
    assert error_fields(removed) == {"email"}


@pytest.mark.parametrize("group", ["-sre", "sre team", "a" * 129, "s!re", "sre,ops"])
async def test_a_malformed_group_name_is_400(api: httpx.AsyncClient, group: str) -> None:
    project = await create_project(api)
    assert_error(await put_group(api, project["id"], group, "viewer"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "Bad Name"},
        {"name": "x" * 64},
        {"name": "ok", "description": "d" * 257},
        {"name": "ok", "owner": ALICE},
    ],
)
async def test_a_malformed_project_is_400(api: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await api.post(f"{API}/projects", json=body, headers=as_user(ALICE))
    assert_error(response, 400, "VALIDATION_ERROR")
    assert await project_ids(api, ALICE) == [personal_project_id(ALICE)]


async def test_a_project_id_that_is_not_a_uuid_is_400(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{API}/projects/not-a-uuid", headers=as_user(ALICE))
    assert_error(response, 400, "VALIDATION_ERROR")


async def test_projects_need_an_identity(api: httpx.AsyncClient) -> None:
    assert_error(await api.get(f"{API}/projects"), 401, "UNAUTHORIZED")


async def test_a_deleted_project_leaves_no_key_behind(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    project = await create_project(api)
    await grant(api, project["id"], BOB, "viewer")
    assert (await put_group(api, project["id"], "sre", "viewer")).status_code == 200
    response = await api.delete(f"{API}/projects/{project['id']}", headers=as_user(ALICE))
    assert response.status_code == 204, response.text
    keys = await matching_keys(redis, f"{settings.namespace}:*")
    assert [key for key in keys if project["id"] in key] == []
    for key in (
        settings.names.user_projects(ALICE),
        settings.names.user_projects(BOB),
        settings.names.group_projects("sre"),
    ):
        assert await redis.zscore(key, project["id"]) is None


async def test_a_cluster_create_racing_the_project_s_deletion_is_404(
    services: Services, redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The create checks the caller's role, then the project is deleted, then the create
    # commits: its transaction must find the project gone.
    alice = Caller(ALICE)
    project = await services.projects.create(alice, ProjectCreate(name="doomed"))
    access = services.clusters.access
    check = access.require

    async def then_delete(*args: Any, **kwargs: Any) -> Any:
        role = await check(*args, **kwargs)
        await services.projects.delete(alice, project["id"])
        return role

    monkeypatch.setattr(access, "require", then_delete)
    body = ClusterCreate.model_validate(gcp_cluster_body("late", project_id=project["id"]))
    with pytest.raises(NotFound):
        await services.clusters.create(alice, body, dry_run=False)
    assert await redis.zcard(settings.names.project_clusters(project["id"])) == 0


async def test_concurrent_creates_of_one_name_make_one_project(api: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(
        *(
            api.post(f"{API}/projects", json={"name": "same"}, headers=as_user(ALICE))
            for _ in "abcd"
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    assert len(await project_ids(api, ALICE)) == 2


@pytest.mark.parametrize("limit", ["0", "1001", "x"])
async def test_an_operations_limit_out_of_range_is_400(api: httpx.AsyncClient, limit: str) -> None:
    project = await create_project(api)
    response = await api.get(
        f"{API}/projects/{project['id']}/operations?limit={limit}", headers=as_user(ALICE)
    )
    assert error_fields(response) == {"limit"}
