"""The leader lock on real Redis: one holder at a time, only the holder extends or releases it,
and a holder that stops renewing loses it after the TTL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from cls_core.store.leader_lock import LeaderLock
from cls_runtime.settings import Settings
from event_jobs.leader import Leadership

TTL = 0.6


@pytest.fixture
def key(settings: Settings) -> str:
    return settings.names.lock("test")


async def test_only_one_instance_acquires_the_lock(redis: Redis, key: str) -> None:
    first, second = LeaderLock(redis, key, TTL), LeaderLock(redis, key, TTL)
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.holder() == first.token


async def test_only_the_holder_can_renew_or_release(redis: Redis, key: str) -> None:
    holder, other = LeaderLock(redis, key, TTL), LeaderLock(redis, key, TTL)
    assert await holder.acquire()
    assert not await other.renew()
    assert not await other.release()
    assert await holder.holder() == holder.token
    assert await holder.renew()
    assert await holder.release()
    assert await holder.holder() is None


async def test_renewing_keeps_the_lock_past_its_ttl(redis: Redis, key: str) -> None:
    holder, other = LeaderLock(redis, key, TTL), LeaderLock(redis, key, TTL)
    assert await holder.acquire()
    for _ in range(4):
        await asyncio.sleep(TTL / 3)
        assert await holder.renew()
    assert not await other.acquire()


async def test_a_lock_not_renewed_expires_and_another_instance_takes_it(
    redis: Redis, key: str
) -> None:
    holder, other = LeaderLock(redis, key, TTL), LeaderLock(redis, key, TTL)
    assert await holder.acquire()
    await asyncio.sleep(TTL + 0.1)
    assert await other.acquire()
    assert not await holder.renew()


async def stop(lease: Leadership, task: asyncio.Task[None]) -> None:
    """As the app stops a job: stop renewing, then release the lock."""
    lease.halt()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await lease.release()


@contextlib.asynccontextmanager
async def running(lease: Leadership) -> AsyncIterator[Leadership]:
    task = asyncio.create_task(lease.run())
    try:
        yield lease
    finally:
        await stop(lease, task)


async def test_of_two_running_leaderships_exactly_one_leads(redis: Redis, key: str) -> None:
    a = Leadership(LeaderLock(redis, key, TTL), TTL, "test")
    b = Leadership(LeaderLock(redis, key, TTL), TTL, "test")
    async with running(a), running(b):
        await asyncio.sleep(TTL / 2)
        leader = a if a.is_leader else b
        for _ in range(10):  # through several renewals
            await asyncio.sleep(TTL / 5)
            assert leader.is_leader
            assert [a.is_leader, b.is_leader].count(True) == 1


async def test_a_stopped_leader_hands_over_at_once(redis: Redis, key: str) -> None:
    a = Leadership(LeaderLock(redis, key, TTL), TTL, "test")
    b = Leadership(LeaderLock(redis, key, TTL), TTL, "test")
    a_task = asyncio.create_task(a.run())
    await asyncio.wait_for(a.wait_leader(), 5)
    async with running(b):
        await asyncio.sleep(TTL)
        assert not b.is_leader
        await stop(a, a_task)
        started = time.monotonic()
        await asyncio.wait_for(b.wait_leader(), 5)
        assert time.monotonic() - started < TTL


async def test_a_leader_that_cannot_renew_steps_down_when_its_term_ends(
    redis: Redis, key: str
) -> None:
    """Someone else holds the key now (as after a partition): the old leader must notice."""
    a = Leadership(LeaderLock(redis, key, TTL), TTL, "test")
    async with running(a):
        await asyncio.wait_for(a.wait_leader(), 5)
        await redis.set(key, "someone-else", px=10_000)
        deadline = time.monotonic() + TTL + 0.5
        while a.is_leader:
            assert time.monotonic() < deadline, "still leader after its term"
            await asyncio.sleep(0.02)
