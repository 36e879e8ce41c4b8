"""Reports applied a window at a time (``StatusService.apply_many``, the ingester's windows):
the same outcomes and the same stored state as one report after the other, and no ack before
Redis holds a report."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from cls_core.services.status import ApplyResult, Outcome, ReportFor, StatusService
from cls_core.store import RedisStore, Txn, TxnFailed
from cls_core.store.redis_store import connect_redis
from cls_runtime.settings import Settings
from shared_models.status import ControllerReport
from status_ingester.consumer import StatusIngester
from tests.conftest import USER
from tests.ingest.conftest import (
    CONTROLLER,
    Publisher,
    StartIngester,
    counters,
    create_cluster_id,
    create_nodepools,
    dead_letter_count,
    nodepool_report,
    queue_counts,
    report,
    steps_behind,
    without_times,
)
from tests.ingest.test_apply_over_amqp import bump_generation
from tests.support.polling import eventually
from tests.support.registry import OPTIONAL, optional_headers, with_extra_controllers

# A second controller of the GCP nodepools, optional in the test's registry.
OTHER = OPTIONAL
pytestmark = with_extra_controllers


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[StatusService]:
    client = connect_redis(settings.redis_url)
    yield StatusService(RedisStore(client, settings.names), settings)
    await client.aclose()


def parsed(body: dict[str, Any]) -> ControllerReport:
    return ControllerReport.model_validate(body)


async def status_of(api: httpx.AsyncClient, nodepool_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/v1/nodepools/{nodepool_id}/status", headers=USER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = without_times(response.json())
    body.pop("nodepool_id")
    return body


def outcome(result: ApplyResult | Exception) -> Outcome:
    assert isinstance(result, ApplyResult), result
    return result.outcome


async def test_a_window_gives_what_one_report_after_the_other_gives(
    api: httpx.AsyncClient, service: StatusService
) -> None:
    cluster_id = await create_cluster_id(api)
    one_by_one, windowed, other = await create_nodepools(api, cluster_id, 3)
    for nodepool_id in (one_by_one, windowed):
        nodepool = await api.get(f"/api/v1/nodepools/{nodepool_id}", headers=USER)
        await bump_generation(api, nodepool.json())
    # Two steps of one controller, another controller, a duplicate, a stale report, a report for
    # a generation the nodepool has not reached, then the first controller becomes ready.
    bodies = [
        report(2, step=1),
        report(2, step=2),
        report(2, controller=OTHER, ready=True, step=1),
        report(2, controller=OTHER, ready=True, step=1),
        report(1, step=9),
        report(3, step=3),
        report(2, ready=True, step=3),
    ]
    expected = [
        Outcome.APPLIED,
        Outcome.APPLIED,
        Outcome.APPLIED,
        Outcome.UNCHANGED,
        Outcome.STALE,
        Outcome.FUTURE_GENERATION,
        Outcome.APPLIED,
    ]
    sequential = [await service.apply("nodepool", one_by_one, parsed(b)) for b in bodies]
    # The window interleaves a report on another nodepool, which changes nothing for these.
    items = [ReportFor("nodepool", windowed, parsed(b)) for b in bodies]
    items.insert(3, ReportFor("nodepool", other, parsed(report(1, ready=True, step=7))))
    window = await service.apply_many(items)
    del window[3]

    assert [r.outcome for r in sequential] == expected
    assert [outcome(r) for r in window] == expected
    assert await status_of(api, windowed) == await status_of(api, one_by_one)
    stored = await status_of(api, windowed)
    assert stored["status"]["phase"] == "Ready"
    steps = {c["controller_name"]: c["metadata"]["step"] for c in stored["controller_status"]}
    assert steps == {CONTROLLER: 3, OTHER: 1}
    assert (await status_of(api, other))["status"]["phase"] == "Ready"


async def test_a_window_that_lost_a_race_is_judged_again(
    api: httpx.AsyncClient, service: StatusService, settings: Settings
) -> None:
    (nodepool_id,) = await create_nodepools(api, await create_cluster_id(api), 1)
    store = service.store
    write = store.run_each_settled
    raced = False

    async def racing_write(txns: list[Txn]) -> list[TxnFailed | Exception | None]:
        nonlocal raced
        if not raced:  # another writer (here: over HTTP) gets there between read and write
            raced = True
            response = await api.put(
                f"/api/v1/nodepools/{nodepool_id}/status",
                json=report(1, controller=OTHER, ready=True),
                headers=optional_headers(),
            )
            assert response.status_code == 200, response.text
        return await write(txns)

    store.run_each_settled = racing_write  # type: ignore[method-assign]
    results = await service.apply_many(
        [
            ReportFor("nodepool", nodepool_id, parsed(report(1, step=1))),
            ReportFor("nodepool", nodepool_id, parsed(report(1, ready=True, step=2))),
        ]
    )
    assert raced
    assert [outcome(r) for r in results] == [Outcome.APPLIED, Outcome.APPLIED]
    stored = await status_of(api, nodepool_id)
    steps = {c["controller_name"]: c["metadata"]["step"] for c in stored["controller_status"]}
    assert steps == {CONTROLLER: 2, OTHER: 0}
    assert stored["status"]["phase"] == "Ready"
    # The aggregate counts the report that won the race too (judged again, not overwritten).
    assert stored["status"]["message"].startswith("2 of 2 controllers ready"), stored["status"]


async def test_redis_failing_in_the_middle_of_a_window_acks_nothing_not_stored(
    api: httpx.AsyncClient,
    publisher: Publisher,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    pools = await create_nodepools(api, await create_cluster_id(api), 12)
    bodies = [
        nodepool_report(pool, step=step, ready=step == 4) for step in range(1, 5) for pool in pools
    ]
    await publisher.reports(bodies)  # queued before the ingester starts: full windows
    ingester = StatusIngester(settings, redis_probe_interval=0.05)

    # Half of the first window's writes land, then the connection "breaks".
    store = ingester.status.store
    write = store.run_each_settled
    broken = 0

    async def breaking_write(txns: list[Txn]) -> list[TxnFailed | Exception | None]:
        nonlocal broken
        if broken == 0 and len(txns) >= 2:
            broken = len(txns)
            await write(txns[: len(txns) // 2])
            raise RedisConnectionError("connection lost mid-window")
        return await write(txns)

    store.run_each_settled = breaking_write  # type: ignore[method-assign]

    # Every ack (one, or ``multiple`` up to its tag) must cover only reports Redis holds.
    seen: list[AbstractIncomingMessage] = []
    checked: set[int] = set()
    on_message = ingester._on_message
    settle_one = ingester.ledger.settle_one

    async def recording(message: AbstractIncomingMessage) -> None:
        seen.append(message)
        await on_message(message)

    async def checking(
        message: AbstractIncomingMessage, settle: Any, multiple: bool = False
    ) -> bool:
        if settle.value == "ack":
            tag = message.delivery_tag or 0
            covered = [
                m
                for m in seen
                if m.channel is message.channel
                and (m.delivery_tag == tag or (multiple and (m.delivery_tag or 0) < tag))
                and id(m) not in checked
            ]
            for acked in covered:
                body = orjson.loads(acked.body)
                behind = await steps_behind(
                    redis,
                    settings.names,
                    {f"{body['nodepool_id']}/{CONTROLLER}": body["metadata"]["step"]},
                )
                # A later step of the same nodepool may be stored already: not behind.
                assert all(
                    found is not None and found >= body["metadata"]["step"]
                    for found in behind.values()
                ), f"acked before stored: {body['nodepool_id']} step {body['metadata']['step']}"
                checked.add(id(acked))
        return await settle_one(message, settle, multiple)

    ingester._on_message = recording  # type: ignore[method-assign]
    ingester.ledger.settle_one = checking  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    try:
        final = {f"{pool}/{CONTROLLER}": 4 for pool in pools}
        await eventually(
            lambda: steps_behind(redis, settings.names, final),
            lambda behind: not behind,
            what="every last step stored",
        )
        await eventually(
            lambda: counters(redis, settings.names),
            lambda c: sum(c.values()) == len(bodies),
            what="every report counted",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert broken >= 2
    assert len(checked) == len(bodies)
    tally = await counters(redis, settings.names)
    assert tally.get("requeued", 0) == 0 and tally.get("dead_lettered", 0) == 0, tally
    assert await dead_letter_count(amqp, settings.names) == 0
    assert (await status_of(api, pools[0]))["status"]["phase"] == "Ready"


async def test_dead_letters_in_the_middle_of_windows_and_the_acks_around_them(
    api: httpx.AsyncClient,
    publisher: Publisher,
    start_ingester: StartIngester,
    redis: Redis,
    settings: Settings,
    amqp: AbstractRobustConnection,
) -> None:
    """Garbage and reports for a generation not reached yet, between good reports of the same
    windows: each dead-lettered once, every good report applied and acked once (a ``multiple``
    ack over a dead-lettered delivery, or a settle twice, would show in the counts)."""
    pools = await create_nodepools(api, await create_cluster_id(api), 8)
    good = 0
    for step in range(1, 6):
        for index, pool in enumerate(pools):
            if (index + step) % 4 == 0:
                await publisher.raw(b"not json at all")
            elif (index + step) % 4 == 1:
                await publisher.report(nodepool_report(pool, 9, step=step))
            good += 1
            await publisher.report(nodepool_report(pool, step=step, ready=step == 5))
    poisons = 2 * 5 * len(pools) // 4
    await start_ingester()  # everything queued first: windows mix good and bad
    await eventually(
        lambda: counters(redis, settings.names),
        lambda c: sum(c.values()) >= good + poisons,
        what="every report counted",
    )
    await asyncio.sleep(0.5)  # counters flush every 0.2 s: nothing more may come
    tally = await counters(redis, settings.names)
    assert tally == {"applied": good, "dead_lettered": poisons}, tally
    assert await dead_letter_count(amqp, settings.names) == poisons
    final = {f"{pool}/{CONTROLLER}": 5 for pool in pools}
    assert not await steps_behind(redis, settings.names, final)
    assert (await queue_counts(amqp, settings.names))[0] == 0
