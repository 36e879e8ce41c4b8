"""Reports get through a missing queue and a broker outage; the process starts and stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from cls_runtime import amqp as topology
from cls_runtime.settings import Settings
from reconciler_stub.controller import _settle
from reconciler_stub.plans import Step, Target
from reconciler_stub.reporter import Reporter
from reconciler_stub.reports import Observation, Report, build_report
from shared_models.names import Names
from shared_models.status import NodePoolStatusReport
from tests.conftest import AMQP_URL
from tests.support.broker import controller_user
from tests.support.services import ServiceProcess
from tests.support.tcp_proxy import TcpProxy, through

from .conftest import (
    SEED_SPEC,
    Publish,
    Reports,
    StartStub,
    new_id,
    nodepool_event,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(60)]

CONTROLLER = "gcp-nodepool-controller"


def a_report(nodepool_id: str) -> Report:
    now = datetime.now(UTC)
    target = Target("nodepool", "gcp", "us-central1", 0)
    seen = Observation("gcp-nodepool-controller", nodepool_id, 1, (), now, now)
    return build_report(Step(0, True, "NodesReady", "All 0 nodes are ready"), target, seen)


async def started_reporter(amqp: AbstractRobustConnection, names: Names) -> Reporter:
    """A reporter as gcp-nodepool-controller's broker user, the status queue declared (as the
    ingester would, with guest's rights): a controller may declare neither."""
    channel = await amqp.channel()
    await topology.declare_status_queue(channel, names, delivery_limit=5)
    await channel.close()
    connection = await topology.connect(AMQP_URL, controller_user(CONTROLLER))
    reporter = Reporter(connection, names, CONTROLLER)
    await reporter.start()
    return reporter


async def test_report_returned_as_unroutable_is_published_again(
    amqp: AbstractRobustConnection, namespace: str
) -> None:
    names = Names(namespace)
    reporter = await started_reporter(amqp, names)
    channel = await amqp.channel()
    await channel.queue_delete(names.status_queue)  # the report now has nowhere to go
    nodepool_id = new_id()
    sending = asyncio.create_task(reporter.publish(a_report(nodepool_id)))
    await asyncio.sleep(0.5)  # returned at least once meanwhile
    assert not sending.done()
    # The ingester declares its queue again (on its next start): the report gets through.
    await topology.declare_status_queue(channel, names, delivery_limit=5)
    await asyncio.wait_for(sending, 10)
    queue = await channel.get_queue(names.status_queue)
    message = await queue.get(timeout=5)
    assert nodepool_id.encode() in message.body
    assert message.user_id == CONTROLLER
    await message.ack()
    await reporter.connection.close()


async def test_runs_finish_across_a_broker_outage(
    broker_proxy: TcpProxy, start_stub: StartStub, publish: Publish, reports: Reports
) -> None:
    service = await start_stub(amqp_url=through(AMQP_URL, broker_proxy), stub_delay_ms=200)
    try:
        nodepool_id = new_id()
        await publish(nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC))
        await reports.wait_first(nodepool_id, 1)
        await broker_proxy.cut()
        await asyncio.sleep(1.0)  # the outage itself: steps fall due while the broker is away
        await broker_proxy.restore()
        ready = await reports.wait_ready(nodepool_id, 1, within=30)
        assert ready["metadata"]["active_nodes"] == 3
        # And the controller consumes again after reconnecting.
        later = new_id()
        await publish(nodepool_event("nodepool.created", later, 1, SEED_SPEC))
        await reports.wait_ready(later, 1, within=30)
    finally:
        await service.stop()  # while it can still reach the broker


def stub_process(settings: Settings, tmp_path: Path, **env: str) -> ServiceProcess:
    base = {
        "CLS_NAMESPACE": settings.namespace,
        "CLS_AMQP_URL": settings.amqp_url,
        "CLS_STUB_DELAY_MS": "20",
        "CLS_STUB_API_URL": "",  # no API here: events are taken at their word
    }
    return ServiceProcess("reconciler_stub", {**base, **env}, tmp_path)


async def wait_started(process: ServiceProcess, within: float = 20.0) -> None:
    """Until the stub says it is ready: its queues are declared and bound, so no event is lost."""
    deadline = time.monotonic() + within
    while "reconciler_stub ready" not in process.log_tail(200):
        assert process.alive, process.log_tail()
        assert time.monotonic() < deadline, f"not ready in {within}s:\n{process.log_tail()}"
        await asyncio.sleep(0.05)


async def test_process_handles_events_and_exits_zero_on_sigterm(
    settings: Settings, tmp_path: Path, publish: Publish, reports: Reports
) -> None:
    process = stub_process(settings, tmp_path).start()
    try:
        await wait_started(process)
        nodepool_id = new_id()
        await publish(nodepool_event("nodepool.created", nodepool_id, 1, SEED_SPEC))
        await reports.wait_ready(nodepool_id, 1, within=20)
        for report in reports.of(nodepool_id):  # what the ingester will validate
            NodePoolStatusReport.model_validate(report)
        process.signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 20)
        assert code == 0, process.log_tail()
        assert "reconciler_stub stopped" in process.log_tail()
    finally:
        process.kill()


async def test_process_refuses_an_unknown_controller_name(
    settings: Settings, tmp_path: Path
) -> None:
    process = stub_process(settings, tmp_path, CLS_STUB_CONTROLLERS="gpc-nodepool-controller")
    process.start()
    code = await asyncio.to_thread(process.wait, 20)
    assert code == 2
    assert "gpc-nodepool-controller" in process.log_tail()


async def test_stopping_ends_while_the_broker_is_away(
    broker_proxy: TcpProxy, start_stub: StartStub
) -> None:
    service = await start_stub(amqp_url=through(AMQP_URL, broker_proxy))
    await broker_proxy.cut()
    await asyncio.wait_for(service.stop(), 30)


async def test_a_publish_failing_with_a_bare_exception_is_published_again(
    amqp: AbstractRobustConnection, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiormq fails a write in flight with a bare Exception() when the connection closes under it.
    names = Names(namespace)
    reporter = await started_reporter(amqp, names)
    real_publish = reporter._publish_once
    failures = [Exception()]

    async def once_broken(*args: Any) -> None:
        if failures:
            raise failures.pop()
        await real_publish(*args)

    monkeypatch.setattr(reporter, "_publish_once", once_broken)
    nodepool_id = new_id()
    await asyncio.wait_for(reporter.publish(a_report(nodepool_id)), 10)
    channel = await amqp.channel()
    queue = await channel.get_queue(names.status_queue)
    message = await queue.get(timeout=5)
    assert nodepool_id.encode() in message.body
    await message.ack()
    await reporter.connection.close()


async def test_an_ack_failing_with_a_bare_exception_leaves_the_message_to_redelivery() -> None:
    async def broken_ack() -> None:
        raise Exception()

    await _settle(broken_ack())  # the worker that acks must live on to take the next event
