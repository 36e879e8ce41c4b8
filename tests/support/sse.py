"""Reading a watch (server-sent events) over real HTTP, one event at a time."""

from __future__ import annotations

import asyncio
import contextlib
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
    """An open watch: its events, and the comments (heartbeats) seen between them. A task of
    its own reads the response, so that a wait given up (a timeout) leaves the stream open."""

    response: httpx.Response
    comments: list[str] = field(default_factory=list)
    _events: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._reader

    async def next(self, within: float = 5.0) -> Event:
        """The next event (heartbeats are recorded in ``comments`` meanwhile)."""
        event = await asyncio.wait_for(self._events.get(), within)
        if event is None:
            raise EOFError("the stream ended")
        return event

    async def none_within(self, seconds: float) -> None:
        """No event comes within ``seconds``."""
        try:
            event = await self.next(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"an event came: {event}")

    async def until(self, type_: str, resource_id: str, within: float = 5.0) -> Event:
        """The first event of ``type_`` about ``resource_id`` (others skipped)."""
        while True:
            event = await self.next(within)
            if event.type == type_ and event.resource["id"] == resource_id:
                return event

    async def _read(self) -> None:
        fields: dict[str, list[str]] = {}
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        event = Event(
                            fields.get("event", ["message"])[-1],
                            fields.get("id", [""])[-1],
                            "\n".join(fields["data"]),
                        )
                        self._events.put_nowait(event)
                    fields = {}
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    fields.setdefault(name, []).append(value.removeprefix(" "))
        finally:
            self._events.put_nowait(None)


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
        stream = Stream(response)
        stream.start()
        try:
            yield stream
        finally:
            await stream.stop()
