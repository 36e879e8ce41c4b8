"""A controller token reads one resource, whoever owns it (a controller checks an event's
generation against it: asyncapi.yaml), and nothing else: no list, no status view."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import (
    USER,
    controller_headers,
)

API = "/api/v1"


@pytest.mark.parametrize("kind", ["nodepools", "clusters"])
async def test_a_controller_token_reads_one_resource_of_any_owner(
    api: httpx.AsyncClient, owned: dict[str, Any], kind: str
) -> None:
    resource = owned[{"nodepools": "np", "clusters": "cl"}[kind]]
    response = await api.get(f"{API}/{kind}/{resource['id']}", headers=controller_headers())
    assert response.status_code == 200, response.text
    assert response.json()["generation"] == resource["generation"] == 1


async def test_a_controller_reading_an_unknown_resource_gets_404(api: httpx.AsyncClient) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    response = await api.get(f"{API}/nodepools/{missing}", headers=controller_headers())
    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/nodepools", "/clusters", "/nodepools/{id}/status"])
async def test_a_controller_token_reads_nothing_else(
    api: httpx.AsyncClient, owned: dict[str, Any], path: str
) -> None:
    url = API + path.format(id=owned["np"]["id"])
    response = await api.get(url, headers=controller_headers())
    assert response.status_code == 403, response.text


async def test_a_controller_token_with_an_email_reads_nothing(
    api: httpx.AsyncClient, owned: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{owned['np']['id']}"
    response = await api.get(url, headers={**controller_headers(), **USER})
    assert response.status_code == 403, response.text
