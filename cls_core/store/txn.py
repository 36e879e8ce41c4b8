"""A write plan for ``guarded_txn.lua``: checks that must hold, then ops that run atomically.

Services compose a plan in Python (where the rules live) and Redis runs it as one atomic step, so
a record, its indexes, its name reservation and its outbox event are never half written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Txn:
    keys: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    _key_index: dict[str, int] = field(default_factory=dict)

    def _k(self, key: str) -> int:
        index = self._key_index.get(key)
        if index is None:
            self.keys.append(key)
            index = self._key_index[key] = len(self.keys)
        return index

    # ---- checks: each names the failure code returned when it does not hold ------------------
    def expect_field(self, key: str, field_: str, value: str | None, fail: str) -> Txn:
        """HGET key field must equal value (None: the field must be absent)."""
        self.checks.append({"c": "hget", "k": self._k(key), "f": field_, "v": value, "fail": fail})
        return self

    def expect_field_not(self, key: str, field_: str, value: str, fail: str) -> Txn:
        """The hash field must not hold ``value`` (absent is fine)."""
        self.checks.append(
            {"c": "hget_ne", "k": self._k(key), "f": field_, "v": value, "fail": fail}
        )
        return self

    def expect_present(self, key: str, field_: str, fail: str) -> Txn:
        """The hash ``key`` must have ``field_`` (whatever its value)."""
        self.checks.append({"c": "hexists", "k": self._k(key), "f": field_, "fail": fail})
        return self

    def expect_hash_size_below(self, key: str, limit: int, fail: str) -> Txn:
        """The hash ``key`` must have fewer than ``limit`` fields (the failure's ``actual`` is
        the count)."""
        self.checks.append({"c": "hlen_lt", "k": self._k(key), "v": limit, "fail": fail})
        return self

    def expect_count(self, key: str, count: int, fail: str) -> Txn:
        self.checks.append({"c": "zcard", "k": self._k(key), "v": count, "fail": fail})
        return self

    def expect_score_at_most(self, key: str, member: str, score: float, fail: str) -> Txn:
        """``member`` must be in the sorted set ``key`` with a score of at most ``score``."""
        self.checks.append(
            {"c": "zscore_le", "k": self._k(key), "m": member, "v": repr(score), "fail": fail}
        )
        return self

    def expect_absent(self, key: str, fail: str) -> Txn:
        """The string ``key`` must not exist; if it does, its value is the failure's ``actual``."""
        self.checks.append({"c": "absent", "k": self._k(key), "fail": fail})
        return self

    def expect_value(self, key: str, value: str, fail: str) -> Txn:
        """The string ``key`` must hold ``value`` (absent: the failure's ``actual`` is "")."""
        self.checks.append({"c": "get", "k": self._k(key), "v": value, "fail": fail})
        return self

    def expect_count_below(self, key: str, limit: int, fail: str) -> Txn:
        """The sorted set ``key`` must have fewer than ``limit`` members (a quota: the failure's
        ``actual`` is the count)."""
        self.checks.append({"c": "zcard_lt", "k": self._k(key), "v": limit, "fail": fail})
        return self

    # ---- ops -------------------------------------------------------------------------------
    def hset(self, key: str, mapping: dict[str, str]) -> Txn:
        kv: list[str] = []
        for name, value in mapping.items():
            kv += (name, value)
        self.ops.append({"o": "hset", "k": self._k(key), "kv": kv})
        return self

    def hdel(self, key: str, *fields: str) -> Txn:
        self.ops.append({"o": "hdel", "k": self._k(key), "f": list(fields)})
        return self

    def delete(self, key: str) -> Txn:
        self.ops.append({"o": "del", "k": self._k(key)})
        return self

    def expire(self, key: str, seconds: float) -> Txn:
        """Let ``key`` (written earlier in the transaction) expire after ``seconds``."""
        return self.pexpire(key, max(1, int(seconds * 1000)))

    def zadd(self, key: str, score: float, member: str) -> Txn:
        self.ops.append({"o": "zadd", "k": self._k(key), "s": repr(score), "m": member})
        return self

    def zrem(self, key: str, member: str) -> Txn:
        self.ops.append({"o": "zrem", "k": self._k(key), "m": member})
        return self

    def xadd(self, key: str, fields: dict[str, str], maxlen: int | None = None) -> Txn:
        """Append to a stream; with ``maxlen``, trim it to about that many entries."""
        kv: list[str] = []
        for name, value in fields.items():
            kv += (name, value)
        op: dict[str, Any] = {"o": "xadd", "k": self._k(key), "kv": kv}
        if maxlen is not None:
            op["max"] = maxlen
        self.ops.append(op)
        return self

    def set_value(self, key: str, value: str, px: int | None = None) -> Txn:
        op: dict[str, Any] = {"o": "set", "k": self._k(key), "v": value}
        if px is not None:
            op["px"] = px
        self.ops.append(op)
        return self

    def pexpire(self, key: str, px: int) -> Txn:
        """The key expires in ``px`` milliseconds (nothing happens to a key that does not
        exist)."""
        self.ops.append({"o": "pexpire", "k": self._k(key), "px": px})
        return self

    def delete_if_json_field(self, key: str, field_: str, value: str) -> Txn:
        """Delete the string ``key`` only if it holds a JSON object whose ``field_`` is
        ``value`` (a key that now means something else is left alone)."""
        self.ops.append({"o": "del_json_eq", "k": self._k(key), "f": field_, "v": value})
        return self

    def move_in_indexes(self, old: set[str], new: set[str], score: float, member: str) -> Txn:
        """Leave the sorted sets only in ``old``, join those only in ``new``."""
        for key in sorted(old - new):
            self.zrem(key, member)
        for key in sorted(new - old):
            self.zadd(key, score, member)
        return self

    def payload(self, dry_run: bool = False) -> bytes:
        return orjson.dumps({"checks": self.checks, "ops": self.ops, "dry": dry_run})
