"""The simulated controllers of one process: the controllers ``CLS_STUB_CONTROLLERS`` selects,
started and stopped together.

Each controller connects as the broker user of its own name, as a real one does: the broker then
vouches (``user_id``) that its reports are its own, and lets it read its own queue only. A
controller may not declare the exchanges it uses (``<ns>.events`` is the relay's, ``<ns>.status``
the ingester's), so the service waits for their owners to declare them: the services still start
in any order.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from aio_pika.abc import AbstractRobustConnection

from cls_runtime import amqp
from cls_runtime.process import StartupError
from cls_runtime.settings import Settings
from reconciler_stub.api_reader import ApiReader
from reconciler_stub.catalog import ControllerSpec
from reconciler_stub.controller import Controller, Knobs, Trust
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


def api_reader(settings: Settings, name: str) -> ApiReader | None:
    """How controller ``name`` reads the API (None: no API configured, events are trusted)."""
    if not settings.stub_api_url:
        return None
    token = settings.controller_token(name)
    if token is None:
        raise StartupError(
            f"{name}: no CLS_CONTROLLER_TOKENS entry, needed to read the API at "
            f"{settings.stub_api_url} (or set CLS_STUB_API_URL empty to trust events as they come)"
        )
    return ApiReader(settings.stub_api_url, token)


@dataclass
class _Running:
    controller: Controller
    connection: AbstractRobustConnection
    api: ApiReader | None


class StubService:
    def __init__(self, settings: Settings, specs: list[ControllerSpec]) -> None:
        self.settings = settings
        self.specs = specs
        self._running: list[_Running] = []

    @property
    def controllers(self) -> list[Controller]:
        return [running.controller for running in self._running]

    async def start(self, stop: asyncio.Event) -> bool:
        """Connect (retried while the broker is away), wait for the exchanges, and start every
        controller; False when ``stop`` is set first."""
        knobs = knobs_from(self.settings)
        cluster_regions: dict[str, str] = {}
        # Before connecting: a controller without a token is a configuration error.
        apis = {spec.name: api_reader(self.settings, spec.name) for spec in self.specs}
        for spec in self.specs:
            running = await self._start_one(spec, knobs, cluster_regions, apis[spec.name], stop)
            if running is None:
                return False
            self._running.append(running)
        log.info(
            "reconciler_stub ready: %d controller(s), %d ms per step, namespace %s",
            len(self._running),
            self.settings.stub_delay_ms,
            self.settings.namespace,
        )
        return True

    async def _start_one(
        self,
        spec: ControllerSpec,
        knobs: Knobs,
        cluster_regions: dict[str, str],
        api: ApiReader | None,
        stop: asyncio.Event,
    ) -> _Running | None:
        settings, names = self.settings, self.settings.names
        user = settings.controller_broker_user(spec.name)

        async def connect() -> AbstractRobustConnection:
            return await amqp.connect(settings.amqp_url, user)

        connection = await amqp.until_up(connect, stop, spec.name)
        if connection is None:
            return None
        exchanges = [names.events_exchange, names.status_exchange]
        if not await amqp.wait_for_exchanges(connection, exchanges, stop, spec.name):
            await amqp.quietly(connection.close(), "close the connection")
            return None
        reporter = Reporter(connection, names, user.name)
        await reporter.start()
        trust = Trust(settings.amqp_relay_user, api)
        controller = Controller(spec, names, reporter, knobs, cluster_regions, trust)
        await controller.start(connection)
        return _Running(controller, connection, api)

    async def stop(self) -> None:
        # Every controller stops taking events before any stops its runs.
        await asyncio.gather(*(controller.stop_consuming() for controller in self.controllers))
        await asyncio.gather(*(controller.stop() for controller in self.controllers))
        running, self._running = self._running, []
        for each in running:
            await amqp.quietly(each.connection.close(), "close the connection")
            if each.api is not None:
                await each.api.close()
        log.info("reconciler_stub stopped")
