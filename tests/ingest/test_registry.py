"""The registry of controllers on the status queue: a report from a controller the registry does
not list for the resource's kind and platform is dead-lettered and stores nothing, whoever could
publish it; so a Ready nodepool stays Ready, and the reports it holds stay bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import USER
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    StartIngester,
    counters,
    dead_letters,
    nodepool_report,
    stored_reports,
)
from tests.support.polling import eventually


async def ready_nodepool(
    nodepool: dict[str, Any], publisher: Publisher, redis: Redis, settings: Settings
) -> None:
    """The nodepool made Ready by its own controller, over the queue."""
    await publisher.report(nodepool_report(nodepool["id"], ready=True, step=1))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("applied") == 1,
        what="the nodepool's own report applied",
    )


async def phase(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> str:
    response = await api.get(f"/api/v1/nodepools/{nodepool['id']}/status", headers=USER)
    return str(response.json()["status"]["phase"])


@pytest.mark.parametrize(
    "intruder",
    # probe-0 has a broker user of its own (the tests' extras registry: tests/conftest.py) and is
    # not in this test's registry, the default one.
    ["probe-0", "aws-nodepool-controller", "gcp-cluster-controller"],
    ids=["unregistered", "another platform", "another kind"],
)
async def test_a_report_from_outside_the_registry_is_dead_lettered_and_stores_nothing(
    intruder: str,
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    await start_ingester()
    await ready_nodepool(nodepool, publisher, redis, settings)

    # Not ready, at the current generation: applied, it would turn the nodepool Progressing.
    await publisher.report(nodepool_report(nodepool["id"], controller=intruder, step=2))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("dead_lettered") == 1,
        what="the intruder's report dead-lettered",
    )

    [dead] = await dead_letters(amqp, settings.names)
    assert orjson.loads(dead)["controller_name"] == intruder
    assert set(await stored_reports(redis, settings.names, nodepool["id"])) == {CONTROLLER}
    assert await phase(api, nodepool) == "Ready"


async def test_a_hundred_invented_controllers_store_nothing(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
) -> None:
    await start_ingester()
    await ready_nodepool(nodepool, publisher, redis, settings)
    invented = [nodepool_report(nodepool["id"], controller=f"evil-{i}", step=i) for i in range(100)]

    # An invented controller has no broker user: the nearest an intruder gets is a registered
    # controller's user publishing reports that name others.
    await asyncio.gather(*(publisher.report(r, as_user=CONTROLLER) for r in invented))
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: c.get("dead_lettered") == 100,
        what="every invented controller's report dead-lettered",
    )

    key = settings.names.controller_reports("nodepool", nodepool["id"])
    assert await redis.hkeys(key) == [CONTROLLER]
    assert await phase(api, nodepool) == "Ready"
