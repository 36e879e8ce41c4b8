"""The simulated controllers over the real broker: events in on ``<ns>.events``, reports out on
``<ns>.status`` (the stub runs in-process; tests/e2e runs it as a process with the others)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aio_pika.abc import AbstractRobustConnection

from reconciler_stub.service import StubService
from shared_models.names import Names

from .conftest import (
    SEED_SPEC,
    Publish,
    Reports,
    StartStub,
    barrier,
    cluster_event,
    cluster_spec,
    create_ready,
    faulty,
    is_confirmation,
    is_report_of,
    new_id,
    nodepool_event,
    nodepool_spec,
    queue_depth,
    ready_status,
    reason,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(60)]


# ---- the life of a nodepool ---------------------------------------------------------------


async def test_created_nodepool_progresses_then_is_ready(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = await create_ready(publish, reports)
    runs = reports.of(nodepool_id)
    assert [(r["metadata"]["active_nodes"], ready_status(r), reason(r)) for r in runs] == [
        (0, "False", "Provisioning"),
        (1, "False", "Provisioning"),
        (2, "False", "Provisioning"),
        (3, "True", "NodesReady"),
    ]
    last = runs[-1]
    assert last["controller_name"] == "gcp-nodepool-controller"
    assert last["observed_generation"] == 1
    assert last["metadata"]["platform"] == "gcp"
    assert last["metadata"]["region"] == "us-central1"
    assert last["metadata"]["desired_nodes"] == 3
    assert len(last["metadata"]["node_ages"].split(",")) == 3
    assert "last_error" not in last


@pytest.mark.parametrize(("platform", "region"), [("aws", "us-west-2"), ("azure", "unknown")])
async def test_each_platform_has_its_controller(
    stub: StubService, publish: Publish, reports: Reports, platform: str, region: str
) -> None:
    nodepool_id = await create_ready(publish, reports, nodepool_spec(2, platform=platform))
    last = reports.of(nodepool_id)[-1]
    assert last["controller_name"] == f"{platform}-nodepool-controller"
    assert last["metadata"]["region"] == region


async def test_scaling_starts_from_the_active_nodes(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = await create_ready(publish, reports)
    await publish(nodepool_event("nodepool.updated", nodepool_id, 2, nodepool_spec(6)))
    await reports.wait_ready(nodepool_id, 2)
    scaling = [r for r in reports.of(nodepool_id) if r["observed_generation"] == 2]
    assert [(r["metadata"]["active_nodes"], reason(r)) for r in scaling] == [
        (3, "Scaling"),
        (4, "Scaling"),
        (5, "Scaling"),
        (6, "NodesReady"),
    ]
    # The three nodes of generation 1 are older than the three added for generation 2.
    assert scaling[-1]["metadata"]["desired_nodes"] == 6


async def test_older_generation_is_ignored(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = await create_ready(publish, reports)
    await publish(nodepool_event("nodepool.updated", nodepool_id, 2, nodepool_spec(4)))
    await reports.wait_ready(nodepool_id, 2)
    await publish(nodepool_event("nodepool.updated", nodepool_id, 1, nodepool_spec(9)))
    await barrier(publish, reports)
    assert [r["observed_generation"] for r in reports.of(nodepool_id)][-1] == 2
    assert all(r["metadata"]["desired_nodes"] != 9 for r in reports.of(nodepool_id))


async def test_duplicate_event_starts_no_second_run(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    created = nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC)
    await publish(created)
    await publish(created)
    await reports.wait_ready(nodepool_id, 1)
    await publish(created)
    await barrier(publish, reports)
    assert [reason(r) for r in reports.of(nodepool_id)].count("Provisioning") == 3
    assert len(reports.of(nodepool_id)) == 4


async def test_newer_generation_interrupts_the_running_one(
    start_stub: StartStub, publish: Publish, reports: Reports
) -> None:
    await start_stub(stub_delay_ms=150)
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, nodepool_spec(10)))
    await reports.wait_for(
        lambda r: is_report_of(r, nodepool_id, 1) and r["metadata"]["active_nodes"] >= 2
    )
    await publish(nodepool_event("nodepool.updated", nodepool_id, 2, nodepool_spec(1)))
    await reports.wait_ready(nodepool_id, 2)
    runs = reports.of(nodepool_id)
    first_of_2 = next(i for i, r in enumerate(runs) if r["observed_generation"] == 2)
    assert all(r["observed_generation"] == 2 for r in runs[first_of_2:])
    assert (
        runs[first_of_2]["metadata"]["active_nodes"]
        == runs[first_of_2 - 1]["metadata"]["active_nodes"]
    )
    assert reason(runs[first_of_2]) == "Scaling"
    assert runs[-1]["metadata"]["active_nodes"] == 1


# ---- reconcile ---------------------------------------------------------------------------


async def test_reconcile_of_a_ready_nodepool_reports_ready_again(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = await create_ready(publish, reports)
    before = len(reports.of(nodepool_id))
    await publish(nodepool_event("nodepool.reconcile", nodepool_id, 1, SEED_SPEC))
    await reports.wait_for(lambda r: len(reports.of(nodepool_id)) > before)
    again = reports.of(nodepool_id)[before:]
    assert [(ready_status(r), r["metadata"]["active_nodes"]) for r in again] == [("True", 3)]
    # lastTransitionTime says when Ready flipped, not when it was said again.
    first_ready = reports.of(nodepool_id)[before - 1]["conditions"][0]["lastTransitionTime"]
    assert again[0]["conditions"][0]["lastTransitionTime"] == first_ready


async def test_reconcile_of_an_unknown_nodepool_provisions_it(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.reconcile", nodepool_id, 2, SEED_SPEC))
    await reports.wait_ready(nodepool_id, 2)
    assert reason(reports.of(nodepool_id)[0]) == "Provisioning"
    assert reports.of(nodepool_id)[0]["metadata"]["active_nodes"] == 0


async def test_reconcile_of_an_unknown_but_ready_nodepool_adopts_it(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    """After a restart: the API says Ready at this generation, so the nodes exist."""
    nodepool_id = new_id()
    status = {"phase": "Ready", "observedGeneration": 2}
    event = nodepool_event("nodepool.reconcile", nodepool_id, 2, SEED_SPEC, status=status)
    await publish(event)
    await reports.wait_ready(nodepool_id, 2)
    await barrier(publish, reports)
    assert [(ready_status(r), r["metadata"]["active_nodes"]) for r in reports.of(nodepool_id)] == [
        ("True", 3)
    ]


async def test_reconcile_while_running_starts_no_second_run(
    start_stub: StartStub, publish: Publish, reports: Reports
) -> None:
    await start_stub(stub_delay_ms=100)
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC))
    await reports.wait_first(nodepool_id, 1)
    await publish(nodepool_event("nodepool.reconcile", nodepool_id, 1, SEED_SPEC))
    await reports.wait_ready(nodepool_id, 1)
    assert [r["metadata"]["active_nodes"] for r in reports.of(nodepool_id)] == [0, 1, 2, 3]


# ---- faults --------------------------------------------------------------------------------


async def test_quota_fault_ends_failed_with_last_error(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, faulty("quota-exceeded")))
    failed = await reports.wait_for(
        lambda r: r.get("nodepool_id") == nodepool_id and "last_error" in r
    )
    assert reason(failed) == "QuotaExceeded" and ready_status(failed) == "False"
    # Sent as the structured object, as the original system's controllers send it.
    assert "Quota exceeded" in failed["last_error"]["message"]
    assert failed["last_error"]["errorType"] == "Configuration"
    assert failed["last_error"]["errorCode"] == "QUOTA_EXCEEDED"
    await barrier(publish, reports)
    assert [reason(r) for r in reports.of(nodepool_id)] == ["Provisioning", "QuotaExceeded"]


async def test_quota_fault_is_reported_again_on_reconcile(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, faulty("quota-exceeded")))
    await reports.wait_for(lambda r: r.get("nodepool_id") == nodepool_id and "last_error" in r)
    await publish(nodepool_event("nodepool.reconcile", nodepool_id, 1, faulty("quota-exceeded")))
    await reports.wait_for(lambda r: len(reports.of(nodepool_id)) == 3)
    assert reason(reports.of(nodepool_id)[-1]) == "QuotaExceeded"


async def test_removing_the_fault_label_recovers(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, faulty("quota-exceeded")))
    await reports.wait_for(lambda r: r.get("nodepool_id") == nodepool_id and "last_error" in r)
    await publish(nodepool_event("nodepool.updated", nodepool_id, 2, nodepool_spec(3)))
    ready = await reports.wait_ready(nodepool_id, 2)
    assert ready["metadata"]["active_nodes"] == 3 and "last_error" not in ready


async def test_no_response_fault_never_reports(
    stub: StubService, publish: Publish, reports: Reports, amqp: AbstractRobustConnection
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, faulty("no-response")))
    await publish(nodepool_event("nodepool.reconcile", nodepool_id, 1, faulty("no-response")))
    await barrier(publish, reports)
    assert reports.of(nodepool_id) == []
    # Taken and acknowledged all the same: nothing is left to redeliver.
    queue = stub.settings.names.controller_queue("gcp-nodepool-controller")
    assert await queue_depth(amqp, queue) == 0


async def test_degraded_fault_ends_ready_and_degraded(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, faulty("degraded")))
    ready = await reports.wait_ready(nodepool_id, 1)
    degraded = next(c for c in ready["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"


async def test_unknown_fault_value_runs_normally(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, faulty("typo")))
    ready = await reports.wait_ready(nodepool_id, 1)
    assert "last_error" not in ready


async def test_random_failures_are_transient_and_replayable(
    start_stub: StartStub, publish: Publish, reports: Reports
) -> None:
    await start_stub(stub_failure_rate=0.5, stub_seed=7, stub_delay_ms=5)
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, nodepool_spec(6)))
    await reports.wait_ready(nodepool_id, 1)
    first = [reason(r) for r in reports.of(nodepool_id)]
    assert "TransientError" in first
    failures = [r for r in reports.of(nodepool_id) if reason(r) == "TransientError"]
    assert all(r["last_error"]["errorType"] == "Transient" for r in failures)
    # Same seed, resource and generation: the same failures. (Created again under the same id,
    # after its deletion, the pool starts over at generation 1.)
    await publish(nodepool_event("nodepool.deleted", nodepool_id, 2, nodepool_spec(6)))
    await reports.wait_for(lambda r: is_confirmation(r, nodepool_id, 2))
    deleted = len(reports.of(nodepool_id))
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, nodepool_spec(6)))
    await reports.wait_for(lambda r: len(reports.of(nodepool_id)) == deleted + len(first))
    await barrier(publish, reports)
    assert [reason(r) for r in reports.of(nodepool_id)[deleted:]] == first


# ---- clusters and topology -----------------------------------------------------------------


@pytest.mark.parametrize(("platform", "region"), [("gcp", "us-central1"), ("azure", "westeurope")])
async def test_cluster_controller_reports_cluster_ready(
    stub: StubService, publish: Publish, reports: Reports, platform: str, region: str
) -> None:
    cluster_id = new_id()
    await publish(cluster_event("cluster.created", cluster_id, 1, cluster_spec(platform)))
    ready = await reports.wait_ready(cluster_id, 1)
    assert ready["cluster_id"] == cluster_id
    assert ready["controller_name"] == f"{platform}-cluster-controller"
    assert ready["metadata"] == {"platform": platform, "region": region}
    assert reason(reports.of(cluster_id)[0]) == "Provisioning"


async def test_azure_nodepool_region_is_its_clusters_location(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    cluster_id = new_id()
    await publish(cluster_event("cluster.created", cluster_id, 1, cluster_spec("azure")))
    await reports.wait_first(cluster_id, 1)
    nodepool_id = new_id()
    spec = nodepool_spec(2, platform="azure")
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, spec, cluster_id=cluster_id))
    ready = await reports.wait_ready(nodepool_id, 1)
    assert ready["metadata"]["region"] == "westeurope"


async def test_only_the_selected_controllers_run(
    start_stub: StartStub,
    publish: Publish,
    reports: Reports,
    amqp: AbstractRobustConnection,
    namespace: str,
) -> None:
    await start_stub(stub_controllers="aws-nodepool-controller")
    gcp_pool = new_id()
    await publish(nodepool_event("nodepool.created", gcp_pool, 1, SEED_SPEC))
    await barrier(publish, reports, platform="aws")
    assert reports.of(gcp_pool) == []
    with pytest.raises(Exception, match="NOT_FOUND"):
        await queue_depth(amqp, Names(namespace).controller_queue("gcp-nodepool-controller"))


async def test_events_wait_in_the_durable_queue_while_the_stub_is_down(
    start_stub: StartStub, publish: Publish, reports: Reports
) -> None:
    first = await start_stub()
    await first.stop()
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC))
    await start_stub()
    await reports.wait_ready(nodepool_id, 1)


async def test_report_reaches_the_ingest_queue_before_any_ingester_started(
    stub: StubService,
    publish: Publish,
    reports: Reports,
    amqp: AbstractRobustConnection,
    namespace: str,
) -> None:
    await create_ready(publish, reports)
    # All four reports wait in the ingester's queue (a quorum queue counts them once committed).
    queue = Names(namespace).status_queue
    deadline = time.monotonic() + 5
    while await queue_depth(amqp, queue) < 4:
        assert time.monotonic() < deadline, "the reports never reached the ingest queue"
        await asyncio.sleep(0.05)


async def test_no_event_is_lost_across_a_graceful_stop(
    start_stub: StartStub, publish: Publish, reports: Reports
) -> None:
    """Stopping finishes the event in hand and leaves the rest to the next consumer."""
    first = await start_stub()
    pools = [new_id() for _ in range(60)]
    for nodepool_id in pools:
        await publish(nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC))
    await reports.wait_first(pools[0], 1)
    await first.stop()
    await start_stub()
    for nodepool_id in pools:
        await reports.wait_first(nodepool_id, 1)
