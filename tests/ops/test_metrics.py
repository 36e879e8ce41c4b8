"""GET /metrics: Prometheus text with HTTP traffic by route template, the event pipeline, the
ingesters' counters and nodepools per phase; /ready fails when a dependency is away."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.conftest import (
    AMQP_URL,
    REDIS_URL,
    USER,
    api_client,
    controller_headers,
    gcp_cluster_body,
    seed_nodepool_body,
)
from tests.events.conftest import settings_with
from tests.ops.conftest import scrape, series, value
from tests.support.deletion import confirm_deletion, purge_cluster
from tests.support.polling import eventually
from tests.support.redis_server import free_port
from tests.support.tcp_proxy import TcpProxy, through

API = "/api/v1"


async def test_requests_are_counted_by_route_template_and_status(
    settings: Settings, redis: Redis
) -> None:
    async with api_client(settings, relay_events=False) as api:
        for _ in range(3):
            await api.get(f"{API}/nodepools/{uuid.uuid4()}", headers=USER)  # 404s
        await api.get(f"{API}/nodepools", headers=USER)
        samples = await scrape(api)
    route = "/api/v1/nodepools/{id}"
    assert value(samples, "http_requests_total", method="GET", route=route, code="404") == 3
    assert (
        value(samples, "http_requests_total", method="GET", route="/api/v1/nodepools", code="200")
        == 1
    )
    assert value(samples, "http_request_duration_seconds_count", method="GET", route=route) == 3
    # Raw paths never become labels: one series per route, not one per id.
    routes = {labels["route"] for labels in series(samples, "http_requests_total")}
    assert routes == {route, "/api/v1/nodepools"}


async def test_paths_no_route_matches_share_one_series(settings: Settings, redis: Redis) -> None:
    async with api_client(settings, relay_events=False) as api:
        for i in range(4):
            await api.get(f"/nope/{uuid.uuid4()}/{i}")
        samples = await scrape(api)
    assert value(samples, "http_requests_total", method="GET", route="<unmatched>", code="404") == 4


async def test_answers_from_the_outer_layers_are_counted_under_their_route(
    settings: Settings, redis: Redis
) -> None:
    async with api_client(settings, relay_events=False) as api:
        too_big = b"x" * (settings.max_body_bytes + 1)
        await api.post(
            f"{API}/nodepools",
            content=too_big,
            headers={**USER, "Content-Type": "application/json"},
        )
        await api.post(
            f"{API}/clusters",
            content=b'{"a":1,"a":2}',
            headers={**USER, "Content-Type": "application/json"},
        )
        samples = await scrape(api)
    assert (
        value(samples, "http_requests_total", method="POST", route="/api/v1/nodepools", code="413")
        == 1
    )
    assert (
        value(samples, "http_requests_total", method="POST", route="/api/v1/clusters", code="400")
        == 1
    )


async def test_an_unhandled_error_is_counted_as_a_500(settings: Settings, redis: Redis) -> None:
    async with api_client(settings, relay_events=False) as api:
        created = (await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)).json()
        # A doc that cannot be read, and no view to send instead.
        await redis.hset(settings.names.record("cluster", created["id"]), "doc", "{not json")
        await redis.delete(settings.names.view("cluster", created["id"]))
        response = await api.get(f"{API}/clusters/{created['id']}", headers=USER)
        samples = await scrape(api)
    assert response.status_code == 500
    assert (
        value(
            samples, "http_requests_total", method="GET", route="/api/v1/clusters/{id}", code="500"
        )
        == 1
    )


async def test_outbox_backlog_and_age_show_events_waiting_for_the_relay(
    settings: Settings, redis: Redis
) -> None:
    async with api_client(settings, relay_events=False) as api:
        await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
        await asyncio.sleep(0.05)
        samples = await scrape(api)
    assert value(samples, "cls_outbox_backlog") == 1
    age = value(samples, "cls_outbox_oldest_age_seconds")
    assert age is not None and 0.04 < age < 60
    # Without a relay, this replica reports no relay numbers at all.
    assert value(samples, "cls_relay_published_total") is None


async def test_relayed_events_leave_the_backlog_and_count_as_published(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection
) -> None:
    async with api_client(settings) as api:
        await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
        samples = await eventually(
            lambda: scrape(api), lambda s: value(s, "cls_relay_published_total") == 1
        )
    assert value(samples, "cls_outbox_backlog") == 0
    assert value(samples, "cls_outbox_oldest_age_seconds") == 0
    assert value(samples, "cls_relay_publish_failures_total") == 0
    assert value(samples, "cls_leader", job="outbox-relay") == 1


async def test_reconcile_ticks_are_counted_on_the_leader(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection
) -> None:
    fast = settings_with(settings, reconcile_interval=0.2)
    async with api_client(fast) as api:
        samples = await eventually(
            lambda: scrape(api), lambda s: (value(s, "cls_reconcile_ticks_total") or 0) >= 3
        )
    assert value(samples, "cls_leader", job="reconcile") == 1


async def test_ingest_counters_are_read_from_the_ingesters_hash(
    settings: Settings, redis: Redis
) -> None:
    # The hash every ingester process adds to (status_ingester/counters.py).
    await redis.hset(settings.names.metric("ingest"), mapping={"applied": 41, "dead_lettered": 2})
    async with api_client(settings, relay_events=False) as api:
        samples = await scrape(api)
    assert value(samples, "cls_status_reports_total", outcome="applied") == 41
    assert value(samples, "cls_status_reports_total", outcome="dead_lettered") == 2
    assert value(samples, "cls_status_reports_total", outcome="unknown") == 0


async def test_nodepools_are_counted_per_phase_across_owners(
    settings: Settings, redis: Redis
) -> None:
    async with api_client(settings, relay_events=False) as api:
        pools = []
        for user in (USER, {"X-User-Email": "other@example.com"}):
            cluster = (
                await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=user)
            ).json()
            for name in ("a", "b"):
                body = seed_nodepool_body(cluster["id"], name)
                pools.append((await api.post(f"{API}/nodepools", json=body, headers=user)).json())
        counts = await phases(api)
        assert counts == by_phase(4, 0, 0, 0, 0)

        await ready(api, pools[0])
        assert await phases(api) == {
            "Pending": 3,
            "Progressing": 0,
            "Ready": 1,
            "Failed": 0,
            "Deleting": 0,
        }
        await api.patch(
            f"{API}/nodepools/{pools[0]['id']}", json={"spec": {"nodeCount": 4}}, headers=USER
        )  # a new generation: no controller has seen it yet
        assert await phases(api) == {
            "Pending": 3,
            "Progressing": 1,
            "Ready": 0,
            "Failed": 0,
            "Deleting": 0,
        }
        await api.delete(f"{API}/nodepools/{pools[1]['id']}", headers=USER)
        deleting = by_phase(2, 1, 0, 0, 1)
        assert await phases(api) == deleting
        await confirm_deletion(api, f"nodepools/{pools[1]['id']}")
        other = {"X-User-Email": "other@example.com"}
        await purge_cluster(api, settings, pools[2]["cluster_id"], other, force=True)
        assert await phases(api) == {
            "Pending": 0,
            "Progressing": 1,
            "Ready": 0,
            "Failed": 0,
            "Deleting": 0,
        }


def by_phase(
    pending: int, progressing: int, ready: int, failed: int, deleting: int
) -> dict[str, float | None]:
    return {
        "Pending": pending,
        "Progressing": progressing,
        "Ready": ready,
        "Failed": failed,
        "Deleting": deleting,
    }


async def phases(api: httpx.AsyncClient) -> dict[str, float | None]:
    samples = await scrape(api)
    return {
        p: value(samples, "cls_nodepools", phase=p)
        for p in ("Pending", "Progressing", "Ready", "Failed", "Deleting")
    }


async def ready(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    report = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": nodepool["generation"],
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    response = await api.put(
        f"{API}/nodepools/{nodepool['id']}/status", json=report, headers=controller_headers()
    )
    assert response.status_code == 200, response.text


async def test_metrics_are_served_while_redis_is_away(
    settings: Settings, redis: Redis, redis_proxy: TcpProxy
) -> None:
    async with api_client(
        settings_with(settings, redis_url=through(REDIS_URL, redis_proxy)), relay_events=False
    ) as api:
        await api.get(f"{API}/nodepools", headers=USER)
        assert value(await scrape(api), "cls_redis_up") == 1
        await redis_proxy.cut()
        samples = await scrape(api)
        await redis_proxy.restore()
    assert value(samples, "cls_redis_up") == 0
    # The process's own numbers are there, when they matter most.
    assert (
        value(samples, "http_requests_total", method="GET", route="/api/v1/nodepools", code="200")
        == 1
    )


async def test_ready_fails_when_the_broker_goes_away_and_recovers_with_it(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection, broker_proxy: TcpProxy
) -> None:
    async with api_client(settings_with(settings, amqp_url=through(AMQP_URL, broker_proxy))) as api:
        await eventually_status(api, 200)
        await broker_proxy.cut()
        down = await eventually_status(api, 503)
        assert down.json()["checks"]["rabbitmq"] == "unavailable"
        assert down.json()["error"]["code"] == "UNAVAILABLE"
        await broker_proxy.restore()
        await eventually_status(api, 200, within=30)


async def test_without_in_process_event_jobs_ready_is_redis_alone_and_no_relay_is_reported(
    settings: Settings, redis: Redis
) -> None:
    """CLS_EVENT_JOBS=separate (as deployed): no broker link to report, even with no broker at
    all; the outbox backlog, read from Redis, still shows what waits for the events process."""
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    jobs_elsewhere = settings_with(settings, event_jobs="separate", amqp_url=nowhere)
    async with api_client(jobs_elsewhere, relay_events=None) as api:
        response = await api.get("/ready")
        created = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
        samples = await scrape(api)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"redis": "ok"}
    assert created.status_code == 201, created.text  # writes never need the broker
    assert value(samples, "cls_outbox_backlog") == 1
    assert value(samples, "cls_relay_published_total") is None
    assert not series(samples, "cls_leader")


async def test_ready_fails_when_redis_goes_away_and_recovers_with_it(
    settings: Settings, redis: Redis, redis_proxy: TcpProxy
) -> None:
    proxied = settings_with(settings, redis_url=through(REDIS_URL, redis_proxy))
    async with api_client(proxied, relay_events=False) as api:
        await eventually_status(api, 200)
        await redis_proxy.cut()
        down = await eventually_status(api, 503)
        assert down.json()["checks"]["redis"] != "ok"
        await redis_proxy.restore()
        await eventually_status(api, 200, within=30)


async def eventually_status(
    api: httpx.AsyncClient, status: int, within: float = 15
) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = await api.get("/ready")
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, f"/ready stayed {response.status_code}: {response.text}"
        await asyncio.sleep(0.05)
