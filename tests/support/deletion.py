"""Finishing a deletion as the controllers do: their confirmations through the real status path.

A DELETE leaves the resource in phase Deleting until every required controller reports
``Deleted=True`` at the deletion generation. In-process tests that are about something else
call ``delete_nodepool``/``confirm_deletion`` so that the resource is purged (404) as before.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import httpx

from cls_core.services.clusters import ClusterService
from cls_core.services.nodepools import NodePoolService
from cls_core.services.projects import ProjectService
from cls_core.services.status import StatusService
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore
from cls_core.store.redis_store import connect_redis
from cls_runtime.settings import Settings
from event_jobs.deletion import DeletionLoop
from event_jobs.leader import Leadership
from shared_models.controllers import DEFAULT_REGISTRY, ControllerRegistry
from shared_models.status import ControllerReport
from tests.conftest import USER, controller_headers

Json = dict[str, Any]
API = "/api/v1"


def deletion_report(
    controller: str,
    generation: int,
    *,
    deleted: bool = True,
    last_error: str | None = None,
) -> Json:
    """A controller's report on a deletion at ``generation``: confirmed, or failing."""
    report: Json = {
        "controller_name": controller,
        "observed_generation": generation,
        "conditions": [
            {
                "type": "Deleted",
                "status": "True" if deleted else "False",
                "reason": "Deleted" if deleted else "DeletionFailed",
                "message": "cloud resources released" if deleted else (last_error or ""),
            }
        ],
    }
    if last_error is not None:
        report["last_error"] = last_error
    return report


async def confirm_deletion(
    api: httpx.AsyncClient,
    resource: str,
    *,
    registry: ControllerRegistry = DEFAULT_REGISTRY,
    only: list[str] | None = None,
    user: dict[str, str] = USER,
) -> list[httpx.Response]:
    """Every required controller (or ``only`` these) of ``resource`` ("nodepools/<id>" or
    "clusters/<id>", in phase Deleting) confirms its deletion with ``PUT .../status``."""
    view = await api.get(f"{API}/{resource}", headers=user)
    assert view.status_code == 200, view.text
    body = view.json()
    assert body["status"]["phase"] == "Deleting", body
    platform = body["spec"]["platform"]["type"]
    kind = "cluster" if resource.startswith("clusters/") else "nodepool"
    names = only if only is not None else registry.required_for(kind, platform)  # type: ignore[arg-type]
    answers = []
    for name in names:
        answers.append(
            await api.put(
                f"{API}/{resource}/status",
                json=deletion_report(name, body["generation"]),
                headers=controller_headers(name),
            )
        )
    return answers


async def delete_nodepool(
    api: httpx.AsyncClient, nodepool_id: str, user: dict[str, str] = USER
) -> None:
    """DELETE a nodepool (204) and confirm it as its controllers would: then it is gone."""
    response = await api.delete(f"{API}/nodepools/{nodepool_id}", headers=user)
    assert response.status_code == 204, response.text
    for answer in await confirm_deletion(api, f"nodepools/{nodepool_id}", user=user):
        assert answer.status_code == 200, answer.text


async def finish_cluster_deletions(settings: Settings) -> None:
    """Run the deletion job's cascade steps (as event_jobs' leader does) until none is left
    with work to do now: for in-process APIs that run no event jobs."""
    store = RedisStore(connect_redis(settings.redis_url), settings.names)
    try:
        clusters = ClusterService(
            store,
            settings,
            NodePoolService(store, settings),
            ProjectService(store, settings),
        )
        for _ in range(10_000):
            pending = await store.deleting_clusters()
            batches = [await clusters.continue_deletion(i, held) for i, held in pending.items()]
            if not any(batches):
                return
    finally:
        await store.aclose()


async def wait_gone(api: httpx.AsyncClient, path: str, within: float = 10.0) -> None:
    """GET ``path`` until it answers 404 (a purge the in-process event jobs make)."""
    deadline = time.monotonic() + within
    while True:
        got = await api.get(f"{API}/{path}", headers=USER)
        if got.status_code == 404:
            return
        assert time.monotonic() < deadline, f"{path} still there: {got.text}"
        await asyncio.sleep(0.05)


async def purge_cluster(
    api: httpx.AsyncClient,
    settings: Settings,
    cluster_id: str,
    user: dict[str, str] = USER,
    *,
    force: bool = False,
) -> Json:
    """DELETE a cluster (202) and see it purged: confirmed by its controllers (or forced, with
    its nodepools) and the deletion job's steps run here. The cluster as the DELETE answered."""
    query = "?force=true" if force else ""
    response = await api.delete(f"{API}/clusters/{cluster_id}{query}", headers=user)
    assert response.status_code == 202, response.text
    got = await api.get(f"{API}/clusters/{cluster_id}", headers=user)
    if not force and got.status_code == 200:
        for answer in await confirm_deletion(api, f"clusters/{cluster_id}", user=user):
            assert answer.status_code == 200, answer.text
    await finish_cluster_deletions(settings)
    deleted: Json = response.json()
    return deleted


async def confirm_in_service(status: StatusService, record: NodePoolRecord | ClusterRecord) -> None:
    """The required controllers of ``record`` (as read in phase Deleting) confirm its deletion
    through ``StatusService`` (the path both HTTP and the status queue take)."""
    kind = record.kind
    required = status.registry.required_for(kind, record.platform)
    for name in required:
        report = ControllerReport.model_validate(deletion_report(name, record.generation))
        await status.apply(kind, record.id, report)


class _Leader:
    """A lease that is always held: the loop's tick runs as the leader would."""

    is_leader = True

    async def wait_leader(self) -> None:
        return None


def deletion_loop(settings: Settings, store: RedisStore) -> DeletionLoop:
    """The event jobs' deletion loop over ``store``, as a leader (``tick`` runs one round)."""
    return DeletionLoop(store, settings, cast(Leadership, _Leader()))
