"""CLS_TRUSTED_PROXIES: X-User-Email counts only from the gateway's addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import ValidationError
from redis.asyncio import Redis

from api_service.app import create_app
from cls_runtime.settings import Settings
from tests.api.conftest import assert_error
from tests.conftest import USER, controller_headers, gcp_cluster_body, seed_nodepool_body
from tests.events.conftest import settings_with
from tests.support.services import api_process, base_url

API = "/api/v1"
GATEWAY = ("10.1.2.3", 40000)
ELSEWHERE = ("192.0.2.7", 40000)


@asynccontextmanager
async def serve_from(settings: Settings, peer: tuple[str, int]) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, every request arriving from ``peer``."""
    app = create_app(settings, relay_events=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
def gated(settings: Settings) -> Settings:
    return settings_with(settings, trusted_proxies="10.0.0.0/8, 172.16.0.1")


async def test_the_gateway_may_assert_an_identity(gated: Settings, redis: Redis) -> None:
    async with serve_from(gated, GATEWAY) as api:
        created = await api.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
        assert created.status_code == 201, created.text


@pytest.mark.parametrize("path", ["/clusters", "/nodepools", "/clusters/{cl}"])
async def test_an_identity_from_anywhere_else_is_401(
    gated: Settings, redis: Redis, path: str
) -> None:
    async with serve_from(gated, GATEWAY) as gateway:
        cluster = (
            await gateway.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
        ).json()
    async with serve_from(gated, ELSEWHERE) as api:
        response = await api.get(API + path.format(cl=cluster["id"]), headers=USER)
        created = await api.post(f"{API}/clusters", json=gcp_cluster_body("x"), headers=USER)
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert "CLS_TRUSTED_PROXIES" in error["details"]
    assert_error(created, 401, "UNAUTHORIZED")


async def test_requests_without_an_identity_pass_the_check(gated: Settings, redis: Redis) -> None:
    async with serve_from(gated, GATEWAY) as gateway:
        cluster = (
            await gateway.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
        ).json()
        body = seed_nodepool_body(cluster["id"])
        pool = (await gateway.post(f"{API}/nodepools", json=body, headers=USER)).json()
    async with serve_from(gated, ELSEWHERE) as api:
        assert (await api.get("/health")).status_code == 200
        assert (await api.get("/ready")).status_code == 200
        # Controllers authenticate with their own tokens, wherever they connect from.
        report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 1}
        put = await api.put(
            f"{API}/nodepools/{pool['id']}/status", json=report, headers=controller_headers()
        )
        assert put.status_code == 200, put.text
        assert_error(await api.get(f"{API}/clusters"), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("peer", ["::ffff:10.1.2.3", "172.16.0.1"])
async def test_addresses_and_mapped_addresses_match(
    gated: Settings, redis: Redis, peer: str
) -> None:
    async with serve_from(gated, (peer, 1)) as api:
        assert (await api.get(f"{API}/clusters", headers=USER)).status_code == 200


@pytest.mark.parametrize("peer", ["172.16.0.2", "::1", "not-an-address", ""])
async def test_other_peers_are_refused(gated: Settings, redis: Redis, peer: str) -> None:
    async with serve_from(gated, (peer, 1)) as api:
        assert_error(await api.get(f"{API}/clusters", headers=USER), 401, "UNAUTHORIZED")


async def test_unset_trusts_every_peer(settings: Settings, redis: Redis) -> None:
    assert settings.trusted_proxies == ""
    async with serve_from(settings, ELSEWHERE) as api:
        assert (await api.get(f"{API}/clusters", headers=USER)).status_code == 200


@pytest.mark.parametrize("value", ["10.0.0.0/33", "gateway.local", "10.0.0.1,,nope"])
def test_a_malformed_list_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="CLS_TRUSTED_PROXIES"):
        Settings(trusted_proxies=value)


def test_the_service_ignores_x_forwarded_for(
    settings: Settings, redis: Redis, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    # Trusting only the gateway's address, a client on 127.0.0.1 claiming to be forwarded by
    # it must still be refused: the server must not take the peer address from the header.
    with api_process(settings, tmp_path, CLS_TRUSTED_PROXIES="203.0.113.9") as service:
        spoofed = httpx.get(
            f"{base_url(service)}{API}/clusters",
            headers={**USER, "X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"},
            timeout=10,
        )
    assert_error(spoofed, 401, "UNAUTHORIZED")
