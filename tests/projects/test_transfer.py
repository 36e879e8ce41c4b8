"""POST /clusters/{id}/transfer: a cluster and every nodepool of it move to another project in
one transaction (records, indexes, the cluster's name), by an admin of both projects; each
project records the move with its actor. A refused transfer moves nothing, and no status report
or nodepool create racing a transfer leaves a nodepool in the old project's indexes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cls_core.errors import NotFound
from cls_core.services.access import Caller
from cls_core.services.common import Preconditions
from cls_core.store import ClusterRecord, NodePoolRecord
from cls_runtime.settings import Settings
from shared_models.names import Names
from shared_models.projects import ProjectCreate, Role, personal_project_id
from shared_models.resources import ClusterCreate, NodePoolCreate
from tests.api.conftest import assert_error
from tests.conftest import controller_headers, gcp_cluster_body, matching_keys, seed_nodepool_body
from tests.projects.conftest import (
    ALICE,
    API,
    BOB,
    Services,
    as_user,
    cluster_in,
    create_project,
    grant,
    listed_ids,
    nodepool_in,
    operations,
)

Json = dict[str, Any]


async def transfer(
    api: httpx.AsyncClient, cluster_id: str, target: str, by: str = ALICE, **headers: str
) -> httpx.Response:
    return await api.post(
        f"{API}/clusters/{cluster_id}/transfer",
        json={"project_id": target},
        headers=as_user(by, **headers),
    )


class Moving:
    """Two projects Alice administers, and a cluster with three nodepools in the first."""

    def __init__(self, source: str, target: str, cluster: Json, nodepools: list[Json]) -> None:
        self.source = source
        self.target = target
        self.cluster = cluster
        self.nodepools = nodepools

    @property
    def nodepool_ids(self) -> list[str]:
        return [n["id"] for n in self.nodepools]


@pytest.fixture
async def moving(api: httpx.AsyncClient) -> Moving:
    source = (await create_project(api, "source"))["id"]
    target = (await create_project(api, "target"))["id"]
    cluster = await cluster_in(api, source)
    nodepools = [await nodepool_in(api, cluster["id"], f"pool-{i}") for i in range(3)]
    return Moving(source, target, cluster, nodepools)


async def indexed_in(redis: Redis, names: Names, project: str) -> set[str]:
    """Every id in any cluster or nodepool index of ``project`` (read from Redis directly)."""
    found: set[str] = set()
    for key in await matching_keys(redis, f"{names.namespace}:idx:*"):
        parts = key.split(":")
        if parts[2] in ("cluster", "nodepool") and parts[3] == project:
            found |= {str(member) for member in await redis.zrange(key, 0, -1)}
    return found


async def record_projects(redis: Redis, names: Names, ids: Json) -> dict[str, Any]:
    """The "project" field of each record, by id (``ids``: id -> kind)."""
    return {rid: await redis.hget(names.record(kind, rid), "project") for rid, kind in ids.items()}


async def test_a_transfer_moves_the_cluster_and_every_nodepool(
    api: httpx.AsyncClient, moving: Moving, redis: Redis, settings: Settings
) -> None:
    names = settings.names
    response = await transfer(api, moving.cluster["id"], moving.target)
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["project_id"] == moving.target
    assert moved["resource_version"] != moving.cluster["resource_version"]
    assert response.headers["etag"] == f'"{moved["resource_version"]}"'
    fetched = await api.get(f"{API}/clusters/{moving.cluster['id']}", headers=as_user(ALICE))
    assert fetched.json() == moved
    # The lists of each project.
    cid = moving.cluster["id"]
    assert await listed_ids(api, "clusters", ALICE, f"project_id={moving.target}") == [cid]
    assert await listed_ids(api, "clusters", ALICE, f"project_id={moving.source}") == []
    target_pools = await listed_ids(api, "nodepools", ALICE, f"project_id={moving.target}")
    assert target_pools == moving.nodepool_ids
    assert await listed_ids(api, "nodepools", ALICE, f"project_id={moving.source}") == []
    assert await listed_ids(api, "nodepools", ALICE, f"cluster_id={cid}") == moving.nodepool_ids
    # What Redis holds.
    kinds = {cid: "cluster", **dict.fromkeys(moving.nodepool_ids, "nodepool")}
    assert set((await record_projects(redis, names, kinds)).values()) == {moving.target}
    assert await indexed_in(redis, names, moving.source) == set()
    assert await indexed_in(redis, names, moving.target) == set(kinds)
    assert await redis.hgetall(names.cluster_names(moving.source)) == {}
    assert await redis.hgetall(names.cluster_names(moving.target)) == {"demo": cid}
    # The nodepools themselves are unchanged but for their versions.
    for before in moving.nodepools:
        after = (await api.get(f"{API}/nodepools/{before['id']}", headers=as_user(ALICE))).json()
        assert "project_id" not in after
        assert after["spec"] == before["spec"] and after["generation"] == before["generation"]


async def test_a_transfer_changes_who_may_read_the_cluster(
    api: httpx.AsyncClient, moving: Moving
) -> None:
    await grant(api, moving.source, BOB, "viewer")
    await grant(api, moving.target, "carol@example.com", "viewer")
    await transfer(api, moving.cluster["id"], moving.target)
    cluster = f"{API}/clusters/{moving.cluster['id']}"
    pool = f"{API}/nodepools/{moving.nodepool_ids[0]}"
    for path in (cluster, pool):
        assert_error(await api.get(path, headers=as_user(BOB)), 404, "NOT_FOUND")
        assert (await api.get(path, headers=as_user("carol@example.com"))).status_code == 200
    assert await listed_ids(api, "nodepools", BOB) == []


async def test_a_moved_cluster_s_nodepools_are_created_in_its_new_project(
    api: httpx.AsyncClient, moving: Moving, redis: Redis, settings: Settings
) -> None:
    await transfer(api, moving.cluster["id"], moving.target)
    late = await nodepool_in(api, moving.cluster["id"], "late")
    assert late["id"] in await indexed_in(redis, settings.names, moving.target)
    assert await listed_ids(api, "nodepools", ALICE, f"project_id={moving.source}") == []


async def test_a_transfer_is_recorded_in_both_projects_with_its_actor(
    api: httpx.AsyncClient, moving: Moving
) -> None:
    await grant(api, moving.source, BOB, "admin")
    await grant(api, moving.target, BOB, "admin")
    assert (await transfer(api, moving.cluster["id"], moving.target, by=BOB)).status_code == 200
    [out, *_] = await operations(api, moving.source)
    [into, *_] = await operations(api, moving.target)
    cid = moving.cluster["id"]
    assert (out["type"], out["actor"], out["target"]) == ("cluster.transferred_out", BOB, cid)
    assert (into["type"], into["actor"], into["target"]) == ("cluster.transferred_in", BOB, cid)
    assert moving.target in out["detail"] and moving.source in into["detail"]


async def test_the_same_name_in_the_target_is_409_and_nothing_moves(
    api: httpx.AsyncClient, moving: Moving, redis: Redis, settings: Settings
) -> None:
    names = settings.names
    taken = await cluster_in(api, moving.target, "demo")
    before_ops = await operations(api, moving.source), await operations(api, moving.target)
    before = await api.get(f"{API}/clusters/{moving.cluster['id']}", headers=as_user(ALICE))
    response = await transfer(api, moving.cluster["id"], moving.target)
    error = assert_error(response, 409, "CONFLICT")
    assert taken["id"] in error["details"]
    after = await api.get(f"{API}/clusters/{moving.cluster['id']}", headers=as_user(ALICE))
    assert after.json() == before.json()
    kinds = {moving.cluster["id"]: "cluster", **dict.fromkeys(moving.nodepool_ids, "nodepool")}
    assert set((await record_projects(redis, names, kinds)).values()) == {moving.source}
    assert await indexed_in(redis, names, moving.source) == set(kinds)
    assert await indexed_in(redis, names, moving.target) == {taken["id"]}
    assert (await operations(api, moving.source), await operations(api, moving.target)) == (
        before_ops
    )


@pytest.mark.parametrize(
    ("source_role", "target_role", "status"),
    [
        ("admin", None, 404),
        ("admin", "viewer", 403),
        ("admin", "editor", 403),
        ("editor", "admin", 403),
        ("viewer", "admin", 403),
        (None, "admin", 404),
    ],
)
async def test_only_an_admin_of_both_projects_may_transfer(
    api: httpx.AsyncClient,
    moving: Moving,
    redis: Redis,
    settings: Settings,
    source_role: str | None,
    target_role: str | None,
    status: int,
) -> None:
    for project, role in ((moving.source, source_role), (moving.target, target_role)):
        if role is not None:
            await grant(api, project, BOB, role)
    response = await transfer(api, moving.cluster["id"], moving.target, by=BOB)
    assert_error(response, status, "NOT_FOUND" if status == 404 else "FORBIDDEN")
    assert await indexed_in(redis, settings.names, moving.target) == set()


async def test_a_transfer_to_a_project_that_does_not_exist_is_404(
    api: httpx.AsyncClient, moving: Moving
) -> None:
    response = await transfer(api, moving.cluster["id"], "0f0f0f0f-0000-4000-8000-000000000000")
    assert_error(response, 404, "NOT_FOUND")


async def test_a_transfer_to_its_own_project_changes_nothing(
    api: httpx.AsyncClient, moving: Moving
) -> None:
    before = await operations(api, moving.source)
    response = await transfer(api, moving.cluster["id"], moving.source)
    assert response.status_code == 200, response.text
    assert response.json()["resource_version"] == moving.cluster["resource_version"]
    assert response.json()["project_id"] == moving.source
    assert await operations(api, moving.source) == before


async def test_a_transfer_to_a_personal_project_never_used_creates_it(
    api: httpx.AsyncClient, moving: Moving
) -> None:
    await grant(api, moving.source, BOB, "admin")
    response = await transfer(api, moving.cluster["id"], personal_project_id(BOB), by=BOB)
    assert response.status_code == 200, response.text
    assert await listed_ids(api, "clusters", BOB) == [moving.cluster["id"]]
    assert response.json()["project_id"] == personal_project_id(BOB)


async def test_a_transfer_back_and_forth_ends_where_it_began(
    api: httpx.AsyncClient, moving: Moving, redis: Redis, settings: Settings
) -> None:
    for target in (moving.target, moving.source, moving.target, moving.source):
        assert (await transfer(api, moving.cluster["id"], target)).status_code == 200
    everything = {moving.cluster["id"], *moving.nodepool_ids}
    assert await indexed_in(redis, settings.names, moving.source) == everything
    assert await indexed_in(redis, settings.names, moving.target) == set()


@pytest.mark.settings_update(max_clusters_per_project=1)
async def test_a_full_target_is_403_quota_exceeded(
    api: httpx.AsyncClient, moving: Moving, redis: Redis, settings: Settings
) -> None:
    await cluster_in(api, moving.target, "already-there")
    response = await transfer(api, moving.cluster["id"], moving.target)
    assert_error(response, 403, "QUOTA_EXCEEDED")
    assert moving.cluster["id"] in await indexed_in(redis, settings.names, moving.source)


async def test_a_stale_if_match_is_409_and_nothing_moves(
    api: httpx.AsyncClient, moving: Moving
) -> None:
    response = await transfer(
        api, moving.cluster["id"], moving.target, **{"If-Match": '"not-the-version"'}
    )
    assert_error(response, 409, "CONFLICT")
    assert await listed_ids(api, "clusters", ALICE, f"project_id={moving.target}") == []
    current = f'"{moving.cluster["resource_version"]}"'
    response = await transfer(api, moving.cluster["id"], moving.target, **{"If-Match": current})
    assert response.status_code == 200, response.text


async def test_a_malformed_transfer_is_400(api: httpx.AsyncClient, moving: Moving) -> None:
    for body in ({}, {"project_id": "nope"}, {"project_id": moving.target, "x": 1}):
        response = await api.post(
            f"{API}/clusters/{moving.cluster['id']}/transfer", json=body, headers=as_user(ALICE)
        )
        assert_error(response, 400, "VALIDATION_ERROR")


# ---- races ------------------------------------------------------------------------------------

READY = {
    "controller_name": "gcp-nodepool-controller",
    "conditions": [{"type": "Ready", "status": "True", "reason": "NodesReady"}],
}
NOT_READY = {
    "controller_name": "gcp-nodepool-controller",
    "conditions": [{"type": "Ready", "status": "False", "reason": "Scaling"}],
}


async def report(api: httpx.AsyncClient, nodepool_id: str, ready: bool) -> httpx.Response:
    body = {**(READY if ready else NOT_READY), "observed_generation": 1}
    return await api.put(
        f"{API}/nodepools/{nodepool_id}/status", json=body, headers=controller_headers()
    )


async def test_nothing_racing_transfers_is_left_in_the_old_project(
    api: httpx.AsyncClient, moving: Moving, redis: Redis, settings: Settings
) -> None:
    names = settings.names
    projects = [moving.source, moving.target]
    for round_ in range(6):
        target = projects[(round_ + 1) % 2]
        creates = [
            api.post(
                f"{API}/nodepools",
                json=seed_nodepool_body(moving.cluster["id"], f"race-{round_}-{i}"),
                headers=as_user(ALICE),
            )
            for i in range(3)
        ]
        reports = [report(api, pool, ready=round_ % 2 == 0) for pool in moving.nodepool_ids]
        answers = await asyncio.gather(
            transfer(api, moving.cluster["id"], target), *creates, *reports
        )
        assert answers[0].status_code == 200, answers[0].text
        for answer in answers[1:]:
            assert answer.status_code in (200, 201), answer.text
        pools = set(await redis.zrange(names.cluster_nodepools(moving.cluster["id"]), 0, -1))
        everything = {moving.cluster["id"], *pools}
        assert await indexed_in(redis, names, projects[round_ % 2]) == set()
        assert await indexed_in(redis, names, target) == everything
        kinds = {moving.cluster["id"]: "cluster", **dict.fromkeys(pools, "nodepool")}
        assert set((await record_projects(redis, names, kinds)).values()) == {target}
        listed = await listed_ids(api, "nodepools", ALICE, f"project_id={target}")
        assert set(listed) == pools


async def test_a_transfer_racing_the_target_s_deletion_is_404(
    services: Services, redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The transfer checks the caller's role in the target, then the target is deleted, then
    # the transfer commits: its transaction must find the target gone, and move nothing.
    alice = Caller(ALICE)
    source = await services.projects.create(alice, ProjectCreate(name="source"))
    target = await services.projects.create(alice, ProjectCreate(name="target"))
    body = ClusterCreate.model_validate(gcp_cluster_body("demo", project_id=source["id"]))
    cluster = await services.clusters.create(alice, body, dry_run=False)
    assert isinstance(cluster, ClusterRecord)
    access = services.clusters.access
    check = access.require

    async def then_delete_the_target(caller: Caller, project_id: str, *args: Any) -> Any:
        role = await check(caller, project_id, *args)
        if project_id == target["id"]:
            await services.projects.delete(alice, target["id"])
        return role

    monkeypatch.setattr(access, "require", then_delete_the_target)
    with pytest.raises(NotFound):
        await services.clusters.transfer(alice, cluster.id, target["id"], Preconditions())
    assert await indexed_in(redis, settings.names, source["id"]) == {cluster.id}
    assert await indexed_in(redis, settings.names, target["id"]) == set()


@pytest.mark.parametrize("bob_in_target", [True, False])
async def test_a_nodepool_create_whose_cluster_moves_meanwhile_follows_it(
    services: Services,
    redis: Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    bob_in_target: bool,
) -> None:
    # Bob's create reads the cluster, then Alice transfers it, then the create commits: it is
    # decided again where the cluster now is (created there, or 404 without a role there).
    alice, bob = Caller(ALICE), Caller(BOB)
    projects = services.projects
    source = (await projects.create(alice, ProjectCreate(name="source")))["id"]
    target = (await projects.create(alice, ProjectCreate(name="target")))["id"]
    await projects.set_member(alice, source, BOB, Role.EDITOR)
    if bob_in_target:
        await projects.set_member(alice, target, BOB, Role.EDITOR)
    body = ClusterCreate.model_validate(gcp_cluster_body("demo", project_id=source))
    cluster = await services.clusters.create(alice, body, dry_run=False)
    assert isinstance(cluster, ClusterRecord)
    nodepools = services.clusters.nodepools
    read = nodepools.cluster_for
    moved: list[str] = []

    async def then_transfer(*args: Any, **kwargs: Any) -> ClusterRecord:
        found = await read(*args, **kwargs)
        if not moved:
            await services.clusters.transfer(alice, cluster.id, target, Preconditions())
            moved.append(target)
        return found

    monkeypatch.setattr(nodepools, "cluster_for", then_transfer)
    pool = NodePoolCreate.model_validate(seed_nodepool_body(cluster.id, "late"))
    if bob_in_target:
        created = await nodepools.create(bob, pool, None, dry_run=False)
        assert isinstance(created, NodePoolRecord)
        assert created.project_id == target
        assert await indexed_in(redis, settings.names, target) == {cluster.id, created.id}
    else:
        with pytest.raises(NotFound):
            await nodepools.create(bob, pool, None, dry_run=False)
        assert await indexed_in(redis, settings.names, target) == {cluster.id}
    assert moved == [target]
    assert await indexed_in(redis, settings.names, source) == set()
