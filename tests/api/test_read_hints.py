"""The hints a process keeps for its reads (cls_core/store/hints.py) are guesses the read
checks in the same call: a resource's project for a GET, a caller's projects for a list. A
stale hint never grants access, and never hides what the caller may now read."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import API
from tests.conftest import OTHER_USER, USER, gcp_cluster_body
from tests.support.resources import create_cluster

B = OTHER_USER


async def new_project(api: httpx.AsyncClient, name: str) -> str:
    created = await api.post(f"{API}/projects", json={"name": name}, headers=USER)
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    return project_id


async def grant(api: httpx.AsyncClient, project_id: str, role: str) -> None:
    url = f"{API}/projects/{project_id}/members/{B['X-User-Email']}"
    assert (await api.put(url, json={"role": role}, headers=USER)).status_code == 200


async def names_listed(api: httpx.AsyncClient, path: str) -> list[Any]:
    listing = (await api.get(f"{API}/{path}", headers=B)).json()
    return [item["name"] for item in listing[path]]


async def test_a_get_after_a_transfer_out_of_the_caller_s_project_is_404(
    api: httpx.AsyncClient,
) -> None:
    mine, theirs = await new_project(api, "mine"), await new_project(api, "elsewhere")
    await grant(api, mine, "viewer")
    cluster = await create_cluster(api, gcp_cluster_body("moving", project_id=mine))
    url = f"{API}/clusters/{cluster['id']}"
    for _ in range(2):  # the second read is served with the project this process saw
        assert (await api.get(url, headers=B)).status_code == 200
    moved = await api.post(f"{url}/transfer", json={"project_id": theirs}, headers=USER)
    assert moved.status_code == 200, moved.text
    assert (await api.get(url, headers=B)).status_code == 404


async def test_a_get_after_a_transfer_into_the_caller_s_project_is_200(
    api: httpx.AsyncClient,
) -> None:
    elsewhere, theirs = await new_project(api, "elsewhere"), await new_project(api, "shared")
    await grant(api, theirs, "viewer")
    cluster = await create_cluster(api, gcp_cluster_body("moving", project_id=elsewhere))
    url = f"{API}/clusters/{cluster['id']}"
    assert (await api.get(url, headers=B)).status_code == 404
    moved = await api.post(f"{url}/transfer", json={"project_id": theirs}, headers=USER)
    assert moved.status_code == 200, moved.text
    assert (await api.get(url, headers=B)).json()["project_id"] == theirs


async def test_a_list_after_leaving_a_project_no_longer_shows_it(api: httpx.AsyncClient) -> None:
    shared = await new_project(api, "shared")
    await grant(api, shared, "viewer")
    await create_cluster(api, gcp_cluster_body("team", project_id=shared))
    await create_cluster(api, gcp_cluster_body("own"), user=B)
    assert await names_listed(api, "clusters") == ["team", "own"]
    left = await api.delete(f"{API}/projects/{shared}/members/{B['X-User-Email']}", headers=B)
    assert left.status_code == 204
    assert await names_listed(api, "clusters") == ["own"]


async def test_a_list_after_joining_a_project_shows_it_at_once(api: httpx.AsyncClient) -> None:
    await create_cluster(api, gcp_cluster_body("own"), user=B)
    assert await names_listed(api, "clusters") == ["own"]
    shared = await new_project(api, "shared")
    await create_cluster(api, gcp_cluster_body("team", project_id=shared))
    await grant(api, shared, "viewer")
    assert await names_listed(api, "clusters") == ["own", "team"]
