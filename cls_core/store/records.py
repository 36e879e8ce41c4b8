"""How a resource is laid out in Redis, and which index entries it owns.

A resource is one hash and one string. The hash (``Names.record``):
  doc      JSON of the resource without its versions and status (id, name, spec, timestamps...)
  rv       resource_version: changes on every write, spec or status (the ETag)
  gen      generation: changes only when the spec changes
  status   JSON of the aggregated status
  project  the id of the project it belongs to (a nodepool's is its cluster's)
  name, platform, phase, health (and cluster_id for nodepools): the index dimensions
  seq      the creation-ordered score used by every index it is in
  idem_key the Idempotency-Key (as the client sent it) that created it, if any: deleting the
           resource deletes that key in the same transaction
  ops      the ids of its operations, oldest first, space-separated (its bounded history: the
           write that adds one trims it without a read); the last is its current operation
  op_run   "<type> <generation>" of the current operation while it runs (absent once ended),
           so that a status report ends it without reading it
The string (``Names.view``) is the resource as the API returns it (JSON), rendered by every
write of the record in the same transaction (``put``, ``put_view``): reads send it as stored,
without parsing and re-serialising it, and a page reads all of its views with one MGET.
A record written before views had keys of their own has none: reads assemble it from the hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import product
from typing import Any, ClassVar, NotRequired, Self, TypedDict

import orjson

from cls_core.store.txn import Txn
from shared_models.aggregation import StoredStatus
from shared_models.names import ANY, Kind, Names
from shared_models.specs import DELETION_PROTECTION

# The record's field set while it is being deleted (its deletion_timestamp).
DELETING = "deleting"
# "1" while its spec.deletion_protection is true ("0", or absent in older records: not).
PROTECTED = "protected"

# The types of a watch stream's entries (``Names.watch_stream``), as the SSE events name them.
WATCH_ADDED = "ADDED"
WATCH_MODIFIED = "MODIFIED"
WATCH_DELETED = "DELETED"

RECORD_FIELDS = (
    "doc",
    "rv",
    "gen",
    "status",
    "project",
    "name",
    "platform",
    "phase",
    "health",
    "cluster_id",
    "seq",
    "idem_key",
    "ops",
    "op_run",
)


class StoredDoc(TypedDict):
    """A record's ``doc``: the resource without its versions and status."""

    id: str
    name: str
    cluster_id: NotRequired[str]  # nodepools only
    project_id: NotRequired[str]  # clusters only (a nodepool's project is its cluster's)
    generation: int
    spec: dict[str, Any]  # as the API shows it: validated on the way in, JSON as stored
    created_at: str
    updated_at: str
    created_by: str
    # Set when a DELETE is accepted (phase Deleting, until the purge).
    deletion_timestamp: NotRequired[str]


@dataclass(frozen=True)
class _Record:
    kind: ClassVar[Kind]
    id: str
    doc: StoredDoc
    rv: str
    generation: int
    status: StoredStatus
    project_id: str
    name: str
    platform: str
    seq: float
    idem_key: str | None = field(default=None, kw_only=True)
    ops: tuple[str, ...] = field(default=(), kw_only=True)
    op_run: str | None = field(default=None, kw_only=True)
    # Not stored: the operation the write that returned this record started (None: none).
    started_op: str | None = field(default=None, kw_only=True, compare=False)

    @property
    def phase(self) -> str:
        return str(self.status["phase"])

    @property
    def health(self) -> str:
        return str(self.status["health"])

    @property
    def deletion_timestamp(self) -> str | None:
        """When its DELETE was accepted: a resource being deleted (phase Deleting) has one."""
        return self.doc.get("deletion_timestamp")

    def _common_fields(self) -> dict[str, str]:
        return {
            "doc": orjson.dumps(self.doc).decode(),
            "rv": self.rv,
            "gen": str(self.generation),
            "status": orjson.dumps(self.status).decode(),
            "project": self.project_id,
            "name": self.name,
            "platform": self.platform,
            "phase": self.phase,
            "health": self.health,
            "seq": repr(self.seq),
            **({} if self.idem_key is None else {"idem_key": self.idem_key}),
            **({"ops": " ".join(self.ops)} if self.ops else {}),
            **({} if self.op_run is None else {"op_run": self.op_run}),
            # A field of its own, so that a guarded write can check a resource is not being
            # deleted (a nodepool's create checks its cluster's).
            **({} if self.deletion_timestamp is None else {DELETING: self.deletion_timestamp}),
            # Its deletion protection, for a cascade's guard (the spec itself is JSON in doc).
            PROTECTED: "1" if self.doc["spec"].get(DELETION_PROTECTION) is True else "0",
        }

    def view(self) -> dict[str, Any]:
        """The resource as the API returns it (callers must not change it: it is kept)."""
        return self._view

    @cached_property
    def _view(self) -> dict[str, Any]:
        return assemble_view(self.doc, self.rv, self.status)

    @cached_property
    def view_json(self) -> str:
        """The view rendered once: stored, published and answered as the same text."""
        return orjson.dumps(self._view).decode()

    def with_operation(
        self, ops: tuple[str, ...], op_run: str | None, started_op: str | None
    ) -> Self:
        """The record with its operation fields. The view shows none of them: the one already
        rendered is kept (a write answers with the very JSON it stored)."""
        changed = replace(self, ops=ops, op_run=op_run, started_op=started_op)
        for cached in ("_view", "view_json"):
            if cached in self.__dict__:
                changed.__dict__[cached] = self.__dict__[cached]
        return changed

    def put(self, txn: Txn, names: Names, *, created: bool = False) -> None:
        """Write the whole record and its view (``created``: the record is new)."""
        txn.hset(names.record(self.kind, self.id), self.to_hash())
        self.put_view(txn, names, created=created)

    def put_view(self, txn: Txn, names: Names, *, created: bool = False) -> None:
        """Write the view; every write that changes the record's fields calls it in its
        transaction, so no view is ever older than its record, and no change goes unwatched:
        the same transaction appends it to its project's watch stream."""
        txn.set_value(names.view(self.kind, self.id), self.view_json)
        self._watched(txn, names, WATCH_ADDED if created else WATCH_MODIFIED)

    def remove(self, txn: Txn, names: Names) -> None:
        """Delete the record and its view (the watch stream gets its last view, DELETED)."""
        txn.delete(names.record(self.kind, self.id))
        txn.delete(names.view(self.kind, self.id))
        self._watched(txn, names, WATCH_DELETED)

    def _watched(self, txn: Txn, names: Names, change: str) -> None:
        entry = {"type": change, "kind": self.kind, "id": self.id, "view": self.view_json}
        txn.xadd(names.watch_stream(self.project_id), entry, maxlen=names.watch_history)

    def to_hash(self) -> dict[str, str]:
        raise NotImplementedError


@dataclass(frozen=True)
class NodePoolRecord(_Record):
    kind: ClassVar[Kind] = "nodepool"
    cluster_id: str

    def to_hash(self) -> dict[str, str]:
        return {**self._common_fields(), "cluster_id": self.cluster_id}

    def index_keys(self, names: Names) -> set[str]:
        """Every (cluster, phase, health) filter combination this nodepool must be listed under,
        and the global index of its phase (counted by /metrics)."""
        keys = {
            names.nodepool_index(self.project_id, cluster, phase, health)
            for cluster, phase, health in product(
                (self.cluster_id, ANY), (self.phase, ANY), (self.health, ANY)
            )
        }
        keys.add(names.nodepool_phase_index(self.phase))
        return keys

    def with_changes(self, **changes: Any) -> NodePoolRecord:
        return replace(self, **changes)

    @classmethod
    def from_hash(cls, resource_id: str, raw: dict[str, Any]) -> NodePoolRecord:
        return cls(cluster_id=raw["cluster_id"], **_common_from_hash(resource_id, raw))


@dataclass(frozen=True)
class ClusterRecord(_Record):
    kind: ClassVar[Kind] = "cluster"

    def to_hash(self) -> dict[str, str]:
        return self._common_fields()

    def index_keys(self, names: Names) -> set[str]:
        """Every (platform, phase) filter combination this cluster must be listed under."""
        return {
            names.cluster_index(self.project_id, platform, phase)
            for platform, phase in product((self.platform, ANY), (self.phase, ANY))
        }

    def with_changes(self, **changes: Any) -> ClusterRecord:
        return replace(self, **changes)

    @classmethod
    def from_hash(cls, resource_id: str, raw: dict[str, Any]) -> ClusterRecord:
        return cls(**_common_from_hash(resource_id, raw))


def _common_from_hash(resource_id: str, raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": resource_id,
        "doc": orjson.loads(raw["doc"]),
        "rv": raw["rv"],
        "generation": int(raw["gen"]),
        "status": orjson.loads(raw["status"]),
        "project_id": raw["project"],
        "name": raw["name"],
        "platform": raw["platform"],
        "seq": float(raw["seq"]),
        "idem_key": raw.get("idem_key"),
        "ops": tuple(str(raw.get("ops") or "").split()),
        "op_run": raw.get("op_run"),
    }


# The order of fields in responses, as the user guide shows them.
_VIEW_HEAD = ("id", "name", "cluster_id", "project_id", "generation")
_VIEW_TAIL = ("created_at", "updated_at", "deletion_timestamp", "created_by")


def assemble_view(doc: Mapping[str, object], rv: str, status: Any) -> dict[str, Any]:
    view: dict[str, Any] = {k: doc[k] for k in _VIEW_HEAD if k in doc}
    view["resource_version"] = rv
    view["spec"] = doc["spec"]
    view["status"] = status
    for key in _VIEW_TAIL:
        if key in doc:  # deletion_timestamp only while deleting
            view[key] = doc[key]
    return view
