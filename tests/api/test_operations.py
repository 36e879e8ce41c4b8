"""Operations: every change a user makes, recorded with the change and ended by the
controllers' reports (docs/user-guide.md, "Operations")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import API, assert_error, create_nodepool, update_body
from tests.conftest import (
    OTHER_USER,
    USER,
    api_client,
    controller_headers,
    gcp_cluster_body,
    matching_keys,
    seed_nodepool_body,
)
from tests.support.deletion import confirm_deletion
from tests.support.resources import create_cluster

OP = "X-Operation-Id"
VIEWER = {"X-User-Email": "viewer@example.com"}


def ready(generation: int, active_nodes: int | None = None, ok: bool = True) -> dict[str, Any]:
    report: dict[str, Any] = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": generation,
        "conditions": [
            {"type": "Ready", "status": "True" if ok else "False", "reason": "NodesReady"}
        ],
    }
    if active_nodes is not None:
        report["metadata"] = {"active_nodes": active_nodes}
    return report


def failed(generation: int) -> dict[str, Any]:
    return {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": generation,
        "conditions": [{"type": "Ready", "status": "False", "reason": "QuotaExceeded"}],
        "last_error": {
            "errorType": "Configuration",
            "errorCode": "CPUS_QUOTA",
            "message": "not enough CPUs in us-central1",
        },
    }


async def report(api: httpx.AsyncClient, nodepool_id: str, body: dict[str, Any]) -> None:
    response = await api.put(
        f"{API}/nodepools/{nodepool_id}/status", json=body, headers=controller_headers()
    )
    assert response.status_code == 200, response.text


async def operation(
    api: httpx.AsyncClient, operation_id: str, user: dict[str, str] = USER
) -> dict[str, Any]:
    response = await api.get(f"{API}/operations/{operation_id}", headers=user)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def operations_of(
    api: httpx.AsyncClient, path: str, query: str = "", user: dict[str, str] = USER
) -> dict[str, Any]:
    response = await api.get(f"{API}/{path}/operations{query}", headers=user)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def scale(api: httpx.AsyncClient, nodepool_id: str, node_count: int) -> httpx.Response:
    response = await api.patch(
        f"{API}/nodepools/{nodepool_id}",
        json={"spec": {"nodeCount": node_count}},
        headers={**USER, "Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
async def created(api: httpx.AsyncClient, cluster: dict[str, Any]) -> httpx.Response:
    response = await api.post(
        f"{API}/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    assert response.status_code == 201, response.text
    return response


# ---- create ----------------------------------------------------------------------------------


async def test_a_create_starts_a_running_operation_named_in_its_response(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool = created.json()
    op = await operation(api, created.headers[OP])
    assert op["type"] == "create" and op["state"] == "Running"
    assert (op["resource_kind"], op["resource_id"]) == ("nodepool", pool["id"])
    assert (op["cluster_id"], op["generation"], op["actor"]) == (
        pool["cluster_id"],
        1,
        USER["X-User-Email"],
    )
    assert op["finished_at"] is None
    assert {"field": "spec.nodeCount", "old": None, "new": 3} in op["changes"]


async def test_a_create_succeeds_when_the_controllers_report_ready_at_its_generation(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    await report(api, created.json()["id"], ready(1, active_nodes=3))
    op = await operation(api, created.headers[OP])
    assert op["state"] == "Succeeded" and op["finished_at"] is not None
    assert op["progress"]["phase"] == "Ready"
    assert (op["progress"]["desired_nodes"], op["progress"]["active_nodes"]) == (3, 3)


# ---- scale and update ------------------------------------------------------------------------


async def test_a_scale_records_the_node_count_it_changed_and_its_progress(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool_id = created.json()["id"]
    await report(api, pool_id, ready(1, active_nodes=3))
    scaled = await scale(api, pool_id, 6)
    await report(api, pool_id, ready(2, active_nodes=4, ok=False))
    op = await operation(api, scaled.headers[OP])
    assert (op["type"], op["state"], op["generation"]) == ("scale", "Running", 2)
    assert op["changes"] == [{"field": "spec.nodeCount", "old": 3, "new": 6}]
    assert op["progress"] == {
        "phase": "Progressing",
        "controllers_ready": 0,
        "controllers_reported": 1,
        "desired_nodes": 6,
        "active_nodes": 4,
    }


async def test_a_change_beyond_the_node_count_is_an_update_with_each_field(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    response = await api.put(
        f"{API}/nodepools/{created.json()['id']}", json=update_body(), headers=USER
    )
    op = await operation(api, response.headers[OP])
    assert op["type"] == "update"
    fields = {change["field"]: (change["old"], change["new"]) for change in op["changes"]}
    assert fields["spec.nodeCount"] == (3, 6)
    assert fields["spec.platform.gcp.diskType"] == ("pd-ssd", None)


async def test_a_failed_status_at_its_generation_fails_the_operation_with_the_errors(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    await report(api, created.json()["id"], failed(1))
    op = await operation(api, created.headers[OP])
    assert op["state"] == "Failed" and op["finished_at"] is not None
    [error] = op["error"]
    assert (error["controller"], error["errorCode"]) == ("gcp-nodepool-controller", "CPUS_QUOTA")


async def test_a_newer_change_supersedes_a_running_operation(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool_id = created.json()["id"]
    first = (await scale(api, pool_id, 5)).headers[OP]
    second = (await scale(api, pool_id, 7)).headers[OP]
    superseded = await operation(api, first)
    assert (superseded["state"], superseded["superseded_by"]) == ("Superseded", second)
    assert superseded["finished_at"] is not None
    assert (await operation(api, second))["state"] == "Running"
    assert (await operation(api, created.headers[OP]))["superseded_by"] == first


async def test_a_ready_of_an_older_generation_ends_nothing(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool_id = created.json()["id"]
    scaled = (await scale(api, pool_id, 6)).headers[OP]
    await report(api, pool_id, ready(1, active_nodes=3))  # late: generation 1 is superseded
    assert (await operation(api, scaled))["state"] == "Running"
    await report(api, pool_id, ready(2, active_nodes=6))
    assert (await operation(api, scaled))["state"] == "Succeeded"


async def test_a_rename_starts_no_operation(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool = created.json()
    response = await api.put(
        f"{API}/nodepools/{pool['id']}",
        json={"name": "renamed", "spec": pool["spec"]},
        headers=USER,
    )
    assert response.status_code == 200, response.text
    assert OP not in response.headers
    assert (await operations_of(api, f"nodepools/{pool['id']}"))["total"] == 1


# ---- delete ----------------------------------------------------------------------------------


async def test_a_delete_cancels_the_running_operation_and_stays_readable(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool_id = created.json()["id"]
    deleted = await api.delete(f"{API}/nodepools/{pool_id}", headers=USER)
    assert deleted.status_code == 204
    cancelled = await operation(api, created.headers[OP])
    assert cancelled["state"] == "Cancelled" and cancelled["superseded_by"] is None
    # Running while Deleting; Succeeded at the purge (its controller's confirmation).
    assert (await operation(api, deleted.headers[OP]))["state"] == "Running"
    await confirm_deletion(api, f"nodepools/{pool_id}")
    delete = await operation(api, deleted.headers[OP])
    assert (delete["type"], delete["state"], delete["generation"]) == ("delete", "Succeeded", 2)
    listed = await operations_of(api, f"nodepools/{pool_id}")
    assert [op["id"] for op in listed["operations"]] == [deleted.headers[OP], created.headers[OP]]


async def test_a_purged_resources_operations_expire_with_its_tombstone(
    api: httpx.AsyncClient, created: httpx.Response, redis: Redis, settings: Settings
) -> None:
    pool_id = created.json()["id"]
    deleted = await api.delete(f"{API}/nodepools/{pool_id}", headers=USER)
    await confirm_deletion(api, f"nodepools/{pool_id}")
    retention_ms = settings.tombstone_retention * 1000
    for key in (
        settings.names.operation(created.headers[OP]),
        settings.names.operation(deleted.headers[OP]),
        settings.names.resource_operations("nodepool", pool_id),
    ):
        assert 0 < await redis.pttl(key) <= retention_ms
    assert await redis.exists(settings.names.record("nodepool", pool_id)) == 0


# ---- access ----------------------------------------------------------------------------------


async def test_a_viewer_of_the_project_reads_its_operations(
    api: httpx.AsyncClient,
) -> None:
    made = await api.post(f"{API}/projects", json={"name": "team"}, headers=USER)
    project_id = made.json()["id"]
    member = await api.put(
        f"{API}/projects/{project_id}/members/{VIEWER['X-User-Email']}",
        json={"role": "viewer"},
        headers=USER,
    )
    assert member.status_code == 200, member.text
    response = await api.post(
        f"{API}/clusters", json=gcp_cluster_body(project_id=project_id), headers=USER
    )
    cluster_id = response.json()["id"]
    assert (await operation(api, response.headers[OP], VIEWER))["type"] == "create"
    listed = await operations_of(api, f"clusters/{cluster_id}", user=VIEWER)
    assert listed["total"] == 1


async def test_an_outsider_gets_404_for_the_operations_and_the_list(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool_id = created.json()["id"]
    one = await api.get(f"{API}/operations/{created.headers[OP]}", headers=OTHER_USER)
    assert_error(one, 404, "NOT_FOUND")
    listed = await api.get(f"{API}/nodepools/{pool_id}/operations", headers=OTHER_USER)
    assert_error(listed, 404, "NOT_FOUND")


async def test_an_unknown_operation_is_404(api: httpx.AsyncClient) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(await api.get(f"{API}/operations/{missing}", headers=USER), 404, "NOT_FOUND")
    assert_error(
        await api.get(f"{API}/nodepools/{missing}/operations", headers=USER), 404, "NOT_FOUND"
    )


# ---- lists -----------------------------------------------------------------------------------


async def test_a_list_is_newest_first_and_paginated_like_the_resource_lists(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool_id = created.json()["id"]
    ids = [created.headers[OP]]
    for count in (4, 5, 6):
        ids.append((await scale(api, pool_id, count)).headers[OP])
    page = await operations_of(api, f"nodepools/{pool_id}", "?limit=2&offset=1")
    assert {k: page[k] for k in ("total", "limit", "offset")} == {
        "total": 4,
        "limit": 2,
        "offset": 1,
    }
    assert [op["id"] for op in page["operations"]] == [ids[2], ids[1]]
    bad = await api.get(f"{API}/nodepools/{pool_id}/operations?limit=0", headers=USER)
    assert_error(bad, 400, "VALIDATION_ERROR")


async def test_a_cluster_lists_its_own_operations_not_its_nodepools(
    api: httpx.AsyncClient, cluster: dict[str, Any], created: httpx.Response
) -> None:
    listed = await operations_of(api, f"clusters/{cluster['id']}")
    assert [(op["type"], op["resource_id"]) for op in listed["operations"]] == [
        ("create", cluster["id"])
    ]


@pytest.mark.settings_update(operations_per_resource=3)
async def test_a_resources_history_keeps_its_newest_operations_only(
    api: httpx.AsyncClient, created: httpx.Response, redis: Redis, settings: Settings
) -> None:
    pool_id = created.json()["id"]
    ids = [created.headers[OP]]
    for count in (4, 5, 6, 7):
        ids.append((await scale(api, pool_id, count)).headers[OP])
    listed = await operations_of(api, f"nodepools/{pool_id}")
    assert [op["id"] for op in listed["operations"]] == ids[:1:-1]
    assert listed["total"] == 3
    for dropped in ids[:2]:
        assert await redis.exists(settings.names.operation(dropped)) == 0
        assert_error(await api.get(f"{API}/operations/{dropped}", headers=USER), 404, "NOT_FOUND")


# ---- with the writes -------------------------------------------------------------------------


async def test_every_write_names_its_operation_in_a_header(
    api: httpx.AsyncClient,
) -> None:
    made = await api.post(f"{API}/clusters", json=gcp_cluster_body("headers"), headers=USER)
    cluster_id = made.json()["id"]
    body = seed_nodepool_body(cluster_id)
    in_cluster = await api.post(f"{API}/clusters/{cluster_id}/nodepools", json=body, headers=USER)
    pool_id = in_cluster.json()["id"]
    put = await api.put(f"{API}/nodepools/{pool_id}", json=update_body(), headers=USER)
    patched = await scale(api, pool_id, 4)
    released = {**made.json()["spec"], "release": {"version": "4.15.2"}}
    cluster_put = await api.put(
        f"{API}/clusters/{cluster_id}", json={"name": "headers", "spec": released}, headers=USER
    )
    deleted_pool = await api.delete(f"{API}/nodepools/{pool_id}", headers=USER)
    await confirm_deletion(api, f"nodepools/{pool_id}")  # purged: the cluster has none left
    deleted_cluster = await api.delete(f"{API}/clusters/{cluster_id}", headers=USER)
    writes = [made, in_cluster, put, patched, cluster_put, deleted_pool, deleted_cluster]
    assert all(w.status_code < 300 for w in writes), [w.text for w in writes]
    ids = [w.headers[OP] for w in writes]
    assert len(set(ids)) == len(ids)
    types = [(await operation(api, i))["type"] for i in ids]
    assert types == ["create", "create", "update", "scale", "update", "delete", "delete"]


async def test_a_dry_run_starts_no_operation(
    api: httpx.AsyncClient, created: httpx.Response
) -> None:
    pool_id = created.json()["id"]
    dry = await api.put(f"{API}/nodepools/{pool_id}?dryRun=true", json=update_body(), headers=USER)
    assert dry.status_code == 200 and OP not in dry.headers
    assert (await operations_of(api, f"nodepools/{pool_id}"))["total"] == 1


@pytest.fixture
async def quiet_api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The API without the event relay: the events stay in the outbox for the test to read."""
    async with api_client(settings, relay_events=False) as client:
        yield client


async def test_the_event_of_a_change_carries_its_operation_id(
    quiet_api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(quiet_api)
    pool = await create_nodepool(quiet_api, cluster["id"])
    scaled = await scale(quiet_api, pool["id"], 5)
    entries: Any = await redis.xrange(settings.names.outbox)
    bodies = [orjson.loads(fields["body"]) for _, fields in entries]
    [event] = [b for b in bodies if b["type"] == "nodepool.updated"]
    assert event["operation_id"] == scaled.headers[OP]
    assert all(b["operation_id"] for b in bodies)


async def test_a_write_that_fails_its_guard_leaves_no_operation(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    await create_nodepool(api, cluster["id"], "taken")
    before = await matching_keys(redis, settings.names.operation("*"))
    # The name is checked in the create's transaction: it fails there, and nothing is written.
    response = await api.post(
        f"{API}/nodepools", json=seed_nodepool_body(cluster["id"], "taken"), headers=USER
    )
    assert_error(response, 409, "CONFLICT")
    assert OP not in response.headers
    assert sorted(await matching_keys(redis, settings.names.operation("*"))) == sorted(before)
