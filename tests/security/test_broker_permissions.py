"""What each service's broker user may do (cls_runtime/broker_users.py), asked of the real
broker: the permissions `make test` and `make run` create. A refused operation closes the channel
with 403 ACCESS_REFUSED."""

from __future__ import annotations

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import ChannelAccessRefused

from cls_runtime import amqp as topology
from cls_runtime.settings import Settings
from tests.support.broker import connected_as, controller_user, relay_user

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(30)]

GCP = "gcp-nodepool-controller"
AWS = "aws-nodepool-controller"


@pytest.fixture
async def topology_declared(amqp: AbstractRobustConnection, settings: Settings) -> None:
    """The exchanges and queues as the relay, the ingester and the AWS controller declare them."""
    channel = await amqp.channel()
    names = settings.names
    await topology.declare_events_exchange(channel, names)
    await topology.declare_status_queue(channel, names, settings.ingest_delivery_limit)
    await channel.declare_queue(
        names.controller_queue(AWS), durable=True, arguments={"x-queue-type": "quorum"}
    )
    await channel.close()


def a_message() -> aio_pika.Message:
    return aio_pika.Message(b"{}", content_type="application/json")


@pytest.mark.usefixtures("topology_declared")
async def test_a_controller_cannot_publish_to_the_events_exchange(settings: Settings) -> None:
    async with connected_as(controller_user(GCP)) as connection:
        channel = await connection.channel(publisher_confirms=True)
        events = await topology.existing_exchange(channel, settings.names.events_exchange)
        with pytest.raises(ChannelAccessRefused):
            await events.publish(a_message(), routing_key="nodepool.updated.gcp")


@pytest.mark.usefixtures("topology_declared")
async def test_a_controller_cannot_read_another_controllers_queue(settings: Settings) -> None:
    async with connected_as(controller_user(GCP)) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.names.controller_queue(AWS), passive=True)
        with pytest.raises(ChannelAccessRefused):
            await queue.get(fail=False)


@pytest.mark.usefixtures("topology_declared")
async def test_a_controller_cannot_read_the_status_queue(settings: Settings) -> None:
    async with connected_as(controller_user(GCP)) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.names.status_queue, passive=True)
        with pytest.raises(ChannelAccessRefused):
            await queue.get(fail=False)


@pytest.mark.usefixtures("topology_declared")
async def test_a_controller_cannot_declare_the_events_exchange(settings: Settings) -> None:
    # Configure rights on it would let a controller delete it, or re-declare it otherwise.
    async with connected_as(controller_user(GCP)) as connection:
        channel = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await topology.declare_events_exchange(channel, settings.names)


@pytest.mark.usefixtures("topology_declared")
async def test_the_relay_cannot_publish_reports(settings: Settings) -> None:
    async with connected_as(relay_user()) as connection:
        channel = await connection.channel(publisher_confirms=True)
        status = await topology.existing_exchange(channel, settings.names.status_exchange)
        with pytest.raises(ChannelAccessRefused):
            await status.publish(a_message(), routing_key="nodepool.status")


@pytest.mark.usefixtures("topology_declared")
async def test_a_controller_declares_binds_and_reads_its_own_queue(settings: Settings) -> None:
    # The counterpart of the refusals above: what a controller does at start-up is allowed.
    names = settings.names
    async with connected_as(controller_user(GCP)) as connection:
        channel = await connection.channel()
        events = await topology.existing_exchange(channel, names.events_exchange)
        queue = await channel.declare_queue(
            names.controller_queue(GCP), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(events, routing_key="nodepool.*.gcp")
        assert await queue.get(fail=False) is None
