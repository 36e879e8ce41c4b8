"""What a simulated controller remembers, in memory only: a restarted controller remembers
nothing and relies on the API's reconcile events to pick its resources up again."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from reconciler_stub.plans import Step, Target


@dataclass
class Tracked:
    """One resource this controller is working on, or has finished working on."""

    generation: int
    target: Target
    births: tuple[datetime, ...] = ()  # creation time of each running node, oldest first
    ready: bool | None = None  # the Ready status of the last report
    ready_since: datetime | None = None
    last_step: Step | None = None
    settled: bool = False  # the run for this generation has reported its last step
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    # The time of the deletion event when this generation is the resource's deletion.
    deletion: datetime | None = None
    deleted: bool | None = None  # the Deleted status of the last report that had one
    deleted_since: datetime | None = None

    @property
    def active(self) -> int:
        return len(self.births)

    def note_ready(self, ready: bool, now: datetime) -> datetime:
        """Record the Ready status of a report; returns when that status last flipped."""
        if self.ready is not ready or self.ready_since is None:
            self.ready, self.ready_since = ready, now
        return self.ready_since

    def deletes(self, generation: int) -> bool:
        """Whether this is (or supersedes) the deletion at ``generation``."""
        return self.deletion is not None and generation <= self.generation

    def note_deleted(self, deleted: bool | None, now: datetime) -> datetime | None:
        """Like :meth:`note_ready`, for the Deleted condition of a deletion's last steps."""
        if deleted is None:
            return None
        if self.deleted is not deleted or self.deleted_since is None:
            self.deleted, self.deleted_since = deleted, now
        return self.deleted_since


class Tombstones:
    """Resources deleted recently: the generation and time of their deletion event.

    Delivery is at-least-once and not strictly ordered, so a redelivered or late event for a
    deleted resource must not bring it back. An event is late when both its generation and its
    time come before the deletion's: a resource created again later under the same id (clusters
    may choose their id) starts at generation 1 again, but after the deletion.
    Bounded: the oldest entries are forgotten first.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._deleted: OrderedDict[str, tuple[int, datetime]] = OrderedDict()

    def bury(self, resource_id: str, generation: int, at: datetime) -> None:
        self._deleted[resource_id] = (generation, at)
        self._deleted.move_to_end(resource_id)
        while len(self._deleted) > self.capacity:
            self._deleted.popitem(last=False)

    def covers(self, resource_id: str, generation: int, at: datetime) -> bool:
        """Whether an event (``generation``, ``at``) predates the deletion of ``resource_id``."""
        deleted = self._deleted.get(resource_id)
        return deleted is not None and generation < deleted[0] and at <= deleted[1]

    def confirmed(self, resource_id: str, generation: int) -> bool:
        """Whether a deletion at ``generation`` is one already carried out: the same deletion
        delivered again, or sent again by the API (a new event, so a later time) while it waits
        for other controllers."""
        deleted = self._deleted.get(resource_id)
        return deleted is not None and generation <= deleted[0]

    def forget(self, resource_id: str) -> None:
        self._deleted.pop(resource_id, None)
