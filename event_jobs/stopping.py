"""Waiting that a shutdown can interrupt, for the background jobs' idle moments.

A job must be stoppable while it waits (for new outbox entries, for leadership, for the broker),
but must not be interrupted in the middle of a batch: it calls ``unless_stopped`` only around
waits, never around the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The shutdown signal arrived while the job was waiting."""


async def unless_stopped(stop: asyncio.Event, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, or cancel it and raise ``Stopped`` as soon as ``stop`` is set."""
    if stop.is_set():
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise Stopped
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        work.cancel()  # our caller was cancelled: do not leave the work running on its own
        raise
    finally:
        stopper.cancel()
    if work.done():
        return work.result()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work
    raise Stopped


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``; raise ``Stopped`` if the shutdown signal arrives first."""
    await unless_stopped(stop, asyncio.sleep(seconds))
