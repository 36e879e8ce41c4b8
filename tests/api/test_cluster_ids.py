"""A cluster id a client chooses must never have been used. The answer is the same whoever holds
or held it, so it tells nobody that another owner's cluster exists; and a deleted cluster's id
is retired, so no report or event meant for it can ever reach a new cluster."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import API, assert_error
from tests.conftest import OTHER_USER, USER, controller_headers, gcp_cluster_body
from tests.support.deletion import purge_cluster
from tests.support.resources import create_cluster

ROOT = Path(__file__).resolve().parents[2]
CHOSEN_ID = "3b241101-e2bb-4255-8caf-4136c566a962"
NOT_AVAILABLE = {
    "code": "CONFLICT",
    "message": "Cluster id is not available",
    "details": "ids are never reused; omit id to have one assigned",
}


async def create_with_chosen_id(api: httpx.AsyncClient, user: dict[str, str]) -> httpx.Response:
    body = gcp_cluster_body(f"chosen-{user['X-User-Email'].split('@')[0]}", id=CHOSEN_ID)
    return await api.post(f"{API}/clusters", json=body, headers=user)


async def test_another_owners_live_id_answers_not_available(api: httpx.AsyncClient) -> None:
    assert (await create_with_chosen_id(api, OTHER_USER)).status_code == 201
    response = await create_with_chosen_id(api, USER)
    assert assert_error(response, 409, "CONFLICT") == NOT_AVAILABLE


async def test_a_never_used_id_and_a_deleted_one_answer_alike_to_strangers(
    api: httpx.AsyncClient,
) -> None:
    assert (await create_with_chosen_id(api, OTHER_USER)).status_code == 201
    deleted = await api.delete(f"{API}/clusters/{CHOSEN_ID}", headers=OTHER_USER)
    assert deleted.status_code == 202
    response = await create_with_chosen_id(api, USER)
    assert assert_error(response, 409, "CONFLICT") == NOT_AVAILABLE


async def test_the_owner_cannot_reuse_a_deleted_id_either(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await create_with_chosen_id(api, USER)).status_code == 201
    await purge_cluster(api, settings, CHOSEN_ID)
    response = await create_with_chosen_id(api, USER)
    assert assert_error(response, 409, "CONFLICT") == NOT_AVAILABLE


async def test_the_owner_of_a_live_id_is_told_it_exists(api: httpx.AsyncClient) -> None:
    assert (await create_with_chosen_id(api, USER)).status_code == 201
    response = await create_with_chosen_id(api, USER)
    assert assert_error(response, 409, "CONFLICT")["message"] == (
        "A cluster with this id already exists"
    )


async def test_a_dry_run_refuses_a_retired_id_too(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await create_with_chosen_id(api, USER)).status_code == 201
    await purge_cluster(api, settings, CHOSEN_ID)
    body = gcp_cluster_body("again", id=CHOSEN_ID)
    response = await api.post(f"{API}/clusters?dryRun=true", json=body, headers=USER)
    assert assert_error(response, 409, "CONFLICT") == NOT_AVAILABLE


async def test_a_report_for_a_deleted_cluster_reaches_no_one(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """Alice's cluster is deleted with a report still in flight; Bob cannot take its id, so the
    report finds no cluster instead of showing Alice's state on Bob's."""
    await create_with_chosen_id(api, OTHER_USER)
    await purge_cluster(api, settings, CHOSEN_ID, OTHER_USER)
    assert_error(await create_with_chosen_id(api, USER), 409, "CONFLICT")
    late_report = {
        "controller_name": "gcp-cluster-controller",
        "observed_generation": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Done"}],
        "metadata": {"project": "alice-project"},
    }
    url = f"{API}/clusters/{CHOSEN_ID}/status"
    response = await api.put(
        url, json=late_report, headers=controller_headers("gcp-cluster-controller")
    )
    assert_error(response, 404, "NOT_FOUND")
    assert not await redis.exists(settings.names.record("cluster", CHOSEN_ID))
    assert (await api.get(f"{API}/clusters", headers=USER)).json()["total"] == 0


async def test_server_assigned_ids_are_retired_on_delete_too(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster: dict[str, Any] = await create_cluster(api)
    await purge_cluster(api, settings, cluster["id"])
    assert await redis.hexists(settings.names.retired_cluster_ids, cluster["id"])
    body = gcp_cluster_body("again", id=cluster["id"])
    response = await api.post(f"{API}/clusters", json=body, headers=USER)
    assert assert_error(response, 409, "CONFLICT") == NOT_AVAILABLE


def load_run_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_stack", ROOT / "scripts" / "run_stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_make_run_says_why_the_demo_cluster_cannot_come_back(running_api: str) -> None:
    run_stack = load_run_stack()
    assert "created demo cluster" in run_stack._post_demo_cluster(running_api)
    assert "already exists" in run_stack._post_demo_cluster(running_api)
    demo = f"{running_api}/api/v1/clusters/{run_stack.DEMO_CLUSTER['id']}"
    # Forced: purged at once (a deletion that waits for controllers would keep the id taken).
    forced = f"{demo}?force=true&reason=test"
    deleted = httpx.delete(forced, headers={"X-User-Email": run_stack.DEMO_OWNER}, timeout=5)
    assert deleted.status_code == 202, deleted.text
    message = run_stack._post_demo_cluster(running_api)
    assert "ids are never reused" in message
    assert "CLS_NAMESPACE" in message


@pytest.mark.settings_update(tombstone_retention=0.05)
async def test_a_purged_cluster_id_stays_retired_once_its_tombstone_expired(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    assert (await create_with_chosen_id(api, USER)).status_code == 201
    await purge_cluster(api, settings, CHOSEN_ID)
    await asyncio.sleep(0.1)
    assert not await redis.exists(settings.names.tombstone("cluster", CHOSEN_ID))
    response = await create_with_chosen_id(api, USER)
    assert assert_error(response, 409, "CONFLICT") == NOT_AVAILABLE
