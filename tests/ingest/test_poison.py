"""Poison on the status queue: a message the ingester cannot apply ends in ``<ns>.status.dead``
(never looping, never lost), is counted in the ingest metrics, and the ingester goes on consuming
the reports behind it. A report naming another namespace's nodepool is acked as unknown and
touches nothing of that namespace."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_core.errors import MAX_FIELD_ERRORS
from cls_runtime.settings import Settings
from shared_models.strict_json import MAX_KEYS, MAX_OBJECT_KEYS
from tests.conftest import USER, api_client, controller_headers, delete_namespace
from tests.events.conftest import settings_with
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    StartIngester,
    counters,
    create_cluster_id,
    create_nodepools,
    dead_letters,
    nodepool_report,
    queue_counts,
    report,
    stored_reports,
)
from tests.support.polling import eventually

# Publishes one poison message for the test's nodepool.
Poison = Callable[[Publisher, str], Awaitable[None]]


def ready_report(nodepool_id: str) -> bytes:
    return orjson.dumps(nodepool_report(nodepool_id, ready=True))


async def random_bytes(publisher: Publisher, _: str) -> None:
    await publisher.raw(b"\xff\xfe" + os.urandom(64))


async def empty_body(publisher: Publisher, _: str) -> None:
    await publisher.raw(b"")


async def nul_bytes(publisher: Publisher, _: str) -> None:
    await publisher.raw(b"\x00" * 512)


async def json_null(publisher: Publisher, _: str) -> None:
    await publisher.raw(b"null")


async def json_array(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(orjson.dumps([nodepool_report(nodepool_id)]))


async def byte_order_mark(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(b"\xef\xbb\xbf" + ready_report(nodepool_id))


async def text_plain_content_type(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(ready_report(nodepool_id), content_type="text/plain")


async def octet_stream_content_type(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(ready_report(nodepool_id), content_type="application/octet-stream")


async def repeated_key(publisher: Publisher, nodepool_id: str) -> None:
    # A last-key-wins parser would apply generation 1 to the nodepool; the first one says 7.
    await publisher.raw(
        ready_report(nodepool_id).replace(
            b'"observed_generation":1', b'"observed_generation":7,"observed_generation":1'
        )
    )


async def nan_metadata(publisher: Publisher, nodepool_id: str) -> None:
    body = orjson.dumps(nodepool_report(nodepool_id)).replace(b'"step":0', b'"step":NaN')
    await publisher.raw(body)


async def ten_thousand_levels(publisher: Publisher, nodepool_id: str) -> None:
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    body = orjson.dumps(nodepool_report(nodepool_id)).replace(
        b'"metadata":{', b'"metadata":{"x":' + deep + b","
    )
    await publisher.raw(body)


async def huge_array(publisher: Publisher, nodepool_id: str) -> None:
    poison = nodepool_report(nodepool_id)
    poison["conditions"] = poison["conditions"] * 5_000  # ~0.8 MB: within the size limit
    await publisher.raw(orjson.dumps(poison))


async def seventy_thousand_keys(publisher: Publisher, nodepool_id: str) -> None:
    extra = {f"k{i}": 0 for i in range(70_000)}  # ~0.8 MB: within the size limit
    await publisher.raw(orjson.dumps({**nodepool_report(nodepool_id), **extra}))


async def seventy_thousand_metadata_keys(publisher: Publisher, nodepool_id: str) -> None:
    poison = nodepool_report(nodepool_id)
    poison["metadata"] = {f"k{i}": 0 for i in range(70_000)}
    await publisher.raw(orjson.dumps(poison))


async def wrong_shape(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.raw(orjson.dumps({"nodepool_id": nodepool_id, "state": "ready"}))


async def cluster_report_on_the_nodepool_key(publisher: Publisher, _: str) -> None:
    await publisher.raw(orjson.dumps({"controller_name": CONTROLLER, "observed_generation": 1}))


async def id_not_a_uuid(publisher: Publisher, _: str) -> None:
    await publisher.report(nodepool_report("pool-1"))


async def future_generation(publisher: Publisher, nodepool_id: str) -> None:
    await publisher.report(nodepool_report(nodepool_id, 2, ready=True))


POISONS = [
    # not JSON at all
    pytest.param(random_bytes, id="random-bytes"),
    pytest.param(empty_body, id="empty-body"),
    pytest.param(nul_bytes, id="nul-bytes"),
    # JSON, but not an object
    pytest.param(json_null, id="json-null"),
    pytest.param(json_array, id="json-array-of-a-report"),
    # a valid report, wrapped or labelled as something else
    pytest.param(byte_order_mark, id="report-after-a-byte-order-mark"),
    pytest.param(text_plain_content_type, id="report-as-text-plain"),
    pytest.param(octet_stream_content_type, id="report-as-octet-stream"),
    # not strict JSON, or beyond the decoder's limits
    pytest.param(repeated_key, id="repeated-key-not-last-wins"),
    pytest.param(nan_metadata, id="nan-in-metadata"),
    pytest.param(ten_thousand_levels, id="ten-thousand-levels-deep"),
    pytest.param(huge_array, id="huge-conditions-array"),
    pytest.param(seventy_thousand_keys, id="seventy-thousand-unknown-keys"),
    pytest.param(seventy_thousand_metadata_keys, id="seventy-thousand-metadata-keys"),
    # well-formed JSON, not a nodepool report
    pytest.param(wrong_shape, id="wrong-shape"),
    pytest.param(cluster_report_on_the_nodepool_key, id="cluster-report-on-the-nodepool-key"),
    pytest.param(id_not_a_uuid, id="nodepool-id-not-a-uuid"),
    # a valid report of a generation the nodepool has not reached
    pytest.param(future_generation, id="generation-from-the-future"),
]


@pytest.mark.parametrize("poison", POISONS)
async def test_poison_is_dead_lettered_counted_and_the_ingester_keeps_consuming(
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
    assert stored[CONTROLLER]["observed_generation"] == 1
    assert (await queue_counts(amqp, settings.names))[0] == 0


async def test_too_many_keys_are_dead_lettered_with_the_reason_and_later_reports_apply(
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    conversions: list[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="status_ingester")
    await start_ingester()
    await seventy_thousand_keys(publisher, nodepool["id"])
    await publisher.report(nodepool_report(nodepool["id"], ready=True, step=7))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("dead_lettered") == 1 and c.get("applied") == 1,
        what="one dead-lettered, one applied",
    )
    reasons = [r.getMessage() for r in caplog.records if "dead-lettering" in r.getMessage()]
    assert len(reasons) == 1
    assert re.search(
        rf": body refused: the body has \d+ keys in all, more than the {MAX_KEYS} allowed$",
        reasons[0],
    ), reasons
    assert conversions == []  # refused before validation
    stored = await stored_reports(redis, settings.names, nodepool["id"])
    assert stored[CONTROLLER]["metadata"]["step"] == 7


async def test_a_report_of_many_errors_has_only_the_first_converted(
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    conversions: list[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="status_ingester")
    await start_ingester()
    unknown = {f"x{i}": 0 for i in range(MAX_OBJECT_KEYS - 10)}  # within the key bounds
    await publisher.raw(orjson.dumps({**nodepool_report(nodepool["id"]), **unknown}))
    await publisher.report(nodepool_report(nodepool["id"], ready=True))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("dead_lettered") == 1 and c.get("applied") == 1,
        what="one dead-lettered, one applied",
    )
    assert len(conversions) == MAX_FIELD_ERRORS
    [reason] = [r.getMessage() for r in caplog.records if "dead-lettering" in r.getMessage()]
    assert reason.endswith(f"({len(unknown)} errors, the first {MAX_FIELD_ERRORS} listed)")


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
    # Counted is not enough: every one must be kept on the dead-letter queue, not dropped.
    taken: list[bytes] = []

    async def take_dead_letters() -> list[bytes]:
        taken.extend(await dead_letters(amqp, settings.names))  # taking acks them: keep a tally
        return taken

    await eventually(take_dead_letters, lambda dead: len(dead) == 5, what="five dead letters")


async def test_report_that_keeps_failing_is_dead_lettered_by_the_delivery_limit(
    nodepool: dict[str, Any],
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


async def test_a_report_for_another_namespaces_nodepool_touches_nothing_there(
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    # A nodepool of another stack sharing the Redis: a report on this stack's queue naming it
    # must be "unknown" here and leave the other stack's data alone.
    other = settings_with(settings, namespace=f"{settings.namespace}x")
    try:
        async with api_client(other, relay_events=False) as api:
            [theirs] = await create_nodepools(api, await create_cluster_id(api), 1)
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


# ---- the same body over HTTP and from the queue ---------------------------------------------

BAD_BODIES = [
    pytest.param(
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":1,'
        b'"metadata":{"x":NaN}}',
        id="nan",
    ),
    pytest.param(
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":0}',
        id="generation-zero",
    ),
    pytest.param(
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":"1"}',
        id="generation-string",
    ),
    pytest.param(
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":1,"colour":"red"}',
        id="unknown-field",
    ),
    pytest.param(
        b'{"controller_name":"gcp-nodepool-controller",'
        b'"observed_generation":1,"conditions":[{"type":"Ready","status":"Yes"}]}',
        id="bad-condition-status",
    ),
    pytest.param(
        b'{"controller_name":"gcp-nodepool-controller","observed_generation":1,'
        b'"metadata":{"a":' + b"[" * 40 + b"]" * 40 + b"}}",
        id="deep-metadata",
    ),
]


@pytest.mark.parametrize("body", BAD_BODIES)
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
