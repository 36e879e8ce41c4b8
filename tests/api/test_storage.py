"""Storage: every write request changes Redis in exactly one script run (record, indexes,
name reservation and outbox event together, atomically), a window of status reports in two
whatever its size, and no request scans the keyspace.

Watched with MONITOR on a redis-server of the test's own: commands a script runs are
reported with the origin 'lua', those the application sends with 'tcp'.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_core.services.status import StatusService
from cls_runtime.settings import Settings
from tests.api.conftest import (
    API,
    MERGE_PATCH,
    SCRIPT_CALLS,
    create_nodepool,
    recorded_commands,
    script_runs,
    update_body,
    verbs,
    window_of_reports,
)
from tests.conftest import USER, gcp_cluster_body, seed_nodepool_body
from tests.support.deletion import finish_cluster_deletions
from tests.support.resources import create_cluster

WRITES = {"HSET", "HDEL", "DEL", "ZADD", "ZREM", "XADD", "SET", "HMSET", "UNLINK", "EXPIRE"}
SCANS = {"KEYS", "SCAN", "HSCAN", "ZSCAN", "SSCAN"}
RECORDING = {"HELLO", "PING", "ECHO"}  # what recorded_commands sends itself


def released_cluster() -> dict[str, Any]:
    """The cluster fixture's body, renamed and with a release: a spec change."""
    body = gcp_cluster_body("renamed")
    body["spec"]["release"] = {"version": "1.31"}
    return body


Write = Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[httpx.Response]]

WRITE_REQUESTS: dict[str, Write] = {
    "create nodepool": lambda api, np: api.post(
        f"{API}/nodepools", json=seed_nodepool_body(np["cluster_id"], "second"), headers=USER
    ),
    "put nodepool": lambda api, np: api.put(
        f"{API}/nodepools/{np['id']}", json=update_body("renamed", 8), headers=USER
    ),
    "patch nodepool": lambda api, np: api.patch(
        f"{API}/nodepools/{np['id']}",
        json={"spec": {"nodeCount": 4}},
        headers={**USER, **MERGE_PATCH},
    ),
    "delete nodepool": lambda api, np: api.delete(f"{API}/nodepools/{np['id']}", headers=USER),
    "create cluster": lambda api, np: api.post(
        f"{API}/clusters", json=gcp_cluster_body("second"), headers=USER
    ),
    "put cluster": lambda api, np: api.put(
        f"{API}/clusters/{np['cluster_id']}", json=released_cluster(), headers=USER
    ),
}


def script_runs_that_wrote(seen: list[tuple[str, str]]) -> list[list[str]]:
    """The write commands of each script run that wrote anything."""
    runs = [
        [verb for verb in verbs([("lua", c) for c in run]) if verb in WRITES]
        for _, run in script_runs(seen)
    ]
    return [run for run in runs if run]


@pytest.mark.parametrize("name", list(WRITE_REQUESTS))
async def test_a_write_is_one_atomic_script_run(
    private_api: httpx.AsyncClient, private_client: Redis, name: str
) -> None:
    cluster = await create_cluster(private_api)
    nodepool = await create_nodepool(private_api, cluster["id"])
    async with recorded_commands(private_client) as seen:
        response = await WRITE_REQUESTS[name](private_api, nodepool)
    assert response.status_code in (200, 201, 204), response.text
    outside = [command for origin, command in seen if origin != "lua"]
    assert not WRITES & set(verbs([("tcp", c) for c in outside])), outside
    [run] = script_runs_that_wrote(seen)
    assert "XADD" in run  # the event is committed with the change
    assert "HSET" in run or "DEL" in run


async def test_a_forced_cluster_delete_is_one_guarded_transaction_per_resource(
    private_api: httpx.AsyncClient, private_client: Redis, private_settings: Settings
) -> None:
    """The DELETE puts the cluster in phase Deleting with its event; the cascade job deletes
    each nodepool in its own transaction (a controller reporting on one of them cannot fail
    the whole delete), each with its event, then purges the cluster. The nodepools'
    transactions run in one script call, each holding or failing on its own
    (test_guarded_txn.py); the cluster's purge runs once they are done."""
    cluster = await create_cluster(private_api)
    for name in ("a", "b"):
        await create_nodepool(private_api, cluster["id"], name)
    async with recorded_commands(private_client) as seen:
        url = f"{API}/clusters/{cluster['id']}?force=true"
        response = await private_api.delete(url, headers=USER)
        await finish_cluster_deletions(private_settings)
    assert response.status_code == 202, response.text
    deleting, nodepools, purge = script_runs_that_wrote(seen)
    # Besides the outbox events, each write appends its watch entry: the Deleting view
    # (MODIFIED), a purge's last view (DELETED); a forced nodepool has both.
    assert deleting.count("XADD") == 1 + 1 and "DEL" not in deleting
    assert nodepools.count("XADD") == 2 + 2 * 2 and nodepools.count("DEL") >= 2
    assert purge.count("XADD") == 0 + 1 and "DEL" in purge


async def test_a_window_of_status_reports_is_one_read_and_one_write_script_call(
    private_api: httpx.AsyncClient, private_client: Redis, private_status: StatusService
) -> None:
    """Whatever the number of resources in it: one call reads them all, one runs the guarded
    transaction of each changed one (the ingester's window, issue 13)."""
    cluster = await create_cluster(private_api)
    items = await window_of_reports(private_api, cluster["id"], 5)
    await private_status.apply_many(items[-2:-1])  # connected, and both scripts loaded
    async with recorded_commands(private_client) as seen:
        await private_status.apply_many(items)
    sent = verbs([(origin, c) for origin, c in seen if origin != "lua"])
    assert [verb for verb in sent if verb in SCRIPT_CALLS] == ["EVALSHA", "EVALSHA"], sent
    assert set(sent) - SCRIPT_CALLS <= RECORDING, sent
    [(_, read), (_, write)] = script_runs(seen)
    assert not WRITES & set(verbs([("lua", c) for c in read]))
    written = verbs([("lua", c) for c in write])
    # Per nodepool: its report, its record, and the create operation its Ready ends.
    assert written.count("HSET") == 3 * 5, written
    # No event: one entry each in its project's watch stream (the 5 nodepools; the cluster's
    # report was applied before, unchanged now).
    appended = [c for c in write if c.split()[0].upper() == "XADD"]
    assert len(appended) == 5 and all(":watch:" in c for c in appended), appended


async def test_no_request_scans_the_keyspace(
    private_api: httpx.AsyncClient, private_client: Redis
) -> None:
    cluster = await create_cluster(private_api)
    nodepool = await create_nodepool(private_api, cluster["id"])
    async with recorded_commands(private_client) as seen:
        for path in (
            "/nodepools",
            "/nodepools?status=Pending&health=Unknown",
            f"/nodepools?cluster_id={cluster['id']}",
            f"/clusters/{cluster['id']}/nodepools",
            "/clusters?platform=gcp",
            f"/nodepools/{nodepool['id']}",
            f"/nodepools/{nodepool['id']}/status",
        ):
            assert (await private_api.get(API + path, headers=USER)).status_code == 200
        for request in WRITE_REQUESTS.values():
            await request(private_api, nodepool)
    assert not SCANS & set(verbs(seen))
