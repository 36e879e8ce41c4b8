"""Deletion by the simulated controllers over the real broker: a ``*.deleted`` event stops the
run, the controller deletes what the resource has (one step delay apart), confirms with
``Deleted=True`` at the deletion's generation, and only then forgets the resource."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection

from reconciler_stub.service import StubService
from shared_models.events import Event

from .conftest import (
    SEED_SPEC,
    FakeApi,
    Publish,
    Report,
    Reports,
    StartStub,
    barrier,
    cluster_event,
    cluster_spec,
    create_ready,
    deleted_status,
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


def deletion(nodepool_id: str, generation: int, spec: dict[str, object] = SEED_SPEC) -> Event:
    return nodepool_event("nodepool.deleted", nodepool_id, generation, spec)


def steps(runs: list[Report]) -> list[tuple[int, str, str | None]]:
    return [(r["metadata"]["active_nodes"], reason(r), deleted_status(r)) for r in runs]


async def confirmed(reports: Reports, resource_id: str, generation: int) -> Report:
    return await reports.wait_for(lambda r: is_confirmation(r, resource_id, generation))


# ---- deletion ------------------------------------------------------------------------------


async def test_deletion_is_confirmed_at_the_deletion_generation_after_its_steps(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = await create_ready(publish, reports)
    await publish(deletion(nodepool_id, 2))
    done = await confirmed(reports, nodepool_id, 2)
    runs = [r for r in reports.of(nodepool_id) if r["observed_generation"] == 2]
    assert steps(runs) == [
        (3, "Deleting", None),
        (2, "Deleting", None),
        (1, "Deleting", None),
        (0, "Deleted", "True"),
    ]
    assert all(ready_status(r) == "False" for r in runs)
    assert all(r["metadata"]["desired_nodes"] == 0 for r in runs)
    assert done["controller_name"] == "gcp-nodepool-controller"
    assert done["metadata"]["node_ages"] == ""
    assert "last_error" not in done
    deleted = next(c for c in done["conditions"] if c["type"] == "Deleted")
    assert deleted["reason"] == "Deleted" and deleted["lastTransitionTime"]


async def test_deletion_of_an_unknown_nodepool_is_still_confirmed(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    """Created and deleted while the stub was down (or before a restart): no state needed."""
    nodepool_id = new_id()
    await publish(deletion(nodepool_id, 4, nodepool_spec(2)))
    await confirmed(reports, nodepool_id, 4)
    assert steps(reports.of(nodepool_id)) == [
        (2, "Deleting", None),
        (1, "Deleting", None),
        (0, "Deleted", "True"),
    ]


async def test_deletion_of_an_unknown_nodepool_without_a_spec_is_still_confirmed(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    event = deletion(nodepool_id, 2).model_copy(update={"resource": {"id": nodepool_id}})
    await publish(event)
    done = await confirmed(reports, nodepool_id, 2)
    assert done["metadata"]["region"] == "unknown"


async def test_deletion_cancels_the_run_in_progress(
    start_stub: StartStub, publish: Publish, reports: Reports
) -> None:
    await start_stub(stub_delay_ms=100)
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, nodepool_spec(10)))
    await reports.wait_for(
        lambda r: is_report_of(r, nodepool_id, 1) and r["metadata"]["active_nodes"] >= 2
    )
    await publish(deletion(nodepool_id, 2, nodepool_spec(10)))
    await confirmed(reports, nodepool_id, 2)
    runs = reports.of(nodepool_id)
    first_of_2 = next(i for i, r in enumerate(runs) if r["observed_generation"] == 2)
    # The creation reported nothing more, and never became Ready.
    assert all(r["observed_generation"] == 2 for r in runs[first_of_2:])
    assert all(ready_status(r) == "False" for r in runs)
    # The deletion drains the nodes the creation had brought up, not the ten it asked for.
    active = runs[first_of_2 - 1]["metadata"]["active_nodes"]
    assert runs[first_of_2]["metadata"]["active_nodes"] == active < 10


async def test_late_event_does_not_bring_a_deleted_nodepool_back(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    created = nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC)
    await publish(created)
    await reports.wait_ready(nodepool_id, 1)
    await publish(deletion(nodepool_id, 2))
    await confirmed(reports, nodepool_id, 2)
    before = len(reports.of(nodepool_id))
    await publish(created)  # redelivered late
    await barrier(publish, reports)
    assert len(reports.of(nodepool_id)) == before


@pytest.mark.parametrize("again", ["redelivered", "sent again"])
async def test_a_deletion_asked_again_is_confirmed_again_at_once(
    stub: StubService, publish: Publish, reports: Reports, again: str
) -> None:
    nodepool_id = await create_ready(publish, reports)
    event = deletion(nodepool_id, 2)
    await publish(event)
    await confirmed(reports, nodepool_id, 2)
    before = len(reports.of(nodepool_id))
    # The same event, or a new one (a later time) for the same deletion.
    await publish(event if again == "redelivered" else deletion(nodepool_id, 2))
    await reports.wait_for(lambda r: len(reports.of(nodepool_id)) > before)
    await barrier(publish, reports)
    said = reports.of(nodepool_id)[before:]
    assert [(r["observed_generation"], deleted_status(r)) for r in said] == [(2, "True")]


async def test_a_deletion_delivered_again_during_its_run_starts_no_second_run(
    start_stub: StartStub, publish: Publish, reports: Reports
) -> None:
    await start_stub(stub_delay_ms=100)
    nodepool_id = new_id()
    event = deletion(nodepool_id, 2)
    await publish(event)
    await reports.wait_first(nodepool_id, 2)
    await publish(event)
    await confirmed(reports, nodepool_id, 2)
    assert [r["metadata"]["active_nodes"] for r in reports.of(nodepool_id)] == [3, 2, 1, 0]


async def test_cluster_deletion_is_confirmed(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    cluster_id = new_id()
    await publish(cluster_event("cluster.created", cluster_id, 1, cluster_spec("aws")))
    await reports.wait_ready(cluster_id, 1)
    await publish(cluster_event("cluster.deleted", cluster_id, 2, cluster_spec("aws")))
    done = await confirmed(reports, cluster_id, 2)
    assert done["controller_name"] == "aws-cluster-controller"
    runs = [r for r in reports.of(cluster_id) if r["observed_generation"] == 2]
    assert [(reason(r), deleted_status(r)) for r in runs] == [
        ("Deleting", None),
        ("Deleted", "True"),
    ]


# ---- faults --------------------------------------------------------------------------------


async def test_deletion_fails_fault_creates_normally(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = await create_ready(publish, reports, faulty("deletion-fails"))
    assert all("last_error" not in r for r in reports.of(nodepool_id))


async def test_deletion_fails_fault_reports_the_error_and_never_confirms(
    stub: StubService, publish: Publish, reports: Reports
) -> None:
    nodepool_id = await create_ready(publish, reports, faulty("deletion-fails"))
    event = deletion(nodepool_id, 2, faulty("deletion-fails"))
    await publish(event)
    failed = await reports.wait_for(lambda r: is_report_of(r, nodepool_id, 2) and "last_error" in r)
    assert reason(failed) == "DeletionFailed" and ready_status(failed) == "False"
    assert deleted_status(failed) == "False"
    error = failed["last_error"]
    assert error["errorType"] == "Fatal"
    assert error["errorCode"] == "DELETION_FAILED"
    assert "instance group deletion failed" in error["message"]
    # Asked again (a redelivery, or the API asking), it says again why; it never confirms.
    before = len(reports.of(nodepool_id))
    await publish(event)
    await reports.wait_for(lambda r: len(reports.of(nodepool_id)) > before)
    await barrier(publish, reports)
    runs = [r for r in reports.of(nodepool_id) if r["observed_generation"] == 2]
    assert [reason(r) for r in runs] == ["Deleting", "DeletionFailed", "DeletionFailed"]
    assert runs[-1] == failed


async def test_no_response_fault_never_confirms_a_deletion(
    stub: StubService, publish: Publish, reports: Reports, amqp: AbstractRobustConnection
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, faulty("no-response")))
    await publish(deletion(nodepool_id, 2, faulty("no-response")))
    await barrier(publish, reports)
    await barrier(publish, reports)  # several step delays: a deletion would have confirmed
    assert reports.of(nodepool_id) == []
    queue = stub.settings.names.controller_queue("gcp-nodepool-controller")
    assert await queue_depth(amqp, queue) == 0


# ---- what the API says --------------------------------------------------------------------


async def test_a_deletion_the_api_does_not_show_is_ignored(
    stub: StubService, api: FakeApi, publish: Publish, reports: Reports
) -> None:
    """Forged: the API still has the nodepool, not Deleting. Nothing is deleted or buried."""
    nodepool_id = new_id()
    created = nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC)
    api.has(created, "Ready")
    await publish(created)
    await reports.wait_ready(nodepool_id, 1)
    await publish(deletion(nodepool_id, 2))
    updated = nodepool_event("nodepool.updated", nodepool_id, 2, nodepool_spec(5))
    api.has(updated, "Progressing")
    await publish(updated)
    ready = await reports.wait_ready(nodepool_id, 2)
    assert ready["metadata"]["active_nodes"] == 5
    assert all(deleted_status(r) is None for r in reports.of(nodepool_id))
    assert all(reason(r) != "Deleting" for r in reports.of(nodepool_id))


async def test_a_deletion_the_api_shows_deleting_is_confirmed(
    stub: StubService, api: FakeApi, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    event = deletion(nodepool_id, 2)
    api.has(event, "Deleting")
    await publish(event)
    await confirmed(reports, nodepool_id, 2)


async def test_a_deletion_ahead_of_the_api_is_confirmed_at_the_apis_generation(
    stub: StubService, api: FakeApi, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    event = deletion(nodepool_id, 1000)
    api.has(event, "Deleting", generation=3)
    await publish(event)
    await confirmed(reports, nodepool_id, 3)
    assert all(r["observed_generation"] == 3 for r in reports.of(nodepool_id))


async def test_a_deletion_the_api_has_purged_is_confirmed(
    stub: StubService, api: FakeApi, publish: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    await publish(deletion(nodepool_id, 2))  # the API answers 404
    await confirmed(reports, nodepool_id, 2)


async def test_a_reconcile_of_a_deleting_nodepool_deletes_it(
    stub: StubService, api: FakeApi, publish: Publish, reports: Reports
) -> None:
    """After a restart in the middle of a deletion, the API's reconcile finishes it."""
    nodepool_id = new_id()
    reconcile = nodepool_event("nodepool.reconcile", nodepool_id, 2, SEED_SPEC)
    api.has(reconcile, "Deleting")
    shown = {**reconcile.resource, "status": {"phase": "Deleting"}}
    await publish(reconcile.model_copy(update={"resource": shown}))
    await confirmed(reports, nodepool_id, 2)
    assert all(reason(r) != "Provisioning" for r in reports.of(nodepool_id))
