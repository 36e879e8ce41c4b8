"""How the stub treats broker failures: which errors are worth retrying, and calls made while
stopping, which must neither hang nor fail the shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

log = logging.getLogger(__name__)

# The broker went away, refused, or did not answer in time: trying again later may work.
BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError)
# Bound on each broker call made while stopping: with the broker away, stopping still ends.
STOP_CALL_TIMEOUT = 2.0


async def quietly(call: Awaitable[object], what: str) -> None:
    """Make a broker call while stopping: bounded in time, a failure only logged."""
    try:
        await asyncio.wait_for(call, STOP_CALL_TIMEOUT)
    except BROKER_ERRORS as exc:
        log.warning("could not %s while stopping (%r)", what, exc)
