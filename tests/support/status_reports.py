"""Watching the status exchange: every report any controller publishes, as a test sees it.

A private, exclusive queue bound to ``<ns>.status`` with ``#`` receives a copy of every report,
beside the ingester's own queue, so a test can check what controllers said and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from cls_runtime import amqp as topology
from shared_models.names import Names

Report = dict[str, Any]


class Reports:
    """Every status report published to ``<ns>.status``, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[Report] = []
        self._arrived = asyncio.Event()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.seen.append(orjson.loads(message.body))
        self._arrived.set()

    def of(self, resource_id: str) -> list[Report]:
        return [r for r in self.seen if resource_id in (r.get("nodepool_id"), r.get("cluster_id"))]

    async def wait_for(self, predicate: Callable[[Report], bool], within: float = 10.0) -> Report:
        """The first report (already seen or still to come) that matches ``predicate``."""
        deadline = time.monotonic() + within
        while True:
            match = next((r for r in self.seen if predicate(r)), None)
            if match is not None:
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching report within {within}s; seen: {self.seen}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def wait_ready(self, resource_id: str, generation: int, within: float = 10.0) -> Report:
        return await self.wait_for(
            lambda r: is_report_of(r, resource_id, generation) and ready_status(r) == "True",
            within,
        )

    async def wait_first(self, resource_id: str, generation: int, within: float = 10.0) -> Report:
        return await self.wait_for(lambda r: is_report_of(r, resource_id, generation), within)


def is_report_of(report: Report, resource_id: str, generation: int) -> bool:
    owner = report.get("nodepool_id") or report.get("cluster_id")
    return owner == resource_id and report["observed_generation"] == generation


def ready_status(report: Report) -> str:
    return str(next(c["status"] for c in report["conditions"] if c["type"] == "Ready"))


def reason(report: Report) -> str:
    return str(next(c["reason"] for c in report["conditions"] if c["type"] == "Ready"))


@contextlib.asynccontextmanager
async def watch_reports(
    connection: AbstractRobustConnection, names: Names
) -> AsyncIterator[Reports]:
    channel = await connection.channel()
    status = await topology.declare_status_exchange(channel, names)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(status, routing_key="#")
    collected = Reports()
    await queue.consume(collected.on_message, no_ack=True)
    try:
        yield collected
    finally:
        await channel.close()
