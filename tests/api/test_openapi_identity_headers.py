"""The identity headers stay documented in OpenAPI although routes read them from the request."""

from __future__ import annotations

import httpx


async def _header_names(api: httpx.AsyncClient, path: str, method: str) -> list[str]:
    schema = (await api.get("/openapi.json")).json()
    params = schema["paths"][path][method]["parameters"]
    return [p["name"] for p in params if p["in"] == "header"]


async def test_user_routes_document_the_email_header(api: httpx.AsyncClient) -> None:
    assert "X-User-Email" in await _header_names(api, "/api/v1/nodepools/{id}", "get")
    assert "X-User-Email" in await _header_names(api, "/api/v1/clusters", "post")


async def test_status_routes_document_the_bearer_token(api: httpx.AsyncClient) -> None:
    names = await _header_names(api, "/api/v1/nodepools/{id}/status", "put")
    assert names.count("Authorization") == 1
