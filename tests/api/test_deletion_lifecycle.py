"""Deletion that waits for the controllers (issue 16): a DELETE puts the resource in phase
Deleting, its required controllers confirm with Deleted=True at the deletion generation, the
last confirmation purges it and leaves a tombstone; a force purges without them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_core.store import RedisStore
from cls_runtime.settings import Settings
from tests.api.conftest import API, assert_error, create_nodepool, update_body
from tests.conftest import (
    CONTROLLER_TOKENS,
    USER,
    controller_headers,
    gcp_cluster_body,
    seed_nodepool_body,
)
from tests.support.deletion import (
    confirm_deletion,
    deletion_loop,
    deletion_report,
    finish_cluster_deletions,
)
from tests.support.registry import tokens_setting
from tests.support.resources import create_cluster

Json = dict[str, Any]

TWO_REQUIRED = Path(__file__).parent.parent / "support" / "controllers-two-required.yaml"
DNS = "gcp-dns-controller"
DNS_TOKEN = "gcp-dns-token"
with_two_required = pytest.mark.settings_update(
    controllers_file=TWO_REQUIRED,
    controller_tokens=tokens_setting({**CONTROLLER_TOKENS, DNS: DNS_TOKEN}),
)


async def delete(api: httpx.AsyncClient, path: str, query: str = "") -> httpx.Response:
    return await api.delete(f"{API}/{path}{query}", headers=USER)


async def get(api: httpx.AsyncClient, path: str) -> httpx.Response:
    return await api.get(f"{API}/{path}", headers=USER)


async def report(
    api: httpx.AsyncClient,
    nodepool_id: str,
    body: Json,
    controller: str = "gcp-nodepool-controller",
) -> httpx.Response:
    headers = (
        {"Authorization": f"Bearer {DNS_TOKEN}"}
        if controller == DNS
        else controller_headers(controller)
    )
    return await api.put(f"{API}/nodepools/{nodepool_id}/status", json=body, headers=headers)


async def outbox_length(redis: Redis, settings: Settings) -> int:
    return int(await redis.xlen(settings.names.outbox))


# ---- Deleting ---------------------------------------------------------------------------------


async def test_a_deleted_nodepool_is_deleting_at_the_next_generation_with_its_timestamp(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    assert (await delete(api, f"nodepools/{nodepool['id']}")).status_code == 204
    shown = (await get(api, f"nodepools/{nodepool['id']}")).json()
    assert shown["status"]["phase"] == "Deleting"
    assert shown["generation"] == nodepool["generation"] + 1
    assert shown["deletion_timestamp"].endswith("Z")
    keys = list(shown)
    assert keys.index("updated_at") < keys.index("deletion_timestamp") < keys.index("created_by")
    assert "gcp-nodepool-controller" in shown["status"]["message"]


async def test_a_deleting_nodepool_stays_listed_and_the_deleting_filter_finds_it(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    listed = (await get(api, "nodepools")).json()
    assert [n["id"] for n in listed["nodepools"]] == [nodepool["id"]]
    deleting = (await get(api, "nodepools?status=Deleting")).json()
    assert [n["id"] for n in deleting["nodepools"]] == [nodepool["id"]]
    assert (await get(api, "nodepools?status=Pending")).json()["total"] == 0


async def test_a_put_on_a_deleting_nodepool_is_409_resource_deleting(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    url = f"{API}/nodepools/{nodepool['id']}"
    response = await api.put(url, json=update_body(node_count=5), headers=USER)
    error = assert_error(response, 409, "RESOURCE_DELETING")
    assert "being deleted" in error["message"] and "force" in error["details"]


async def test_a_patch_on_a_deleting_nodepool_is_409_resource_deleting(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    url = f"{API}/nodepools/{nodepool['id']}"
    response = await api.patch(url, json={"spec": {"nodeCount": 5}}, headers=USER)
    assert_error(response, 409, "RESOURCE_DELETING")


async def test_a_second_delete_is_204_and_writes_nothing(
    api: httpx.AsyncClient, nodepool: Json, redis: Redis, settings: Settings
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    first = (await get(api, f"nodepools/{nodepool['id']}")).json()
    events = await outbox_length(redis, settings)
    assert (await delete(api, f"nodepools/{nodepool['id']}")).status_code == 204
    assert (await get(api, f"nodepools/{nodepool['id']}")).json() == first
    assert await outbox_length(redis, settings) == events


async def test_a_deleting_nodepools_name_stays_taken_until_it_is_purged(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    body = {
        "name": nodepool["name"],
        "cluster_id": nodepool["cluster_id"],
        "spec": nodepool["spec"],
    }
    assert_error(await api.post(f"{API}/nodepools", json=body, headers=USER), 409, "CONFLICT")
    await confirm_deletion(api, f"nodepools/{nodepool['id']}")
    assert (await api.post(f"{API}/nodepools", json=body, headers=USER)).status_code == 201


# ---- confirmation -----------------------------------------------------------------------------


async def test_the_required_controllers_confirmation_purges_it_and_leaves_a_tombstone(
    api: httpx.AsyncClient, nodepool: Json, redis: Redis, settings: Settings
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    [answer] = await confirm_deletion(api, f"nodepools/{nodepool['id']}")
    assert answer.status_code == 200, answer.text
    assert_error(await get(api, f"nodepools/{nodepool['id']}"), 404, "NOT_FOUND")
    names = settings.names
    tombstone = await redis.hgetall(names.tombstone("nodepool", nodepool["id"]))
    assert tombstone["generation"] == "2" and "deleted_at" in tombstone
    assert "forced_by" not in tombstone
    assert 0 < await redis.ttl(names.tombstone("nodepool", nodepool["id"])) <= 7 * 24 * 3600
    assert not await redis.zscore(names.cluster_nodepools(nodepool["cluster_id"]), nodepool["id"])
    assert not await redis.exists(names.controller_reports("nodepool", nodepool["id"]))


async def test_a_confirmation_at_an_older_generation_does_not_purge(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    old = deletion_report("gcp-nodepool-controller", nodepool["generation"])
    assert (await report(api, nodepool["id"], old)).status_code == 200
    shown = (await get(api, f"nodepools/{nodepool['id']}")).json()
    assert shown["status"]["phase"] == "Deleting"


@with_two_required
async def test_a_partial_confirmation_keeps_it_deleting_and_names_who_is_missing(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    [answer] = await confirm_deletion(
        api, f"nodepools/{nodepool['id']}", only=["gcp-nodepool-controller"]
    )
    assert answer.status_code == 200, answer.text
    status = (await get(api, f"nodepools/{nodepool['id']}")).json()["status"]
    assert status["phase"] == "Deleting"
    assert "1 of 2" in status["message"] and f"not confirmed by {DNS}" in status["message"]
    confirmed = deletion_report(DNS, nodepool["generation"] + 1)
    assert (await report(api, nodepool["id"], confirmed, DNS)).status_code == 200
    assert_error(await get(api, f"nodepools/{nodepool['id']}"), 404, "NOT_FOUND")


async def test_a_deletion_error_is_shown_and_it_stays_deleting(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    failing = deletion_report(
        "gcp-nodepool-controller",
        nodepool["generation"] + 1,
        deleted=False,
        last_error="instance group still has 3 VMs",
    )
    assert (await report(api, nodepool["id"], failing)).status_code == 200
    status = (await get(api, f"nodepools/{nodepool['id']}")).json()["status"]
    assert (status["phase"], status["health"], status["reason"]) == (
        "Deleting",
        "Unhealthy",
        "DeletionFailed",
    )
    assert "instance group still has 3 VMs" in status["message"]
    unhealthy = (await get(api, "nodepools?health=Unhealthy")).json()
    assert [n["id"] for n in unhealthy["nodepools"]] == [nodepool["id"]]


async def test_a_late_report_for_a_purged_nodepool_is_404_and_stores_nothing(
    api: httpx.AsyncClient, nodepool: Json, redis: Redis, settings: Settings
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    await confirm_deletion(api, f"nodepools/{nodepool['id']}")
    late = deletion_report("gcp-nodepool-controller", nodepool["generation"] + 1)
    assert_error(await report(api, nodepool["id"], late), 404, "NOT_FOUND")
    assert not await redis.exists(settings.names.record("nodepool", nodepool["id"]))
    assert not await redis.exists(settings.names.controller_reports("nodepool", nodepool["id"]))


# ---- timeout ----------------------------------------------------------------------------------


@pytest.mark.settings_update(deletion_timeout=0.2)
async def test_a_deletion_not_confirmed_in_time_turns_unhealthy_naming_who_did_not_confirm(
    api: httpx.AsyncClient, nodepool: Json, settings: Settings, store: RedisStore
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    loop = deletion_loop(settings, store)
    await loop.tick()  # not due yet
    assert (await get(api, f"nodepools/{nodepool['id']}")).json()["status"]["health"] == "Unknown"
    await asyncio.sleep(0.3)
    await loop.tick()
    status = (await get(api, f"nodepools/{nodepool['id']}")).json()["status"]
    assert (status["phase"], status["health"], status["reason"]) == (
        "Deleting",
        "Unhealthy",
        "DeletionTimedOut",
    )
    assert "not confirmed by gcp-nodepool-controller" in status["message"]
    unhealthy = (await get(api, "nodepools?health=Unhealthy")).json()
    assert [n["id"] for n in unhealthy["nodepools"]] == [nodepool["id"]]


# ---- force ------------------------------------------------------------------------------------


async def test_a_force_without_a_reason_is_refused_and_deletes_nothing(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    response = await delete(api, f"nodepools/{nodepool['id']}", "?force=true")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "reason" in error["details"]
    response = await delete(api, f"nodepools/{nodepool['id']}", "?force=true&reason=")
    assert_error(response, 400, "VALIDATION_ERROR")
    long = "x" * 513
    response = await delete(api, f"nodepools/{nodepool['id']}", f"?force=true&reason={long}")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert (await get(api, f"nodepools/{nodepool['id']}")).json()["status"]["phase"] == "Pending"


async def test_a_force_on_a_deleting_nodepool_purges_it_and_the_tombstone_says_who_and_why(
    api: httpx.AsyncClient, nodepool: Json, redis: Redis, settings: Settings
) -> None:
    await delete(api, f"nodepools/{nodepool['id']}")
    response = await delete(
        api, f"nodepools/{nodepool['id']}", "?force=true&reason=controller%20is%20gone"
    )
    assert response.status_code == 204, response.text
    assert_error(await get(api, f"nodepools/{nodepool['id']}"), 404, "NOT_FOUND")
    tombstone = await redis.hgetall(settings.names.tombstone("nodepool", nodepool["id"]))
    assert tombstone["forced_by"] == USER["X-User-Email"]
    assert tombstone["reason"] == "controller is gone"
    assert str(tombstone["forced_at"]).endswith("Z")


async def test_a_force_on_a_nodepool_not_yet_deleting_deletes_and_purges_it_at_once(
    api: httpx.AsyncClient, nodepool: Json, redis: Redis, settings: Settings
) -> None:
    events = await outbox_length(redis, settings)
    response = await delete(api, f"nodepools/{nodepool['id']}", "?force=true&reason=test")
    assert response.status_code == 204, response.text
    assert_error(await get(api, f"nodepools/{nodepool['id']}"), 404, "NOT_FOUND")
    assert await outbox_length(redis, settings) == events + 1  # nodepool.deleted, as always


async def test_a_force_needs_the_editor_role(api: httpx.AsyncClient, nodepool: Json) -> None:
    stranger = {"X-User-Email": "stranger@example.com"}
    url = f"{API}/nodepools/{nodepool['id']}?force=true&reason=mine"
    assert_error(await api.delete(url, headers=stranger), 404, "NOT_FOUND")
    assert (await get(api, f"nodepools/{nodepool['id']}")).status_code == 200


# ---- clusters ---------------------------------------------------------------------------------


async def test_a_cluster_without_nodepools_is_deleting_until_its_controller_confirms(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    response = await delete(api, f"clusters/{cluster['id']}")
    assert response.status_code == 202, response.text
    assert response.json()["status"]["phase"] == "Deleting"
    await finish_cluster_deletions(settings)  # nothing confirmed: it stays
    assert (await get(api, f"clusters/{cluster['id']}")).json()["status"]["phase"] == "Deleting"
    await confirm_deletion(api, f"clusters/{cluster['id']}")
    await finish_cluster_deletions(settings)
    assert_error(await get(api, f"clusters/{cluster['id']}"), 404, "NOT_FOUND")


async def test_a_nodepool_created_in_a_deleting_cluster_is_409_cluster_deleting(
    api: httpx.AsyncClient,
) -> None:
    cluster = await create_cluster(api)
    await delete(api, f"clusters/{cluster['id']}")
    body = seed_nodepool_body(cluster["id"], "late")
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert_error(response, 409, "CLUSTER_DELETING")


async def test_a_cluster_with_nodepools_still_refuses_a_delete_without_force(
    api: httpx.AsyncClient, nodepool: Json
) -> None:
    response = await delete(api, f"clusters/{nodepool['cluster_id']}")
    assert assert_error(response, 409, "CONFLICT")["message"] == "Cluster still has nodepools"


async def test_a_forced_cluster_delete_without_a_reason_records_none_given(
    api: httpx.AsyncClient, nodepool: Json, redis: Redis, settings: Settings
) -> None:
    cluster_id = nodepool["cluster_id"]
    response = await delete(api, f"clusters/{cluster_id}", "?force=true")  # as the guide shows
    assert response.status_code == 202, response.text
    await finish_cluster_deletions(settings)
    for path in (f"clusters/{cluster_id}", f"nodepools/{nodepool['id']}"):
        assert_error(await get(api, path), 404, "NOT_FOUND")
    names = settings.names
    for key in (
        names.tombstone("cluster", cluster_id),
        names.tombstone("nodepool", nodepool["id"]),
    ):
        assert (await redis.hgetall(key))["reason"] == "no reason given", key


async def test_a_purged_cluster_id_is_refused_on_create(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    chosen = "0f9c8c3e-2a7b-4bde-9f2e-5d0f2a6b1c11"
    cluster = await create_cluster(api, gcp_cluster_body("chosen", id=chosen))
    await delete(api, f"clusters/{cluster['id']}", "?force=true&reason=test")
    assert await redis.exists(settings.names.tombstone("cluster", chosen))
    response = await api.post(
        f"{API}/clusters", json=gcp_cluster_body("again", id=chosen), headers=USER
    )
    assert assert_error(response, 409, "CONFLICT")["message"] == "Cluster id is not available"


async def test_a_deleting_cluster_cannot_be_changed(api: httpx.AsyncClient) -> None:
    cluster = await create_cluster(api)
    await delete(api, f"clusters/{cluster['id']}")
    body = {"name": "renamed", "spec": cluster["spec"]}
    response = await api.put(f"{API}/clusters/{cluster['id']}", json=body, headers=USER)
    assert_error(response, 409, "RESOURCE_DELETING")


async def test_a_nodepool_of_a_force_deleted_cluster_cannot_be_scaled(
    api: httpx.AsyncClient, cluster: Json
) -> None:
    pool = await create_nodepool(api, cluster["id"], "pool")
    await delete(api, f"clusters/{cluster['id']}", "?force=true")
    url = f"{API}/nodepools/{pool['id']}"
    response = await api.patch(url, json={"spec": {"nodeCount": 5}}, headers=USER)
    assert_error(response, 409, "CLUSTER_DELETING")


async def test_a_force_on_a_deleting_cluster_without_nodepools_purges_it_and_records_why(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    await delete(api, f"clusters/{cluster['id']}")
    response = await delete(api, f"clusters/{cluster['id']}", "?force=true&reason=stuck")
    assert response.status_code == 202, response.text
    assert_error(await get(api, f"clusters/{cluster['id']}"), 404, "NOT_FOUND")
    tombstone = await redis.hgetall(settings.names.tombstone("cluster", cluster["id"]))
    assert (tombstone["reason"], tombstone["forced_by"]) == ("stuck", USER["X-User-Email"])
    assert not await redis.hexists(settings.names.deleting_clusters, cluster["id"])
