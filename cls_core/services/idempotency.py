"""``Idempotency-Key`` on creates: a retried create answers with what it created, once.

A key belongs to its caller's email (``names.idempotency(email, key)``) and holds only what a replay
needs: the fingerprint of the request that first used it and the kind and id of the resource it
created (about 135 bytes, not the response). The create's own guarded transaction writes it: its
first check is that the key is free, so the resource, its event and the key are committed
together or not at all, and of concurrent requests carrying one key exactly one creates. The
resource's record names its key (``idem_key``), and the transaction that deletes the resource
deletes the key, so a key lives as long as its resource and at most ``idempotency_ttl``.

- The same key with the same request: the resource as it is now (HTTP: 200, its ETag), nothing
  created.
- The same key with a different request: a conflict, and nothing is written.
- The key's resource is gone, or its time is up: the key is free, and creates again.
- A create that failed stored nothing: retrying it runs it again.

The HTTP side (the header, the fingerprint, the replayed response) is ``routes/idempotency.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from cls_core.errors import Conflict, Unavailable
from cls_core.services.access import Access, Caller
from cls_core.store import RedisStore, Txn, TxnFailed
from shared_models.names import Kind, Names
from shared_models.projects import Role

HEADER = "Idempotency-Key"
KEY_USED = "idempotency_key_used"
_KEY_CHANGED = "idempotency_key_changed"
# Rounds of "the key was taken / freed meanwhile" before giving up with a 503: each needs
# another request with the same key to create or delete its resource within a round trip.
_ATTEMPTS = 3


@dataclass(frozen=True)
class Replay:
    """The request repeats a create that succeeded: answer with the resource as it is now."""

    kind: Kind
    resource_id: str
    resource_version: str
    body: str  # the resource as JSON, as a GET would answer it


@dataclass(frozen=True)
class _Entry:
    """What a key holds: the request's fingerprint and the resource it created."""

    fingerprint: str
    kind: Kind
    resource_id: str

    def encode(self) -> str:
        return orjson.dumps(
            {"fp": self.fingerprint, "kind": self.kind, "id": self.resource_id}
        ).decode()

    @classmethod
    def decode(cls, stored: str) -> _Entry:
        doc: dict[str, Any] = orjson.loads(stored)
        if "fp" in doc:
            return cls(doc["fp"], doc["kind"], doc["id"])
        # Written before keys held only this (the whole first response then): such keys are not
        # deleted with their resource, and are gone within idempotency_ttl of the upgrade.
        return cls(doc["fingerprint"], doc["kind"], doc["body"]["id"])


@dataclass(frozen=True)
class IdempotentCreate:
    """A create carrying a key that was free when it was looked up."""

    caller: Caller
    access: Access  # a replay answers only while the caller may still read the resource
    client_key: str  # as the client sent it: the record keeps it, to delete the key with it
    key: str  # the Redis key
    fingerprint: str
    ttl_ms: int

    def guard(self, txn: Txn, kind: Kind, resource_id: str) -> None:
        """Reserve the key in the create's transaction, as its first check: a concurrent retry
        must find the key taken before it finds, say, the name taken."""
        if txn.checks:
            raise ValueError("the idempotency key must be the transaction's first check")
        txn.expect_absent(self.key, KEY_USED)
        entry = _Entry(self.fingerprint, kind, resource_id)
        txn.set_value(self.key, entry.encode(), px=self.ttl_ms)

    async def check(self, store: RedisStore, stored: str) -> Replay | None:
        """The key holds ``stored``: the replay of its create, or a Conflict, while its resource
        exists; when that is gone (a key written before keys were deleted with their
        resource), free the key and return None."""
        entry = _Entry.decode(stored)
        found = await store.get_view(entry.kind, entry.resource_id)
        if found is not None and await self.access.allows(self.caller, found[0], Role.VIEWER):
            if entry.fingerprint == self.fingerprint:
                return Replay(entry.kind, entry.resource_id, found[1], found[2])
            raise Conflict(
                f"{HEADER} was already used for a different request",
                f"this key created {entry.kind} {entry.resource_id} with another method, path "
                "or body; use a new key for a new request",
            )
        txn = Txn().expect_value(self.key, stored, _KEY_CHANGED).delete(self.key)
        try:
            await store.run(txn)
        except TxnFailed as failed:
            if failed.code != _KEY_CHANGED:
                raise
        return None


def delete_key_with(txn: Txn, names: Names, creator: str, client_key: str | None, rid: str) -> None:
    """In the transaction deleting resource ``rid``: delete the key that created it (a key of
    its ``creator``), unless the key has since expired and been used again for another
    resource."""
    if client_key is not None:
        txn.delete_if_json_field(names.idempotency(creator, client_key), "id", rid)


async def commit_create(
    store: RedisStore, commit: Callable[[], Awaitable[None]], idempotency: IdempotentCreate | None
) -> Replay | None:
    """Run a create's transaction (None: committed); with a key, a race lost on the key is
    settled as a replay (or a conflict), or, when the key was freed meanwhile, the create runs
    again. Any other failure raises as it is."""
    for _ in range(_ATTEMPTS):
        try:
            await commit()
            return None
        except TxnFailed as failed:
            if idempotency is None or failed.code != KEY_USED:
                raise
            replay = await idempotency.check(store, failed.actual)
            if replay is not None:
                return replay
    raise _busy()


async def claim_key(
    store: RedisStore,
    access: Access,
    caller: Caller,
    key: str,
    fingerprint: str,
    ttl_seconds: float,
) -> IdempotentCreate | Replay:
    """The claim of a create on ``key``, or the replay of the create that used it (a Conflict
    when it was used for another request)."""
    claim = IdempotentCreate(
        caller,
        access,
        key,
        store.names.idempotency(caller.email, key),
        fingerprint,
        int(ttl_seconds * 1000),
    )
    for _ in range(_ATTEMPTS):
        stored = await store.idempotency_claim(claim.key)
        if stored is None:
            return claim
        replay = await claim.check(store, stored)
        if replay is not None:
            return replay
    raise _busy()


def _busy() -> Unavailable:
    return Unavailable(
        f"{HEADER} is being used by concurrent requests; retry shortly", retry_after=1
    )
