"""Racing clients: If-Match makes exactly one writer win per version, unconditional merge
patches never lose each other, one name is created once, and a cluster delete racing creates
never leaves an orphan nodepool."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from tests.api.conftest import API, MERGE_PATCH, assert_error, create_nodepool, update_body
from tests.conftest import USER, api_client, gcp_cluster_body, matching_keys, seed_nodepool_body
from tests.support.deletion import finish_cluster_deletions
from tests.support.resources import create_cluster

RACERS = 20


def codes(responses: list[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in responses)


async def test_if_match_race_has_exactly_one_winner_per_version(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    for generation in (2, 3, 4):
        current = (await api.get(url, headers=USER)).json()
        guard = {**USER, "If-Match": f'"{current["resource_version"]}"'}
        # Every client read the same version and sends its own nodeCount, each a real change
        # (a PUT identical to the stored state is a no-op that succeeds, before the winner).
        puts = [
            api.put(url, json=update_body(node_count=100 * generation + i), headers=guard)
            for i in range(RACERS)
        ]
        responses = await asyncio.gather(*puts)
        assert codes(responses) == [200] + [409] * (RACERS - 1)
        [winner] = [r for r in responses if r.status_code == 200]
        for loser in (r for r in responses if r.status_code == 409):
            assert_error(loser, 409, "CONFLICT")
        stored = (await api.get(url, headers=USER)).json()
        # No lost update: what is stored is exactly what the one winner was told.
        assert stored == winner.json()
        assert stored["generation"] == generation


async def test_if_match_race_between_two_api_replicas_has_exactly_one_winner(
    api: httpx.AsyncClient, settings: Settings, nodepool: dict[str, Any]
) -> None:
    # Each replica serialises the writes to one resource it serves itself; between replicas only
    # the resource_version check of the guarded transaction stands between two writers.
    url = f"{API}/nodepools/{nodepool['id']}"
    async with api_client(settings, relay_events=False) as replica:
        for generation in (2, 3, 4):
            current = (await api.get(url, headers=USER)).json()
            guard = {**USER, "If-Match": f'"{current["resource_version"]}"'}
            puts = [
                (api, replica)[i % 2].put(
                    url, json=update_body(node_count=100 * generation + i), headers=guard
                )
                for i in range(RACERS)
            ]
            responses = await asyncio.gather(*puts)
            assert codes(responses) == [200] + [409] * (RACERS - 1)
            [winner] = [r for r in responses if r.status_code == 200]
            assert (await api.get(url, headers=USER)).json() == winner.json()


async def test_if_match_race_between_patch_put_and_delete(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    guard = {**USER, "If-Match": f'"{nodepool["resource_version"]}"'}
    responses = await asyncio.gather(
        api.put(url, json=update_body(node_count=4), headers=guard),
        api.patch(url, json={"spec": {"nodeCount": 5}}, headers={**guard, **MERGE_PATCH}),
        api.delete(url, headers=guard),
    )
    winners = [r for r in responses if r.status_code in (200, 204)]
    assert len(winners) == 1, [r.status_code for r in responses]
    losers = {r.status_code for r in responses if r not in winners}
    # A loser that re-reads after a winning DELETE finds nothing: 404 rather than 409.
    assert losers <= ({404, 409} if winners[0].status_code == 204 else {409}), losers


async def test_unconditional_merge_patches_never_lose_each_other(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    headers = {**USER, **MERGE_PATCH}
    patches = [
        api.patch(
            url, json={"spec": {"platform": {"gcp": {"labels": {f"k{i}": "v"}}}}}, headers=headers
        )
        for i in range(RACERS)
    ]
    assert codes(await asyncio.gather(*patches)) == [200] * RACERS
    stored = (await api.get(url, headers=USER)).json()
    assert stored["spec"]["platform"]["gcp"]["labels"] == {f"k{i}": "v" for i in range(RACERS)}
    assert stored["generation"] == 1 + RACERS


async def test_concurrent_creates_of_one_name_have_exactly_one_winner(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"])
    creates = [
        api.post(f"{API}/nodepools", json=body, headers=USER)
        if i % 2
        else api.post(f"{API}/clusters/{cluster['id']}/nodepools", json=body, headers=USER)
        for i in range(RACERS)
    ]
    responses = await asyncio.gather(*creates)
    assert codes(responses) == [201] + [409] * (RACERS - 1)
    [winner] = [r.json() for r in responses if r.status_code == 201]
    for loser in (r for r in responses if r.status_code == 409):
        error = assert_error(loser, 409, "CONFLICT")
        assert error["details"] == f"existing nodepool id: {winner['id']}"
    listing = (await api.get(f"{API}/nodepools", headers=USER)).json()
    assert [n["id"] for n in listing["nodepools"]] == [winner["id"]]


async def test_concurrent_renames_onto_one_name_have_exactly_one_winner(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    pools = [await create_nodepool(api, cluster["id"], f"pool-{i}") for i in range(5)]
    renames = [
        api.put(f"{API}/nodepools/{p['id']}", json=update_body("target"), headers=USER)
        for p in pools
    ]
    assert codes(await asyncio.gather(*renames)) == [200] + [409] * 4
    names = [
        n["name"] for n in (await api.get(f"{API}/nodepools", headers=USER)).json()["nodepools"]
    ]
    assert names.count("target") == 1 and len(names) == 5


async def test_concurrent_creates_of_one_cluster_name_have_exactly_one_winner(
    api: httpx.AsyncClient,
) -> None:
    creates = [
        api.post(f"{API}/clusters", json=gcp_cluster_body("racy"), headers=USER)
        for _ in range(RACERS)
    ]
    assert codes(await asyncio.gather(*creates)) == [201] + [409] * (RACERS - 1)
    assert (await api.get(f"{API}/clusters", headers=USER)).json()["total"] == 1


async def namespace_nodepool_keys(redis: Redis, settings: Settings) -> list[str]:
    """Every nodepool record left in Redis (scanning is fine in a test)."""
    prefix = settings.names.record("nodepool", "")
    return [k for k in await matching_keys(redis, f"{prefix}*") if not k.endswith(":controllers")]


async def test_create_racing_a_cluster_delete_never_leaves_an_orphan(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    outcomes = set()
    for round_ in range(8):
        cluster = await create_cluster(api, gcp_cluster_body(f"c-{round_}"))
        create, delete = await asyncio.gather(
            api.post(f"{API}/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER),
            api.delete(f"{API}/clusters/{cluster['id']}", headers=USER),
        )
        outcome = (create.status_code, delete.status_code)
        # Either the create got in first (and the delete refused), or the delete did.
        assert outcome in {(201, 409), (404, 202)}, (create.text, delete.text)
        outcomes.add(outcome)
        if delete.status_code == 202:
            assert await redis.zcard(settings.names.cluster_nodepools(cluster["id"])) == 0
            assert await redis.hlen(settings.names.nodepool_names(cluster["id"])) == 0
    listed = (await api.get(f"{API}/nodepools?limit=100", headers=USER)).json()
    surviving = {
        c["id"]
        for c in (await api.get(f"{API}/clusters?limit=100", headers=USER)).json()["clusters"]
    }
    assert {n["cluster_id"] for n in listed["nodepools"]} <= surviving
    assert len(await namespace_nodepool_keys(redis, settings)) == listed["total"]


async def test_creates_racing_a_forced_cluster_delete_leave_nothing_behind(
    api: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    cluster = await create_cluster(api)
    await create_nodepool(api, cluster["id"], "existing")
    creates = [
        api.post(
            f"{API}/nodepools", json=seed_nodepool_body(cluster["id"], f"new-{i}"), headers=USER
        )
        for i in range(10)
    ]
    delete = api.delete(f"{API}/clusters/{cluster['id']}?force=true", headers=USER)
    *created, deleted = await asyncio.gather(*creates, delete)
    assert deleted.status_code == 202, deleted.text
    # Refused once the cluster is Deleting (409 CLUSTER_DELETING), or once it is purged (404).
    assert {r.status_code for r in created} <= {201, 404, 409}
    await finish_cluster_deletions(settings)
    # Whatever got created before the delete was deleted with the cluster.
    for response in (r for r in created if r.status_code == 201):
        gone = await api.get(f"{API}/nodepools/{response.json()['id']}", headers=USER)
        assert gone.status_code == 404
    assert (await api.get(f"{API}/nodepools", headers=USER)).json()["total"] == 0
    assert await namespace_nodepool_keys(redis, settings) == []
