"""The simulated controllers of one process: one broker connection, one reporter, and the
controllers ``CLS_STUB_CONTROLLERS`` selects, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
import random
from functools import partial

from aio_pika.abc import AbstractRobustConnection

from cls_runtime import amqp
from cls_runtime.settings import Settings
from reconciler_stub.catalog import ControllerSpec
from reconciler_stub.controller import Controller, Knobs
from reconciler_stub.faults import TransientFailures
from reconciler_stub.reporter import Reporter

log = logging.getLogger(__name__)


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


class StubService:
    def __init__(self, settings: Settings, specs: list[ControllerSpec]) -> None:
        self.settings = settings
        self.specs = specs
        self.connection: AbstractRobustConnection | None = None
        self.controllers: list[Controller] = []

    async def start(self, stop: asyncio.Event) -> bool:
        """Connect (retried while the broker is away) and start every controller; False when
        ``stop`` is set before the broker answers."""
        settings = self.settings
        self.connection = await amqp.until_up(
            partial(amqp.connect, settings.amqp_url), stop, "reconciler_stub"
        )
        if self.connection is None:
            return False
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
        return True

    async def stop(self) -> None:
        # Every controller stops taking events before any stops its runs.
        await asyncio.gather(*(controller.stop_consuming() for controller in self.controllers))
        await asyncio.gather(*(controller.stop() for controller in self.controllers))
        self.controllers = []
        if self.connection is not None:
            connection, self.connection = self.connection, None
            await amqp.quietly(connection.close(), "close the connection")
        log.info("reconciler_stub stopped")
