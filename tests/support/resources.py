"""Creating resources through the API: the one helper per resource every test directory uses."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import USER, gcp_cluster_body

Json = dict[str, Any]


async def create_cluster(
    client: httpx.AsyncClient, body: Json | None = None, user: dict[str, str] = USER
) -> Json:
    """The cluster ``body`` (the guide's GCP cluster by default) as created, asserting 201."""
    response = await client.post("/api/v1/clusters", json=body or gcp_cluster_body(), headers=user)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created
