"""The fault-injection tools tests rely on actually inject the fault."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.support.redis_server import PrivateRedis
from tests.support.tcp_proxy import TcpProxy


async def test_proxy_cut_makes_redis_unreachable_and_restore_brings_it_back() -> None:
    proxy = await TcpProxy("127.0.0.1", 6379).start()
    client = Redis(port=proxy.port, socket_connect_timeout=1, socket_timeout=1)
    try:
        assert await client.ping()
        await proxy.cut()
        with pytest.raises((RedisConnectionError, OSError)):
            await client.ping()
        await proxy.restore()
        assert await client.ping()
    finally:
        await client.aclose()
        await proxy.close()


async def test_private_redis_keeps_writes_across_restart(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        client = Redis.from_url(server.url)
        await client.set("k", "v")
        await client.aclose()
        server.stop()
        server.start()
        client = Redis.from_url(server.url)
        assert await client.get("k") == b"v"
        await client.aclose()
    finally:
        server.kill()
