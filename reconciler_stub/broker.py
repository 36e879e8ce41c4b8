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
# What a call made while the connection breaks may raise besides those: aiormq fails the writes
# in flight (an ack, a publish) with a bare ``Exception()`` when the connection closes under them
# (seen in tests/faults/test_sigterm_drain.py: the worker that took events, and two runs that were
# reporting, died of it, and their nodepools never became Ready). Where a failed call is simply
# retried or left to redelivery, any Exception is such a failure.
IN_FLIGHT_ERRORS = (Exception,)
# Bound on each broker call made while stopping: with the broker away, stopping still ends.
STOP_CALL_TIMEOUT = 2.0


async def quietly(call: Awaitable[object], what: str) -> None:
    """Make a broker call while stopping: bounded in time, a failure only logged."""
    try:
        await asyncio.wait_for(call, STOP_CALL_TIMEOUT)
    except BROKER_ERRORS as exc:
        log.warning("could not %s while stopping (%r)", what, exc)
