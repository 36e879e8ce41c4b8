"""50 clients update one nodepool through the real API process, each with If-Match: GET, add
its own label to what it read, PUT with the version it read, again on 409. No update is lost:
every success has its own generation, each built on the one before, and its own event."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.events.conftest import EventsConsumer
from tests.support.resources import create_cluster
from tests.support.stack import Json, Stack, create_body, create_nodepool

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]

CLIENTS = 50
PATIENCE = 60.0  # seconds a client keeps retrying before the test fails


def labels_of(view: Json) -> dict[str, str]:
    labels: dict[str, str] = view["spec"]["platform"]["gcp"].get("labels") or {}
    return labels


def put_body(labels: dict[str, str]) -> Json:
    return {
        "name": "production-workers",
        "spec": {
            "platform": {
                "type": "gcp",
                "gcp": {"machineType": "n1-standard-4", "diskSize": 100, "labels": labels},
            },
            "nodeCount": 3,
        },
    }


async def add_label(http: httpx.AsyncClient, url: str, client: int) -> tuple[Json, int]:
    """Read-modify-write until the API accepts it; returns (accepted view, 409s on the way)."""
    conflicts = 0
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        current = await http.get(url)
        assert current.status_code == 200, current.text
        view = current.json()
        labels = {**labels_of(view), f"client-{client}": "done"}
        guard = {"If-Match": f'"{view["resource_version"]}"'}
        response = await http.put(url, json=put_body(labels), headers=guard)
        if response.status_code == 200:
            accepted: Json = response.json()
            return accepted, conflicts
        assert response.status_code == 409, response.text
        conflicts += 1
    raise AssertionError(f"client {client} never got its write in within {PATIENCE}s")


def broken_chain(accepted: list[Json]) -> list[int]:
    """Generations whose labels are not exactly the previous generation's plus one."""
    ordered = sorted(accepted, key=lambda v: int(v["generation"]))
    broken = []
    previous: set[str] = set()
    for view in ordered:
        labels = set(labels_of(view))
        if not (previous < labels and len(labels - previous) == 1):
            broken.append(int(view["generation"]))
        previous = labels
    return broken


async def test_fifty_if_match_clients_lose_no_update(stack: Stack, events: EventsConsumer) -> None:
    cluster = await create_cluster(stack.http)
    pool = await create_nodepool(stack.http, create_body(cluster["id"]))
    url = f"/api/v1/nodepools/{pool['id']}"
    outcomes = await asyncio.gather(*(add_label(stack.http, url, i) for i in range(CLIENTS)))
    accepted = [view for view, _ in outcomes]
    conflicts = sum(count for _, count in outcomes)
    generations = sorted(int(v["generation"]) for v in accepted)
    final = (await stack.http.get(url)).json()
    figures = f"{CLIENTS} writes acked, {conflicts} conflicts (409), final {final['generation']}"
    assert generations == list(range(2, CLIENTS + 2)), figures  # distinct and consecutive
    assert final["generation"] == len(accepted) + 1, figures
    assert set(labels_of(final)) == {f"client-{i}" for i in range(CLIENTS)}, figures
    assert not broken_chain(accepted), f"{figures}; broken at {broken_chain(accepted)}"

    def updated() -> dict[int, set[str]]:
        ids: dict[int, set[str]] = {}
        for event in events.of(pool["id"], "nodepool.updated"):
            ids.setdefault(int(event.body["generation"]), set()).add(event.body["id"])
        return ids

    await events.wait_until(lambda: len(updated()) >= CLIENTS, 30, "an event per write")
    per_generation = updated()
    assert sorted(per_generation) == generations, figures
    assert all(len(ids) == 1 for ids in per_generation.values()), per_generation
    by_generation = {int(v["generation"]): labels_of(v) for v in accepted}
    for event in events.of(pool["id"], "nodepool.updated"):
        generation = int(event.body["generation"])
        assert labels_of(event.body["resource"]) == by_generation[generation], generation
    deliveries = len(events.of(pool["id"], "nodepool.updated"))
    print(f"\nFAULTS if-match: {figures}; events {len(per_generation)}/{deliveries}; lost 0")
