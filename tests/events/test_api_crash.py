"""An API process killed between commit and publish loses nothing: the next start publishes."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import AMQP_URL, USER, api_client, gcp_cluster_body, seed_nodepool_body
from tests.events.conftest import ApiProcesses, EventsConsumer, settings_with
from tests.support.tcp_proxy import TcpProxy, through

LOCK_TTL = "1.0"
# How long a request or the wait for the events may take on a loaded machine: generous, since
# only a failure waits that long (a request once took over 10 s while other suites ran).
PATIENCE = 60.0


async def test_events_of_a_killed_api_process_are_published_by_the_next_start(
    settings: Settings,
    redis: Redis,
    events_consumer: EventsConsumer,
    broker_proxy: TcpProxy,
    api_processes: ApiProcesses,
) -> None:
    await broker_proxy.cut()  # the process commits, but cannot publish
    process = await api_processes.start(
        CLS_AMQP_URL=through(AMQP_URL, broker_proxy), CLS_LEADER_LOCK_TTL=LOCK_TTL
    )
    async with httpx.AsyncClient(base_url=process.url, timeout=PATIENCE) as client:
        cluster = await client.post("/api/v1/clusters", json=gcp_cluster_body(), headers=USER)
        assert cluster.status_code == 201
        pool = await client.post(
            "/api/v1/nodepools", json=seed_nodepool_body(cluster.json()["id"]), headers=USER
        )
        assert pool.status_code == 201
    process.service.kill()  # SIGKILL: no shutdown, no lock release
    assert await redis.xlen(settings.names.outbox) == 2

    async with api_client(settings_with(settings, leader_lock_ttl=float(LOCK_TTL))):
        events = await events_consumer.sync(within=PATIENCE)
    assert [(e.routing_key, e.resource_id) for e in events] == [
        ("cluster.created.gcp", cluster.json()["id"]),
        ("nodepool.created.gcp", pool.json()["id"]),
    ]
