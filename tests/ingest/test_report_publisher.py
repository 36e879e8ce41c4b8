"""Who published a report: the ingester applies it only when its ``user_id`` (which the broker
checks against the publishing connection's user) names its ``controller_name``. Anything else is
dead-lettered, the reason in a header, and nothing is stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelPreconditionFailed
from redis.asyncio import Redis

from cls_runtime import amqp as topology
from cls_runtime.settings import Settings
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    StartIngester,
    counters,
    dead_letter_reasons,
    nodepool_report,
    stored_reports,
)
from tests.support.broker import connected_as, controller_user
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(60)

OTHER = "aws-nodepool-controller"


async def dead_reasons(amqp: AbstractRobustConnection, settings: Settings) -> list[str]:
    found: list[str] = []

    async def taken() -> list[str]:
        found.extend(await dead_letter_reasons(amqp, settings.names))
        return found

    return await eventually(taken, bool, what="a dead letter")


async def test_a_report_published_without_user_id_is_dead_lettered_with_the_reason(
    nodepool: dict[str, Any],
    amqp: AbstractRobustConnection,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    await start_ingester()
    channel = await amqp.channel(publisher_confirms=True)  # guest: may write, sets no user_id
    status = await channel.get_exchange(settings.names.status_exchange)
    body = nodepool_report(nodepool["id"], ready=True)
    await status.publish(topology.report_message(body), "nodepool.status", mandatory=True)
    reasons = await dead_reasons(amqp, settings)
    assert len(reasons) == 1 and "no user_id" in reasons[0], reasons
    assert await stored_reports(redis, settings.names, nodepool["id"]) == {}


async def test_a_report_published_as_another_controller_is_dead_lettered_with_the_reason(
    nodepool: dict[str, Any],
    publisher: Publisher,
    amqp: AbstractRobustConnection,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    await start_ingester()
    # aws-nodepool-controller's own user and user_id, claiming to be gcp-nodepool-controller.
    await publisher.report(nodepool_report(nodepool["id"], ready=True), as_user=OTHER)
    reasons = await dead_reasons(amqp, settings)
    assert reasons == [f"user_id '{OTHER}' may not report as controller '{CONTROLLER}'"]
    assert await stored_reports(redis, settings.names, nodepool["id"]) == {}


async def test_a_report_published_as_its_controller_is_applied(
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    await start_ingester()
    await publisher.report(nodepool_report(nodepool["id"], ready=True))
    await eventually(
        lambda: counters(redis, settings.names), lambda c: c.get("applied") == 1, what="applied"
    )
    assert list(await stored_reports(redis, settings.names, nodepool["id"])) == [CONTROLLER]


async def test_every_dead_letter_carries_its_reason(
    api: httpx.AsyncClient,
    publisher: Publisher,
    amqp: AbstractRobustConnection,
    start_ingester: StartIngester,
    settings: Settings,
) -> None:
    await start_ingester()
    await publisher.raw(b"not json at all")
    reasons = await dead_reasons(amqp, settings)
    assert len(reasons) == 1 and "JSON" in reasons[0], reasons


async def test_the_broker_refuses_a_user_id_other_than_the_publishers_user(
    settings: Settings, publisher: Publisher
) -> None:
    # What the check above stands on: a controller cannot put another's name in user_id.
    async with connected_as(controller_user(OTHER)) as connection:
        channel = await connection.channel(publisher_confirms=True)
        status = await channel.get_exchange(settings.names.status_exchange)
        message = topology.report_message(nodepool_report("x"), user_id=CONTROLLER)
        with pytest.raises(ChannelPreconditionFailed):
            await status.publish(message, "nodepool.status", mandatory=True)
