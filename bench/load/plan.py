"""What a load round sends, in a form both load generators understand.

A plan is one request shape repeated: ``{id}`` in the path is replaced by the ids in turn,
``{n}`` in the body by a counter unique in the round (names of created nodepools), and ``{c}`` by
a node count that changes on every visit to the same id (so every scale really changes the spec),
and ``{name}`` by the name that goes with the id.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class LoadPlan:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    ids: tuple[str, ...] = ("-",)
    names: tuple[str, ...] = ()  # ``{name}`` in the body: the name of the id at the same place
    start: int = 0  # first counter value: rounds start apart so names never repeat

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> LoadPlan:
        data = json.loads(raw)
        data["ids"] = tuple(data["ids"])
        data["names"] = tuple(data["names"])
        return cls(**data)

    def to_lua(self) -> str:
        """A Lua chunk returning the plan as a table, for the wrk script."""
        headers = ", ".join(f"[{_lua_str(k)}] = {_lua_str(v)}" for k, v in self.headers.items())
        ids = ", ".join(_lua_str(i) for i in self.ids)
        names = ", ".join(_lua_str(i) for i in self.names)
        return (
            f"return {{method = {_lua_str(self.method)}, path = {_lua_str(self.path)}, "
            f"headers = {{{headers}}}, body = {_lua_str(self.body)}, ids = {{{ids}}}, "
            f"names = {{{names}}}, start = {self.start}}}\n"
        )

    def request_at(self, n: int) -> tuple[str, str]:
        """(path, body) of the n-th request; the wrk script computes the same thing."""
        counter = self.start + n
        node_count = 2 + (counter // len(self.ids)) % 9
        index = counter % len(self.ids)
        path = self.path.replace("{id}", self.ids[index])
        body = self.body.replace("{n}", str(counter)).replace("{c}", str(node_count))
        if self.names:
            body = body.replace("{name}", self.names[index])
        return path, body


def _lua_str(value: str) -> str:
    # JSON string escapes of printable ASCII (\" and \\) mean the same in Lua.
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"load plans carry printable ASCII only: {value[:40]!r}")
    return json.dumps(value)


@dataclass(frozen=True)
class LoadResult:
    """One round: how many requests completed, how fast, and how many failed."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, connection errors and timeouts
    generator: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0
