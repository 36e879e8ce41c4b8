"""The API's background event jobs, started and stopped with the app.

Every replica runs the same jobs; each does its work only while it holds that job's leader lock:
``outbox-relay`` (publish the outbox) and ``reconcile`` (re-publish what is due; with it, under
the same lock, ``deletion``: timeouts and cluster cascades). Two locks, so a
busy relay never delays reconciliation and the two may land on different replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from cls_core.store import RedisStore
from cls_core.store.leader_lock import instance_token
from cls_runtime.settings import Settings
from event_jobs.broker import BrokerLink
from event_jobs.deletion import DeletionLoop
from event_jobs.leader import Leadership
from event_jobs.reconcile import ReconcileLoop
from event_jobs.relay import OutboxRelay
from event_jobs.stopping import Stopped, pause

log = logging.getLogger("event_jobs")

RELAY_JOB = "outbox-relay"
RECONCILE_JOB = "reconcile"
DELETION_JOB = "deletion"
# A batch in flight may wait this long for its confirms (plus margin) before we give up on it.
STOP_TIMEOUT = 15.0
RESTART_DELAY = 1.0


class EventPipeline:
    def __init__(self, settings: Settings, store: RedisStore) -> None:
        names = settings.names
        ttl = settings.leader_lock_ttl
        token = instance_token()
        self.relay_lease = Leadership(
            store.leader_lock(names.lock(RELAY_JOB), ttl, token), ttl, RELAY_JOB
        )
        self.reconcile_lease = Leadership(
            store.leader_lock(names.lock(RECONCILE_JOB), ttl, token), ttl, RECONCILE_JOB
        )
        self.broker = BrokerLink(settings.amqp_url, settings.relay_broker_user, names)
        self.relay = OutboxRelay(
            store.outbox(), self.broker, self.relay_lease, settings.relay_batch_size
        )
        self.reconcile = ReconcileLoop(store, settings, self.reconcile_lease)
        # Under the reconcile lock: both re-judge what Redis holds, neither publishes directly.
        self.deletions = DeletionLoop(store, settings, self.reconcile_lease)
        self._stop = asyncio.Event()
        self._leases: list[asyncio.Task[None]] = []
        self._jobs: list[asyncio.Task[None]] = []

    def broker_connected(self) -> bool:
        """Readiness probe "rabbitmq"."""
        return self.broker.connected

    def start(self) -> None:
        """Start every job in the background; nothing here waits for Redis or the broker."""
        self._leases = [
            asyncio.create_task(self._supervise(self.relay_lease.run, "relay-lease")),
            asyncio.create_task(self._supervise(self.reconcile_lease.run, "reconcile-lease")),
        ]
        self._jobs = [
            asyncio.create_task(self._supervise(lambda: self.relay.run(self._stop), RELAY_JOB)),
            asyncio.create_task(
                self._supervise(lambda: self.reconcile.run(self._stop), RECONCILE_JOB)
            ),
            asyncio.create_task(
                self._supervise(lambda: self.deletions.run(self._stop), DELETION_JOB)
            ),
        ]

    async def stop(self) -> None:
        """Finish the batches in flight, hand the locks over, close the broker connection."""
        self._stop.set()
        if self._jobs:
            _, late = await asyncio.wait(self._jobs, timeout=STOP_TIMEOUT)
            for task in late:
                log.warning("a job did not stop within %.0fs; cancelled", STOP_TIMEOUT)
                task.cancel()
        self.relay_lease.halt()
        self.reconcile_lease.halt()
        for task in self._leases:
            task.cancel()
        if self._leases:
            await asyncio.wait(self._leases, timeout=STOP_TIMEOUT)
        await asyncio.gather(*self._jobs, return_exceptions=True)
        await self.relay_lease.release()
        await self.reconcile_lease.release()
        await self.broker.close()

    async def _supervise(self, job: Callable[[], Awaitable[None]], name: str) -> None:
        """Run ``job`` until it returns; a bug that makes it raise must not stop events for good."""
        while not self._stop.is_set():
            try:
                await job()
                return
            except Exception:
                log.exception("%s failed; restarting it in %.0fs", name, RESTART_DELAY)
                with contextlib.suppress(Stopped):
                    await pause(self._stop, RESTART_DELAY)
