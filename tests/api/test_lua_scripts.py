"""Contract tests of the Lua scripts (``cls_core/store/*.lua`` and the leader lock's), over the
real Redis: each check of the guarded transaction holds and fails as documented, each op writes
what it says, a failed check or a dry run writes nothing; the read scripts return what the store
expects and touch only keys passed in KEYS. (The guarded transaction's quota, value and
conditional-delete cases, unknown checks and ops, several plans in one call, and the keys passed
in KEYS are in test_guarded_txn.py.)"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_core.store import RedisStore, Txn, TxnFailed
from cls_core.store.scripts import LuaScript
from cls_runtime.settings import Settings
from tests.api.conftest import API, MERGE_PATCH, create_nodepool, recorded_commands, script_runs
from tests.conftest import USER, controller_headers, gcp_cluster_body
from tests.support.resources import create_cluster

Setup = Callable[[Redis, Callable[[str], str]], Awaitable[Any]]


@pytest.fixture
def key(settings: Settings) -> Callable[[str], str]:
    return lambda name: f"{settings.namespace}:lua:{name}"


async def nothing(redis: Redis, key: Callable[[str], str]) -> None:
    return None


async def a_hash(redis: Redis, key: Callable[[str], str]) -> None:
    await redis.hset(key("h"), mapping={"rv": "r1"})


async def a_sorted_set(redis: Redis, key: Callable[[str], str]) -> None:
    await redis.zadd(key("z"), {"a": 1.0, "b": 5.0})


async def a_string(redis: Redis, key: Callable[[str], str]) -> None:
    await redis.set(key("s"), "v1")


# (check, the state it meets, whether it holds)
CHECKS: dict[str, tuple[Callable[[Txn, Callable[[str], str]], Txn], Setup, bool]] = {
    "hget equal holds": (lambda t, k: t.expect_field(k("h"), "rv", "r1", "F"), a_hash, True),
    "hget different fails": (lambda t, k: t.expect_field(k("h"), "rv", "r2", "F"), a_hash, False),
    "hget absent holds": (lambda t, k: t.expect_field(k("h"), "x", None, "F"), a_hash, True),
    "hget absent fails": (lambda t, k: t.expect_field(k("h"), "rv", None, "F"), a_hash, False),
    "zcard equal holds": (lambda t, k: t.expect_count(k("z"), 2, "F"), a_sorted_set, True),
    "zcard different fails": (lambda t, k: t.expect_count(k("z"), 0, "F"), a_sorted_set, False),
    "zscore_le holds": (
        lambda t, k: t.expect_score_at_most(k("z"), "b", 5.0, "F"),
        a_sorted_set,
        True,
    ),
    "zscore_le above fails": (
        lambda t, k: t.expect_score_at_most(k("z"), "b", 4.0, "F"),
        a_sorted_set,
        False,
    ),
    "zscore_le missing member fails": (
        lambda t, k: t.expect_score_at_most(k("z"), "c", 9.0, "F"),
        a_sorted_set,
        False,
    ),
    "absent holds": (lambda t, k: t.expect_absent(k("s"), "F"), nothing, True),
    "absent fails": (lambda t, k: t.expect_absent(k("s"), "F"), a_string, False),
    "zcard_lt holds": (lambda t, k: t.expect_count_below(k("z"), 3, "F"), a_sorted_set, True),
    "zcard_lt fails": (lambda t, k: t.expect_count_below(k("z"), 2, "F"), a_sorted_set, False),
}


@pytest.mark.parametrize("case", CHECKS, ids=list(CHECKS))
async def test_each_check_holds_or_fails_as_documented(
    case: str, store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    add_check, setup, holds = CHECKS[case]
    await setup(redis, key)
    txn = add_check(Txn(), key).set_value(key("written"), "yes")
    if holds:
        await store.run(txn)
        assert await redis.get(key("written")) == "yes"
    else:
        with pytest.raises(TxnFailed) as failed:
            await store.run(txn)
        assert failed.value.code == "F"
        assert await redis.exists(key("written")) == 0  # a failed check writes nothing


async def test_each_op_writes_what_it_says(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await redis.hset(key("h"), mapping={"gone": "1", "kept": "1"})
    await redis.zadd(key("z"), {"old": 1.0})
    await redis.set(key("d"), "x")
    txn = (
        Txn()
        .hset(key("h"), {"a": "1", "b": "2"})
        .hdel(key("h"), "gone")
        .zadd(key("z"), 7.0, "new")
        .zrem(key("z"), "old")
        .delete(key("d"))
        .xadd(key("x"), {"event": "e1"})
        .set_value(key("s"), "v", px=60_000)
    )
    await store.run(txn)
    assert await redis.hgetall(key("h")) == {"kept": "1", "a": "1", "b": "2"}
    assert await redis.zrange(key("z"), 0, -1, withscores=True) == [("new", 7.0)]
    assert await redis.exists(key("d")) == 0
    entries: Any = await redis.xrange(key("x"))
    assert [fields for _, fields in entries] == [{"event": "e1"}]
    assert await redis.get(key("s")) == "v"
    assert 0 < await redis.pttl(key("s")) <= 60_000


async def test_a_dry_run_checks_everything_and_writes_nothing(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    await a_hash(redis, key)
    txn = Txn().expect_field(key("h"), "rv", "r1", "F").set_value(key("s"), "v")
    await store.run(txn, dry_run=True)
    assert await redis.exists(key("s")) == 0
    with pytest.raises(TxnFailed):
        await store.run(Txn().expect_field(key("h"), "rv", "r2", "F"), dry_run=True)


async def test_caller_page_pages_the_personal_index_when_the_caller_is_in_no_other_project(
    redis: Redis, key: Callable[[str], str]
) -> None:
    script = LuaScript.of_file(redis, "caller_page.lua")
    await redis.zadd(key("index-me"), {"a": 0.0, "b": 1.0, "c": 2.0})
    call = ([key("memberships"), key("index-me")], [1])
    assert await script(call[0], [*call[1], 1, 5, "", "me", "me"]) == ["page", 3, "b", "c"]
    assert await script(call[0], [*call[1], 0, 2, "", "me", "me"]) == ["page", 3, "a", "b"]
    assert await script(call[0], [*call[1], 3, 5, "", "me", "me"]) == ["page", 3]
    assert await script(call[0], [*call[1], 0, 0, "", "me", "me"]) == ["page", 3]


async def test_caller_page_names_the_projects_it_was_not_given_then_merges_them(
    redis: Redis, key: Callable[[str], str]
) -> None:
    script = LuaScript.of_file(redis, "caller_page.lua")
    await redis.zadd(key("memberships"), {"me": 0.0, "team": 1.0})
    await redis.zadd(key("index-me"), {"a": 1.0, "c": 3.0})
    await redis.zadd(key("index-team"), {"b": 2.0, "d": 4.0})
    assert await script([key("memberships"), key("index-me")], [1, 0, 10, "", "me", "me"]) == [
        "projects",
        "me",
        "team",
    ]
    both = [key("memberships"), key("index-me"), key("index-team")]
    assert await script(both, [1, 1, 2, "", "me", "me", "team"]) == ["page", 4, "b", "c"]
    only_team = [key("memberships"), key("index-team")]
    assert await script(only_team, [1, 0, 10, "team", "me", "team"]) == ["page", 2, "b", "d"]
    assert await script(only_team, [1, 0, 10, "elsewhere", "me", "team"]) == ["page", 0]


async def test_record_view_reads_the_project_the_version_and_the_view(
    redis: Redis, key: Callable[[str], str]
) -> None:
    script = LuaScript.of_file(redis, "record_view.lua")
    await redis.hset(key("record"), mapping={"project": "o", "rv": "r", "doc": "{}"})
    await redis.set(key("view"), '{"id":"x"}')
    assert await script([key("record"), key("view")], []) == ["o", "r", '{"id":"x"}']
    assert await script([key("record"), key("no-view")], []) == ["o", "r", None]
    assert await script([key("none"), key("no-view")], []) == [None, None, None]


async def test_record_view_reads_the_grants_of_the_expected_project_with_the_view(
    redis: Redis, key: Callable[[str], str]
) -> None:
    script = LuaScript.of_file(redis, "record_view.lua")
    await redis.hset(key("record"), mapping={"project": "p", "rv": "r"})
    await redis.set(key("view"), "{}")
    await redis.hset(key("members"), mapping={"me@x.io": "m"})
    await redis.hset(key("groups"), mapping={"sre": "g"})
    keys = [key("record"), key("view"), key("members"), key("groups")]
    assert await script(keys, ["me@x.io", "sre", "dev"]) == ["p", "r", "{}", "m", ["g", None]]
    assert await script(keys, ["you@x.io"]) == ["p", "r", "{}", None, []]


async def test_records_with_reports_reads_each_resource_s_fields_and_reports_in_order(
    redis: Redis, key: Callable[[str], str]
) -> None:
    script = LuaScript.of_file(redis, "records_with_reports.lua")
    await redis.hset(key("a"), mapping={"owner": "o", "rv": "r"})
    await redis.hset(key("a-reports"), mapping={"ctl": "{}"})
    await redis.hset(key("b"), mapping={"rv": "s"})
    keys = [key("a"), key("a-reports"), key("none"), key("none-reports"), key("b"), key("b-r")]
    replies = await script(keys, ["owner", "rv", "nope"])
    assert replies == [
        [["o", "r", None], ["ctl", "{}"]],
        [[None, None, None], []],
        [[None, "s", None], []],
    ]


async def test_records_with_reports_answers_an_unreadable_resource_in_its_place(
    redis: Redis, key: Callable[[str], str]
) -> None:
    script = LuaScript.of_file(redis, "records_with_reports.lua")
    await redis.set(key("string"), "not a hash")
    await redis.hset(key("a"), mapping={"rv": "r"})
    keys = [key("string"), key("string-reports"), key("a"), key("a-reports")]
    first, second = await script(keys, ["rv"])
    assert first[0] == "error" and first[1].startswith("WRONGTYPE"), first
    assert second == [["r"], []]


READ_SCRIPTS = ("caller_page.lua", "record_view.lua", "records_with_reports.lua")


async def test_every_key_a_read_script_touches_is_passed_in_keys(
    private_api: httpx.AsyncClient, private_client: Redis
) -> None:
    api = private_api
    cluster = await create_cluster(api)
    nodepool = await create_nodepool(api, cluster["id"])
    path = f"{API}/nodepools/{nodepool['id']}"
    project = (await api.post(f"{API}/projects", json={"name": "team"}, headers=USER)).json()
    shared = await create_cluster(api, gcp_cluster_body("shared", project_id=project["id"]))
    reads = [path, f"{API}/nodepools?limit=5", f"{API}/clusters/{cluster['id']}"]
    reads += [f"{API}/clusters/{shared['id']}"] * 2  # the second with the grants in the same call
    async with recorded_commands(private_client) as seen:
        for read in reads:
            assert (await api.get(read, headers=USER)).status_code == 200
        patch = {"spec": {"nodeCount": 4}}
        patched = await api.patch(path, json=patch, headers={**USER, **MERGE_PATCH})
        assert patched.status_code == 200, patched.text
        report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 2}
        reported = await api.put(f"{path}/status", json=report, headers=controller_headers())
        assert reported.status_code == 200, reported.text
    store_files = files("cls_core.store")
    shas = {hashlib.sha1(store_files.joinpath(n).read_bytes()).hexdigest() for n in READ_SCRIPTS}
    runs = [(call, run) for call, run in script_runs(seen) if call.split()[1] in shas]
    assert {call.split()[1] for call, _ in runs} == shas, "each read script ran"
    for call, commands in runs:
        parts = call.split()
        declared = set(parts[3 : 3 + int(parts[2])])
        for command in commands:  # each command of these scripts names one key, first
            assert command.split()[1] in declared, (command, sorted(declared))


async def test_the_leader_lock_is_extended_and_released_only_by_its_holder(
    store: RedisStore, redis: Redis, key: Callable[[str], str]
) -> None:
    holder = store.leader_lock(key("lock"), ttl=5, token="holder")
    other = store.leader_lock(key("lock"), ttl=5, token="other")
    assert await holder.acquire()
    assert not await other.acquire()
    assert not await other.renew()
    assert not await other.release()
    assert await holder.renew()
    assert await holder.holder() == "holder"
    assert await holder.release()
    assert await redis.exists(key("lock")) == 0
