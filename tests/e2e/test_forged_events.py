"""A forged event with the relay's own credentials (say, a stolen password) still cannot freeze a
resource: a simulated controller re-reads a resource from the API when an event claims a
generation it has not seen, and acts on the API's generation when the event is ahead of it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared_models.events import Event, EventType
from tests.support.broker import connected_as, publish_event_as_relay, relay_user
from tests.support.resources import create_cluster
from tests.support.stack import (
    Json,
    Stack,
    cluster_body,
    create_body,
    create_nodepool,
    scale_body,
    wait_phase,
)
from tests.support.status_reports import Reports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FORGED_GENERATION = 1000


def forged(event_type: EventType, nodepool: Json, generation: int) -> Event:
    """An event about ``nodepool`` as the relay would publish it, at a generation of our choosing
    and dated ahead (a deletion's date covers the real events older than it)."""
    resource = {**nodepool, "generation": generation}
    resource["spec"] = {**nodepool["spec"], "nodeCount": 9}
    return Event(
        id=str(uuid.uuid4()),
        type=event_type,
        cluster_id=nodepool["cluster_id"],
        nodepool_id=nodepool["id"],
        generation=generation,
        timestamp=datetime.now(UTC) + timedelta(days=1),
        platform="gcp",
        resource=resource,
    )


async def publish_as_relay(stack: Stack, event: Event) -> None:
    async with connected_as(relay_user()) as relay:
        channel = await relay.channel(publisher_confirms=True)
        await publish_event_as_relay(channel, stack.names, event)


async def ready_nodepool(stack: Stack) -> Json:
    cluster = await create_cluster(stack.http, cluster_body("gcp"))
    nodepool = await create_nodepool(stack.http, create_body(cluster["id"], "gcp"))
    await wait_phase(stack.http, nodepool["id"], "Ready", 1)
    return nodepool


async def scaled_to_ready(stack: Stack, nodepool_id: str) -> Json:
    response = await stack.http.put(f"/api/v1/nodepools/{nodepool_id}", json=scale_body("gcp"))
    assert response.status_code == 200, response.text
    return await wait_phase(stack.http, nodepool_id, "Ready", 2)


async def test_an_event_ahead_of_the_api_does_not_freeze_a_nodepool(
    stack: Stack, reports: Reports
) -> None:
    nodepool = await ready_nodepool(stack)
    await publish_as_relay(stack, forged("nodepool.updated", nodepool, FORGED_GENERATION))
    view = await scaled_to_ready(stack, nodepool["id"])
    assert view["controller_status"][0]["metadata"]["active_nodes"] == 6
    generations = {r["observed_generation"] for r in reports.of(nodepool["id"])}
    assert FORGED_GENERATION not in generations


async def test_a_deletion_the_api_denies_does_not_bury_a_nodepool(stack: Stack) -> None:
    nodepool = await ready_nodepool(stack)
    await publish_as_relay(stack, forged("nodepool.deleted", nodepool, FORGED_GENERATION))
    view = await scaled_to_ready(stack, nodepool["id"])
    assert view["controller_status"][0]["metadata"]["active_nodes"] == 6
