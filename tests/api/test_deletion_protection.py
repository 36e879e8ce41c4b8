"""spec.deletion_protection: a protected cluster or nodepool answers DELETE with 409
DELETION_PROTECTED, ``?force=true`` and dry runs included, and a forced delete of a cluster with
a protected nodepool deletes nothing. Turning it on or off needs the project's admin role, and is
not a spec change for the controllers: no new generation, no event, the status unchanged (a new
resource_version and updated_at, as a rename). The delete decides on the record its transaction
guards: a write that turns the protection on between its read and its commit stops it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from api_service.app import create_app
from cls_core.store import RedisStore, Txn
from cls_runtime.settings import Settings
from shared_models.errors import ErrorCode
from tests.api.conftest import API, MERGE_PATCH, assert_error, create_nodepool
from tests.conftest import OTHER_USER, USER, api_client, gcp_cluster_body, seed_nodepool_body
from tests.support.deletion import delete_nodepool, finish_cluster_deletions
from tests.support.resources import create_cluster

Json = dict[str, Any]
EDITOR = OTHER_USER  # an editor of the shared project below; USER is its admin


async def outbox_length(redis: Redis, settings: Settings) -> int:
    return int(await redis.xlen(settings.names.outbox))


async def shared_project(api: httpx.AsyncClient) -> str:
    """A project USER created (its admin), where EDITOR is an editor."""
    created = await api.post(f"{API}/projects", json={"name": "shared"}, headers=USER)
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    url = f"{API}/projects/{project_id}/members/{EDITOR['X-User-Email']}"
    assert (await api.put(url, json={"role": "editor"}, headers=USER)).status_code == 200
    return project_id


def protected_cluster_body(name: str = "demo", protection: bool = True, **extra: Any) -> Json:
    body = gcp_cluster_body(name, **extra)
    body["spec"]["deletion_protection"] = protection
    return body


def protected_nodepool_body(cluster_id: str, name: str, protection: bool = True) -> Json:
    body = seed_nodepool_body(cluster_id, name)
    body["spec"]["deletion_protection"] = protection
    return body


async def get(api: httpx.AsyncClient, path: str, user: dict[str, str] = USER) -> Json:
    response = await api.get(f"{API}/{path}", headers=user)
    assert response.status_code == 200, response.text
    found: Json = response.json()
    return found


async def put_cluster(
    api: httpx.AsyncClient, cluster: Json, user: dict[str, str] = USER, **spec: Any
) -> httpx.Response:
    """PUT the cluster's stored spec with ``spec``'s members changed (None: removed)."""
    new_spec = {**cluster["spec"], **spec}
    new_spec = {key: value for key, value in new_spec.items() if value is not None}
    body = {"name": cluster["name"], "spec": new_spec}
    return await api.put(f"{API}/clusters/{cluster['id']}", json=body, headers=user)


async def patch_nodepool(
    api: httpx.AsyncClient,
    nodepool_id: str,
    spec: Json,
    user: dict[str, str] = USER,
    query: str = "",
) -> httpx.Response:
    return await api.patch(
        f"{API}/nodepools/{nodepool_id}{query}",
        json={"spec": spec},
        headers={**user, **MERGE_PATCH},
    )


def assert_protected(response: httpx.Response, *named: str) -> Json:
    """A 409 DELETION_PROTECTED in the envelope, naming each of ``named``."""
    error = assert_error(response, 409, "DELETION_PROTECTED")
    assert "fields" not in error
    said = f"{error['message']} {error['details']}"
    assert "deletion_protection" in said, error
    for name in named:
        assert name in said, (name, error)
    return error


# ---- the field -------------------------------------------------------------------------------


async def test_the_field_reads_back_as_written(api: httpx.AsyncClient) -> None:
    protected = await create_cluster(api, protected_cluster_body("guarded"))
    assert protected["spec"]["deletion_protection"] is True
    plain = await create_cluster(api, gcp_cluster_body("plain"))
    assert "deletion_protection" not in plain["spec"]  # no default is filled in
    unprotected = await create_nodepool(
        api, plain["id"], body=protected_nodepool_body(plain["id"], "off", protection=False)
    )
    assert unprotected["spec"]["deletion_protection"] is False  # false is stored as given
    assert (await get(api, f"nodepools/{unprotected['id']}"))["spec"][
        "deletion_protection"
    ] is False


@pytest.mark.parametrize("value", ["true", 1, {"enabled": True}])
async def test_only_a_boolean_is_accepted(api: httpx.AsyncClient, value: Any) -> None:
    body = gcp_cluster_body("typed")
    body["spec"]["deletion_protection"] = value
    response = await api.post(f"{API}/clusters", json=body, headers=USER)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert {f["field"] for f in error["fields"]} == {"spec.deletion_protection"}


# ---- deletes refused -------------------------------------------------------------------------


async def test_a_protected_nodepool_is_not_deleted(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    nodepool = await create_nodepool(
        api, cluster["id"], body=protected_nodepool_body(cluster["id"], "guarded")
    )
    events = await outbox_length(redis, settings)
    for query in ("", "?dryRun=true"):
        response = await api.delete(f"{API}/nodepools/{nodepool['id']}{query}", headers=USER)
        assert_protected(response, "guarded")
    assert (await get(api, f"nodepools/{nodepool['id']}"))["resource_version"] == nodepool[
        "resource_version"
    ]
    assert await outbox_length(redis, settings) == events


async def test_a_protected_cluster_is_not_deleted_even_forced(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api, protected_cluster_body("guarded"))
    await create_nodepool(api, cluster["id"], "workers")
    events = await outbox_length(redis, settings)
    for query in ("", "?force=true", "?dryRun=true", "?force=true&dryRun=true"):
        response = await api.delete(f"{API}/clusters/{cluster['id']}{query}", headers=USER)
        assert_protected(response, "guarded")
    assert (await get(api, f"clusters/{cluster['id']}"))["resource_version"] == cluster[
        "resource_version"
    ]
    listed = await get(api, f"clusters/{cluster['id']}/nodepools")
    assert [n["name"] for n in listed["nodepools"]] == ["workers"]
    assert await outbox_length(redis, settings) == events


async def test_a_protected_cluster_without_nodepools_is_not_deleted(
    api: httpx.AsyncClient,
) -> None:
    cluster = await create_cluster(api, protected_cluster_body("alone"))
    assert_protected(await api.delete(f"{API}/clusters/{cluster['id']}", headers=USER), "alone")
    await get(api, f"clusters/{cluster['id']}")


async def test_a_forced_delete_with_a_protected_nodepool_deletes_nothing(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    free = await create_nodepool(api, cluster["id"], "free")
    guarded = await create_nodepool(
        api, cluster["id"], body=protected_nodepool_body(cluster["id"], "guarded")
    )
    events = await outbox_length(redis, settings)
    for query in ("?force=true", "?force=true&dryRun=true"):
        response = await api.delete(f"{API}/clusters/{cluster['id']}{query}", headers=USER)
        error = assert_protected(response, "guarded", guarded["id"])
        assert "free" not in f"{error['message']} {error['details']}"
    listed = await get(api, f"clusters/{cluster['id']}/nodepools")
    assert {n["id"] for n in listed["nodepools"]} == {free["id"], guarded["id"]}
    await get(api, f"clusters/{cluster['id']}")
    assert await outbox_length(redis, settings) == events

    # Once an admin turns it off, the same forced delete goes through.
    response = await patch_nodepool(api, guarded["id"], {"deletion_protection": False})
    assert response.status_code == 200, response.text
    response = await api.delete(f"{API}/clusters/{cluster['id']}?force=true", headers=USER)
    assert response.status_code == 202, response.text
    await finish_cluster_deletions(settings)
    for path in (
        f"clusters/{cluster['id']}",
        f"nodepools/{free['id']}",
        f"nodepools/{guarded['id']}",
    ):
        assert (await api.get(f"{API}/{path}", headers=USER)).status_code == 404


async def test_without_force_nodepools_left_is_still_the_answer(api: httpx.AsyncClient) -> None:
    cluster = await create_cluster(api)
    await create_nodepool(
        api, cluster["id"], body=protected_nodepool_body(cluster["id"], "guarded")
    )
    response = await api.delete(f"{API}/clusters/{cluster['id']}", headers=USER)
    assert assert_error(response, 409, "CONFLICT")["message"] == "Cluster still has nodepools"


async def test_turning_it_off_allows_the_delete(api: httpx.AsyncClient) -> None:
    cluster = await create_cluster(api, protected_cluster_body("guarded"))
    nodepool = await create_nodepool(
        api, cluster["id"], body=protected_nodepool_body(cluster["id"], "guarded")
    )
    # PATCH: null removes the member (absent: not protected)
    assert (
        await patch_nodepool(api, nodepool["id"], {"deletion_protection": None})
    ).status_code == 200
    await delete_nodepool(api, nodepool["id"])  # 204, then confirmed by its controllers
    # PUT: the whole spec, false given
    assert (await put_cluster(api, cluster, deletion_protection=False)).status_code == 200
    response = await api.delete(f"{API}/clusters/{cluster['id']}", headers=USER)
    assert response.status_code == 202, response.text


# ---- toggling is not a spec change ------------------------------------------------------------


async def test_toggling_a_nodepool_s_protection_is_no_spec_change(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    nodepool = await create_nodepool(api, cluster["id"])
    events = await outbox_length(redis, settings)
    before = nodepool
    for spec in ({"deletion_protection": True}, {"deletion_protection": False}):
        await asyncio.sleep(0.002)  # updated_at has milliseconds
        response = await patch_nodepool(api, nodepool["id"], spec)
        assert response.status_code == 200, response.text
        after = response.json()
        assert after["spec"]["deletion_protection"] is spec["deletion_protection"]
        assert after["generation"] == 1
        assert after["status"] == before["status"]
        assert after["resource_version"] != before["resource_version"]
        assert response.headers["ETag"] == f'"{after["resource_version"]}"'
        assert after["updated_at"] > before["updated_at"]
        assert await get(api, f"nodepools/{nodepool['id']}") == after
        before = after
    # PUT of the whole spec, protection on
    body = {"name": nodepool["name"], "spec": {**nodepool["spec"], "deletion_protection": True}}
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=body, headers=USER)
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == 1
    assert await outbox_length(redis, settings) == events


async def test_toggling_a_cluster_s_protection_is_no_spec_change(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    events = await outbox_length(redis, settings)
    await asyncio.sleep(0.002)  # updated_at has milliseconds
    response = await put_cluster(api, cluster, deletion_protection=True)
    assert response.status_code == 200, response.text
    after = response.json()
    assert (after["generation"], after["status"]) == (1, cluster["status"])
    assert after["resource_version"] != cluster["resource_version"]
    assert after["updated_at"] > cluster["updated_at"]
    response = await put_cluster(api, after, deletion_protection=None)
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == 1
    assert "deletion_protection" not in response.json()["spec"]
    assert await outbox_length(redis, settings) == events


async def test_protection_with_another_change_is_one_spec_change(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    nodepool = await create_nodepool(api, cluster["id"])
    events = await outbox_length(redis, settings)
    response = await patch_nodepool(
        api, nodepool["id"], {"nodeCount": 4, "deletion_protection": True}
    )
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == 2
    response = await put_cluster(
        api, cluster, deletion_protection=True, release={"version": "1.31"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == 2
    assert await outbox_length(redis, settings) == events + 2


async def test_a_dry_run_toggle_writes_nothing(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    nodepool = await create_nodepool(api, cluster["id"])
    response = await patch_nodepool(
        api, nodepool["id"], {"deletion_protection": True}, query="?dryRun=true"
    )
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["deletion_protection"] is True
    assert await get(api, f"nodepools/{nodepool['id']}") == nodepool
    response = await api.delete(f"{API}/nodepools/{nodepool['id']}", headers=USER)
    assert response.status_code == 204, response.text


# ---- the role rule --------------------------------------------------------------------------


async def test_an_editor_cannot_turn_protection_on_or_off(api: httpx.AsyncClient) -> None:
    project = await shared_project(api)
    cluster = await create_cluster(api, gcp_cluster_body("team", project_id=project), user=EDITOR)
    nodepool = await create_nodepool(api, cluster["id"], user=EDITOR)

    # on: refused, dry run included, and nothing written
    for query in ("", "?dryRun=true"):
        response = await patch_nodepool(
            api, nodepool["id"], {"deletion_protection": True}, EDITOR, query
        )
        error = assert_error(response, 403, "FORBIDDEN")
        assert "deletion_protection" in error["message"] and "admin" in error["details"]
    response = await put_cluster(api, cluster, EDITOR, deletion_protection=True)
    assert_error(response, 403, "FORBIDDEN")
    assert await get(api, f"nodepools/{nodepool['id']}") == nodepool
    assert await get(api, f"clusters/{cluster['id']}") == cluster

    # the admin turns it on
    response = await patch_nodepool(api, nodepool["id"], {"deletion_protection": True})
    assert response.status_code == 200, response.text
    response = await put_cluster(api, cluster, deletion_protection=True)
    assert response.status_code == 200, response.text
    cluster = response.json()

    # off: refused, however it is spelt (false, null, a PUT leaving it out)
    for value in (False, None):
        response = await patch_nodepool(api, nodepool["id"], {"deletion_protection": value}, EDITOR)
        assert_error(response, 403, "FORBIDDEN")
    body = {"name": nodepool["name"], "spec": nodepool["spec"]}  # without deletion_protection
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=body, headers=EDITOR)
    assert_error(response, 403, "FORBIDDEN")
    assert_error(
        await put_cluster(api, cluster, EDITOR, deletion_protection=None), 403, "FORBIDDEN"
    )
    assert_error(
        await put_cluster(api, cluster, EDITOR, deletion_protection=False), 403, "FORBIDDEN"
    )

    # the editor still may not delete them
    assert_protected(await api.delete(f"{API}/nodepools/{nodepool['id']}", headers=EDITOR))
    assert_protected(await api.delete(f"{API}/clusters/{cluster['id']}", headers=EDITOR))


async def test_an_editor_may_write_everything_else(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    project = await shared_project(api)
    cluster = await create_cluster(
        api, protected_cluster_body("team", project_id=project), user=EDITOR
    )
    nodepool = await create_nodepool(
        api, cluster["id"], body=protected_nodepool_body(cluster["id"], "team"), user=EDITOR
    )
    events = await outbox_length(redis, settings)
    response = await patch_nodepool(api, nodepool["id"], {"nodeCount": 5}, EDITOR)
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["deletion_protection"] is True  # a patch keeps it
    response = await put_cluster(api, cluster, EDITOR, release={"version": "1.31"})
    assert response.status_code == 200, response.text  # sent back as stored: unchanged
    cluster = response.json()
    assert cluster["generation"] == 2
    response = await api.put(
        f"{API}/clusters/{cluster['id']}",
        json={"name": "renamed", "spec": cluster["spec"]},
        headers=EDITOR,
    )
    assert response.status_code == 200, response.text
    assert await outbox_length(redis, settings) == events + 2


async def test_an_explicit_false_where_it_was_absent_changes_no_protection(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    project = await shared_project(api)
    cluster = await create_cluster(api, gcp_cluster_body("team", project_id=project), user=EDITOR)
    events = await outbox_length(redis, settings)
    response = await put_cluster(api, cluster, EDITOR, deletion_protection=False)
    assert response.status_code == 200, response.text
    assert (response.json()["spec"]["deletion_protection"], response.json()["generation"]) == (
        False,
        1,
    )
    assert await outbox_length(redis, settings) == events


# ---- the delete's transaction -----------------------------------------------------------------


def overtaken_by(
    monkeypatch: pytest.MonkeyPatch, other: Callable[[], Awaitable[httpx.Response]]
) -> list[httpx.Response]:
    """Make ``other`` (a request to another replica) complete just before the next transaction
    any store of this process runs commits; its response."""
    run = RedisStore.run
    done: list[httpx.Response] = []

    async def run_after_other(self: RedisStore, txn: Txn, dry_run: bool = False) -> None:
        if not done:
            monkeypatch.setattr(RedisStore, "run", run)  # ``other`` commits with the real one
            done.append(await other())
        await run(self, txn, dry_run)

    monkeypatch.setattr(RedisStore, "run", run_after_other)
    return done


async def test_a_nodepool_protected_between_the_delete_s_read_and_commit_stays(
    api: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = await create_cluster(api)
    nodepool = await create_nodepool(api, cluster["id"])
    async with api_client(settings, relay_events=False) as replica:

        async def protect() -> httpx.Response:
            return await patch_nodepool(replica, nodepool["id"], {"deletion_protection": True})

        overtake = overtaken_by(monkeypatch, protect)
        response = await api.delete(f"{API}/nodepools/{nodepool['id']}", headers=USER)
    assert overtake and overtake[0].status_code == 200, overtake
    assert_protected(response)
    assert (await get(api, f"nodepools/{nodepool['id']}"))["spec"]["deletion_protection"] is True


async def test_a_cluster_protected_between_the_delete_s_read_and_commit_stays(
    api: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = await create_cluster(api)
    async with api_client(settings, relay_events=False) as replica:

        async def protect() -> httpx.Response:
            return await put_cluster(replica, cluster, deletion_protection=True)

        overtake = overtaken_by(monkeypatch, protect)
        response = await api.delete(f"{API}/clusters/{cluster['id']}", headers=USER)
    assert overtake and overtake[0].status_code == 200, overtake
    assert_protected(response)
    assert (await get(api, f"clusters/{cluster['id']}"))["spec"]["deletion_protection"] is True


async def test_a_nodepool_protected_during_a_forced_cascade_stays_until_unprotected(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    # Protected after the forced delete was accepted, before the cascade job reached it: the
    # cascade deletes the others and leaves it, and the cluster stays Deleting until an admin
    # turns the protection off (the one change a nodepool of a Deleting cluster accepts).
    cluster = await create_cluster(api)
    nodepool = await create_nodepool(api, cluster["id"], "late")
    other = await create_nodepool(api, cluster["id"], "other")
    response = await api.delete(f"{API}/clusters/{cluster['id']}?force=true", headers=USER)
    assert response.status_code == 202, response.text
    protect = await patch_nodepool(api, nodepool["id"], {"deletion_protection": True})
    assert protect.status_code == 200, protect.text
    await finish_cluster_deletions(settings)
    listed = await get(api, f"clusters/{cluster['id']}/nodepools")
    assert [n["id"] for n in listed["nodepools"]] == [nodepool["id"]]
    assert (await get(api, f"clusters/{cluster['id']}"))["status"]["phase"] == "Deleting"
    assert assert_error(
        await patch_nodepool(api, nodepool["id"], {"nodeCount": 4}), 409, "CLUSTER_DELETING"
    )
    lifted = await patch_nodepool(api, nodepool["id"], {"deletion_protection": False})
    assert lifted.status_code == 200, lifted.text
    await finish_cluster_deletions(settings)
    for path in (f"clusters/{cluster['id']}", f"nodepools/{nodepool['id']}"):
        assert (await api.get(f"{API}/{path}", headers=USER)).status_code == 404
    assert (await api.get(f"{API}/nodepools/{other['id']}", headers=USER)).status_code == 404


# ---- documented -----------------------------------------------------------------------------


def test_the_code_and_the_field_are_in_the_openapi_document() -> None:
    spec = create_app().openapi()
    schemas = spec["components"]["schemas"]
    assert ErrorCode.DELETION_PROTECTED.value in schemas["ErrorCode"]["enum"]
    for model in ("ClusterSpec", "NodePoolSpec"):
        field = schemas[model]["properties"]["deletion_protection"]
        assert {"type": "boolean"} in field["anyOf"], field
        assert "deletion_protection" not in schemas[model].get("required", [])
    for path in ("/api/v1/clusters/{id}", "/api/v1/nodepools/{id}"):
        described = spec["paths"][path]["delete"]["responses"]["409"]["description"]
        assert "DELETION_PROTECTED" in described, described
