"""Whom the simulated controllers believe: an event counts only if the broker says the events
relay's user published it (``user_id``). Without an API to re-read (``stub_api_url`` empty), that
check alone keeps a forged generation from freezing a resource."""

from __future__ import annotations

import pytest

from reconciler_stub.service import StubService

from .conftest import SEED_SPEC, Publish, Reports, new_id, nodepool_event, nodepool_spec

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(60)]


async def test_an_event_not_published_by_the_relay_is_dropped(
    stub: StubService, publish: Publish, publish_as_admin: Publish, reports: Reports
) -> None:
    forged, real = new_id(), new_id()
    await publish_as_admin(nodepool_event("nodepool.created", forged, 1, SEED_SPEC))
    await publish(nodepool_event("nodepool.created", real, 1, SEED_SPEC))
    await reports.wait_first(real, 1)
    # One controller takes its events in delivery order: the forged one came first.
    assert reports.of(forged) == []


async def test_a_forged_generation_not_from_the_relay_does_not_freeze_a_nodepool(
    stub: StubService, publish: Publish, publish_as_admin: Publish, reports: Reports
) -> None:
    nodepool_id = new_id()
    await publish(nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC))
    await reports.wait_ready(nodepool_id, 1)
    await publish_as_admin(nodepool_event("nodepool.updated", nodepool_id, 1000, SEED_SPEC))
    await publish(nodepool_event("nodepool.updated", nodepool_id, 2, nodepool_spec(5)))
    ready = await reports.wait_ready(nodepool_id, 2)
    assert ready["metadata"]["active_nodes"] == 5
    assert all(r["observed_generation"] != 1000 for r in reports.of(nodepool_id))
