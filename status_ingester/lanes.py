"""Run jobs concurrently across keys while keeping each key's jobs in arrival order.

Reports on one resource must be applied in the order the broker delivered them (a later report
of the same generation replaces an earlier one); reports on different resources need no order
and run side by side. The broker's prefetch window bounds how many jobs exist at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("status_ingester.lanes")


class Lanes(Generic[T]):
    def __init__(self, worker: Callable[[T], Awaitable[None]]) -> None:
        self._worker = worker
        self._queues: dict[str, deque[T]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, key: str, job: T) -> None:
        """Queue ``job`` behind the other jobs of ``key``; never blocks."""
        self._queues.setdefault(key, deque()).append(job)
        self._idle.clear()
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._run(key), name=f"lane {key}")

    def __len__(self) -> int:
        """Jobs submitted and not finished yet."""
        return sum(len(queue) for queue in self._queues.values())

    async def wait_idle(self) -> None:
        """Return once every submitted job has finished."""
        await self._idle.wait()

    async def cancel(self) -> int:
        """Abandon every job (their messages stay unacked); returns how many were abandoned."""
        abandoned = len(self)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return abandoned

    async def _run(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                try:
                    await self._worker(queue[0])
                except Exception:
                    # The worker settles its own failures; this only keeps the lane alive.
                    log.exception("job for %s failed", key)
                queue.popleft()
        finally:
            del self._queues[key]
            del self._tasks[key]
            if not self._tasks:
                self._idle.set()
