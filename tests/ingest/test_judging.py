"""The ingester's judge alone, over the real Redis: a window's reports applied with the API's
own rules, and the verdict on each delivery (no broker: the deliveries are stand-ins)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage
from redis.asyncio import Redis

from cls_core.services.status import StatusService
from cls_core.store import RedisStore
from cls_runtime.settings import Settings
from status_ingester.counters import Count
from status_ingester.decode import Report, decode
from status_ingester.judging import WindowJudge
from status_ingester.redis_health import RedisGate
from status_ingester.settling import Delivery, Settle
from tests.ingest.conftest import create_cluster_id, create_nodepools, nodepool_report


@dataclass
class Message:
    """What ``decode`` and the judge read of a delivery."""

    body: bytes
    channel: object = field(default_factory=object)
    routing_key: str = "nodepool.status"
    content_type: str = "application/json"
    content_encoding: str = ""
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    headers: dict[str, Any] = field(default_factory=dict)
    body_size: int = 0
    user_id: str | None = None


def delivery(settings: Settings, body: Any) -> Delivery:
    """A delivery of ``body`` as its controller publishes it (its user_id, the broker checked)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    user_id = body.get("controller_name") if isinstance(body, dict) else None
    message = cast(AbstractIncomingMessage, Message(raw, body_size=len(raw), user_id=user_id))
    return Delivery(message, decode(message, settings.max_body_bytes))


@pytest.fixture
async def nodepool_id(api: httpx.AsyncClient) -> str:
    cluster_id = await create_cluster_id(api)
    return (await create_nodepools(api, cluster_id, 1))[0]


@pytest.fixture
async def judge(settings: Settings, redis: Redis) -> WindowJudge:
    gate = RedisGate(redis, probe_interval=0.05)
    await gate.reopen("for the test")
    return WindowJudge(StatusService(RedisStore(redis, settings.names), settings), gate)


def outcomes(verdicts: list[tuple[Delivery, Settle, Count]]) -> list[tuple[Settle, Count]]:
    return [(settle, count) for _, settle, count in verdicts]


async def test_a_window_gets_one_verdict_per_delivery_in_its_order(
    settings: Settings, judge: WindowJudge, nodepool_id: str
) -> None:
    window = [
        delivery(settings, nodepool_report(nodepool_id, step=1)),
        delivery(settings, nodepool_report(nodepool_id, step=1)),  # the same again
        delivery(settings, nodepool_report(str(uuid.uuid4()))),  # no such nodepool
    ]
    assert all(isinstance(d.decoded, Report) for d in window)
    verdicts = await judge.judge(window)
    assert [d for d, _, _ in verdicts] == window
    assert outcomes(verdicts) == [
        (Settle.ACK, Count.APPLIED),
        (Settle.ACK, Count.UNCHANGED),
        (Settle.ACK, Count.UNKNOWN),
    ]


async def test_poison_and_a_generation_never_reached_are_dead_lettered(
    settings: Settings, judge: WindowJudge, nodepool_id: str
) -> None:
    window = [
        delivery(settings, b"{not json"),
        delivery(settings, nodepool_report(nodepool_id, generation=7)),
    ]
    assert outcomes(await judge.judge(window)) == [
        (Settle.DEAD, Count.DEAD_LETTERED),
        (Settle.DEAD, Count.DEAD_LETTERED),
    ]


async def test_a_shut_gate_holds_the_window_until_redis_is_back(
    settings: Settings, judge: WindowJudge, nodepool_id: str
) -> None:
    judge.gate.lost()
    judged = asyncio.create_task(judge.judge([delivery(settings, nodepool_report(nodepool_id))]))
    await asyncio.sleep(0.2)
    assert not judged.done()
    await judge.gate.reopen("in the test")
    assert outcomes(await asyncio.wait_for(judged, 5)) == [(Settle.ACK, Count.APPLIED)]
