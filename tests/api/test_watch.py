"""Watching resources (``?watch=true``, server-sent events) and waiting for them (``?waitFor=``).

The app is served by uvicorn in a thread of the test (real HTTP: a streamed response is read as
a client reads it), over the real Redis; writes go through the same API, status reports with a
controller's token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from api_service.app import create_app
from cls_core.services.watch import decode_token
from cls_runtime.settings import Settings
from shared_models.projects import personal_project_id
from tests.api.conftest import API, MERGE_PATCH, assert_error
from tests.conftest import USER, controller_headers, gcp_cluster_body, seed_nodepool_body
from tests.support.deletion import confirm_deletion, delete_nodepool
from tests.support.sse import watching
from tests.support.threaded_server import served_in_thread

pytestmark = pytest.mark.settings_update(watch_heartbeat=1.0)

Json = dict[str, Any]
ALICE = {"X-User-Email": "alice@example.com"}
BOB = {"X-User-Email": "bob@example.com"}


@pytest.fixture
async def http(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The API (without its event relay) served over HTTP, and a client of it."""
    app = create_app(settings, relay_events=False)
    with served_in_thread(app, log_level="warning", lifespan="on") as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            yield client


async def create_cluster(
    http: httpx.AsyncClient, name: str = "demo", headers: dict[str, str] = USER, **extra: Any
) -> Json:
    response = await http.post(
        f"{API}/clusters", json=gcp_cluster_body(name, **extra), headers=headers
    )
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def create_pool(
    http: httpx.AsyncClient, cluster_id: str, name: str = "workers", headers: dict[str, str] = USER
) -> Json:
    body = seed_nodepool_body(cluster_id, name)
    response = await http.post(f"{API}/nodepools", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def scale(http: httpx.AsyncClient, nodepool_id: str, nodes: int) -> Json:
    # Within the seed's autoscaling bounds (2-10).
    response = await http.patch(
        f"{API}/nodepools/{nodepool_id}",
        json={"spec": {"nodeCount": nodes}},
        headers={**USER, **MERGE_PATCH},
    )
    assert response.status_code == 200, response.text
    updated: Json = response.json()
    return updated


async def report(http: httpx.AsyncClient, nodepool_id: str, generation: int, ready: bool) -> None:
    body = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": generation,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "NodesReady" if ready else "Provisioning",
                "message": "ready" if ready else "provisioning",
            }
        ],
    }
    path = f"{API}/nodepools/{nodepool_id}/status"
    response = await http.put(path, json=body, headers=controller_headers())
    assert response.status_code == 200, response.text


@pytest.fixture
async def cluster(http: httpx.AsyncClient) -> Json:
    return await create_cluster(http)


@pytest.fixture
async def pool(http: httpx.AsyncClient, cluster: Json) -> Json:
    return await create_pool(http, cluster["id"])


# ---- the stream ------------------------------------------------------------------------------


async def test_a_watch_starts_with_an_added_event_per_existing_nodepool(
    http: httpx.AsyncClient, cluster: Json
) -> None:
    first = await create_pool(http, cluster["id"], "first")
    second = await create_pool(http, cluster["id"], "second")
    async with watching(http, f"{API}/nodepools", USER) as stream:
        events = [await stream.next(), await stream.next()]
    assert [e.type for e in events] == ["ADDED", "ADDED"]
    assert {e.resource["id"] for e in events} == {first["id"], second["id"]}
    got = await http.get(f"{API}/nodepools/{first['id']}", headers=USER)
    assert next(e for e in events if e.resource["id"] == first["id"]).data == got.text


async def test_a_create_while_watching_is_an_added_event(
    http: httpx.AsyncClient, cluster: Json
) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        created = await create_pool(http, cluster["id"])
        event = await stream.next()
    assert event.type == "ADDED"
    assert event.resource == created


async def test_a_spec_change_is_a_modified_event(http: httpx.AsyncClient, pool: Json) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.until("ADDED", pool["id"])
        updated = await scale(http, pool["id"], 5)
        event = await stream.next()
    assert event.type == "MODIFIED"
    assert event.resource == updated
    assert event.resource["generation"] == 2


async def test_a_status_report_is_a_modified_event(http: httpx.AsyncClient, pool: Json) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.until("ADDED", pool["id"])
        await report(http, pool["id"], 1, ready=True)
        event = await stream.next()
    assert event.type == "MODIFIED"
    assert event.resource["status"]["phase"] == "Ready"


async def test_a_delete_is_a_modified_event_in_phase_deleting(
    http: httpx.AsyncClient, pool: Json
) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.until("ADDED", pool["id"])
        response = await http.delete(f"{API}/nodepools/{pool['id']}", headers=USER)
        assert response.status_code == 204, response.text
        event = await stream.next()
    assert event.type == "MODIFIED"
    assert event.resource["status"]["phase"] == "Deleting"


async def test_a_purged_nodepool_is_a_deleted_event(http: httpx.AsyncClient, pool: Json) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.until("ADDED", pool["id"])
        await delete_nodepool(http, pool["id"])  # and its controller confirms: the purge
        event = await stream.until("DELETED", pool["id"])
    assert event.resource["name"] == pool["name"]


async def test_the_events_of_one_nodepool_come_in_the_order_of_its_writes(
    http: httpx.AsyncClient, pool: Json
) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.until("ADDED", pool["id"])
        for nodes in (4, 5, 6, 7, 8):
            await scale(http, pool["id"], nodes)
        counts = [(await stream.next()).resource["spec"]["nodeCount"] for _ in range(5)]
    assert counts == [4, 5, 6, 7, 8]


async def test_a_cluster_filter_sends_only_that_clusters_nodepools(
    http: httpx.AsyncClient, cluster: Json
) -> None:
    other = await create_cluster(http, "other")
    async with watching(http, f"{API}/nodepools", USER, cluster_id=cluster["id"]) as stream:
        await create_pool(http, other["id"], "elsewhere")
        mine = await create_pool(http, cluster["id"], "here")
        event = await stream.next()
    assert event.resource["id"] == mine["id"]


async def test_a_phase_filter_sends_only_the_changes_in_that_phase(
    http: httpx.AsyncClient, pool: Json
) -> None:
    async with watching(http, f"{API}/nodepools", USER, status="Ready") as stream:
        await scale(http, pool["id"], 4)  # generation 2, still Pending: not sent
        await report(http, pool["id"], 2, ready=True)
        event = await stream.next()
    assert event.type == "MODIFIED"
    assert event.resource["status"]["phase"] == "Ready"
    assert event.resource["spec"]["nodeCount"] == 4


async def test_a_cluster_watch_sends_clusters_only(http: httpx.AsyncClient, cluster: Json) -> None:
    async with watching(http, f"{API}/clusters", USER) as stream:
        added = await stream.next()
        await create_pool(http, cluster["id"])
        created = await create_cluster(http, "second")
        event = await stream.next()
    assert (added.type, added.resource["id"]) == ("ADDED", cluster["id"])
    assert (event.type, event.resource["id"]) == ("ADDED", created["id"])


async def test_a_watch_of_one_nodepool_sends_only_its_changes(
    http: httpx.AsyncClient, cluster: Json
) -> None:
    watched = await create_pool(http, cluster["id"], "watched")
    other = await create_pool(http, cluster["id"], "other")
    async with watching(http, f"{API}/nodepools/{watched['id']}", USER) as stream:
        first = await stream.next()
        await scale(http, other["id"], 4)
        await scale(http, watched["id"], 5)
        second = await stream.next()
    assert (first.type, first.resource["id"]) == ("ADDED", watched["id"])
    assert (second.type, second.resource["spec"]["nodeCount"]) == ("MODIFIED", 5)


async def test_a_watch_of_one_nodepool_ends_with_its_deletion(
    http: httpx.AsyncClient, pool: Json
) -> None:
    async with watching(http, f"{API}/nodepools/{pool['id']}", USER) as stream:
        await stream.next()
        await delete_nodepool(http, pool["id"])
        await stream.until("DELETED", pool["id"])
        with pytest.raises(EOFError):
            await stream.next()


async def test_a_watch_of_another_users_nodepool_is_a_404(
    http: httpx.AsyncClient, pool: Json
) -> None:
    response = await http.get(
        f"{API}/nodepools/{pool['id']}", params={"watch": "true"}, headers=BOB
    )
    assert_error(response, 404, "NOT_FOUND")


# ---- resuming ---------------------------------------------------------------------------------


async def test_resuming_with_last_event_id_replays_the_missed_changes(
    http: httpx.AsyncClient, pool: Json
) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        token = (await stream.until("ADDED", pool["id"])).id
    await scale(http, pool["id"], 4)
    await scale(http, pool["id"], 5)
    headers = {**USER, "Last-Event-ID": token}
    async with watching(http, f"{API}/nodepools", headers) as stream:
        missed = [await stream.next(), await stream.next()]
    assert [e.type for e in missed] == ["MODIFIED", "MODIFIED"]
    assert [e.resource["spec"]["nodeCount"] for e in missed] == [4, 5]


async def test_resuming_with_resource_version_replays_the_missed_changes(
    http: httpx.AsyncClient, pool: Json
) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        token = (await stream.until("ADDED", pool["id"])).id
    await scale(http, pool["id"], 4)
    async with watching(http, f"{API}/nodepools", USER, resource_version=token) as stream:
        event = await stream.next()
    assert (event.type, event.resource["spec"]["nodeCount"]) == ("MODIFIED", 4)


async def test_each_event_id_resumes_after_that_event(http: httpx.AsyncClient, pool: Json) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.until("ADDED", pool["id"])
        await scale(http, pool["id"], 4)
        await scale(http, pool["id"], 5)
        after_first = (await stream.next()).id
    async with watching(http, f"{API}/nodepools", {**USER, "Last-Event-ID": after_first}) as stream:
        event = await stream.next()
    assert event.resource["spec"]["nodeCount"] == 5


@pytest.mark.settings_update(watch_history=10)
async def test_a_token_older_than_the_history_answers_410(
    http: httpx.AsyncClient, pool: Json, redis: Redis, settings: Settings
) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        token = (await stream.until("ADDED", pool["id"])).id
    # Many changes since: the stream keeps about the last 10 (trimmed a node of 100 at a time).
    (project_id,) = decode_token(token)
    key = settings.names.watch_stream(project_id)
    async with redis.pipeline(transaction=False) as pipe:
        for _ in range(300):
            pipe.xadd(
                key,
                {"type": "MODIFIED", "kind": "cluster", "id": "x", "view": "{}"},
                maxlen=10,
                approximate=True,
            )
        await pipe.execute()
    headers = {**USER, "Last-Event-ID": token}
    request = http.build_request(
        "GET", f"{API}/nodepools", params={"watch": "true"}, headers=headers
    )
    response = await http.send(request, stream=True)  # a stream, were the token taken
    try:
        assert response.status_code == 410
        await response.aread()
    finally:
        await response.aclose()
    assert_error(response, 410, "RESOURCE_EXPIRED")


async def test_a_token_within_the_history_is_not_expired(
    http: httpx.AsyncClient, pool: Json
) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        token = (await stream.until("ADDED", pool["id"])).id
    for nodes in range(4, 11):
        await scale(http, pool["id"], nodes)
    async with watching(http, f"{API}/nodepools", {**USER, "Last-Event-ID": token}) as stream:
        assert (await stream.next()).resource["spec"]["nodeCount"] == 4


async def test_a_malformed_token_answers_400(http: httpx.AsyncClient) -> None:
    response = await http.get(
        f"{API}/nodepools",
        params={"watch": "true", "resource_version": "not-a-token"},
        headers=USER,
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["fields"][0]["field"] == "resource_version"


async def test_a_resource_version_without_watch_answers_400(http: httpx.AsyncClient) -> None:
    response = await http.get(f"{API}/nodepools", params={"resource_version": "x"}, headers=USER)
    assert_error(response, 400, "VALIDATION_ERROR")


# ---- bounds and access -----------------------------------------------------------------------


async def test_an_idle_watch_gets_heartbeats(http: httpx.AsyncClient) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.none_within(2.5)
    assert stream.comments, "no heartbeat in 2.5 s with CLS_WATCH_HEARTBEAT=1"


@pytest.mark.settings_update(max_watchers_per_caller=2)
async def test_watches_beyond_the_callers_limit_answer_429(http: httpx.AsyncClient) -> None:
    async with watching(http, f"{API}/nodepools", USER), watching(http, f"{API}/clusters", USER):
        response = await http.get(f"{API}/clusters", params={"watch": "true"}, headers=USER)
        assert_error(response, 429, "TOO_MANY_REQUESTS")
        other = await http.get(f"{API}/nodepools", params={"limit": 1}, headers=BOB)
        assert other.status_code == 200


@pytest.mark.settings_update(max_watchers_per_caller=1)
async def test_a_closed_watch_frees_its_place(http: httpx.AsyncClient) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.none_within(0.2)
    request = http.build_request("GET", f"{API}/clusters", params={"watch": "true"}, headers=USER)
    for _ in range(50):  # the server sees the disconnect a moment later
        response = await http.send(request, stream=True)
        await response.aclose()
        if response.status_code != 429:
            break
        await asyncio.sleep(0.1)
    assert response.status_code == 200


@pytest.mark.settings_update(max_watchers_per_caller=1, watch_heartbeat=0.3)
async def test_an_open_watch_keeps_its_place_beyond_its_lease(http: httpx.AsyncClient) -> None:
    async with watching(http, f"{API}/nodepools", USER) as stream:
        await stream.none_within(2.0)  # the lease (3 heartbeats, 0.9 s) renewed meanwhile
        response = await http.get(f"{API}/clusters", params={"watch": "true"}, headers=USER)
    assert_error(response, 429, "TOO_MANY_REQUESTS")


async def test_a_member_removed_from_a_project_stops_receiving_its_events(
    http: httpx.AsyncClient,
) -> None:
    project = await http.post(f"{API}/projects", json={"name": "team"}, headers=ALICE)
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    member = f"{API}/projects/{project_id}/members/{BOB['X-User-Email']}"
    granted = await http.put(member, json={"role": "viewer"}, headers=ALICE)
    assert granted.status_code == 200, granted.text
    shared = await create_cluster(http, "shared", ALICE, project_id=project_id)
    own = await create_cluster(http, "own", BOB)
    async with watching(http, f"{API}/nodepools", BOB) as stream:
        await create_pool(http, shared["id"], "seen", ALICE)
        assert (await stream.next()).resource["name"] == "seen"
        removed = await http.delete(member, headers=ALICE)
        assert removed.status_code == 204, removed.text
        await create_pool(http, shared["id"], "unseen", ALICE)
        await create_pool(http, own["id"], "bobs", BOB)
        event = await stream.next()
    assert event.resource["name"] == "bobs"


async def test_a_deleted_project_takes_its_watch_stream_with_it(
    http: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    project = await http.post(f"{API}/projects", json={"name": "brief"}, headers=ALICE)
    project_id = project.json()["id"]
    cluster = await create_cluster(http, "moving", ALICE, project_id=project_id)
    personal = personal_project_id(ALICE["X-User-Email"])
    moved = await http.post(
        f"{API}/clusters/{cluster['id']}/transfer", json={"project_id": personal}, headers=ALICE
    )
    assert moved.status_code == 200, moved.text
    assert await redis.exists(settings.names.watch_stream(project_id))
    deleted = await http.delete(f"{API}/projects/{project_id}", headers=ALICE)
    assert deleted.status_code == 204, deleted.text
    assert not await redis.exists(settings.names.watch_stream(project_id))


# ---- waitFor ----------------------------------------------------------------------------------


async def test_wait_for_ready_answers_once_the_nodepool_is_ready(
    http: httpx.AsyncClient, pool: Json
) -> None:
    params = {"waitFor": "Ready", "timeout": "10"}
    waiting = asyncio.create_task(
        http.get(f"{API}/nodepools/{pool['id']}", params=params, headers=USER)
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await report(http, pool["id"], 1, ready=True)
    response = await asyncio.wait_for(waiting, 5)
    assert response.status_code == 200, response.text
    assert response.json()["status"]["phase"] == "Ready"
    assert "X-Wait-Timed-Out" not in response.headers


async def test_wait_for_a_condition_that_holds_answers_at_once(
    http: httpx.AsyncClient, pool: Json
) -> None:
    await report(http, pool["id"], 1, ready=True)
    params = {"waitFor": "Ready", "timeout": "30"}
    response = await asyncio.wait_for(
        http.get(f"{API}/nodepools/{pool['id']}", params=params, headers=USER), 5
    )
    assert response.status_code == 200
    assert response.headers["ETag"]


async def test_wait_for_answers_at_the_timeout_with_the_state_then(
    http: httpx.AsyncClient, pool: Json
) -> None:
    params = {"waitFor": "Ready", "timeout": "0.5"}
    response = await http.get(f"{API}/nodepools/{pool['id']}", params=params, headers=USER)
    assert response.status_code == 200
    assert response.headers["X-Wait-Timed-Out"] == "true"
    assert response.json()["status"]["phase"] == "Pending"


async def test_wait_for_a_generation_answers_once_the_controllers_observed_it(
    http: httpx.AsyncClient, pool: Json
) -> None:
    await scale(http, pool["id"], 4)
    params = {"waitFor": "generation:2", "timeout": "10"}
    waiting = asyncio.create_task(
        http.get(f"{API}/nodepools/{pool['id']}", params=params, headers=USER)
    )
    await report(http, pool["id"], 1, ready=True)  # the old generation: not yet
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await report(http, pool["id"], 2, ready=False)
    response = await asyncio.wait_for(waiting, 5)
    assert response.status_code == 200
    assert response.json()["status"]["observedGeneration"] == 2


async def test_wait_for_deleted_answers_204_once_the_nodepool_is_gone(
    http: httpx.AsyncClient, pool: Json
) -> None:
    params = {"waitFor": "Deleted", "timeout": "10"}
    waiting = asyncio.create_task(
        http.get(f"{API}/nodepools/{pool['id']}", params=params, headers=USER)
    )
    await asyncio.sleep(0.3)
    response = await http.delete(f"{API}/nodepools/{pool['id']}", headers=USER)
    assert response.status_code == 204, response.text
    await asyncio.sleep(0.3)
    assert not waiting.done()  # Deleting: not gone until its controller confirms
    for answer in await confirm_deletion(http, f"nodepools/{pool['id']}"):
        assert answer.status_code == 200, answer.text
    response = await asyncio.wait_for(waiting, 5)
    assert response.status_code == 204


async def test_wait_for_a_cluster_answers_too(http: httpx.AsyncClient, cluster: Json) -> None:
    params = {"waitFor": "Ready", "timeout": "0.3"}
    response = await http.get(f"{API}/clusters/{cluster['id']}", params=params, headers=USER)
    assert response.status_code == 200
    assert response.headers["X-Wait-Timed-Out"] == "true"


async def test_wait_for_an_unknown_condition_answers_400(
    http: httpx.AsyncClient, pool: Json
) -> None:
    params = {"waitFor": "Happy"}
    response = await http.get(f"{API}/nodepools/{pool['id']}", params=params, headers=USER)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["fields"][0]["field"] == "waitFor"


async def test_wait_for_a_timeout_beyond_300_seconds_answers_400(
    http: httpx.AsyncClient, pool: Json
) -> None:
    params = {"waitFor": "Ready", "timeout": "301"}
    response = await http.get(f"{API}/nodepools/{pool['id']}", params=params, headers=USER)
    assert_error(response, 400, "VALIDATION_ERROR")
