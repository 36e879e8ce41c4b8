"""The guarded transaction (``store/guarded_txn.lua``): the checks and ops the quotas and the
idempotency keys use, that nothing is written when a plan holds an op it does not know, and
that every key a write touches is passed in KEYS (what Redis Cluster will need)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib.resources import files

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from cls_core.store import RedisStore, Txn, TxnFailed
from cls_runtime.settings import Settings
from tests.api.conftest import API, recorded_commands, script_runs
from tests.conftest import USER, gcp_cluster_body, seed_nodepool_body
from tests.support.resources import create_cluster


@pytest.fixture
def key(settings: Settings) -> Callable[[str], str]:
    """A key of the test's namespace."""
    return lambda name: f"{settings.namespace}:txn:{name}"


async def test_an_unknown_op_is_refused_before_anything_is_written(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    txn = Txn().hset(key("h"), {"a": "1"}).set_value(key("s"), "v")
    txn.ops.append({"o": "flushall", "k": 1})
    with pytest.raises(ResponseError, match="unknown op flushall"):
        await store.run(txn)
    assert await redis.exists(key("h"), key("s")) == 0


async def test_an_unknown_check_is_refused_before_anything_is_written(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    txn = Txn().hset(key("h"), {"a": "1"})
    txn.checks.append({"c": "whatever", "k": 1, "fail": "x"})
    with pytest.raises(ResponseError, match="unknown check whatever"):
        await store.run(txn)
    assert await redis.exists(key("h")) == 0


async def test_a_count_below_check_fails_at_the_limit_with_the_count(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await redis.zadd(key("z"), {"a": 1, "b": 2})
    await store.run(Txn().expect_count_below(key("z"), 3, "full").zadd(key("z"), 3, "c"))
    with pytest.raises(TxnFailed) as failed:
        await store.run(Txn().expect_count_below(key("z"), 3, "full").zadd(key("z"), 4, "d"))
    assert (failed.value.code, failed.value.actual) == ("full", "3")
    assert await redis.zcard(key("z")) == 3


async def test_a_value_check_fails_when_the_key_holds_something_else(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await redis.set(key("s"), "now")
    with pytest.raises(TxnFailed) as failed:
        await store.run(Txn().expect_value(key("s"), "before", "changed").delete(key("s")))
    assert (failed.value.code, failed.value.actual) == ("changed", "now")
    assert await redis.get(key("s")) == "now"


@pytest.mark.parametrize(
    ("held", "deleted"),
    [
        ('{"fp": "f", "kind": "nodepool", "id": "mine"}', True),
        ('{"fp": "f", "kind": "nodepool", "id": "another"}', False),
        ('{"fp": "f", "kind": "nodepool"}', False),
        ("not json", False),
        ('["mine"]', False),
    ],
    ids=["names-it", "names-another", "names-none", "not-json", "not-an-object"],
)
async def test_a_conditional_delete_deletes_only_a_key_naming_the_resource(
    store: RedisStore, redis: Redis, key: Callable[[str], str], held: str, deleted: bool
) -> None:
    await redis.set(key("s"), held)
    await store.run(Txn().delete_if_json_field(key("s"), "id", "mine"))
    assert (await redis.get(key("s")) is None) == deleted


async def test_a_conditional_delete_of_a_missing_key_writes_nothing(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await store.run(Txn().delete_if_json_field(key("s"), "id", "mine"))
    assert await redis.exists(key("s")) == 0


GUARDED_TXN_SHA = hashlib.sha1(
    files("cls_core.store").joinpath("guarded_txn.lua").read_bytes()
).hexdigest()


def keyed(key: str) -> dict[str, str]:
    return {**USER, "Idempotency-Key": key}


async def test_every_key_a_write_touches_is_passed_in_keys(
    private_api: httpx.AsyncClient, private_client: Redis
) -> None:
    api = private_api
    async with recorded_commands(private_client) as seen:
        cluster = await create_cluster(api, gcp_cluster_body("keyed"))
        await api.post(f"{API}/clusters", json=gcp_cluster_body("second"), headers=keyed("c"))
        pools = []
        for i in range(2):
            body = seed_nodepool_body(cluster["id"], f"pool-{i}")
            pools.append(await api.post(f"{API}/nodepools", json=body, headers=keyed(f"n{i}")))
        await api.post(f"{API}/nodepools", json=body, headers=keyed("n1"))  # a replay
        await api.delete(f"{API}/nodepools/{pools[0].json()['id']}", headers=USER)
        await api.delete(f"{API}/clusters/{cluster['id']}?force=true", headers=USER)
    runs = [(c, run) for c, run in script_runs(seen) if c.split()[1] == GUARDED_TXN_SHA]
    assert len(runs) >= 7, "creates, deletes and the cascade each run a guarded transaction"
    for call, commands in runs:
        parts = call.split()
        declared = set(parts[3 : 3 + int(parts[2])])
        for command in commands:  # each command a guarded transaction runs names a key first
            assert command.split()[1] in declared, (command, sorted(declared))
