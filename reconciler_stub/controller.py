"""One simulated controller: its queue, how it takes events, and the runs it reports on.

It behaves like a careful real controller: events older than what it has handled (by
generation) are ignored, duplicates are harmless, an event is acknowledged only once the first
report it causes is confirmed by the broker, a newer generation interrupts the run of an older
one, and a deletion stops the run, deletes what it built (its own steps, one delay apart),
confirms at the deletion's generation, and only then forgets the resource.

And it trusts no more than it must (``Trust``): an event counts only if the broker says the
events relay's user published it (``user_id``), and a generation it has not seen yet only once the
API has it: an event ahead of the API is forged, and the controller acts on the API's generation
instead, so a forged generation cannot freeze a resource. A deletion counts once the API shows
the resource ``Deleting`` (or no longer has it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pydantic import ValidationError

from cls_runtime import amqp
from reconciler_stub import plans
from reconciler_stub.api_reader import ResourceReader
from reconciler_stub.catalog import ControllerSpec
from reconciler_stub.faults import TransientFailures, label_problem
from reconciler_stub.plans import Step, Target
from reconciler_stub.reporter import Reporter
from reconciler_stub.reports import Observation, build_report
from reconciler_stub.simulation import resize_nodes
from reconciler_stub.state import Tombstones, Tracked
from shared_models.events import Event
from shared_models.names import Names

log = logging.getLogger(__name__)

# How long stop() lets the event being handled finish (its report may wait for the broker).
STOP_GRACE = 10.0
# Guards against a poison event looping forever; the controller queues have no dead letters.
CONTROLLER_QUEUE_DELIVERY_LIMIT = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Trust:
    """Whom a controller believes: events published by ``relay_user`` alone, and a generation
    it has not seen once ``api`` confirms it (None: as events say; tests without an API)."""

    relay_user: str
    api: ResourceReader | None = None


@dataclass(frozen=True)
class Knobs:
    """How the simulation runs (``CLS_STUB_*``)."""

    step_delay: float
    failures: TransientFailures
    prefetch: int = 64


class Controller:
    def __init__(
        self,
        spec: ControllerSpec,
        names: Names,
        reporter: Reporter,
        knobs: Knobs,
        cluster_regions: dict[str, str],
        trust: Trust,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.spec = spec
        self.trust = trust
        self.name = spec.name
        self.names = names
        self.reporter = reporter
        self.knobs = knobs
        # Shared by the controllers of one process: cluster controllers write the location of
        # each cluster they see, nodepool controllers read it (Azure zones do not name a region).
        self.cluster_regions = cluster_regions
        self.clock = clock
        self.resources: dict[str, Tracked] = {}
        self.tombstones = Tombstones()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self, connection: AbstractRobustConnection) -> None:
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=self.knobs.prefetch)
        # Passive: the exchange is the relay's, and a controller may not configure it.
        events = await amqp.existing_exchange(self._channel, self.names.events_exchange)
        self._queue = await self._channel.declare_queue(
            self.names.controller_queue(self.name),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": CONTROLLER_QUEUE_DELIVERY_LIMIT,
            },
        )
        await self._queue.bind(events, routing_key=self.spec.binding_key)
        self._worker = asyncio.create_task(self._work(), name=f"{self.name}-worker")
        self._consumer_tag = await self._queue.consume(self._inbox.put)
        log.info("%s consuming %s (%s)", self.name, self._queue.name, self.spec.binding_key)

    async def stop_consuming(self) -> None:
        """Take no new events; the ones already delivered but not handled are redelivered."""
        if self._queue is not None and self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            await amqp.quietly(self._queue.cancel(tag), "cancel the consumer")

    async def stop(self) -> None:
        """Finish the event being handled, stop every run, close the channel.

        Events delivered but not yet handled stay unacknowledged: the broker gives them to the
        next consumer when the channel closes.
        """
        await self.stop_consuming()
        self._stopping = True
        if self._worker is not None:
            worker, self._worker = self._worker, None
            self._inbox.put_nowait(None)  # wakes the worker if it is idle
            try:
                await asyncio.wait_for(worker, STOP_GRACE)
            except TimeoutError:
                log.warning("%s: the event in hand did not finish in %ss", self.name, STOP_GRACE)
        runs = [t.task for t in self.resources.values() if t.task is not None]
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        if self._channel is not None:
            await amqp.quietly(self._channel.close(), "close the channel")

    # ---- events ---------------------------------------------------------------------------

    async def _work(self) -> None:
        """Handle events one at a time, in delivery order, until stop()."""
        while True:
            message = await self._inbox.get()
            if message is None or self._stopping:
                return
            await self._take(message)

    async def _take(self, message: AbstractIncomingMessage) -> None:
        if message.user_id != self.trust.relay_user:
            # The broker checked user_id against the publisher's user: not the relay's, or none.
            log.warning(
                "%s: dropping event %s published by %r, not by the events relay",
                self.name,
                message.message_id,
                message.user_id,
            )
            await _settle(message.reject(requeue=False))
            return
        try:
            event = Event.model_validate_json(message.body)
            await self.handle(event)
        except ValidationError as exc:
            # Not an event we can act on, and never will be: retrying would not help.
            log.error("%s: dropping unusable event %s: %s", self.name, message.message_id, exc)
            await _settle(message.reject(requeue=False))
            return
        except Exception:
            # A bug: let the broker try again (the queue's delivery limit stops a loop).
            log.exception("%s: failed to handle event %s", self.name, message.message_id)
            await _settle(message.nack(requeue=True))
            return
        await _settle(message.ack())

    async def handle(self, event: Event) -> None:
        """Act on one event; returns once its first report (if any) is confirmed."""
        resource_id = self._resource_id(event)
        if resource_id is None:
            log.warning("%s: ignoring %s, not for this controller", self.name, event.routing_key)
            return
        if self._is_deletion(event):
            generation = await self._deletion_as_the_api_says(resource_id, event)
            if generation is not None:
                await self._delete(resource_id, event, generation)
            return
        if self.tombstones.covers(resource_id, event.generation, event.timestamp):
            log.info("%s: ignoring %s for deleted %s", self.name, event.type, resource_id)
            return
        tracked = self.resources.get(resource_id)
        if event.generation > (tracked.generation if tracked is not None else 1):
            checked = await self._as_the_api_says(resource_id, event)
            if checked is None:
                return
            if checked is not event and plans.deleting(checked.resource):
                # Forged ahead of a resource the API is deleting: the deletion is what is real.
                await self._delete(resource_id, checked, checked.generation)
                return
            event = checked
        if tracked is not None and event.generation < tracked.generation:
            log.info(
                "%s: ignoring %s of %s at generation %d: already at %d",
                self.name,
                event.type,
                resource_id,
                event.generation,
                tracked.generation,
            )
            return
        if tracked is not None and event.generation == tracked.generation:
            await self._again(resource_id, tracked, event)
            return
        await self._begin(resource_id, tracked, event)

    async def _as_the_api_says(self, resource_id: str, event: Event) -> Event | None:
        """``event`` if the API has its generation; else the API's resource at the API's
        generation (the event is forged: events follow commits); None when the API has no such
        resource. Raises ``ApiReadError`` when the API does not answer (the event is retried)."""
        api = self.trust.api
        if api is None:
            return event
        resource = await api.read(self.spec.kind, resource_id)
        if resource is None:
            log.warning("%s: ignoring %s: the API has no %s", self.name, event.type, resource_id)
            return None
        generation = int(resource["generation"])
        if generation >= event.generation:
            return event
        log.warning(
            "%s: %s of %s claims generation %d, the API has %d: acting on the API's",
            self.name,
            event.type,
            resource_id,
            event.generation,
            generation,
        )
        return event.model_copy(update={"generation": generation, "resource": resource})

    @staticmethod
    def _is_deletion(event: Event) -> bool:
        """A deletion event, or a reconcile of a resource the API is deleting (a deletion not
        confirmed yet, say because this controller restarted in the middle of it)."""
        if event.type.endswith(".deleted"):
            return True
        return event.type.endswith(".reconcile") and plans.deleting(event.resource)

    async def _deletion_as_the_api_says(self, resource_id: str, event: Event) -> int | None:
        """The generation to delete at, when the API agrees the resource is being deleted
        (``Deleting``: its generation) or is gone (404: the event's); None when it does not: a
        forged deletion would otherwise destroy the resource and bury it (its generation and
        time covering every real event after it)."""
        api = self.trust.api
        if api is None:
            return event.generation
        resource = await api.read(self.spec.kind, resource_id)
        if resource is None:
            return event.generation
        if not plans.deleting(resource):
            log.warning(
                "%s: ignoring %s of %s: the API has it, not being deleted",
                self.name,
                event.type,
                resource_id,
            )
            return None
        generation = int(resource["generation"])
        if generation != event.generation:
            log.warning(
                "%s: %s of %s claims generation %d, the API deletes at %d: acting on the API's",
                self.name,
                event.type,
                resource_id,
                event.generation,
                generation,
            )
        return generation

    def _resource_id(self, event: Event) -> str | None:
        if not event.type.startswith(f"{self.spec.kind}.") or event.platform != self.spec.platform:
            return None
        return event.nodepool_id if self.spec.kind == "nodepool" else event.cluster_id

    async def _delete(self, resource_id: str, event: Event, generation: int) -> None:
        """Stop any run, delete what the resource has (no state needed: a controller that never
        saw it deletes what its spec asks for), and confirm at ``generation``."""
        tracked = self.resources.get(resource_id)
        if tracked is not None and tracked.deletes(generation):
            await self._again(resource_id, tracked, event)  # under way, or failed
            return
        if tracked is None and self.tombstones.confirmed(resource_id, generation):
            # Deleted already, and asked again: confirming again is cheap and harmless (the API
            # has purged the resource, or counts each controller's confirmation once).
            target = plans.deletion_target(event, self.spec.kind, None, None)
            done = Tracked(generation=generation, target=target, deletion=event.timestamp)
            await self._report(resource_id, done, plans.deleted(target))
            return
        known = tracked.target if tracked is not None else None
        region = self.cluster_regions.get(event.cluster_id)
        target = plans.deletion_target(event, self.spec.kind, region, known)
        if tracked is not None:
            await _cancel(tracked.task)
            births = tracked.births
        else:
            births = resize_nodes((), plans.nodes_at_deletion(event), self.clock())
        fresh = Tracked(
            generation=generation, target=target, births=births, deletion=event.timestamp
        )
        if tracked is not None:
            fresh.ready, fresh.ready_since = tracked.ready, tracked.ready_since
        steps = plans.deletion_plan(target, fresh.active)
        log.info(
            "%s: %s %s generation %d: deleting in %d step(s)",
            self.name,
            event.type,
            resource_id,
            generation,
            len(steps),
        )
        await self._start(resource_id, fresh, steps)

    def _forget(self, resource_id: str, tracked: Tracked) -> None:
        """The deletion ``tracked`` is confirmed: forget the resource, and bury it so that a
        late event from before the deletion does not bring it back."""
        assert tracked.deletion is not None
        if self.resources.get(resource_id) is tracked:
            del self.resources[resource_id]
        self.tombstones.bury(resource_id, tracked.generation, tracked.deletion)
        if self.spec.kind == "cluster":
            self.cluster_regions.pop(resource_id, None)
        log.info("%s: %s deleted; forgotten", self.name, resource_id)

    async def _again(self, resource_id: str, tracked: Tracked, event: Event) -> None:
        """The generation already in hand: a duplicate, or a reconcile of a finished run (a
        deletion asked again is one: a failed deletion says again why)."""
        asks = event.type.endswith(".reconcile") or tracked.deletion is not None
        if asks and tracked.settled and tracked.last_step:
            # Cheap: say again where this generation ended up.
            await self._report(resource_id, tracked, tracked.last_step)
            return
        log.debug(
            "%s: %s of %s at generation %d already handled",
            self.name,
            event.type,
            resource_id,
            event.generation,
        )

    async def _begin(self, resource_id: str, tracked: Tracked | None, event: Event) -> None:
        """A generation newer than any handled: interrupt the old run and start a new one."""
        target = self._target(event)
        if tracked is not None:
            await _cancel(tracked.task)
        births = tracked.births if tracked is not None else ()
        fresh = Tracked(generation=event.generation, target=target, births=births)
        if tracked is not None:
            fresh.ready, fresh.ready_since = tracked.ready, tracked.ready_since
        adopt = event.type.endswith(".reconcile") and plans.converged(
            event.resource, event.generation
        )
        steps = plans.plan(target, tracked.active if tracked is not None else None, adopt)
        log.info(
            "%s: %s %s generation %d: %d step(s)",
            self.name,
            event.type,
            resource_id,
            event.generation,
            len(steps),
        )
        await self._start(resource_id, fresh, steps)

    async def _start(self, resource_id: str, fresh: Tracked, steps: list[Step]) -> None:
        """Report the first step at once (the event is acknowledged once the broker confirmed
        it), and the others from a task of their own."""
        self.resources[resource_id] = fresh
        if not steps:
            return  # a controller that never answers (fault injection)
        await self._report(resource_id, fresh, steps[0])
        if len(steps) == 1:
            self._settle(resource_id, fresh)
        else:
            fresh.task = asyncio.create_task(
                self._run(resource_id, fresh, steps[1:]), name=f"{self.name}:{resource_id}"
            )

    def _settle(self, resource_id: str, tracked: Tracked) -> None:
        """The run has reported its last step; a confirmed deletion forgets the resource."""
        tracked.settled = True
        tracked.task = None
        if tracked.last_step is not None and tracked.last_step.deleted:
            self._forget(resource_id, tracked)

    def _target(self, event: Event) -> Target:
        if self.spec.kind == "cluster":
            target = plans.cluster_target(event)
            self.cluster_regions[event.cluster_id] = target.region
            return target
        labels = plans.nodepool_labels(event)
        problem = label_problem(labels)
        if problem is not None:
            log.warning("%s: %s: %s", self.name, event.nodepool_id, problem)
        return plans.nodepool_target(event, self.cluster_regions.get(event.cluster_id))

    # ---- runs -----------------------------------------------------------------------------

    async def _run(self, resource_id: str, tracked: Tracked, steps: list[Step]) -> None:
        """Report the remaining steps, one delay apart, with the random failures in between."""
        delay = self.knobs.step_delay
        failures = self.knobs.failures
        for index, step in enumerate(steps, start=1):
            attempt = 0
            while failures.fails(resource_id, tracked.generation, index, attempt):
                await asyncio.sleep(delay)
                failure = plans.transient_failure(tracked.active, attempt, round(delay * 1000))
                if tracked.deletion is not None:
                    failure = replace(failure, deleted=False)  # the deletion is failing
                await self._report(resource_id, tracked, failure)
                attempt += 1
            await asyncio.sleep(delay)
            await self._report(resource_id, tracked, step)
        self._settle(resource_id, tracked)
        last = steps[-1]
        log.info(
            "%s: %s generation %d: %s", self.name, resource_id, tracked.generation, last.reason
        )

    async def _report(self, resource_id: str, tracked: Tracked, step: Step) -> None:
        now = self.clock()
        if tracked.target.kind == "nodepool":
            tracked.births = resize_nodes(tracked.births, step.active, now)
        seen = Observation(
            controller_name=self.name,
            resource_id=resource_id,
            generation=tracked.generation,
            births=tracked.births,
            ready_since=tracked.note_ready(step.ready, now),
            now=now,
            deleted_since=tracked.note_deleted(step.deleted, now),
        )
        tracked.last_step = step
        await self.reporter.publish(build_report(step, tracked.target, seen))


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    # wait() rather than await: the task's CancelledError is not ours to swallow or raise.
    await asyncio.wait([task])


async def _settle(outcome: Awaitable[object]) -> None:
    """Ack or reject; on a channel that broke meanwhile the broker redelivers, which is fine.
    Never raises: the worker that settles must live on to take the next events."""
    try:
        await outcome
    except amqp.IN_FLIGHT_ERRORS as exc:
        log.warning("could not settle a message (%r); it will be redelivered", exc)
