"""Reads and atomic writes against Redis. No business rules here: services decide, this stores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

from redis._parsers import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.utils import HIREDIS_AVAILABLE

from cls_core.errors import Unavailable
from cls_core.store.hints import Hints
from cls_core.store.leader_lock import LeaderLock
from cls_core.store.operation_store import OperationStore
from cls_core.store.outbox import Outbox
from cls_core.store.project_store import Grant, ProjectStore
from cls_core.store.records import RECORD_FIELDS, ClusterRecord, NodePoolRecord
from cls_core.store.scripts import LuaScript
from cls_core.store.txn import Txn
from cls_core.store.watch_store import WatchStore
from shared_models.names import Kind, Names


class TxnFailed(Exception):
    """A check of a guarded transaction did not hold; nothing was written."""

    def __init__(self, code: str, actual: str) -> None:
        super().__init__(f"{code} (found {actual!r})")
        self.code = code
        self.actual = actual


class _HiredisPackedConnection(Connection):
    """A TCP connection whose commands hiredis packs (in C), as redis-py's synchronous client
    does; its asyncio client packs them in Python, a visible share of the CPU of a pipeline of
    scripts with many keys. The same bytes go on the wire."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._packer.pack(*args)
        return packed


# After a Redis restart every pooled connection is dead, and without a retry each one failed
# the first request that drew it (a 503 while Redis was back). One immediate retry on a new
# connection covers that. Only on a connection error: then the command reached no live server
# (a server that dies mid-command answers the retry with "connection refused", so a 503).
# Never on a timeout, after which the command may still run: a write must not be sent twice.
_STALE_CONNECTION_RETRY = Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,))


def connect_redis(url: str, socket_timeout: float = 5.0, max_connections: int = 256) -> Redis:
    """A client that fails fast when Redis is gone and reconnects by itself when it returns
    (``socket_timeout``: longer for a client of blocking reads, which wait that long; those
    hold a connection each, hence ``max_connections``)."""
    options: dict[str, Any] = {}
    if HIREDIS_AVAILABLE and urlsplit(url).scheme == "redis":  # not TLS, not a Unix socket
        options["connection_class"] = _HiredisPackedConnection
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2.0,
        health_check_interval=15,
        max_connections=max_connections,
        retry=_STALE_CONNECTION_RETRY,
        **options,
    )


class RedisStore:
    def __init__(self, redis: Redis, names: Names) -> None:
        self._redis = redis
        self.names = names
        self._txn_script = LuaScript.of_file(redis, "guarded_txn.lua")
        self._view_script = LuaScript.of_file(redis, "record_view.lua")
        self._records_with_reports_script = LuaScript.of_file(redis, "records_with_reports.lua")
        self._caller_page_script = LuaScript.of_file(redis, "caller_page.lua")
        self.projects = ProjectStore(redis, names)
        # membership keys -> the projects they held at the caller's last list (a hint)
        self._caller_projects: Hints[tuple[str, ...], list[str]] = Hints(_CALLERS_REMEMBERED)

    async def run(self, txn: Txn, dry_run: bool = False) -> None:
        """Apply a guarded transaction atomically, or raise TxnFailed without writing anything.

        With ``dry_run`` every check still runs against live data, and nothing is written.
        """
        if not txn.ops and not txn.checks:
            return
        (outcome,) = await self._run_plans([txn], dry_run)
        if outcome is not None:
            raise outcome

    async def run_each(self, txns: list[Txn]) -> list[TxnFailed | None]:
        """Apply several independent guarded transactions in one script call.

        Each one is atomic on its own and fails on its own (None where it was applied). An
        error raises (after every transaction ran).
        """
        outcomes = await self.run_each_settled(txns)
        for outcome in outcomes:
            if outcome is not None and not isinstance(outcome, TxnFailed):
                raise outcome
        return [o if isinstance(o, TxnFailed) else None for o in outcomes]

    async def run_each_settled(self, txns: list[Txn]) -> list[TxnFailed | Exception | None]:
        """``run_each``, with an error (a script error, Redis loading...) returned in the place
        of its transaction instead of raised: an error in one transaction stops that one only.
        A lost connection still raises: then any of them may or may not have been applied."""
        return await self._run_plans(txns)

    async def _run_plans(
        self, txns: list[Txn], dry_run: bool = False
    ) -> list[TxnFailed | Exception | None]:
        """Every transaction in one call of ``guarded_txn.lua``: their keys one after the other
        in KEYS, and for each its number of keys and its plan in ARGV."""
        if not txns:
            return []
        keys: list[str] = []
        args: list[Any] = []
        for txn in txns:
            keys += txn.keys
            args += (len(txn.keys), txn.payload(dry_run))
        try:
            replies = await self._txn_script(keys, args)
        except ResponseError as exc:  # refused as a whole (out of memory...): none of them ran
            return [exc for _ in txns]
        return [_txn_outcome(reply) for reply in replies]

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    # ---- records ---------------------------------------------------------------------------
    async def _record_hash(self, kind: Kind, resource_id: str) -> dict[str, Any] | None:
        values = await self._redis.hmget(self.names.record(kind, resource_id), RECORD_FIELDS)
        if values[0] is None:
            return None
        return dict(zip(RECORD_FIELDS, values, strict=True))

    async def get_nodepool(self, nodepool_id: str) -> NodePoolRecord | None:
        raw = await self._record_hash("nodepool", nodepool_id)
        return None if raw is None else NodePoolRecord.from_hash(nodepool_id, raw)

    async def get_cluster(self, cluster_id: str) -> ClusterRecord | None:
        raw = await self._record_hash("cluster", cluster_id)
        return None if raw is None else ClusterRecord.from_hash(cluster_id, raw)

    async def get_view(self, kind: Kind, resource_id: str) -> tuple[str, str, str] | None:
        """(project id, resource_version, the resource as JSON as stored), read in one round
        trip."""
        keys = [self.names.record(kind, resource_id), self.names.view(kind, resource_id)]
        project, rv, view = await self._view_script(keys, [])
        return await self._found_view(kind, resource_id, project, rv, view)

    async def get_view_with_grants(
        self, kind: Kind, resource_id: str, project_id: str, email: str, groups: Sequence[str]
    ) -> tuple[tuple[str, str, str] | None, list[Grant] | None]:
        """``get_view``, and in the same round trip the grants of ``email`` and ``groups`` in
        ``project_id``, the project the resource is expected in: None when it is not there."""
        names = self.names
        keys = [
            names.record(kind, resource_id),
            names.view(kind, resource_id),
            names.project_members(project_id),
            names.project_groups(project_id),
        ]
        project, rv, view, member, group_grants = await self._view_script(keys, [email, *groups])
        found = await self._found_view(kind, resource_id, project, rv, view)
        if found is None or found[0] != project_id:
            return found, None
        stored = [member, *group_grants]
        return found, [Grant.decode(s) for s in stored if s]

    async def _found_view(
        self, kind: Kind, resource_id: str, project: Any, rv: Any, view: Any
    ) -> tuple[str, str, str] | None:
        if project is None:
            return None
        if view is not None:
            return str(project), str(rv), str(view)
        # Stored before views had keys of their own: assembled from the record's fields.
        record = (await self.get_records(kind, [resource_id])).get(resource_id)
        if record is None:
            return None
        return record.project_id, record.rv, record.view_json

    async def get_many_with_reports(
        self, wanted: list[tuple[Kind, str]]
    ) -> list[tuple[NodePoolRecord | ClusterRecord | None, dict[str, str]] | Exception]:
        """Records and their controllers' reports, several resources in one script call (all
        of them as of one moment). An error is returned in the place of its read; a lost
        connection raises."""
        if not wanted:
            return []
        names = self.names
        keys: list[str] = []
        for kind, resource_id in wanted:
            keys += (names.record(kind, resource_id), names.controller_reports(kind, resource_id))
        found: list[tuple[NodePoolRecord | ClusterRecord | None, dict[str, str]] | Exception] = []
        try:
            replies = await self._records_with_reports_script(keys, _RECORD_FIELDS)
        except ResponseError as exc:  # refused as a whole: no read happened
            return [exc for _ in wanted]
        for (kind, resource_id), reply in zip(wanted, replies, strict=True):
            if reply[0] == "error":
                found.append(_script_error(reply[1]))
                continue
            raw, reports = _record_and_reports(reply)
            record: NodePoolRecord | ClusterRecord | None = None
            if raw is not None:
                record_type = NodePoolRecord if kind == "nodepool" else ClusterRecord
                record = record_type.from_hash(resource_id, raw)
            found.append((record, reports))
        return found

    async def get_nodepool_with_reports(
        self, nodepool_id: str
    ) -> tuple[NodePoolRecord | None, dict[str, str]]:
        """A nodepool and its controllers' reports, as of one moment, in one round trip."""
        keys = [
            self.names.record("nodepool", nodepool_id),
            self.names.controller_reports("nodepool", nodepool_id),
        ]
        (reply,) = await self._records_with_reports_script(keys, _RECORD_FIELDS)
        if reply[0] == "error":
            raise _script_error(reply[1])
        raw, reports = _record_and_reports(reply)
        if raw is None:
            return None, {}
        return NodePoolRecord.from_hash(nodepool_id, raw), reports

    async def get_nodepools(self, ids: list[str]) -> list[NodePoolRecord]:
        """Records of the ids that still exist, in the order given."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for nodepool_id in ids:
                pipe.hmget(self.names.record("nodepool", nodepool_id), RECORD_FIELDS)
            rows = await pipe.execute()
        return [
            NodePoolRecord.from_hash(nodepool_id, dict(zip(RECORD_FIELDS, row, strict=True)))
            for nodepool_id, row in zip(ids, rows, strict=True)
            if row[0] is not None
        ]

    async def get_records(
        self, kind: Kind, ids: list[str]
    ) -> dict[str, NodePoolRecord | ClusterRecord]:
        """The records of the ids that still exist, by id, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for resource_id in ids:
                pipe.hmget(self.names.record(kind, resource_id), RECORD_FIELDS)
            rows = await pipe.execute()
        record_type = NodePoolRecord if kind == "nodepool" else ClusterRecord
        return {
            resource_id: record_type.from_hash(
                resource_id, dict(zip(RECORD_FIELDS, row, strict=True))
            )
            for resource_id, row in zip(ids, rows, strict=True)
            if row[0] is not None
        }

    async def controller_reports(self, kind: Kind, resource_id: str) -> dict[str, str]:
        """controller name -> its last report (JSON), for one resource."""
        reports = await self._redis.hgetall(self.names.controller_reports(kind, resource_id))
        return {str(k): str(v) for k, v in reports.items()}

    async def cluster_nodepool_ids(self, cluster_id: str) -> list[str]:
        ids = await self._redis.zrange(self.names.cluster_nodepools(cluster_id), 0, -1)
        return [str(i) for i in ids]

    # ---- lists -----------------------------------------------------------------------------
    async def caller_page(
        self, kind: Kind, caller: CallerProjects, offset: int, limit: int
    ) -> tuple[int, str]:
        """(total, the resources of one page as JSON joined with ","), over every project the
        caller belongs to (or the one of ``caller.project_filter``), merged in creation order.

        The page's ids come from one script call, which reads the caller's memberships and the
        indexes of the projects it is given: their personal project, or the projects the
        caller's last list found (a hint, checked by the script). When those are not the
        caller's projects any more, the script answers which are, and a second call reads
        their indexes. Then their views, in one MGET, passed through as stored, never
        parsed. An id whose resource was deleted in between is left out."""
        member_of = tuple(caller.membership_keys)
        if caller.project_filter:
            projects = [caller.project_filter]
        else:
            projects = self._caller_projects.get(member_of) or [caller.personal]
        args: list[Any] = [len(caller.membership_keys), offset, limit, caller.project_filter or ""]
        for _ in range(_MEMBERSHIP_RACES):
            keys = caller.membership_keys + [caller.index_of(p) for p in projects]
            reply = await self._caller_page_script(keys, [*args, caller.personal, *projects])
            if reply[0] == "page":
                return int(reply[1]), await self._page_views(kind, reply[2:])
            projects = [str(p) for p in reply[1:]]
            if not caller.project_filter:
                self._caller_projects.keep(member_of, projects)
        raise Unavailable(
            "The caller's projects are changing too fast to list; retry shortly", retry_after=1
        )

    async def _page_views(self, kind: Kind, ids: list[str]) -> str:
        """The views of a page's ids joined with ",", as stored."""
        if not ids:
            return ""
        prefix = self.names.view(kind, "")  # one prefix, not a Names call per item
        keys = [prefix + i for i in ids]
        views = cast(list[str | None], await self._redis.mget(keys))  # decode_responses: str
        if None in views:
            return ",".join(await self._views_or_records(kind, ids, views))
        return ",".join(cast(list[str], views))

    async def _views_or_records(
        self, kind: Kind, ids: list[str], views: list[str | None]
    ) -> list[str]:
        """The page's views, those missing assembled from their records (stored before views had
        keys of their own) or left out (deleted since the page's ids were read)."""
        missing = [i for i, view in zip(ids, views, strict=True) if view is None]
        records = await self.get_records(kind, missing)
        found = []
        for resource_id, view in zip(ids, views, strict=True):
            if view is not None:
                found.append(view)
            elif (record := records.get(resource_id)) is not None:
                found.append(record.view_json)
        return found

    # ---- what the event jobs, the metrics and the idempotency keys read ---------------------
    def operation_store(self) -> OperationStore:
        return OperationStore(self._redis, self.names)

    def watching(self, blocking: Redis) -> WatchStore:
        """The watch streams, read with blocking calls on the client ``blocking``."""
        return WatchStore(self._redis, blocking, self.names)

    def outbox(self) -> Outbox:
        return Outbox(self._redis, self.names)

    def leader_lock(self, key: str, ttl: float, token: str | None = None) -> LeaderLock:
        return LeaderLock(self._redis, key, ttl, token)

    async def reconcile_due(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` members of the reconcile schedule due at ``now``, earliest first."""
        due: Any = await self._redis.zrangebyscore(
            self.names.reconcile_due, "-inf", now, start=0, num=limit
        )
        return [str(member) for member in due]

    async def deletion_due(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` deletions ('<kind>:<id>') whose timeout is due at ``now``."""
        due: Any = await self._redis.zrangebyscore(
            self.names.deletion_due, "-inf", now, start=0, num=limit
        )
        return [str(member) for member in due]

    async def deleting_clusters(self) -> dict[str, str]:
        """cluster id -> its deletion (JSON): the cascades still to finish."""
        held = await self._redis.hgetall(self.names.deleting_clusters)
        return {str(k): str(v) for k, v in held.items()}

    async def cluster_nodepool_page(self, cluster_id: str, limit: int) -> list[str]:
        """The first ``limit`` nodepool ids of a cluster (oldest first)."""
        ids = await self._redis.zrange(self.names.cluster_nodepools(cluster_id), 0, limit - 1)
        return [str(i) for i in ids]

    async def tombstone(self, kind: Kind, resource_id: str) -> dict[str, str]:
        """What a purged resource left ({}: none, or expired)."""
        held = await self._redis.hgetall(self.names.tombstone(kind, resource_id))
        return {str(k): str(v) for k, v in held.items()}

    async def idempotency_claim(self, key: str) -> str | None:
        """What an ``Idempotency-Key`` holds (None: unused)."""
        stored = await self._redis.get(key)
        return None if stored is None else str(stored)

    async def system_counts(self, phases: Sequence[str]) -> SystemCounts:
        """The outbox, the dead-lettered events, the ingest counters and the nodepools per
        phase: one round trip, every command O(1)."""
        names = self.names
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(names.outbox)
            pipe.xrange(names.outbox, count=1)
            pipe.xlen(names.outbox_dead)
            pipe.hgetall(names.metric("ingest"))
            for phase in phases:
                pipe.zcard(names.nodepool_phase_index(phase))
            backlog, oldest, dead, ingest, *by_phase = await pipe.execute()
        return SystemCounts(
            outbox_backlog=int(backlog),
            outbox_oldest_id=str(oldest[0][0]) if oldest else None,
            outbox_dead=int(dead),
            ingest={str(k): int(v) for k, v in ingest.items()},
            nodepools_by_phase=dict(zip(phases, map(int, by_phase), strict=True)),
        )

    async def aclose(self) -> None:
        await self._redis.aclose()


@dataclass(frozen=True)
class CallerProjects:
    """What a list needs to know of its caller: where their memberships are kept, their
    personal project, and how a project's index for the list's filters is named."""

    membership_keys: list[str]  # sorted sets of project ids: the caller's, then their groups'
    personal: str
    index_of: Callable[[str], str]  # project id -> the index to page
    project_filter: str | None = None


# How many times a list asks again when the caller's projects changed between its two calls.
_MEMBERSHIP_RACES = 5
# Callers whose projects a process remembers (a list of ids each: a few MB at most).
_CALLERS_REMEMBERED = 10_000


class SystemCounts(NamedTuple):
    outbox_backlog: int
    outbox_oldest_id: str | None  # its stream id: the commit time in ms, "-", a sequence
    outbox_dead: int
    ingest: dict[str, int]
    nodepools_by_phase: dict[str, int]


_RECORD_FIELDS = list(RECORD_FIELDS)


def _txn_outcome(reply: Any) -> TxnFailed | Exception | None:
    """One plan's reply of ``guarded_txn.lua``."""
    if reply[0] == "ok":
        return None
    if reply[0] == "fail":
        return TxnFailed(str(reply[1]), str(reply[2]))
    return _script_error(reply[1])


def _script_error(message: Any) -> Exception:
    """An error a script caught and answered in its reply, as the exception redis-py raises for
    the same error reply (an out-of-memory error is an ``OutOfMemoryError``...), so that it is
    told apart from a bug as an error reply of its own would be."""
    error: Exception = BaseParser.parse_error(str(message))  # type: ignore[no-untyped-call]
    return error


def _record_and_reports(reply: Any) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """A resource's reply of ``records_with_reports.lua``: the
    record's fields (None when it does not exist) and its reports, controller -> JSON."""
    values, flat = reply
    raw = None if values[0] is None else dict(zip(RECORD_FIELDS, values, strict=True))
    return raw, dict(zip(flat[::2], flat[1::2], strict=True))
