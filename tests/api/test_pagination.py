"""Listing: limit/offset edges, creation order, totals of filtered sets, every filter, and the
cost of a page (index reads only, proportional to the page, never a keyspace scan)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.api.conftest import (
    API,
    aws_cluster_body,
    create_nodepool,
    recorded_commands,
    update_body,
    verbs,
)
from tests.conftest import USER, controller_headers, gcp_cluster_body
from tests.support.deletion import delete_nodepool
from tests.support.resources import create_cluster


async def make_pools(
    api: httpx.AsyncClient, cluster_id: str, count: int, prefix: str = "pool"
) -> list[str]:
    """``count`` nodepools created one after the other; their ids in creation order."""
    return [(await create_nodepool(api, cluster_id, f"{prefix}-{i}"))["id"] for i in range(count)]


async def report(api: httpx.AsyncClient, nodepool_id: str, ready: bool) -> None:
    """The GCP controller reports the nodepool Ready (or failed) at its current generation."""
    current = (await api.get(f"{API}/nodepools/{nodepool_id}", headers=USER)).json()
    body: dict[str, Any] = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": current["generation"],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if not ready:
        body["last_error"] = "quota exceeded"
    response = await api.put(
        f"{API}/nodepools/{nodepool_id}/status", json=body, headers=controller_headers()
    )
    assert response.status_code == 200, response.text


async def page(api: httpx.AsyncClient, query: str = "", path: str = "/nodepools") -> dict[str, Any]:
    response = await api.get(f"{API}{path}?{query}", headers=USER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(listing: dict[str, Any], key: str = "nodepools") -> list[str]:
    return [item["id"] for item in listing[key]]


# ---- limit and offset --------------------------------------------------------------------


async def test_defaults_are_limit_50_offset_0(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    await make_pools(api, cluster["id"], 2)
    listing = await page(api)
    assert (listing["limit"], listing["offset"], listing["total"]) == (50, 0, 2)


async def test_default_limit_caps_the_page_at_50(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    created = await asyncio.gather(
        *(create_nodepool(api, cluster["id"], f"p-{i}") for i in range(51))
    )
    listing = await page(api)
    assert (len(listing["nodepools"]), listing["total"]) == (50, 51)
    assert len(created) == 51


@pytest.mark.parametrize("limit", [1, 100])
async def test_limit_bounds_are_accepted(
    api: httpx.AsyncClient, cluster: dict[str, Any], limit: int
) -> None:
    await make_pools(api, cluster["id"], 2)
    listing = await page(api, f"limit={limit}")
    assert listing["limit"] == limit
    assert len(listing["nodepools"]) == min(limit, 2)


async def test_pages_walk_the_creation_order_without_gaps_or_repeats(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    created = await make_pools(api, cluster["id"], 7)
    pages = [await page(api, f"limit=3&offset={offset}") for offset in (0, 3, 6)]
    assert [len(p["nodepools"]) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in ids(p)] == created
    assert {p["total"] for p in pages} == {7}
    assert [p["offset"] for p in pages] == [0, 3, 6]


@pytest.mark.parametrize("offset", [4, 5, 1_000_000])
async def test_offset_at_or_past_the_end_is_an_empty_page_with_the_total(
    api: httpx.AsyncClient, cluster: dict[str, Any], offset: int
) -> None:
    await make_pools(api, cluster["id"], 4)
    listing = await page(api, f"offset={offset}")
    assert (listing["nodepools"], listing["total"], listing["offset"]) == ([], 4, offset)


async def test_order_is_by_creation_not_by_update(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    created = await make_pools(api, cluster["id"], 3)
    await api.put(f"{API}/nodepools/{created[0]}", json=update_body("renamed", 4), headers=USER)
    await api.patch(
        f"{API}/nodepools/{created[1]}",
        json={"spec": {"nodeCount": 5}},
        headers={**USER, "Content-Type": "application/merge-patch+json"},
    )
    assert ids(await page(api)) == created


async def test_deleted_nodepool_leaves_every_list(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    created = await make_pools(api, cluster["id"], 3)
    await delete_nodepool(api, created[1])
    expected = [created[0], created[2]]
    assert ids(await page(api)) == expected
    assert ids(await page(api, "status=Pending&health=Unknown")) == expected
    assert ids(await page(api, path=f"/clusters/{cluster['id']}/nodepools")) == expected
    assert (await page(api))["total"] == 2


# ---- filters -----------------------------------------------------------------------------


async def test_cluster_id_filter_counts_only_that_cluster(api: httpx.AsyncClient) -> None:
    first = await create_cluster(api, gcp_cluster_body("first"))
    second = await create_cluster(api, gcp_cluster_body("second"))
    in_first = await make_pools(api, first["id"], 3)
    in_second = await make_pools(api, second["id"], 4)
    filtered = await page(api, f"cluster_id={second['id']}&limit=2")
    assert (filtered["total"], ids(filtered)) == (4, in_second[:2])
    nested = await page(api, "limit=2", path=f"/clusters/{second['id']}/nodepools")
    assert nested == filtered
    assert ids(await page(api, f"cluster_id={first['id'].upper()}")) == in_first
    assert (await page(api))["total"] == 7


async def test_new_nodepools_are_pending_with_no_controllers(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    created = await make_pools(api, cluster["id"], 2)
    assert ids(await page(api, "status=Pending")) == created
    assert ids(await page(api, "health=Unknown")) == created
    assert {i["status"]["reason"] for i in (await page(api))["nodepools"]} == {"NoControllers"}
    for phase in ("Ready", "Progressing", "Failed"):
        assert (await page(api, f"status={phase}"))["total"] == 0


async def test_status_and_health_filters_follow_controller_reports(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    created = await make_pools(api, cluster["id"], 5)
    await report(api, created[1], ready=True)
    await report(api, created[3], ready=True)
    await report(api, created[4], ready=False)
    ready = await page(api, "status=Ready")
    assert (ready["total"], ids(ready)) == (2, [created[1], created[3]])
    assert ids(await page(api, "health=Healthy")) == [created[1], created[3]]
    assert ids(await page(api, "status=Failed&health=Unhealthy")) == [created[4]]
    assert ids(await page(api, "status=Pending")) == [created[0], created[2]]
    assert ids(await page(api, "status=Ready&limit=1&offset=1")) == [created[3]]
    assert (await page(api, "status=Ready&health=Unhealthy"))["total"] == 0


async def test_a_spec_change_moves_a_ready_nodepool_out_of_the_ready_filter(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    [nodepool_id] = await make_pools(api, cluster["id"], 1)
    await report(api, nodepool_id, ready=True)
    assert (await page(api, "status=Ready"))["total"] == 1
    await api.put(f"{API}/nodepools/{nodepool_id}", json=update_body("pool-0", 4), headers=USER)
    assert (await page(api, "status=Ready"))["total"] == 0
    assert ids(await page(api, "status=Progressing")) == [nodepool_id]


async def test_filters_combine_with_the_cluster(api: httpx.AsyncClient) -> None:
    first = await create_cluster(api, gcp_cluster_body("first"))
    second = await create_cluster(api, gcp_cluster_body("second"))
    [a] = await make_pools(api, first["id"], 1, "a")
    [b] = await make_pools(api, second["id"], 1, "b")
    await report(api, a, ready=True)
    await report(api, b, ready=True)
    listing = await page(api, f"status=Ready&cluster_id={second['id']}")
    assert (listing["total"], ids(listing)) == (1, [b])
    nested = await page(api, "health=Healthy", path=f"/clusters/{first['id']}/nodepools")
    assert ids(nested) == [a]


async def test_cluster_list_pages_and_filters_by_platform(api: httpx.AsyncClient) -> None:
    gcp = [(await create_cluster(api, gcp_cluster_body(f"g-{i}")))["id"] for i in range(3)]
    aws = [(await create_cluster(api, aws_cluster_body(f"a-{i}")))["id"] for i in range(2)]
    everything = await page(api, "limit=2&offset=2", path="/clusters")
    assert (everything["total"], ids(everything, "clusters")) == (5, gcp[2:] + aws[:1])
    only_aws = await page(api, "platform=aws", path="/clusters")
    assert (only_aws["total"], ids(only_aws, "clusters")) == (2, aws)
    assert (await page(api, "platform=azure", path="/clusters"))["total"] == 0
    pending = await page(api, "status=Pending&platform=gcp", path="/clusters")
    assert ids(pending, "clusters") == gcp
    assert (await page(api, "status=Ready", path="/clusters"))["total"] == 0


async def test_cluster_list_envelope(api: httpx.AsyncClient, cluster: dict[str, Any]) -> None:
    listing = await page(api, "limit=10", path="/clusters")
    assert listing == {"clusters": [cluster], "total": 1, "limit": 10, "offset": 0}


# ---- the cost of a page ------------------------------------------------------------------


async def test_a_filtered_page_reads_the_index_and_only_the_page(
    private_api: httpx.AsyncClient, private_client: Redis
) -> None:
    cluster = await create_cluster(private_api)
    await make_pools(private_api, cluster["id"], 30)
    async with recorded_commands(private_client) as seen:
        listing = await page(private_api, "limit=5&offset=20&status=Pending&health=Unknown")
    assert len(listing["nodepools"]) == 5 and listing["total"] == 30
    done = verbs(seen)
    assert done.count("ZRANGE") == 2 and done.count("ZCARD") == 1
    memberships, zrange = [c for _, c in seen if c.upper().startswith("ZRANGE")]
    assert ":member:user:" in memberships, memberships  # the caller's projects, then their page
    assert zrange.endswith(" 20 24"), zrange  # the page's slice of the index, by rank
    [mget] = [command for _, command in seen if command.upper().startswith("MGET")]
    assert len(mget.split()) == 1 + 5  # the views of the page's items, not of every nodepool
    assert "HMGET" not in done and "GET" not in done  # nothing read per item
    assert not {"KEYS", "SCAN", "SMEMBERS", "HGETALL", "ZSCAN", "HSCAN"} & set(done), done
