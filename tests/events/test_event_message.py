"""Events on the wire: the AMQP properties controllers rely on, and the shared Event model."""

from __future__ import annotations

from typing import Any

import httpx

from shared_models.events import Event
from tests.events.conftest import EventsConsumer

PERSISTENT = 2


async def test_event_properties_are_message_id_persistent_json_and_routing_headers(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    await events_consumer.sync()
    [event] = events_consumer.of(nodepool["id"])
    assert event.message_id == event.body["id"]
    assert event.delivery_mode == PERSISTENT
    assert event.content_type == "application/json"
    assert event.headers == {"platform": "gcp", "generation": 1}


async def test_every_event_body_is_a_valid_shared_event(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    events = await events_consumer.sync()
    assert len(events) == 2
    for received in events:
        event = Event.model_validate(received.body)
        assert event.routing_key == received.routing_key
        assert event.id == received.message_id


async def test_event_ids_are_unique(
    api: httpx.AsyncClient, events_consumer: EventsConsumer, nodepool: dict[str, Any]
) -> None:
    patch_headers = {"X-User-Email": "user@example.com", "Content-Type": "application/json"}
    for count in (4, 5):
        response = await api.patch(
            f"/api/v1/nodepools/{nodepool['id']}",
            json={"spec": {"nodeCount": count}},
            headers=patch_headers,
        )
        assert response.status_code == 200
    events = await events_consumer.sync()
    assert len({e.message_id for e in events}) == len(events) == 4
