"""status_ingester.window: jobs of one key run in arrival order, whatever windows they fall in;
windows without a key in common run side by side."""

from __future__ import annotations

import asyncio
import random

from status_ingester.window import Windows

Job = tuple[str, int]  # (key, sequence number within the key)


async def test_jobs_of_one_key_run_in_arrival_order_and_windows_overlap_otherwise() -> None:
    rng = random.Random(7)
    ran: list[Job] = []
    running: set[str] = set()  # keys of the windows running now
    overlapped = 0

    async def worker(window: list[Job]) -> None:
        nonlocal overlapped
        keys = {key for key, _ in window}
        assert not keys & running, "two windows with a key in common ran at once"
        overlapped += bool(running)
        running.update(keys)
        await asyncio.sleep(rng.random() / 500)
        ran.extend(window)
        running.difference_update(keys)

    windows: Windows[Job] = Windows(worker, key=lambda job: job[0], limit=8, concurrency=3)
    sent: dict[str, int] = {}
    for _ in range(600):
        key = rng.choice("abcdefghijklmnopqrstuvwxyz")
        sent[key] = sent.get(key, 0) + 1
        windows.submit((key, sent[key]))
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    await asyncio.wait_for(windows.wait_idle(), 30)

    assert len(ran) == 600 and len(windows) == 0
    for key, count in sent.items():
        assert [n for k, n in ran if k == key] == list(range(1, count + 1))
    assert overlapped, "windows on different keys never ran side by side"


async def test_a_failing_window_does_not_stop_the_next() -> None:
    done: list[int] = []

    async def worker(window: list[int]) -> None:
        if 1 in window:
            raise RuntimeError("boom")
        done.extend(window)

    windows: Windows[int] = Windows(worker, key=lambda job: None, limit=1)
    for job in (1, 2, 3):
        windows.submit(job)
    await asyncio.wait_for(windows.wait_idle(), 5)
    assert done == [2, 3]


async def test_cancel_abandons_every_job_and_leaves_it_idle() -> None:
    started = asyncio.Event()

    async def worker(window: list[int]) -> None:
        started.set()
        await asyncio.sleep(3600)

    windows: Windows[int] = Windows(worker, key=lambda job: job, limit=2, concurrency=1)
    for job in range(5):
        windows.submit(job)
    await asyncio.wait_for(started.wait(), 5)
    assert await windows.cancel() == 5
    assert len(windows) == 0
    await asyncio.wait_for(windows.wait_idle(), 1)
