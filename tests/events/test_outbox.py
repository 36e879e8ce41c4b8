"""The outbox as the relay reads it: commit order, and entries it cannot read set aside."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import USER, gcp_cluster_body
from tests.events.conftest import EventsConsumer, outbox_empties


async def test_an_unreadable_entry_is_set_aside_and_does_not_block_the_next(
    api: httpx.AsyncClient, redis: Redis, settings: Settings, events_consumer: EventsConsumer
) -> None:
    names = settings.names
    await redis.xadd(names.outbox, {"id": "garbage", "body": "{not json"})
    response = await api.post("/api/v1/clusters", json=gcp_cluster_body(), headers=USER)
    assert response.status_code == 201
    events = await events_consumer.sync()
    assert [e.resource_id for e in events] == [response.json()["id"]]
    dead: Any = await redis.xrange(names.outbox_dead)
    [(_, fields)] = dead
    assert fields["id"] == "garbage"
    assert fields["body"] == "{not json"
    assert fields["error"].startswith("not an event")
    await outbox_empties(redis, settings)


async def test_writes_leave_nothing_in_the_outbox_once_published(
    api: httpx.AsyncClient, redis: Redis, settings: Settings, events_consumer: EventsConsumer
) -> None:
    for name in ("one", "two", "three"):
        body = gcp_cluster_body(name)
        assert (await api.post("/api/v1/clusters", json=body, headers=USER)).status_code == 201
    assert len(await events_consumer.sync()) == 3
    await outbox_empties(redis, settings)
