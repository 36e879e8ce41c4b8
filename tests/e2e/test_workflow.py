"""The user guide's complete example workflow, end to end, with the real services."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from cls_runtime import amqp as topology
from tests.support.deletion import wait_gone
from tests.support.polling import eventually
from tests.support.resources import create_cluster
from tests.support.stack import (
    Json,
    Stack,
    cluster_body,
    controller_report,
    create_body,
    create_nodepool,
    scale_body,
    wait_phase,
)
from tests.support.status_reports import Reports, reason

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FAULT_LABEL = "stub.cls.dev/fault"


@pytest.mark.parametrize("platform", ["gcp", "aws", "azure"])
async def test_seed_workflow_create_scale_delete(
    stack: Stack, reports: Reports, platform: str
) -> None:
    http = stack.http
    cluster = await create_cluster(http, cluster_body(platform))
    created = await create_nodepool(http, create_body(cluster["id"], platform))
    nodepool_id = created["id"]
    assert created["generation"] == 1
    assert created["status"]["phase"] == "Pending"

    # 2. Monitor status: Pending -> (Progressing) -> Ready at generation 1, 3 nodes.
    view = await wait_phase(http, nodepool_id, "Ready", 1)
    report = controller_report(view, f"{platform}-nodepool-controller")
    assert report["observed_generation"] == 1
    assert report["metadata"]["active_nodes"] == 3
    assert report["metadata"]["desired_nodes"] == 3
    assert view["status"]["health"] == "Healthy"
    assert reason(reports.of(nodepool_id)[0]) == "Provisioning"

    # 3. Scale the NodePool with the guide's PUT: generation 2, then Ready with 6 nodes.
    response = await http.put(f"/api/v1/nodepools/{nodepool_id}", json=scale_body(platform))
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == 2
    view = await wait_phase(http, nodepool_id, "Ready", 2)
    report = controller_report(view, f"{platform}-nodepool-controller")
    assert (report["observed_generation"], report["metadata"]["active_nodes"]) == (2, 6)
    assert len(report["metadata"]["node_ages"].split(",")) == 6

    # Delete: Deleting until its controller confirms, then 404 from then on, and the controller
    # reports nothing more about it.
    response = await http.delete(f"/api/v1/nodepools/{nodepool_id}")
    assert response.status_code == 204, response.text
    await wait_gone(http, f"nodepools/{nodepool_id}", within=30)
    assert (await http.get(f"/api/v1/nodepools/{nodepool_id}/status")).status_code == 404
    await assert_no_more_reports(stack, reports, nodepool_id, cluster["id"], platform)


async def assert_no_more_reports(
    stack: Stack, reports: Reports, nodepool_id: str, cluster_id: str, platform: str
) -> None:
    """A nodepool created after the deletion is a barrier: its events reach the same controller
    after the deletion did, and its run spans several step delays and reconcile intervals."""
    # The controller drains the nodepool first, and forgets it once it confirmed the deletion.
    await reports.wait_for(lambda r: is_deletion_confirmed(r, nodepool_id), within=30)
    barrier = await create_nodepool(stack.http, create_body(cluster_id, platform, name="barrier"))
    await reports.wait_first(barrier["id"], 1, within=30)
    count = len(reports.of(nodepool_id))
    await wait_phase(stack.http, barrier["id"], "Ready", 1)
    await asyncio.sleep(1.5)  # and a reconcile interval (CLS_RECONCILE_INTERVAL=1) beyond
    assert len(reports.of(nodepool_id)) == count
    assert f"{nodepool_id} deleted; forgotten" in stack["reconciler_stub"].log_tail(400)


def is_deletion_confirmed(report: Json, nodepool_id: str) -> bool:
    conditions = {(c["type"], c["status"]) for c in report["conditions"]}
    return report.get("nodepool_id") == nodepool_id and ("Deleted", "True") in conditions


async def test_fault_injected_nodepool_fails_then_recovers(stack: Stack) -> None:
    http = stack.http
    cluster = await create_cluster(http)
    body = create_body(cluster["id"], labels={FAULT_LABEL: "quota-exceeded"})
    nodepool_id = (await create_nodepool(http, body))["id"]

    view = await wait_phase(http, nodepool_id, "Failed", 1)
    assert view["status"]["health"] == "Unhealthy"
    report = controller_report(view, "gcp-nodepool-controller")
    # The simulated controller sends last_error as the structured object.
    assert "Quota exceeded" in report["last_error"]["message"]
    assert "Quota exceeded" in view["status"]["message"]
    (error,) = view["status"]["errors"]
    assert (error["errorType"], error["errorCode"]) == ("Configuration", "QUOTA_EXCEEDED")
    assert error["userActionable"] and error["suggestions"]
    listed = (await http.get("/api/v1/nodepools", params={"health": "Unhealthy"})).json()
    assert [n["id"] for n in listed["nodepools"]] == [nodepool_id]

    # Remove the label: a new generation, and the next run succeeds.
    body["spec"]["platform"]["gcp"].pop("labels")
    response = await http.put(f"/api/v1/nodepools/{nodepool_id}", json=body)
    assert response.status_code == 200, response.text
    view = await wait_phase(http, nodepool_id, "Ready", 2)
    assert view["status"]["health"] == "Healthy"
    assert controller_report(view, "gcp-nodepool-controller").get("last_error") is None


async def test_cluster_becomes_ready(stack: Stack) -> None:
    cluster = await create_cluster(stack.http, cluster_body("aws"))

    async def ready() -> Json | None:
        view: Json = (await stack.http.get(f"/api/v1/clusters/{cluster['id']}/status")).json()
        return view if view["status"]["phase"] == "Ready" else None

    view = await eventually(ready, what="cluster Ready")
    assert view["controller_status"][0]["controller_name"] == "aws-cluster-controller"


async def test_force_delete_of_a_cluster_removes_everything_and_tells_every_controller(
    stack: Stack, reports: Reports
) -> None:
    http = stack.http
    cluster = await create_cluster(http)
    pools = [
        (await create_nodepool(http, create_body(cluster["id"], name=f"pool-{i}")))["id"]
        for i in range(3)
    ]
    for nodepool_id in pools:
        await wait_phase(http, nodepool_id, "Ready", 1)
    assert (await http.delete(f"/api/v1/clusters/{cluster['id']}")).status_code == 409

    events = await watch_events(stack)
    response = await http.delete(f"/api/v1/clusters/{cluster['id']}", params={"force": "true"})
    assert response.status_code == 202, response.text

    # The event jobs' cascade purges the nodepools, then the cluster, without waiting for them.
    await wait_gone(http, f"clusters/{cluster['id']}", within=30)
    for nodepool_id in pools:
        assert (await http.get(f"/api/v1/nodepools/{nodepool_id}")).status_code == 404
    listed = (await http.get("/api/v1/nodepools")).json()
    assert listed["total"] == 0

    expected = {("nodepool.deleted.gcp", p) for p in pools} | {
        ("cluster.deleted.gcp", cluster["id"])
    }

    async def all_told() -> Json | None:
        return {"ok": True} if expected <= set(events) else None

    await eventually(all_told, what=f"deletion events {expected}")
    stub_log = await wait_log(stack, [f"{rid} deleted; forgotten" for _, rid in expected])
    assert "gcp-cluster-controller" in stub_log
    counts = {p: len(reports.of(p)) for p in pools}
    await asyncio.sleep(1.5)  # a reconcile interval: nothing more about any of them
    assert {p: len(reports.of(p)) for p in pools} == counts


async def watch_events(stack: Stack) -> list[tuple[str, str]]:
    """(routing key, resource id) of every event published from now on."""
    seen: list[tuple[str, str]] = []
    channel = await stack.amqp.channel()
    exchange = await topology.declare_events_exchange(channel, stack.names)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")

    async def on_message(message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        seen.append((message.routing_key or "", body["nodepool_id"] or body["cluster_id"]))

    await queue.consume(on_message, no_ack=True)
    return seen


async def wait_log(stack: Stack, needles: list[str], within: float = 20.0) -> str:
    deadline = time.monotonic() + within
    while True:
        log = stack["reconciler_stub"].log_tail(2000)
        missing = [n for n in needles if n not in log]
        if not missing:
            return log
        assert time.monotonic() < deadline, f"stub never logged {missing}"
        await asyncio.sleep(0.1)
