"""Poison messages end in ``<ns>.status.dead``, never looping, never lost; the ingester goes on."""

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
from tests.conftest import controller_headers
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    StartIngester,
    counters,
    dead_letters,
    eventually,
    nodepool_report,
    queue_counts,
    report,
    stored_reports,
)

Poison = Callable[[Publisher, str], Awaitable[None]]


async def random_bytes(publisher: Publisher, _: str) -> None:
    await publisher.raw(b"\xff\xfe" + os.urandom(64))


async def wrong_content_type(publisher: Publisher, nodepool_id: str) -> None:
    body = orjson.dumps(nodepool_report(nodepool_id, ready=True))
    await publisher.raw(body, content_type="text/plain")


async def wrong_shape(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(orjson.dumps({"nodepool_id": nodepool_id, "state": "ready"}))


async def json_array(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(orjson.dumps([nodepool_report(nodepool_id)]))


async def not_a_uuid(publisher: Publisher, _: str) -> None:
    await publisher.report(nodepool_report("pool-1"))


async def future_generation(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.report(nodepool_report(nodepool_id, 2, ready=True))


POISONS = [random_bytes, wrong_content_type, wrong_shape, json_array, not_a_uuid, future_generation]


@pytest.mark.parametrize("poison", POISONS, ids=[p.__name__ for p in POISONS])
async def test_poison_is_dead_lettered_and_ingester_keeps_consuming(
    poison: Poison,
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    await start_ingester()
    await poison(publisher, nodepool["id"])
    await publisher.report(nodepool_report(nodepool["id"], ready=True, step=7))

    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("dead_lettered") == 1 and c.get("applied") == 1,
        what="one dead-lettered, one applied",
    )
    assert len(await dead_letters(amqp, settings.names)) == 1
    stored = await stored_reports(redis, settings.names, nodepool["id"])
    assert stored[CONTROLLER]["metadata"]["step"] == 7
    assert (await queue_counts(amqp, settings.names))[0] == 0


async def test_report_that_keeps_failing_is_dead_lettered_by_the_delivery_limit(
    nodepool: dict[str, Any],
    cluster: dict[str, Any],
    api: httpx.AsyncClient,
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    # A corrupt record makes apply raise every time: requeued until the delivery limit.
    await redis.hset(settings.names.record("nodepool", nodepool["id"]), "status", "{corrupt")
    await start_ingester()
    await publisher.report(nodepool_report(nodepool["id"], ready=True))

    dead = await eventually(
        lambda: dead_letters(amqp, settings.names), bool, what="a dead-lettered report"
    )
    assert orjson.loads(dead[0])["nodepool_id"] == nodepool["id"]
    # Delivered once, then once more per allowed return.
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("requeued") == settings.ingest_delivery_limit + 1,
        what="every delivery requeued",
    )
    assert (await queue_counts(amqp, settings.names))[0] == 0


BAD_BODIES: list[tuple[str, bytes]] = [
    (
        "nan",
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":1,'
        b'"metadata":{"x":NaN}}',
    ),
    ("generation-zero", b'{"controller_name":"gcp-nodepool-controller","observed_generation":0}'),
    (
        "generation-string",
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":"1"}',
    ),
    (
        "unknown-field",
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":1,"colour":"red"}',
    ),
    (
        "bad-condition-status",
        b'{"controller_name":"gcp-nodepool-controller",'
        b'"observed_generation":1,"conditions":[{"type":"Ready","status":"Yes"}]}',
    ),
    (
        "deep-metadata",
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":1,'
        b'"metadata":{"a":' + b"[" * 40 + b"]" * 40 + b"}}",
    ),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BODIES], ids=[n for n, _ in BAD_BODIES])
async def test_body_refused_over_http_is_dead_lettered_from_the_queue(
    body: bytes,
    nodepool: dict[str, Any],
    api: httpx.AsyncClient,
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    response = await api.put(
        f"/api/v1/nodepools/{nodepool['id']}/status",
        content=body,
        headers={**controller_headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"

    await start_ingester()
    queued = body[:-1] + b',"nodepool_id":"' + nodepool["id"].encode() + b'"}'
    await publisher.raw(queued)
    await eventually(
        lambda: dead_letters(amqp, settings.names), bool, what="the body dead-lettered"
    )
    assert await stored_reports(redis, settings.names, nodepool["id"]) == {}


async def test_valid_body_is_accepted_over_http_and_from_the_queue(
    nodepool: dict[str, Any],
    cluster: dict[str, Any],
    api: httpx.AsyncClient,
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    # The counterpart of the test above: the same kind of body, well-formed, passes both ways.
    body = report(1, ready=True)
    response = await api.put(
        f"/api/v1/nodepools/{nodepool['id']}/status", json=body, headers=controller_headers()
    )
    assert response.status_code == 200, response.text
    await start_ingester()
    await publisher.report({**body, "nodepool_id": nodepool["id"], "metadata": {"step": 2}})
    await eventually(
        lambda: counters(redis, settings.names), lambda c: c.get("applied") == 1, what="applied"
    )
