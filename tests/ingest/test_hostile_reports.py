"""Garbage on the status queue, beyond test_poison's: each message is dead-lettered (or, for a
resource this namespace does not have, acked as unknown), counted, and the ingester goes on."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from shared_models.settings import Settings
from tests.conftest import USER, api_client, delete_namespace, gcp_cluster_body, seed_nodepool_body
from tests.events.conftest import settings_with
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    StartIngester,
    counters,
    dead_letters,
    eventually,
    nodepool_report,
    queue_counts,
    stored_reports,
)

Garbage = Callable[[Publisher, str], Awaitable[None]]


async def repeated_key(publisher: Publisher, nodepool_id: str) -> None:
    # A last-key-wins parser would apply generation 1 to the nodepool; the first one says 7.
    body = orjson.dumps(nodepool_report(nodepool_id, ready=True))
    await publisher.raw(
        body.replace(b'"observed_generation":1', b'"observed_generation":7,"observed_generation":1')
    )


async def ten_thousand_levels(publisher: Publisher, nodepool_id: str) -> None:
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    body = orjson.dumps(nodepool_report(nodepool_id)).replace(
        b'"metadata":{', b'"metadata":{"x":' + deep + b","
    )
    await publisher.raw(body)


async def huge_array(publisher: Publisher, nodepool_id: str) -> None:
    report = nodepool_report(nodepool_id)
    report["conditions"] = report["conditions"] * 5_000  # ~0.8 MB: within the size limit
    await publisher.raw(orjson.dumps(report))


async def binary_content_type(publisher: Publisher, nodepool_id: str) -> None:
    body = orjson.dumps(nodepool_report(nodepool_id, ready=True))
    await publisher.raw(body, content_type="application/octet-stream")


async def empty_body(publisher: Publisher, _: str) -> None:
    await publisher.raw(b"")


async def nul_bytes(publisher: Publisher, _: str) -> None:
    await publisher.raw(b"\x00" * 512)


async def json_null(publisher: Publisher, _: str) -> None:
    await publisher.raw(b"null")


async def nan_metadata(publisher: Publisher, nodepool_id: str) -> None:
    body = orjson.dumps(nodepool_report(nodepool_id)).replace(b'"step":0', b'"step":NaN')
    await publisher.raw(body)


async def byte_order_mark(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(b"\xef\xbb\xbf" + orjson.dumps(nodepool_report(nodepool_id, ready=True)))


async def cluster_report_on_the_nodepool_key(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(orjson.dumps({"controller_name": CONTROLLER, "observed_generation": 1}))


GARBAGE = [
    repeated_key,
    ten_thousand_levels,
    huge_array,
    binary_content_type,
    empty_body,
    nul_bytes,
    json_null,
    nan_metadata,
    byte_order_mark,
    cluster_report_on_the_nodepool_key,
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=[g.__name__ for g in GARBAGE])
async def test_garbage_is_dead_lettered_counted_and_consumption_goes_on(
    garbage: Garbage,
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    await start_ingester()
    await garbage(publisher, nodepool["id"])
    await publisher.report(nodepool_report(nodepool["id"], ready=True, step=7))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("dead_lettered") == 1 and c.get("applied") == 1,
        what="one dead-lettered, one applied",
    )
    assert len(await dead_letters(amqp, settings.names)) == 1
    stored = await stored_reports(redis, settings.names, nodepool["id"])
    assert stored[CONTROLLER]["metadata"]["step"] == 7
    assert stored[CONTROLLER]["observed_generation"] == 1
    assert (await queue_counts(amqp, settings.names))[0] == 0


async def test_a_burst_of_random_bytes_is_all_dead_lettered(
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    await start_ingester()
    for size in (1, 7, 100, 4096, 65_536):
        await publisher.raw(os.urandom(size))
    await publisher.report(nodepool_report(nodepool["id"], ready=True))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("dead_lettered") == 5 and c.get("applied") == 1,
        what="five dead-lettered, one applied",
    )


async def test_a_report_for_another_namespaces_nodepool_touches_nothing_there(
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    # A nodepool of another stack sharing the Redis: a report on this stack's queue naming it
    # must be "unknown" here and leave the other stack's data alone.
    other = settings_with(settings, namespace=f"{settings.namespace}x")
    try:
        async with api_client(other, relay_events=False) as api:
            theirs = await create_foreign_nodepool(api)
            before = (await api.get(f"/api/v1/nodepools/{theirs}/status", headers=USER)).json()
            await start_ingester()
            await publisher.report(nodepool_report(theirs, ready=True))
            await publisher.report(nodepool_report(nodepool["id"], ready=True))
            await eventually(
                lambda: counters(redis, settings.names),
                lambda c: c.get("unknown") == 1 and c.get("applied") == 1,
                what="one unknown, one applied",
            )
            after = (await api.get(f"/api/v1/nodepools/{theirs}/status", headers=USER)).json()
        assert after == before
        assert await redis.hlen(settings.names.controller_reports("nodepool", theirs)) == 0
    finally:
        await delete_namespace(redis, other.namespace)


async def create_foreign_nodepool(api: httpx.AsyncClient) -> str:
    cluster = (await api.post("/api/v1/clusters", json=gcp_cluster_body(), headers=USER)).json()
    body = seed_nodepool_body(cluster["id"])
    created = await api.post("/api/v1/nodepools", json=body, headers=USER)
    assert created.status_code == 201, created.text
    nodepool_id: str = created.json()["id"]
    return nodepool_id
