"""Waiting for something to happen: the one polling helper of the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def _found(value: object) -> bool:
    return value is not None


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    accept: Callable[[T], bool] = _found,
    *,
    within: float = 30.0,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``accept`` holds for its value (by default: until it returns a
    value), or fail saying what never happened and the last value seen.

    A transport error counts as "not yet": a keep-alive connection the server closes just as the
    client reuses it fails one request (a known race of HTTP/1.1), and the next poll retries.
    """
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            value = await probe()
        except httpx.TransportError as exc:
            last = f"the request failed: {exc!r}"
        else:
            if value is not None and accept(value):
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s; last: {last!r}")
        await asyncio.sleep(0.05)
