"""Hand jobs to a worker in windows: the jobs that arrived since the last window was cut, in
arrival order.

The ingester applies the reports of one window together (one Redis round trip to read them, one
to write them). Up to ``concurrency`` windows run at once, so that one window computes while
another waits for Redis; but a window holding a job with the same key (the same resource) as an
earlier window still running starts only once that one has finished. So the jobs of one key run
in arrival order, whichever windows they fall in; within a window the worker keeps that order
itself. The broker's prefetch window bounds how many jobs exist at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("status_ingester.window")

# Loop turns the dispatcher waits, once woken, while jobs keep arriving: deliveries that reached
# the client together reach ``submit`` a few turns apart, and one window of them is cheaper
# than several.
GATHER_TURNS = 4


@dataclass(eq=False)
class _Window(Generic[T]):
    jobs: list[T]
    keys: set[Hashable]
    task: asyncio.Task[None] | None = None
    after: list[asyncio.Task[None]] = field(default_factory=list)


class Windows(Generic[T]):
    def __init__(
        self,
        worker: Callable[[list[T]], Awaitable[None]],
        key: Callable[[T], Hashable | None],
        *,
        limit: int,
        concurrency: int = 2,
    ) -> None:
        self._worker = worker
        self._key = key  # jobs of one key run in arrival order; None: no order needed
        self._limit = limit  # at most this many jobs per window
        self._concurrency = concurrency
        self._queued: list[T] = []
        self._running: list[_Window[T]] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._slot = asyncio.Event()  # set when a window finishes
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, job: T) -> None:
        """Queue ``job`` for the next window; never blocks."""
        self._queued.append(job)
        self._idle.clear()
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="ingest windows")

    def __len__(self) -> int:
        """Jobs submitted and not finished yet."""
        return len(self._queued) + sum(len(window.jobs) for window in self._running)

    async def wait_idle(self) -> None:
        """Return once every submitted job has finished."""
        await self._idle.wait()

    async def cancel(self) -> int:
        """Abandon every job (their messages stay unsettled); returns how many were abandoned."""
        abandoned = len(self)
        tasks = [window.task for window in self._running if window.task is not None]
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._queued.clear()
        self._running.clear()
        self._idle.set()
        return abandoned

    async def _dispatch(self) -> None:
        try:
            while self._queued:
                while len(self._running) >= self._concurrency:
                    self._slot.clear()
                    await self._slot.wait()
                await self._gather()
                jobs = self._queued[: self._limit]
                del self._queued[: self._limit]
                keys = {key for key in map(self._key, jobs) if key is not None}
                window = _Window(jobs, keys)
                window.after = [
                    w.task
                    for w in self._running
                    if w.task is not None and not w.keys.isdisjoint(keys)
                ]
                self._running.append(window)
                window.task = asyncio.create_task(self._run(window), name="ingest window")
        finally:
            self._dispatcher = None
            self._check_idle()

    async def _gather(self) -> None:
        for _ in range(GATHER_TURNS):
            if len(self._queued) >= self._limit:
                return
            seen = len(self._queued)
            await asyncio.sleep(0)
            if len(self._queued) == seen:
                return

    async def _run(self, window: _Window[T]) -> None:
        try:
            if window.after:
                # Earlier windows with jobs of the same keys finish first (failed or not).
                await asyncio.wait(window.after)
            window.after = []
            await self._worker(window.jobs)
        except Exception:
            # The worker settles its own failures; this only keeps the windows going.
            log.exception("a window of %d job(s) failed", len(window.jobs))
        finally:
            with contextlib.suppress(ValueError):
                self._running.remove(window)
            self._slot.set()
            self._check_idle()

    def _check_idle(self) -> None:
        if not self._queued and not self._running and self._dispatcher is None:
            self._idle.set()
