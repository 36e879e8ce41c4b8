"""A watch is served by whichever API replica the client reached, and sees every change,
whichever replica wrote it: the changes and their order live in Redis only."""

from __future__ import annotations

from tests.conftest import USER, gcp_cluster_body, seed_nodepool_body
from tests.e2e.conftest import ApiReplica
from tests.support.sse import watching

API = "/api/v1"


async def test_a_change_written_through_one_replica_reaches_a_watcher_on_the_other(
    replicas: tuple[ApiReplica, ApiReplica],
) -> None:
    a, b = replicas
    cluster = await b.http.post(f"{API}/clusters", json=gcp_cluster_body(), headers=USER)
    assert cluster.status_code == 201, cluster.text
    async with watching(a.http, f"{API}/nodepools", USER) as stream:
        body = seed_nodepool_body(cluster.json()["id"])
        created = await b.http.post(f"{API}/nodepools", json=body, headers=USER)
        assert created.status_code == 201, created.text
        event = await stream.next(within=10)
    assert event.type == "ADDED"
    assert event.resource == created.json()
