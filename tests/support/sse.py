"""Reading a watch (server-sent events) over real HTTP, one event at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class Event:
    type: str
    id: str
    data: str

    @property
    def resource(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.data)
        return parsed


@dataclass
class Stream:
    """An open watch: its events, and the comments (heartbeats) seen between them."""

    response: httpx.Response
    comments: list[str] = field(default_factory=list)
    _lines: AsyncIterator[str] | None = None

    async def next(self, within: float = 5.0) -> Event:
        """The next event (heartbeats are recorded in ``comments`` on the way)."""
        return await asyncio.wait_for(self._next_event(), within)

    async def none_within(self, seconds: float) -> None:
        """No event comes within ``seconds``."""
        try:
            event = await asyncio.wait_for(self._next_event(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"an event came: {event}")

    async def until(self, type_: str, resource_id: str, within: float = 5.0) -> Event:
        """The first event of ``type_`` about ``resource_id`` (others skipped)."""
        while True:
            event = await self.next(within)
            if event.type == type_ and event.resource["id"] == resource_id:
                return event

    async def _next_event(self) -> Event:
        if self._lines is None:
            self._lines = self.response.aiter_lines()
        fields: dict[str, list[str]] = {}
        async for line in self._lines:
            if line == "":
                if "data" in fields:
                    return Event(
                        fields.get("event", ["message"])[-1],
                        fields.get("id", [""])[-1],
                        "\n".join(fields["data"]),
                    )
                fields = {}
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        raise EOFError("the stream ended")


@asynccontextmanager
async def watching(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str
) -> AsyncIterator[Stream]:
    """An open watch of ``path`` (``watch=true`` added); asserts it started (200, SSE)."""
    query = {"watch": "true", **params}
    async with client.stream("GET", path, params=query, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)
