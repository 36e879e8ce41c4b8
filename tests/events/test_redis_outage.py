"""The relay and the reconcile loop live through a Redis outage and carry on when it returns."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import REDIS_URL, USER, api_client, gcp_cluster_body
from tests.events.conftest import EventsConsumer, settings_with
from tests.support.tcp_proxy import TcpProxy, through


async def test_the_relay_resumes_after_redis_was_unreachable(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    redis_proxy: TcpProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app_settings = settings_with(settings, redis_url=through(REDIS_URL, redis_proxy))
    async with api_client(app_settings) as api:
        await events_consumer.sync()
        await redis_proxy.cut()
        deadline = time.monotonic() + 10
        while "relay paused" not in caplog.text:
            assert time.monotonic() < deadline, "the relay never noticed Redis was gone"
            await asyncio.sleep(0.02)
        response = await api.post("/api/v1/clusters", json=gcp_cluster_body(), headers=USER)
        assert response.status_code == 503
        await redis_proxy.restore()
        response = await api.post("/api/v1/clusters", json=gcp_cluster_body(), headers=USER)
        assert response.status_code == 201
        events = await events_consumer.sync(within=20)
    assert [(e.routing_key, e.resource_id) for e in events] == [
        ("cluster.created.gcp", response.json()["id"])
    ]
