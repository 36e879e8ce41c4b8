"""Watching resources: the changes of the caller's projects as they happen, and ``waitFor``.

Every write of a resource appends its change (ADDED, MODIFIED, DELETED, with the resource as GET
returns it) to its project's watch stream in the write's own transaction (``records.py``), so a
watcher on any replica sees every change, once, in the order of its project's writes.

A watch reads the streams of the projects the caller has a role in when it starts (the
personal project, memberships, groups; one of them with ``project_id``). It starts with an
ADDED per resource that matches its filters (as a Kubernetes watch without a resourceVersion),
or, given a resume token, with what changed after it. Each event carries a token: a base64url
JSON object {project id: stream entry id}, the position in each project's stream. A token older
than what a stream keeps (``CLS_WATCH_HISTORY`` changes) is a 410: list again, then watch.

Roles are never cached: each batch of changes read checks the caller's role in the projects it
touches, and a project where the caller has none any more is no longer watched.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import anyio
import orjson

from cls_core.errors import NotFound, ResourceExpired, TooManyRequests, ValidationFailed
from cls_core.services.access import Access, Caller, role_of
from cls_core.services.clusters import ClusterService
from cls_core.services.nodepools import NodePoolService
from cls_core.store import RedisStore
from cls_core.store.records import WATCH_ADDED, WATCH_DELETED
from cls_core.store.watch_store import Change, WatchStore
from cls_runtime.settings import Settings
from shared_models.names import Kind
from shared_models.projects import Role

# A page of the initial list (the most a list route answers at once).
_LIST_PAGE = 100
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class WatchEvent(NamedTuple):
    """One server-sent event: its type, its resume token, the resource as JSON."""

    type: str
    token: str
    data: str


@dataclass(frozen=True)
class WatchFilter:
    """Which changes a watch sends: the list's filters, or one resource."""

    kind: Kind
    project_id: str | None = None
    cluster_id: str | None = None
    phase: str | None = None
    health: str | None = None
    platform: str | None = None
    resource_id: str | None = None

    def matches(self, change: Change, view: Mapping[str, Any]) -> bool:
        if change.kind != self.kind:
            return False
        if self.resource_id is not None and change.resource_id != self.resource_id:
            return False
        if self.cluster_id is not None and view.get("cluster_id") != self.cluster_id:
            return False
        status = view.get("status") or {}
        if self.phase is not None and status.get("phase") != self.phase:
            return False
        if self.health is not None and status.get("health") != self.health:
            return False
        if self.platform is not None:
            platform = (view.get("spec") or {}).get("platform") or {}
            if platform.get("type") != self.platform:
                return False
        return True


def encode_token(positions: Mapping[str, str]) -> str:
    """A resume token: base64url (unpadded) of the JSON object {project id: entry id}."""
    raw = orjson.dumps(dict(sorted(positions.items())))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_token(token: str, field_name: str = "resource_version") -> dict[str, str]:
    """The positions of a resume token; a 400 naming ``field_name`` when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        positions = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise _bad_token(field_name) from exc
    if not isinstance(positions, dict) or len(positions) > 10_000:
        raise _bad_token(field_name)
    for project_id, position in positions.items():
        if not _UUID.match(project_id) or not isinstance(position, str):
            raise _bad_token(field_name)
        if not _ENTRY_ID.match(position):
            raise _bad_token(field_name)
    return positions


def _bad_token(field_name: str) -> ValidationFailed:
    return ValidationFailed.of(
        field_name, f"{field_name}: not a token of this API's watch (send an event's id back)"
    )


class WaitCondition(NamedTuple):
    """What ``waitFor`` waits for: ``Ready``, ``Deleted`` or ``generation:N``."""

    name: str  # "Ready", "Deleted", "generation"
    generation: int = 0

    @classmethod
    def parse(cls, raw: str) -> WaitCondition:
        if raw in ("Ready", "Deleted"):
            return cls(raw)
        prefix, _, number = raw.partition(":")
        if prefix == "generation" and number.isdigit() and 0 < int(number) < 2**53:
            return cls("generation", int(number))
        raise ValidationFailed.of(
            "waitFor", "waitFor: one of Ready, Deleted, generation:N (N a positive integer)"
        )

    def holds(self, view: Mapping[str, Any]) -> bool:
        """Ready: the status is Ready for the current generation. generation:N: the
        controllers have observed generation N or a later one (whatever the phase). Deleted:
        never, while the resource exists."""
        status = view.get("status") or {}
        observed = int(status.get("observedGeneration") or 0)
        if self.name == "Ready":
            return status.get("phase") == "Ready" and observed >= int(view.get("generation", 0))
        if self.name == "generation":
            return observed >= self.generation
        return False


@dataclass
class Watch:
    """An open watch: what it has still to send first, and where it reads on from."""

    caller: Caller
    filter: WatchFilter
    positions: dict[str, str]
    initial: list[WatchEvent]
    lease: str


class WaitResult(NamedTuple):
    """The resource when ``waitFor`` answered (None: it was deleted), and whether the wait
    ended at its timeout instead of with the condition."""

    view: str | None
    timed_out: bool


class WatchService:
    def __init__(
        self,
        store: RedisStore,
        watching: WatchStore,
        settings: Settings,
        clusters: ClusterService,
        nodepools: NodePoolService,
    ) -> None:
        self.store = store
        self.watching = watching
        self.settings = settings
        self.access = Access(store.projects)
        self._clusters = clusters
        self._nodepools = nodepools

    @property
    def _lease_ttl(self) -> float:
        # A lease outlives a few missed renewals: one per heartbeat.
        return 3 * self.settings.watch_heartbeat

    # ---- watch ---------------------------------------------------------------------------
    async def open(self, caller: Caller, wanted: WatchFilter, token: str | None) -> Watch:
        """Start a watch (its errors are raised here, before the stream starts): 404 for a
        resource the caller may not read, 400 for a malformed token, 410 for an expired one,
        429 beyond the caller's watchers."""
        projects = await self._projects(caller, wanted)
        resumed = None if token is None else decode_token(token)
        lease = await self._acquire(caller)
        try:
            if resumed is None:
                positions = await self.watching.tails(projects)
                initial = await self._initial(caller, wanted, positions)
            else:
                positions = await self.watching.tails(projects)
                positions.update({p: resumed[p] for p in projects if p in resumed})
                expired = await self.watching.expired(
                    {p: resumed[p] for p in projects if p in resumed}
                )
                if expired:
                    raise ResourceExpired(
                        "The resume token is older than the history of changes kept",
                        "list the resources again, then watch from the start (without a token)",
                    )
                initial = []
        except BaseException:
            await self.watching.release_watcher(caller.email, lease)
            raise
        return Watch(caller, wanted, positions, initial, lease)

    async def _projects(self, caller: Caller, wanted: WatchFilter) -> list[str]:
        if wanted.resource_id is not None:
            record = await self._service(wanted.kind).get(caller, wanted.resource_id)
            return [record.project_id]
        member_of = await self.store.projects.member_of(caller.email, caller.groups)
        projects = list(dict.fromkeys([caller.personal_project, *member_of]))
        if wanted.project_id is not None:
            projects = [p for p in projects if p == wanted.project_id]
        return projects

    def _service(self, kind: Kind) -> ClusterService | NodePoolService:
        return self._clusters if kind == "cluster" else self._nodepools

    async def _initial(
        self, caller: Caller, wanted: WatchFilter, positions: Mapping[str, str]
    ) -> list[WatchEvent]:
        """An ADDED for each resource that matches, read after the streams' positions were
        (a change in between is sent twice, never missed)."""
        token = encode_token(positions)
        if wanted.resource_id is not None:
            _, view = await self._service(wanted.kind).get_view(caller, wanted.resource_id)
            return [WatchEvent(WATCH_ADDED, token, view)]
        if not positions:
            return []
        page = self._lister(caller, wanted)
        views: list[Any] = []
        offset = 0
        while True:
            total, items = await page(offset)
            views += orjson.loads(f"[{items}]")
            offset += _LIST_PAGE
            if offset >= total or not items:
                break
        return [WatchEvent(WATCH_ADDED, token, orjson.dumps(view).decode()) for view in views]

    def _lister(
        self, caller: Caller, wanted: WatchFilter
    ) -> Callable[[int], Awaitable[tuple[int, str]]]:
        if wanted.kind == "cluster":
            return lambda offset: self._clusters.list(
                caller,
                platform=wanted.platform,
                phase=wanted.phase,
                project_id=wanted.project_id,
                limit=_LIST_PAGE,
                offset=offset,
            )
        return lambda offset: self._nodepools.list(
            caller,
            cluster_id=wanted.cluster_id,
            phase=wanted.phase,
            health=wanted.health,
            project_id=wanted.project_id,
            limit=_LIST_PAGE,
            offset=offset,
        )

    async def events(self, watch: Watch) -> AsyncIterator[WatchEvent]:
        """The watch's events until the caller goes (or, watching one resource, until it is
        deleted, or no project of the watch is the caller's any more)."""
        caller, wanted, positions = watch.caller, watch.filter, watch.positions
        block_ms = int(self.settings.watch_heartbeat * 1000)
        try:
            for event in watch.initial:
                yield event
            renewed = time.monotonic()
            while positions:
                changes = await self.watching.read(positions, block_ms)
                if time.monotonic() - renewed >= self.settings.watch_heartbeat:
                    # Once a heartbeat: a busy watch does not pay a round trip per batch.
                    renewed = time.monotonic()
                    await self.watching.renew_watcher(
                        caller.email, watch.lease, time.time(), self._lease_ttl
                    )
                if not changes:
                    continue
                allowed = await self._still_readable(caller, {c.project_id for c in changes})
                for change in changes:
                    if change.project_id not in positions:
                        continue
                    if change.project_id not in allowed:
                        del positions[change.project_id]  # removed from it: watch it no more
                        continue
                    positions[change.project_id] = change.entry_id
                    view = orjson.loads(change.view)
                    if not wanted.matches(change, view):
                        continue
                    yield WatchEvent(change.type, encode_token(positions), change.view)
                    if wanted.resource_id is not None and change.type == WATCH_DELETED:
                        return
        finally:
            with anyio.CancelScope(shield=True):
                await self.watching.release_watcher(caller.email, watch.lease)

    async def _still_readable(self, caller: Caller, projects: set[str]) -> set[str]:
        """Of ``projects``, those where the caller has a role now (read from Redis)."""
        others = sorted(projects - {caller.personal_project})
        allowed = projects & {caller.personal_project}
        if others:
            grants = await self.store.projects.grants_many(others, caller.email, caller.groups)
            allowed |= {p for p, g in zip(others, grants, strict=True) if role_of(g) is not None}
        return allowed

    async def _acquire(self, caller: Caller) -> str:
        lease = uuid.uuid4().hex
        limit = self.settings.max_watchers_per_caller
        if not await self.watching.acquire_watcher(
            caller.email, lease, limit, time.time(), self._lease_ttl
        ):
            raise TooManyRequests(
                f"You have {limit} watches open already",
                "close one (a watch or a waitFor) before opening another "
                "(CLS_MAX_WATCHERS_PER_CALLER)",
            )
        return lease

    # ---- waitFor -------------------------------------------------------------------------
    async def wait_for(
        self,
        caller: Caller,
        kind: Kind,
        resource_id: str,
        condition: WaitCondition,
        seconds: float,
    ) -> WaitResult:
        """The resource once ``condition`` holds, or as it is after ``seconds``; read
        from the watch stream of its project (no polling). A resource the caller may not read
        is a 404 at once; one deleted while waiting for Ready or a generation, a 404 then."""
        service = self._service(kind)
        record = await service.get(caller, resource_id)
        project_id = record.project_id
        lease = await self._acquire(caller)
        try:
            positions = await self.watching.tails([project_id])
            found = await self.store.get_view(kind, resource_id)  # after the position: no gap
            if found is None:
                return self._deleted(condition, service.not_found)
            if condition.holds(orjson.loads(found[2])):
                return WaitResult(found[2], False)
            deadline = time.monotonic() + min(seconds, self.settings.max_wait_timeout)
            heartbeat = self.settings.watch_heartbeat
            while (remaining := deadline - time.monotonic()) > 0:
                block_ms = max(1, int(min(remaining, heartbeat) * 1000))
                changes = await self.watching.read(positions, block_ms)
                await self.watching.renew_watcher(caller.email, lease, time.time(), self._lease_ttl)
                for change in changes:
                    positions[project_id] = change.entry_id
                    if change.kind != kind or change.resource_id != resource_id:
                        continue
                    if change.type == WATCH_DELETED:
                        await self.access.require(
                            caller, project_id, Role.VIEWER, service.not_found
                        )
                        return self._deleted(condition, service.not_found)
                    if condition.holds(orjson.loads(change.view)):
                        await self.access.require(
                            caller, project_id, Role.VIEWER, service.not_found
                        )
                        return WaitResult(change.view, False)
            _, view = await service.get_view(caller, resource_id)
            return WaitResult(view, True)
        finally:
            with anyio.CancelScope(shield=True):
                await self.watching.release_watcher(caller.email, lease)

    @staticmethod
    def _deleted(condition: WaitCondition, not_found: Callable[[], NotFound]) -> WaitResult:
        if condition.name == "Deleted":
            return WaitResult(None, False)
        raise not_found()
