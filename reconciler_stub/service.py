"""The simulated controllers of one process: one broker connection, one reporter, and the
controllers ``CLS_STUB_CONTROLLERS`` selects, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
import random

from aio_pika.abc import AbstractRobustConnection

from cls_runtime import amqp
from cls_runtime.settings import Settings
from reconciler_stub.broker import BROKER_ERRORS, quietly
from reconciler_stub.catalog import ControllerSpec
from reconciler_stub.controller import Controller, Knobs
from reconciler_stub.faults import TransientFailures
from reconciler_stub.reporter import Reporter

log = logging.getLogger(__name__)

MAX_CONNECT_DELAY = 5.0


def knobs_from(settings: Settings) -> Knobs:
    seed = settings.stub_seed if settings.stub_seed is not None else random.randrange(2**32)
    if settings.stub_failure_rate > 0:
        # Logged so that a soak run that went wrong can be replayed with CLS_STUB_SEED.
        log.info("random failures: rate %s, seed %d", settings.stub_failure_rate, seed)
    return Knobs(
        step_delay=settings.stub_delay_ms / 1000,
        failures=TransientFailures(rate=settings.stub_failure_rate, seed=seed),
        prefetch=settings.stub_prefetch,
    )


async def connect_until_up(url: str) -> AbstractRobustConnection:
    """The first connection, retried: the broker may still be starting (compose, make run).
    Once connected, the robust connection re-opens itself."""
    delay = 0.2
    while True:
        try:
            return await amqp.connect(url)
        except BROKER_ERRORS as exc:
            log.warning("broker not reachable (%r); retrying in %.1fs", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_CONNECT_DELAY)


class StubService:
    def __init__(self, settings: Settings, specs: list[ControllerSpec]) -> None:
        self.settings = settings
        self.specs = specs
        self.connection: AbstractRobustConnection | None = None
        self.controllers: list[Controller] = []

    async def start(self) -> None:
        settings = self.settings
        self.connection = await connect_until_up(settings.amqp_url)
        reporter = Reporter(self.connection, settings.names, settings.ingest_delivery_limit)
        await reporter.start()
        knobs = knobs_from(settings)
        cluster_regions: dict[str, str] = {}
        for spec in self.specs:
            controller = Controller(spec, settings.names, reporter, knobs, cluster_regions)
            await controller.start(self.connection)
            self.controllers.append(controller)
        log.info(
            "reconciler_stub ready: %d controller(s), %d ms per step, namespace %s",
            len(self.controllers),
            settings.stub_delay_ms,
            settings.namespace,
        )

    async def stop(self) -> None:
        # Every controller stops taking events before any stops its runs.
        await asyncio.gather(*(controller.stop_consuming() for controller in self.controllers))
        await asyncio.gather(*(controller.stop() for controller in self.controllers))
        self.controllers = []
        if self.connection is not None:
            connection, self.connection = self.connection, None
            await quietly(connection.close(), "close the connection")
        log.info("reconciler_stub stopped")
