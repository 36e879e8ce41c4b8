"""Every write commits exactly its events, with the right routing keys and payloads; a write
that is refused, a dry run and a write that changes nothing commit none."""

from __future__ import annotations

from typing import Any

import httpx

from shared_models.events import EVENT_SOURCE
from tests.conftest import USER, gcp_cluster_body, seed_nodepool_body
from tests.events.conftest import EventsConsumer
from tests.support.deletion import wait_gone

NP = "/api/v1/nodepools"
CL = "/api/v1/clusters"


def scaled(node_count: int, name: str = "production-workers") -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "platform": {"type": "gcp", "gcp": {"machineType": "n1-standard-4", "diskSize": 100}},
            "nodeCount": node_count,
        },
    }


def keys(events: list[Any]) -> list[tuple[str, str, int]]:
    return [(e.routing_key, e.resource_id, e.body["generation"]) for e in events]


async def new_events(consumer: EventsConsumer, before: int) -> list[Any]:
    """The events that arrived after the first ``before`` ones, once everything is delivered."""
    return (await consumer.sync())[before:]


# ---- nodepools ---------------------------------------------------------------------------------
async def test_nodepool_create_publishes_nodepool_created_with_the_stored_resource(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    response = await api.post(NP, json=seed_nodepool_body(cluster["id"]), headers=USER)
    assert response.status_code == 201
    nodepool = response.json()
    [event] = await new_events(events_consumer, before)
    assert event.routing_key == "nodepool.created.gcp"
    assert event.body == {
        "id": event.message_id,
        "type": "nodepool.created",
        "cluster_id": cluster["id"],
        "nodepool_id": nodepool["id"],
        "generation": 1,
        "timestamp": event.body["timestamp"],
        "source": EVENT_SOURCE,
        "platform": "gcp",
        "resource": nodepool,
        "operation_id": response.headers["X-Operation-Id"],
    }


async def test_put_scale_publishes_nodepool_updated_at_the_new_generation(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    response = await api.put(f"{NP}/{nodepool['id']}", json=scaled(6), headers=USER)
    assert response.status_code == 200
    [event] = await new_events(events_consumer, before)
    assert keys([event]) == [("nodepool.updated.gcp", nodepool["id"], 2)]
    assert event.body["resource"] == response.json()
    assert event.body["resource"]["spec"]["nodeCount"] == 6


async def test_patch_publishes_nodepool_updated_at_the_new_generation(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    response = await api.patch(
        f"{NP}/{nodepool['id']}",
        json={"spec": {"nodeCount": 5}},
        headers={**USER, "Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    [event] = await new_events(events_consumer, before)
    assert keys([event]) == [("nodepool.updated.gcp", nodepool["id"], 2)]
    assert event.body["resource"] == response.json()


async def test_identical_put_publishes_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    same = {"name": nodepool["name"], "spec": nodepool["spec"]}
    before = len(await events_consumer.sync())
    response = await api.put(f"{NP}/{nodepool['id']}", json=same, headers=USER)
    assert response.status_code == 200
    assert response.json()["generation"] == 1
    assert await new_events(events_consumer, before) == []


async def test_rename_without_spec_change_publishes_nothing_and_keeps_the_generation(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    renamed = {"name": "renamed-workers", "spec": nodepool["spec"]}
    before = len(await events_consumer.sync())
    response = await api.put(f"{NP}/{nodepool['id']}", json=renamed, headers=USER)
    assert response.status_code == 200
    assert response.json()["name"] == "renamed-workers"
    assert response.json()["generation"] == 1
    assert await new_events(events_consumer, before) == []


async def test_rename_with_spec_change_publishes_one_update_with_the_new_name(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    response = await api.put(f"{NP}/{nodepool['id']}", json=scaled(4, "renamed"), headers=USER)
    assert response.status_code == 200
    [event] = await new_events(events_consumer, before)
    assert keys([event]) == [("nodepool.updated.gcp", nodepool["id"], 2)]
    assert event.body["resource"]["name"] == "renamed"


async def test_delete_publishes_nodepool_deleted_at_the_next_generation(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    response = await api.delete(f"{NP}/{nodepool['id']}", headers=USER)
    assert response.status_code == 204
    [event] = await new_events(events_consumer, before)
    assert keys([event]) == [("nodepool.deleted.gcp", nodepool["id"], 2)]
    assert event.body["cluster_id"] == nodepool["cluster_id"]
    # The resource as stored, being deleted: what to tear down, and the generation at which
    # to confirm it (condition Deleted=True).
    assert event.body["resource"]["generation"] == 2
    assert event.body["resource"]["id"] == nodepool["id"]
    assert event.body["resource"]["status"]["phase"] == "Deleting"
    assert "deletion_timestamp" in event.body["resource"]


async def test_a_sequence_of_writes_publishes_its_events_in_order(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    for count in (4, 5, 6):
        response = await api.put(f"{NP}/{nodepool['id']}", json=scaled(count), headers=USER)
        assert response.status_code == 200
    assert (await api.delete(f"{NP}/{nodepool['id']}", headers=USER)).status_code == 204
    events = await new_events(events_consumer, before)
    assert keys(events) == [
        ("nodepool.updated.gcp", nodepool["id"], 2),
        ("nodepool.updated.gcp", nodepool["id"], 3),
        ("nodepool.updated.gcp", nodepool["id"], 4),
        ("nodepool.deleted.gcp", nodepool["id"], 5),
    ]


# ---- writes that must not publish -------------------------------------------------------------
async def test_dry_run_writes_publish_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    cluster_id = nodepool["cluster_id"]
    body = seed_nodepool_body(cluster_id, name="dry")
    assert (await api.post(f"{NP}?dryRun=true", json=body, headers=USER)).status_code == 201
    put = await api.put(f"{NP}/{nodepool['id']}?dryRun=true", json=scaled(7), headers=USER)
    assert put.status_code == 200
    patch = await api.patch(
        f"{NP}/{nodepool['id']}?dryRun=true",
        json={"spec": {"nodeCount": 8}},
        headers={**USER, "Content-Type": "application/merge-patch+json"},
    )
    assert patch.status_code == 200
    cluster = gcp_cluster_body("dry-cluster")
    assert (await api.post(f"{CL}?dryRun=true", json=cluster, headers=USER)).status_code == 201
    assert await new_events(events_consumer, before) == []


async def test_invalid_create_publishes_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    body = seed_nodepool_body(cluster["id"])
    body["spec"]["nodeCount"] = -1
    assert (await api.post(NP, json=body, headers=USER)).status_code == 400
    assert await new_events(events_consumer, before) == []


async def test_invalid_update_publishes_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    response = await api.put(f"{NP}/{nodepool['id']}", json=scaled(-3), headers=USER)
    assert response.status_code == 400
    assert await new_events(events_consumer, before) == []


async def test_duplicate_name_create_publishes_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    body = seed_nodepool_body(nodepool["cluster_id"], name=nodepool["name"])
    assert (await api.post(NP, json=body, headers=USER)).status_code == 409
    assert await new_events(events_consumer, before) == []


async def test_stale_if_match_update_and_delete_publish_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    stale = {**USER, "If-Match": '"not-the-current-version"'}
    url = f"{NP}/{nodepool['id']}"
    assert (await api.put(url, json=scaled(9), headers=stale)).status_code == 409
    assert (await api.delete(url, headers=stale)).status_code == 409
    assert await new_events(events_consumer, before) == []


async def test_write_to_another_owners_nodepool_publishes_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    other = {"X-User-Email": "other@example.com"}
    url = f"{NP}/{nodepool['id']}"
    assert (await api.put(url, json=scaled(9), headers=other)).status_code == 404
    assert (await api.delete(url, headers=other)).status_code == 404
    assert await new_events(events_consumer, before) == []


# ---- clusters ----------------------------------------------------------------------------------
async def test_cluster_create_publishes_cluster_created(
    api: httpx.AsyncClient, events_consumer: EventsConsumer
) -> None:
    response = await api.post(CL, json=gcp_cluster_body("created"), headers=USER)
    assert response.status_code == 201
    cluster = response.json()
    [event] = await events_consumer.sync()
    assert keys([event]) == [("cluster.created.gcp", cluster["id"], 1)]
    assert event.body["nodepool_id"] is None
    assert event.body["cluster_id"] == cluster["id"]
    assert event.body["resource"] == cluster


async def test_cluster_spec_update_publishes_cluster_updated(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    body = gcp_cluster_body(cluster["name"])
    body["spec"]["platform"]["gcp"]["projectID"] = "another-project-1"
    response = await api.put(f"{CL}/{cluster['id']}", json=body, headers=USER)
    assert response.status_code == 200, response.text
    [event] = await new_events(events_consumer, before)
    assert keys([event]) == [("cluster.updated.gcp", cluster["id"], 2)]
    assert event.body["resource"] == response.json()


async def test_cluster_rename_publishes_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    response = await api.put(
        f"{CL}/{cluster['id']}", json=gcp_cluster_body("renamed"), headers=USER
    )
    assert response.status_code == 200
    assert response.json()["generation"] == 1
    assert await new_events(events_consumer, before) == []


async def test_cluster_delete_publishes_cluster_deleted_at_the_next_generation(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    assert (await api.delete(f"{CL}/{cluster['id']}", headers=USER)).status_code == 202
    [event] = await new_events(events_consumer, before)
    assert keys([event]) == [("cluster.deleted.gcp", cluster["id"], 2)]


async def test_cluster_delete_refused_for_nodepools_publishes_nothing(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    before = len(await events_consumer.sync())
    response = await api.delete(f"{CL}/{nodepool['cluster_id']}", headers=USER)
    assert response.status_code == 409
    assert await new_events(events_consumer, before) == []


async def test_force_delete_publishes_cluster_deleted_then_each_nodepool_deleted(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, cluster: dict[str, Any]
) -> None:
    ids = []
    for name in ("pool-a", "pool-b", "pool-c"):
        response = await api.post(NP, json=seed_nodepool_body(cluster["id"], name), headers=USER)
        assert response.status_code == 201
        ids.append(response.json()["id"])
    before = len(await events_consumer.sync())
    response = await api.delete(f"{CL}/{cluster['id']}?force=true", headers=USER)
    assert response.status_code == 202
    await wait_gone(api, f"clusters/{cluster['id']}")  # the cascade: the event jobs' deletion loop
    events = await new_events(events_consumer, before)
    assert keys(events[:1]) == [("cluster.deleted.gcp", cluster["id"], 2)]
    assert sorted(keys(events[1:])) == sorted(("nodepool.deleted.gcp", i, 2) for i in ids)
    assert {e.body["cluster_id"] for e in events} == {cluster["id"]}


async def test_routing_key_carries_the_platform(
    api: httpx.AsyncClient, events_consumer: EventsConsumer
) -> None:
    body = {"name": "on-aws", "spec": {"platform": {"type": "aws", "aws": {"region": "us-east-1"}}}}
    cluster = await api.post(CL, json=body, headers=USER)
    assert cluster.status_code == 201, cluster.text
    pool = {
        "name": "aws-pool",
        "cluster_id": cluster.json()["id"],
        "spec": {"platform": {"type": "aws", "aws": {"instanceType": "m5.large"}}, "nodeCount": 1},
    }
    nodepool = await api.post(NP, json=pool, headers=USER)
    assert nodepool.status_code == 201, nodepool.text
    events = await events_consumer.sync()
    assert [e.routing_key for e in events] == ["cluster.created.aws", "nodepool.created.aws"]
    assert [e.body["platform"] for e in events] == ["aws", "aws"]
