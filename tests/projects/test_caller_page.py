"""caller_page.lua through ``RedisStore.caller_page``: one page of the resources of every
project a caller belongs to, merged in creation order (ties by id, as one sorted set would order
them), with the total. Indexes and views are built directly in the test's namespace; the far
offsets (offset + limit > 1000) take the bisection path, which must give the pages the near path
and Python's own merge give. A membership changing between the script's two calls is read
again. One test goes through the API, with projects and clusters made by it."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from cls_core.errors import Unavailable
from cls_core.store import RedisStore
from cls_core.store.redis_store import CallerProjects
from cls_runtime.settings import Settings
from shared_models.projects import personal_project_id
from tests.projects.conftest import (
    ALICE,
    BOB,
    cluster_in,
    create_project,
    grant,
    listed_ids,
)

EMAIL = "pager@example.com"
PERSONAL = personal_project_id(EMAIL)
# The creation scores of real resources: microseconds since the epoch.
BASE = 1.7e15
# A resource as the test stores it: (score, id, project).
Entry = tuple[float, str, str]


class Pages:
    """A caller's projects, their indexes and views, built directly in Redis."""

    def __init__(self, redis: Redis, store: RedisStore, settings: Settings) -> None:
        self.redis = redis
        self.store = store
        self.namespace = settings.namespace
        self.names = settings.names

    def index_of(self, project: str) -> str:
        return f"{self.namespace}:pagetest:idx:{project}"

    def caller(
        self, groups: tuple[str, ...] = (), project_filter: str | None = None
    ) -> CallerProjects:
        keys = [self.names.user_projects(EMAIL)]
        keys += [self.names.group_projects(group) for group in groups]
        return CallerProjects(keys, PERSONAL, self.index_of, project_filter)

    async def join(self, project: str, member_key: str | None = None) -> None:
        key = member_key or self.names.user_projects(EMAIL)
        await self.redis.zadd(key, {project: float(await self.redis.zcard(key) + 1)})

    async def leave(self, project: str) -> None:
        await self.redis.zrem(self.names.user_projects(EMAIL), project)

    async def store_entries(self, entries: list[Entry]) -> None:
        """Each entry in its project's index (with its score), and its view."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for score, resource_id, project in entries:
                pipe.zadd(self.index_of(project), {resource_id: score})
                view = orjson.dumps({"id": resource_id, "project": project}).decode()
                pipe.set(self.names.view("cluster", resource_id), view)
            await pipe.execute()

    async def page(self, caller: CallerProjects, offset: int, limit: int) -> tuple[int, list[str]]:
        total, joined = await self.store.caller_page("cluster", caller, offset, limit)
        items: list[dict[str, Any]] = orjson.loads(f"[{joined}]")
        return total, [item["id"] for item in items]

    async def every_page(self, caller: CallerProjects, limit: int) -> list[str]:
        """Every id, paging with ``limit`` until the end (asserting a constant total)."""
        seen: list[str] = []
        total, offset = None, 0
        while True:
            page_total, ids = await self.page(caller, offset, limit)
            assert total in (None, page_total)
            total = page_total
            seen += ids
            offset += limit
            if offset >= page_total:
                assert len(seen) == page_total
                return seen
            assert len(ids) == limit


@pytest.fixture
def pages(redis: Redis, store: RedisStore, settings: Settings) -> Pages:
    return Pages(redis, store, settings)


def project_name(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def resource_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def ordered(entries: list[Entry], projects: set[str] | None = None) -> list[str]:
    """The ids in creation order, ties by id (as a sorted set orders them)."""
    kept = [e for e in entries if projects is None or e[2] in projects]
    return [resource_id for _, resource_id, _ in sorted(kept)]


async def spread(
    pages: Pages, projects: list[str], count: int, score: Callable[[int], float], seed: int = 7
) -> list[Entry]:
    """``count`` resources over ``projects`` at random, the i-th created at ``score(i)``."""
    rng = random.Random(seed)
    entries = [(score(i), resource_id(rng), rng.choice(projects)) for i in range(count)]
    await pages.store_entries(entries)
    return entries


async def member_of(pages: Pages, count: int) -> list[str]:
    """The caller's personal project and ``count - 1`` others they joined."""
    others = [project_name(i) for i in range(1, count)]
    for project in others:
        await pages.join(project)
    return [PERSONAL, *others]


# ---- merged pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("projects", [1, 3, 25])
@pytest.mark.parametrize("limit", [1, 7, 50, 100])
async def test_every_resource_is_paged_once_in_creation_order(
    pages: Pages, projects: int, limit: int
) -> None:
    mine = await member_of(pages, projects)
    entries = await spread(pages, mine, 150, lambda i: BASE + 10 * i)
    assert await pages.every_page(pages.caller(), limit) == ordered(entries)


async def test_the_projects_of_the_caller_s_groups_are_merged_too(pages: Pages) -> None:
    mine = await member_of(pages, 2)
    by_group = [project_name(50), project_name(51)]
    for project in by_group:
        await pages.join(project, pages.names.group_projects("sre"))
    await pages.join(project_name(52), pages.names.group_projects("ops"))
    entries = await spread(pages, [*mine, *by_group, project_name(52)], 60, lambda i: BASE + i)
    caller = pages.caller(groups=("sre",))
    assert await pages.every_page(caller, 9) == ordered(entries, {*mine, *by_group})
    # A project of both a membership and a group is read once.
    await pages.join(by_group[0])
    assert await pages.every_page(caller, 9) == ordered(entries, {*mine, *by_group})


async def test_resources_of_projects_the_caller_is_not_in_are_never_listed(pages: Pages) -> None:
    mine = await member_of(pages, 3)
    entries = await spread(
        pages, [*mine, project_name(90), project_name(91)], 80, lambda i: BASE + i
    )
    assert await pages.every_page(pages.caller(), 11) == ordered(entries, set(mine))


@pytest.mark.parametrize("projects", [3, 25])
async def test_equal_scores_across_projects_are_ordered_by_id(pages: Pages, projects: int) -> None:
    mine = await member_of(pages, projects)
    # 120 resources created at only 4 distinct moments.
    entries = await spread(pages, mine, 120, lambda i: BASE + i % 4)
    expected = ordered(entries)
    for limit in (1, 5, 13, 100):
        assert await pages.every_page(pages.caller(), limit) == expected


async def test_a_page_past_the_end_is_empty_with_the_total(pages: Pages) -> None:
    mine = await member_of(pages, 3)
    await spread(pages, mine, 10, lambda i: BASE + i)
    assert await pages.page(pages.caller(), 10, 5) == (10, [])
    assert await pages.page(pages.caller(), 5000, 5) == (10, [])


async def test_a_caller_with_nothing_gets_an_empty_page(pages: Pages) -> None:
    assert await pages.page(pages.caller(), 0, 50) == (0, [])
    await member_of(pages, 3)
    assert await pages.page(pages.caller(), 0, 50) == (0, [])


# ---- the project filter ---------------------------------------------------------------------


async def test_a_filter_on_one_of_the_caller_s_projects_pages_it_alone(pages: Pages) -> None:
    mine = await member_of(pages, 4)
    entries = await spread(pages, mine, 60, lambda i: BASE + i)
    for project in mine:
        caller = pages.caller(project_filter=project)
        assert await pages.every_page(caller, 7) == ordered(entries, {project})


async def test_a_filter_on_a_project_the_caller_is_not_in_is_empty(pages: Pages) -> None:
    mine = await member_of(pages, 2)
    await spread(pages, [*mine, project_name(90)], 30, lambda i: BASE + i)
    caller = pages.caller(project_filter=project_name(90))
    assert await pages.page(caller, 0, 50) == (0, [])


# ---- far offsets: the bisection ---------------------------------------------------------------

FAR_COUNT = 2600
SCORES: dict[str, Callable[[int], float]] = {
    "distinct": lambda i: BASE + 3 * i,
    # Long runs of equal scores, some across the offsets probed.
    "runs of ties": lambda i: BASE + i // 150,
    "all equal": lambda i: BASE,
    # Neighbouring doubles: nothing lies between two scores for the bisection to try.
    "adjacent doubles": lambda i: _adjacent(BASE, i // 7),
    "small and negative": lambda i: -1.0 + i / 1000,
}


def _adjacent(start: float, steps: int) -> float:
    value = start
    for _ in range(steps):
        value = math.nextafter(value, math.inf)
    return value


@pytest.mark.parametrize("scores", list(SCORES))
@pytest.mark.parametrize("projects", [1, 4])
async def test_far_pages_are_the_pages_of_the_merge(
    pages: Pages, scores: str, projects: int
) -> None:
    mine = await member_of(pages, projects)
    entries = await spread(pages, mine, FAR_COUNT, SCORES[scores])
    expected = ordered(entries)
    caller = pages.caller()
    for offset, limit in [
        (990, 10),
        (990, 11),
        (991, 100),
        (1000, 1),
        (1499, 100),
        (1500, 37),
        (2499, 100),
        (2550, 100),
        (2599, 1),
        (2600, 5),
    ]:
        total, ids = await pages.page(caller, offset, limit)
        assert total == FAR_COUNT
        assert ids == expected[offset : offset + limit], (offset, limit)


async def test_far_and_near_paths_agree_where_both_reach(pages: Pages, redis: Redis) -> None:
    # The same resources, far into a long list and near the start of a short one: a list of
    # 1000 more resources created earlier puts the same window past the near path's reach.
    mine = await member_of(pages, 4)
    late = await spread(pages, mine, 300, lambda i: BASE + 1000 + i // 3, seed=1)
    near = [await pages.page(pages.caller(), offset, 50) for offset in range(0, 300, 50)]
    await spread(pages, mine, 1000, lambda i: BASE + i / 2, seed=2)
    far = [await pages.page(pages.caller(), 1000 + offset, 50) for offset in range(0, 300, 50)]
    assert [ids for _, ids in far] == [ids for _, ids in near]
    assert [ids for _, ids in near] == [ordered(late)[o : o + 50] for o in range(0, 300, 50)]


async def test_paging_through_a_long_list_sees_everything_once(pages: Pages) -> None:
    mine = await member_of(pages, 5)
    entries = await spread(pages, mine, FAR_COUNT, lambda i: BASE + i // 3)
    assert await pages.every_page(pages.caller(), 100) == ordered(entries)


# ---- memberships changing between the two calls --------------------------------------------


def between_calls(store: RedisStore, change: Callable[[int], Any]) -> list[list[Any]]:
    """Run ``change(n)`` (a coroutine function) after the script's n-th call; the replies."""
    script = store._caller_page_script
    replies: list[list[Any]] = []

    async def wrapped(keys: list[str], args: list[Any]) -> Any:
        reply = await script(keys, args)
        replies.append(reply)
        await change(len(replies))
        return reply

    store._caller_page_script = wrapped  # type: ignore[assignment]
    return replies


async def test_a_project_joined_between_the_calls_is_read_on_a_third(
    pages: Pages, store: RedisStore
) -> None:
    mine = await member_of(pages, 3)
    joined = project_name(77)
    entries = await spread(pages, [*mine, joined], 40, lambda i: BASE + i)

    async def join_after_first(n: int) -> None:
        if n == 1:
            await pages.join(joined)

    replies = between_calls(store, join_after_first)
    total, ids = await pages.page(pages.caller(), 0, 100)
    assert [reply[0] for reply in replies] == ["projects", "projects", "page"]
    assert ids == ordered(entries)
    assert total == len(entries)


async def test_a_project_left_between_the_calls_is_not_listed(
    pages: Pages, store: RedisStore
) -> None:
    mine = await member_of(pages, 3)
    entries = await spread(pages, mine, 40, lambda i: BASE + i)

    async def leave_after_first(n: int) -> None:
        if n == 1:
            await pages.leave(mine[2])

    replies = between_calls(store, leave_after_first)
    total, ids = await pages.page(pages.caller(), 0, 100)
    assert [reply[0] for reply in replies] == ["projects", "page"]
    assert ids == ordered(entries, set(mine[:2]))
    assert total == len(ids)


async def test_memberships_changing_on_every_call_answer_503(
    pages: Pages, store: RedisStore
) -> None:
    await member_of(pages, 2)

    async def join_another(n: int) -> None:
        await pages.join(project_name(100 + n))

    replies = between_calls(store, join_another)
    with pytest.raises(Unavailable) as raised:
        await pages.page(pages.caller(), 0, 10)
    assert raised.value.status_code == 503
    assert raised.value.headers["Retry-After"] == "1"
    assert all(reply[0] == "projects" for reply in replies)


async def test_a_personal_only_caller_needs_one_call(pages: Pages, store: RedisStore) -> None:
    entries = await spread(pages, [PERSONAL], 20, lambda i: BASE + i)

    async def nothing(n: int) -> None:
        return None

    replies = between_calls(store, nothing)
    assert await pages.page(pages.caller(), 0, 100) == (20, ordered(entries))
    assert len(replies) == 1


# ---- through the API ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [3, 10, 100])
async def test_a_member_of_25_projects_lists_every_cluster_once(
    api: httpx.AsyncClient, limit: int
) -> None:
    made: list[str] = []
    projects = [(await create_project(api, f"team-{i}"))["id"] for i in range(24)]
    for project in projects:
        await grant(api, project, BOB, "viewer")
    for round_ in range(2):
        for i, project in enumerate(projects):
            made.append((await cluster_in(api, project, f"c-{round_}-{i}"))["id"])
    made.append((await cluster_in(api, None, "bob-s", by=BOB))["id"])
    seen: list[str] = []
    for offset in range(0, len(made), limit):
        response = await api.get(
            f"/api/v1/clusters?limit={limit}&offset={offset}", headers={"X-User-Email": BOB}
        )
        assert response.json()["total"] == len(made)
        seen += [c["id"] for c in response.json()["clusters"]]
    assert seen == made
    assert await listed_ids(api, "clusters", ALICE) == made[:-1]
