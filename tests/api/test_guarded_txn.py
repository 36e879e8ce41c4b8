"""The guarded transaction (``store/guarded_txn.lua``): the checks and ops the quotas and the
idempotency keys use, that nothing is written when a plan holds an op it does not know, that the
plans of one call (an ingest window's) each hold or fail on their own, and that every key a
write or a status window touches is passed in KEYS (what Redis Cluster will need)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib.resources import files

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from cls_core.services.status import ApplyResult, Outcome, StatusService
from cls_core.store import RedisStore, Txn, TxnFailed
from cls_core.store.scripts import LuaScript
from cls_runtime.settings import Settings
from tests.api.conftest import API, recorded_commands, script_runs, window_of_reports
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


@pytest.mark.parametrize(("held", "holds"), [(None, True), ("0", True), ("1", False)])
async def test_a_not_equal_check_fails_only_when_the_field_holds_the_value(
    store: RedisStore, redis: Redis, key: Callable[[str], str], held: str | None, holds: bool
) -> None:
    if held is not None:
        await redis.hset(key("h"), "protected", held)
    txn = Txn().expect_field_not(key("h"), "protected", "1", "protected").set_value(key("s"), "v")
    if holds:
        await store.run(txn)
    else:
        with pytest.raises(TxnFailed) as failed:
            await store.run(txn)
        assert (failed.value.code, failed.value.actual) == ("protected", "1")
    assert await redis.exists(key("s")) == holds


async def test_an_expire_op_sets_the_key_s_time_to_live(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await store.run(Txn().hset(key("h"), {"a": "1"}).expire(key("h"), 60))
    assert 0 < await redis.pttl(key("h")) <= 60_000


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


async def test_an_expiry_gives_an_existing_key_a_time_to_live(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await redis.set(key("s"), "kept for a while")
    await store.run(Txn().pexpire(key("s"), 60_000).pexpire(key("missing"), 60_000))
    assert 0 < await redis.pttl(key("s")) <= 60_000
    assert await redis.exists(key("missing")) == 0


async def test_the_plans_of_one_call_hold_or_fail_each_on_its_own(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await redis.set(key("guard"), "now")
    first = Txn().set_value(key("a"), "1")
    failing = Txn().expect_value(key("guard"), "before", "changed").set_value(key("b"), "2")
    last = Txn().expect_value(key("guard"), "now", "changed").set_value(key("c"), "3")
    outcomes = await store.run_each_settled([first, failing, last])
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], TxnFailed) and outcomes[1].code == "changed"
    assert await redis.mget(key("a"), key("b"), key("c")) == ["1", None, "3"]


async def test_an_unknown_op_refuses_its_plan_before_anything_of_it_is_written(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    bad = Txn().hset(key("h"), {"a": "1"}).set_value(key("s"), "v")
    bad.ops.append({"o": "flushall", "k": 1})
    outcomes = await store.run_each_settled([Txn().set_value(key("before"), "1"), bad])
    assert outcomes[0] is None
    assert isinstance(outcomes[1], ResponseError) and "unknown op flushall" in str(outcomes[1])
    assert await redis.exists(key("h"), key("s")) == 0
    assert await redis.get(key("before")) == "1"


async def test_an_unknown_check_refuses_its_plan_and_the_next_plans_still_run(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    bad = Txn().hset(key("h"), {"a": "1"})
    bad.checks.append({"c": "whatever", "k": 1, "fail": "x"})
    outcomes = await store.run_each_settled([bad, Txn().set_value(key("after"), "1")])
    assert isinstance(outcomes[0], ResponseError) and "unknown check whatever" in str(outcomes[0])
    assert outcomes[1] is None
    assert await redis.exists(key("h")) == 0
    assert await redis.get(key("after")) == "1"


async def test_an_error_reply_stops_its_plan_where_it_happened_and_the_next_plans_still_run(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await redis.set(key("string"), "not a hash")
    bad = Txn().set_value(key("written"), "1").hset(key("string"), {"a": "1"})
    bad.set_value(key("never"), "1")
    outcomes = await store.run_each_settled([bad, Txn().set_value(key("after"), "1")])
    assert isinstance(outcomes[0], ResponseError) and str(outcomes[0]).startswith("WRONGTYPE")
    assert outcomes[1] is None
    # As in a lone script: what ran before the error stays, nothing after it runs.
    assert await redis.mget(key("written"), key("never"), key("after")) == ["1", None, "1"]


async def test_a_key_index_outside_its_plan_refuses_the_plan_before_anything_is_written(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await redis.set(key("next"), "kept")
    bad = Txn().set_value(key("s"), "v")
    bad.ops.append({"o": "del", "k": 2})  # KEYS[2] is the next plan's key
    outcomes = await store.run_each_settled([bad, Txn().expect_value(key("next"), "kept", "x")])
    assert isinstance(outcomes[0], ResponseError) and "key index 2" in str(outcomes[0])
    assert outcomes[1] is None
    assert await redis.exists(key("s")) == 0
    assert await redis.get(key("next")) == "kept"


async def test_keys_not_shared_out_exactly_among_the_plans_refuse_the_whole_call(
    redis: Redis, key: Callable[[str], str]
) -> None:
    script = LuaScript.of_file(redis, "guarded_txn.lua")
    plan = Txn().set_value(key("s"), "v").payload().decode()
    with pytest.raises(ResponseError, match="the plans have 1 keys, KEYS has 2"):
        await script([key("s"), key("extra")], [1, plan])
    with pytest.raises(ResponseError, match="pairs of a key count and a plan"):
        await script([key("s")], [1, plan, 1])
    assert await redis.exists(key("s")) == 0


async def test_a_write_refused_for_memory_is_an_out_of_memory_error_in_its_place(
    private_store: RedisStore, private_client: Redis, key: Callable[[str], str]
) -> None:
    """What the ingester tells apart from a broken report: it waits for Redis, it does not
    requeue (status_ingester/redis_health.py)."""
    await private_client.config_set("maxmemory", 1)
    try:
        outcomes = await private_store.run_each_settled([Txn().set_value(key("s"), "v")])
    finally:
        await private_client.config_set("maxmemory", 0)
    assert isinstance(outcomes[0], OutOfMemoryError), outcomes
    assert await private_client.exists(key("s")) == 0


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


async def test_every_key_a_status_window_touches_is_passed_in_keys(
    private_api: httpx.AsyncClient, private_client: Redis, private_status: StatusService
) -> None:
    cluster = await create_cluster(private_api, gcp_cluster_body("window"))
    items = await window_of_reports(private_api, cluster["id"], 3)
    async with recorded_commands(private_client) as seen:
        results = await private_status.apply_many(items)
    outcomes = [r.outcome for r in results if isinstance(r, ApplyResult)]
    assert outcomes == [Outcome.APPLIED] * 4 + [Outcome.NOT_FOUND], results
    runs = script_runs(seen)
    assert {c.split()[1] for c, _ in runs} >= {GUARDED_TXN_SHA}
    for call, commands in runs:
        parts = call.split()
        declared = set(parts[3 : 3 + int(parts[2])])
        for command in commands:  # each command the scripts run names a key first
            assert command.split()[1] in declared, (command, sorted(declared))
