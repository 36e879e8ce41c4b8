"""A user sees and changes only what they own: another owner's resource is 404 everywhere
(never 403, which would say it exists), and lists and their totals leave it out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import API, MERGE_PATCH, assert_error, create_nodepool, update_body
from tests.conftest import OTHER_USER, USER, gcp_cluster_body, seed_nodepool_body
from tests.support.resources import create_cluster

NOT_FOUND_NODEPOOL = {
    "error": {"code": "NOT_FOUND", "message": "NodePool not found", "details": ""}
}

# What user B may try on user A's resources; {np}/{cl} are A's ids.
FOREIGN_REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/nodepools/{np}", None),
    ("PUT", "/nodepools/{np}", update_body("taken-over", 1)),
    ("PATCH", "/nodepools/{np}", {"spec": {"nodeCount": 0}}),
    ("DELETE", "/nodepools/{np}", None),
    ("GET", "/nodepools/{np}/status", None),
    ("GET", "/clusters/{cl}", None),
    ("PUT", "/clusters/{cl}", gcp_cluster_body("taken-over")),
    ("DELETE", "/clusters/{cl}", None),
    ("DELETE", "/clusters/{cl}?force=true", None),
    ("GET", "/clusters/{cl}/status", None),
    ("GET", "/clusters/{cl}/nodepools", None),
    ("POST", "/clusters/{cl}/nodepools", "nodepool"),
    ("POST", "/nodepools", "nodepool"),
    ("PUT", "/nodepools/{np}?dryRun=true", update_body("taken-over", 1)),
    ("POST", "/nodepools?dryRun=true", "nodepool"),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), FOREIGN_REQUESTS, ids=[f"{m} {p}" for m, p, _ in FOREIGN_REQUESTS]
)
async def test_another_owners_resource_is_404_and_untouched(
    api: httpx.AsyncClient, nodepool: dict[str, Any], method: str, path: str, body: Any
) -> None:
    cluster_id = nodepool["cluster_id"]
    if body == "nodepool":
        body = seed_nodepool_body(cluster_id, "intruder")
    headers = {**OTHER_USER, **MERGE_PATCH} if method == "PATCH" else OTHER_USER
    url = API + path.format(np=nodepool["id"], cl=cluster_id)
    response = await api.request(method, url, json=body, headers=headers)
    error = assert_error(response, 404, "NOT_FOUND")
    if "/nodepools/" in path and "/clusters/" not in path:
        assert response.json() == NOT_FOUND_NODEPOOL
    else:
        assert error["message"] == "Cluster not found"
    # A's nodepool and cluster are exactly as they were.
    assert (await api.get(f"{API}/nodepools/{nodepool['id']}", headers=USER)).json() == nodepool
    listed = await api.get(f"{API}/clusters/{cluster_id}/nodepools", headers=USER)
    assert listed.json()["total"] == 1


async def test_second_user_lists_nothing_of_the_first(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    for path in ("/nodepools", "/clusters", "/nodepools?status=Pending", "/clusters?platform=gcp"):
        listing = (await api.get(API + path, headers=OTHER_USER)).json()
        assert listing["total"] == 0, path
        assert listing.get("nodepools", listing.get("clusters")) == []
    filtered = await api.get(
        f"{API}/nodepools?cluster_id={nodepool['cluster_id']}", headers=OTHER_USER
    )
    assert filtered.json()["total"] == 0


async def test_totals_count_only_the_callers_resources(api: httpx.AsyncClient) -> None:
    mine = await create_cluster(api, gcp_cluster_body("mine"))
    theirs = await create_cluster(api, gcp_cluster_body("theirs"), user=OTHER_USER)
    for i in range(3):
        await create_nodepool(api, mine["id"], f"pool-{i}")
    for i in range(2):
        await create_nodepool(api, theirs["id"], f"pool-{i}", user=OTHER_USER)
    assert (await api.get(f"{API}/nodepools", headers=USER)).json()["total"] == 3
    assert (await api.get(f"{API}/nodepools", headers=OTHER_USER)).json()["total"] == 2
    assert (await api.get(f"{API}/clusters", headers=USER)).json()["total"] == 1
    listed = (await api.get(f"{API}/nodepools?limit=100", headers=OTHER_USER)).json()
    assert {n["cluster_id"] for n in listed["nodepools"]} == {theirs["id"]}
    assert {n["created_by"] for n in listed["nodepools"]} == {"other@example.com"}


async def test_names_are_per_owner(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    # B may use A's cluster name and, in B's own cluster, A's nodepool name.
    theirs = await create_cluster(api, gcp_cluster_body(), user=OTHER_USER)
    created = await create_nodepool(api, theirs["id"], nodepool["name"], user=OTHER_USER)
    assert created["id"] != nodepool["id"]


async def test_owner_is_the_email_whatever_its_case(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    shouting = {"X-User-Email": " User@EXAMPLE.com "}
    listing = (await api.get(f"{API}/nodepools", headers=shouting)).json()
    assert [n["id"] for n in listing["nodepools"]] == [nodepool["id"]]
