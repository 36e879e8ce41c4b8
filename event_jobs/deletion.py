"""Deletions the event jobs finish: timeouts, and the cascade of a cluster's deletion.

Each tick, as leader (it shares the reconcile job's lock: both only re-read and re-judge what
Redis holds), the loop

- marks the deletions whose ``deletion_timeout`` passed unconfirmed (``names.deletion_due``)
  Unhealthy, naming the controllers that did not confirm. A schedule of its own rather than the
  reconcile schedule: a deletion has one deadline, fixed when it starts, while the reconcile
  schedule moves with every phase change and every reconcile event;
- takes one step of every cluster deletion under way (``names.deleting_clusters``): a bounded
  batch of its nodepools, or the cluster's purge once they are gone. The pending work is in
  Redis, so a leader killed mid-cascade loses nothing: the next leader continues from there.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from cls_core.services.clusters import ClusterService
from cls_core.services.nodepools import NodePoolService
from cls_core.services.projects import ProjectService
from cls_core.services.status import StatusService
from cls_core.store import RedisStore
from cls_runtime.settings import Settings
from event_jobs.leader import Leadership
from event_jobs.stopping import Stopped, pause, unless_stopped
from shared_models.names import Kind

log = logging.getLogger("event_jobs.deletion")

TICK = 0.5
KINDS: tuple[Kind, ...] = ("nodepool", "cluster")


class DeletionLoop:
    def __init__(self, store: RedisStore, settings: Settings, lease: Leadership) -> None:
        self.store = store
        self.settings = settings
        self.lease = lease
        self.status = StatusService(store, settings)
        nodepools = NodePoolService(store, settings)
        self.clusters = ClusterService(store, settings, nodepools, ProjectService(store, settings))
        self._redis_failing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; a tick in progress is finished first."""
        try:
            while True:
                await unless_stopped(stop, self.lease.wait_leader())
                busy = await self._safe_tick()
                await pause(stop, 0 if busy else TICK)
        except Stopped:
            return

    async def _safe_tick(self) -> bool:
        try:
            busy = await self.tick()
        except RedisError as exc:
            if not self._redis_failing:
                self._redis_failing = True
                log.warning("deletions paused: redis unreachable (%s)", exc)
            return False
        if self._redis_failing:
            self._redis_failing = False
            log.info("deletions resumed: redis answers again")
        return busy

    async def tick(self) -> bool:
        """One round of timeouts and cascade steps; True when more work is waiting."""
        if not self.lease.is_leader:
            return False
        limit = self.settings.reconcile_batch_size
        due = await self.store.deletion_due(time.time(), limit)
        for entry in due:
            kind, _, resource_id = entry.partition(":")
            if kind in KINDS:
                await self.status.mark_overdue(kind, resource_id)
        busy = len(due) >= limit
        for cluster_id, held in (await self.store.deleting_clusters()).items():
            if not self.lease.is_leader:
                break
            try:
                batch = await self.clusters.continue_deletion(cluster_id, held)
            except RedisError:
                raise
            except Exception:
                log.exception("deletion of cluster %s failed", cluster_id)
                continue
            busy = busy or batch
        return busy
