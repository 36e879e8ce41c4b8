"""Reading a resource as the API has it now, over HTTP, with this controller's own token.

An event is a hint, the API is the truth: an event claiming a generation the controller has not
seen is checked against the API before anything is built from it, so that an event with a forged
generation (``1000``) cannot make the controller ignore every real one after it.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from shared_models.names import Kind

READ_TIMEOUT = 5.0


class ResourceReader(Protocol):
    async def read(self, kind: Kind, resource_id: str) -> dict[str, Any] | None:
        """The resource as the API returns it; None when the API has no such resource."""
        ...


class ApiReadError(Exception):
    """The API did not say (unreachable, or an answer other than the resource or 404)."""


class ApiReader:
    def __init__(self, base_url: str, token: str, timeout: float = READ_TIMEOUT) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    async def read(self, kind: Kind, resource_id: str) -> dict[str, Any] | None:
        """The resource as the API returns it; None when the API has no such resource."""
        try:
            response = await self._client.get(f"/api/v1/{kind}s/{resource_id}")
        except httpx.HTTPError as exc:
            raise ApiReadError(f"GET {kind} {resource_id}: {exc!r}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ApiReadError(f"GET {kind} {resource_id}: HTTP {response.status_code}")
        body: dict[str, Any] = response.json()
        return body

    async def close(self) -> None:
        await self._client.aclose()
