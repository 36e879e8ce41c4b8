"""Bounded in-process memory of what a read will probably find: a guess, never an answer.

A hint saves a round trip only when the store checks it in the same call that uses it (a script
that reads the live value beside the guessed one), so a stale hint costs one more round trip and
is never wrong where it matters. Nothing that decides access is a hint.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Hints(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._by_key: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._by_key.get(key)

    def keep(self, key: K, value: V) -> None:
        if key not in self._by_key and len(self._by_key) >= self._capacity:
            del self._by_key[next(iter(self._by_key))]  # the oldest kept: dicts keep their order
        self._by_key[key] = value

    def __len__(self) -> int:
        return len(self._by_key)
