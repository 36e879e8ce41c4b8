"""``Idempotency-Key`` on creates: a retried create returns the first result, not a duplicate.

A key belongs to its caller (``names.idempotency(owner, key)``) and, for ``idempotency_ttl``,
holds the fingerprint of the request that first used it and the resource that request created.
The create's own guarded transaction writes it: its first check is that the key is free, so the
resource, its event and the key are committed together or not at all, and of concurrent
requests carrying one key exactly one creates.

- The same key with the same request: the first result again (HTTP: 200 with the body of the
  first 201), whatever happened to the resource since.
- The same key with a different request: a conflict, and nothing is written.
- A create that failed stored nothing: retrying it runs it again.

The HTTP side (the header, the fingerprint, the replayed response) is ``routes/idempotency.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from cls_core.errors import Conflict
from cls_core.store import RedisStore, Txn, TxnFailed
from shared_models.names import Kind

HEADER = "Idempotency-Key"
KEY_USED = "idempotency_key_used"


class Replayed(Exception):
    """The request repeats a create that already succeeded: answer with its stored result."""

    def __init__(self, kind: Kind, body: dict[str, Any]) -> None:
        super().__init__(f"replay of the creation of {kind} {body.get('id')}")
        self.kind = kind
        self.body = body


@dataclass(frozen=True)
class IdempotentCreate:
    """A create carrying a key that was free when it was looked up."""

    key: str  # the Redis key
    fingerprint: str
    ttl_ms: int

    def guard(self, txn: Txn, kind: Kind, view: dict[str, Any]) -> None:
        """Reserve the key in the create's transaction, as its first check: a concurrent retry
        must find the key taken before it finds, say, the name taken."""
        if txn.checks:
            raise ValueError("the idempotency key must be the transaction's first check")
        txn.expect_absent(self.key, KEY_USED)
        stored = {"fingerprint": self.fingerprint, "kind": kind, "body": view}
        txn.set_value(self.key, orjson.dumps(stored).decode(), px=self.ttl_ms)

    def settle(self, failed: TxnFailed) -> NoReturn:
        """The create's transaction failed: a race lost on the key is a replay (or a conflict)."""
        if failed.code != KEY_USED:
            raise failed
        raise self.outcome(failed.actual)

    def outcome(self, stored_json: str) -> Replayed | Conflict:
        stored = orjson.loads(stored_json)
        if stored.get("fingerprint") == self.fingerprint:
            return Replayed(stored["kind"], stored["body"])
        return Conflict(
            f"{HEADER} was already used for a different request",
            f"this key created {stored.get('kind')} {stored.get('body', {}).get('id')} with "
            "another method, path or body; use a new key for a new request",
        )


async def commit_create(commit: Awaitable[None], idempotency: IdempotentCreate | None) -> None:
    """Await a create's transaction; with a key, a race lost on the key is settled as a replay
    (or a conflict), any other failure raises as it is."""
    try:
        await commit
    except TxnFailed as failed:
        if idempotency is None:
            raise
        idempotency.settle(failed)


async def claim_key(
    store: RedisStore, owner: str, key: str, fingerprint: str, ttl_seconds: float
) -> IdempotentCreate:
    """The claim of a create on ``key``; raises Replayed or Conflict when the key was used."""
    claim = IdempotentCreate(
        store.names.idempotency(owner, key), fingerprint, int(ttl_seconds * 1000)
    )
    stored = await store.redis.get(claim.key)
    if stored is not None:
        raise claim.outcome(str(stored))
    return claim
