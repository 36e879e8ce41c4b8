"""Store many nodepools fast, through the API's own service layer (same records, same indexes).

Creates run in-process, many at a time, each one the same guarded transaction a POST runs; only
HTTP is skipped. The outbox entries they append are the relay's business, not the listing's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from api_service.app import build_state
from api_service.deps import AppState
from bench import bodies
from cls_core.services.access import Caller
from cls_core.services.idempotency import Replay
from cls_runtime.settings import Settings
from shared_models.resources import ClusterCreate, NodePoolCreate


@dataclass(frozen=True)
class Seeded:
    """A cluster the seeding made: who created it, and the project it belongs to."""

    owner: str
    cluster_id: str
    project_id: str

    @property
    def caller(self) -> Caller:
        return Caller(self.owner)


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[AppState]:
    state = build_state(settings)
    try:
        yield state
    finally:
        await state.store.aclose()


async def new_cluster(state: AppState, owner: str, name: str) -> Seeded:
    """A cluster of ``owner``'s personal project."""
    body = ClusterCreate.model_validate_json(json.dumps(bodies.cluster_body(name)))
    record = await state.clusters.create(Caller(owner), body, dry_run=False)
    assert not isinstance(record, Replay)  # no Idempotency-Key, no replay
    return Seeded(owner, record.id, record.project_id)


async def add_nodepools(
    state: AppState, where: Seeded, first: int, count: int, concurrency: int = 64
) -> None:
    """Create nodepools ``seed-<first>`` .. ``seed-<first + count - 1>`` in one cluster."""
    template = NodePoolCreate.model_validate_json(
        json.dumps(bodies.nodepool_body(where.cluster_id, "seed-0"))
    )
    next_index = iter(range(first, first + count))

    async def worker() -> None:
        for index in next_index:
            body = template.model_copy(update={"name": f"seed-{index}"})
            await state.nodepools.create(where.caller, body, None, dry_run=False)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _seed_chunk(settings_env: dict[str, str], where: Seeded, first: int, count: int) -> None:
    async def go() -> None:
        async with services(Settings(**settings_env)) as state:  # type: ignore[arg-type]
            await add_nodepools(state, where, first, count)

    asyncio.run(go())


def add_nodepools_parallel(
    settings: Settings, where: Seeded, first: int, count: int, processes: int = 2
) -> None:
    """``add_nodepools`` split over processes: seeding is CPU-bound in Python, not in Redis."""
    chunk = -(-count // processes)
    env = {"namespace": settings.namespace, "redis_url": settings.redis_url}
    with ProcessPoolExecutor(processes) as pool:
        futures = [
            pool.submit(_seed_chunk, env, where, start, min(chunk, first + count - start))
            for start in range(first, first + count, chunk)
        ]
        for future in futures:
            future.result()
