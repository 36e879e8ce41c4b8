"""One leader among API replicas for a background job: a Redis lock with an expiry.

The lock is a key holding the holder's token, set with ``NX PX ttl``. The holder extends it every
``ttl / 3`` with a compare-and-extend script, so it keeps the lock while it is alive and loses it
``ttl`` after it stops answering (crash, partition). A replica counts itself leader only until
``ttl`` after the moment it *sent* its last successful acquire/renew, so its own view expires no
later than the key does: two replicas never both believe they lead, clocks aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from cls_core.store.leader_lock import LeaderLock

log = logging.getLogger("event_jobs.leader")

# A replica that is not leader retries this often at most, so a failover takes at most
# ttl + this long after the leader's last renewal.
MAX_ACQUIRE_PERIOD = 1.0


class Leadership:
    """Keeps trying to hold one ``LeaderLock`` and tells the job whether it may act now."""

    def __init__(self, lock: LeaderLock, ttl: float, job: str) -> None:
        self.lock = lock
        self.ttl = ttl
        self.job = job
        self._valid_until = 0.0  # monotonic deadline of the current term
        self._held = False
        self._leading = asyncio.Event()
        self._redis_failing = False
        self._running = False

    @property
    def is_leader(self) -> bool:
        return self._held and time.monotonic() < self._valid_until

    async def wait_leader(self) -> None:
        """Return once this instance leads (re-checked often: a term can expire silently)."""
        while not self.is_leader:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._leading.wait()

    async def run(self) -> None:
        """Acquire or renew until ``halt`` (or cancellation); then ``release`` hands over."""
        self._running = True
        while self._running:
            await self._step()
            if self._running:
                await asyncio.sleep(self._next_delay())

    def halt(self) -> None:
        """Stop acquiring and renewing after the current step.

        Cancelling ``run`` alone is not enough on Python 3.11: a cancellation that lands as a
        Redis reply arrives can be swallowed (``asyncio.wait_for`` inside redis-py), and the
        loop would go on holding the lock.
        """
        self._running = False

    async def release(self) -> None:
        self.halt()
        was_leader = self.is_leader
        self._set_held(False, "stopping")
        if not was_leader:
            return
        with contextlib.suppress(RedisError, OSError):
            await self.lock.release()

    async def _step(self) -> None:
        sent_at = time.monotonic()
        try:
            ok = await (self.lock.renew() if self._held else self.lock.acquire())
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            ok = None
        else:
            self._redis_answered()
        if ok:
            self._valid_until = sent_at + self.ttl
            self._set_held(True, "acquired the lock")
        elif ok is not None:
            self._set_held(False, "the lock is held by another instance")
        elif self._held and time.monotonic() >= self._valid_until:
            self._set_held(False, "could not renew the lock before it expired")

    def _next_delay(self) -> float:
        if not self._held:
            return min(self.ttl / 3, MAX_ACQUIRE_PERIOD)
        # Wake up at the latest when the term ends, to step down on time if Redis is gone.
        return max(0.0, min(self.ttl / 3, self._valid_until - time.monotonic()))

    def _set_held(self, held: bool, why: str) -> None:
        if held == self._held:
            return
        self._held = held
        if held:
            self._leading.set()
            log.info(
                "%s: this instance is now the leader (%s, token %s)", self.job, why, self.lock.token
            )
        else:
            self._leading.clear()
            log.info("%s: this instance is no longer the leader (%s)", self.job, why)

    def _redis_failed(self, exc: BaseException) -> None:
        if not self._redis_failing:
            self._redis_failing = True
            log.warning("%s: leader lock: redis unreachable (%s)", self.job, exc)

    def _redis_answered(self) -> None:
        if self._redis_failing:
            self._redis_failing = False
            log.info("%s: leader lock: redis answers again", self.job)
