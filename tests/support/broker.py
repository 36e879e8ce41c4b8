"""The test broker as the services' users (cls_runtime/broker_users.py, created by `make test`):
publish a report as a controller, an event as the relay, and what each user may not do.

The tests' own ``amqp`` connection is ``guest``'s, which administers: it declares and deletes a
namespace's topology and reads any queue. Whatever a service would publish is published here as
that service's user, with its ``user_id``, since the consumers now apply nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from cls_runtime import amqp as topology
from cls_runtime.broker_users import BrokerUser
from cls_runtime.settings import Settings
from shared_models.events import Event
from shared_models.names import Names
from tests.conftest import AMQP_URL

# The services' users and passwords as the tests' processes get them (the defaults, unless the
# environment overrides them for `make test` and the services alike).
ROLES = Settings()


def controller_user(name: str) -> BrokerUser:
    return ROLES.controller_broker_user(name)


def relay_user() -> BrokerUser:
    return ROLES.relay_broker_user


@asynccontextmanager
async def connected_as(
    user: BrokerUser, url: str = AMQP_URL
) -> AsyncIterator[AbstractRobustConnection]:
    connection = await topology.connect(url, user)
    try:
        yield connection
    finally:
        await connection.close()


class ReportPublisher:
    """Publishes reports to ``<ns>.status`` as their controllers do: each as the broker user of
    its ``controller_name``, with that ``user_id``, confirmed and mandatory (a report the broker
    cannot route raises instead of vanishing). One connection per controller, opened on first use.
    """

    def __init__(self, names: Names, url: str = AMQP_URL) -> None:
        self.names = names
        self.url = url
        self._exchanges: dict[str, AbstractExchange] = {}
        self._connections: list[AbstractRobustConnection] = []
        self._opening = asyncio.Lock()

    async def exchange_of(self, controller: str) -> AbstractExchange:
        if controller in self._exchanges:  # no await: concurrent publishes keep their order
            return self._exchanges[controller]
        async with self._opening:  # one connection per controller, however many ask at once
            return await self._open(controller)

    async def _open(self, controller: str) -> AbstractExchange:
        if controller not in self._exchanges:
            connection = await topology.connect(self.url, controller_user(controller))
            self._connections.append(connection)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            status = await topology.existing_exchange(channel, self.names.status_exchange)
            self._exchanges[controller] = status
        return self._exchanges[controller]

    async def report(self, body: dict[str, Any], as_user: str | None = None) -> None:
        """Publish ``body`` as its controller (or as ``as_user``, who sets ``user_id`` to
        itself: the broker allows nothing else)."""
        user = as_user or str(body["controller_name"])
        exchange = await self.exchange_of(user)
        await exchange.publish(
            topology.report_message(body, user),
            routing_key=topology.status_routing_key(body),
            mandatory=True,
        )

    async def close(self) -> None:
        connections, self._connections = self._connections, []
        self._exchanges.clear()
        for connection in connections:
            await connection.close()


async def publish_event_as_relay(
    channel: AbstractChannel, names: Names, event: Event, user: str | None = None
) -> None:
    """Publish ``event`` on ``channel`` (a connection of the relay's user) as the relay does."""
    events = await topology.existing_exchange(channel, names.events_exchange)
    await events.publish(
        topology.event_message(event, user or relay_user().name), routing_key=event.routing_key
    )
