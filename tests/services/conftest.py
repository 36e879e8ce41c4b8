"""The domain services over the real Redis, without HTTP: the rules are called directly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from cls_core.services.access import Caller
from cls_core.services.clusters import ClusterService
from cls_core.services.nodepools import NodePoolService
from cls_core.services.projects import ProjectService
from cls_core.services.status import StatusService
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, Txn
from cls_runtime.settings import Settings
from shared_models.resources import ClusterCreate, NodePoolCreate
from tests.conftest import gcp_cluster_body, seed_nodepool_body

T = TypeVar("T")

# Two users, each alone in their personal project.
OWNER = Caller("owner@example.com")
OTHER = Caller("other@example.com")


@pytest.fixture
def nodepools(store: RedisStore, settings: Settings) -> NodePoolService:
    return NodePoolService(store, settings)


@pytest.fixture
def projects(store: RedisStore, settings: Settings) -> ProjectService:
    return ProjectService(store, settings)


@pytest.fixture
def clusters(
    store: RedisStore, settings: Settings, nodepools: NodePoolService, projects: ProjectService
) -> ClusterService:
    return ClusterService(store, settings, nodepools, projects)


@pytest.fixture
def status(store: RedisStore, settings: Settings) -> StatusService:
    return StatusService(store, settings)


async def new_cluster(clusters: ClusterService, name: str = "demo", **extra: Any) -> ClusterRecord:
    created = await clusters.create(
        OWNER, ClusterCreate.model_validate(gcp_cluster_body(name, **extra)), False
    )
    assert isinstance(created, ClusterRecord)
    return created


async def new_nodepool(
    nodepools: NodePoolService, cluster_id: str, name: str = "workers"
) -> NodePoolRecord:
    body = NodePoolCreate.model_validate(seed_nodepool_body(cluster_id, name))
    created = await nodepools.create(OWNER, body, None, False)
    assert isinstance(created, NodePoolRecord)
    return created


async def outbox_types(redis: Redis, settings: Settings) -> list[str]:
    """The type of every event committed so far, in order (``nodepool.created`` ...)."""
    entries: Any = await redis.xrange(settings.names.outbox)
    return [".".join(fields["rk"].split(".")[:2]) for _, fields in entries]


def overtaking(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, other: Callable[[], Awaitable[T]]
) -> asyncio.Future[T]:
    """Make ``other`` commit just before the next transaction the store runs; its result."""
    run = store.run
    done: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    async def run_after_other(txn: Txn, dry_run: bool = False) -> None:
        if not done.done():
            monkeypatch.setattr(store, "run", run)  # ``other`` commits with the real one
            done.set_result(await other())
        await run(txn, dry_run)

    monkeypatch.setattr(store, "run", run_after_other)
    return done
