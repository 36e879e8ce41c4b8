"""HTTP throughput and latency of one API worker against the bare baseline app.

Both servers run as processes with the same uvicorn settings; a load generator in a third process
drives each endpoint at every concurrency, rounds interleaved between the API and the baseline.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from redis import Redis

from bench import bodies
from bench.baseline_app import doc_key
from bench.context import RunContext
from bench.load.driver import run_load
from bench.load.plan import LoadPlan, LoadResult
from bench.procs import CONTROLLER_TOKENS, Server, baseline_server, cpu_seconds, deployed_api
from bench.report import Figure
from bench.stats import interleaved, median, paired_ratio

# No controllers run here, so every nodepool stays Pending: with the default interval the reconcile
# loop would re-announce the tens of thousands the rounds create, inside the measured process.
QUIET = {"reconcile_interval": "86400", "reconcile_ready_interval": "86400"}
SECTION = "HTTP, one API worker (throughput ratio to the bare FastAPI + one Redis call app)"
# The core issue's targets for reads, whatever number of projects the caller is in.
GET_TARGET = 0.85
LIST_TARGET = 0.6
# The caller of the "in N projects" figures: their personal project and N - 1 shared ones (every
# list merges them: two Lua calls instead of one; a GET in a shared project reads the role).
MANY_PROJECTS = 20
POOLS_PER_PROJECT = 3  # 60 nodepools: the page of 50 is full and draws from every project
STATUS_HEADERS = {
    "Authorization": f"Bearer {CONTROLLER_TOKENS['gcp-nodepool-controller']}",
    "Content-Type": "application/json",
}


@dataclass(frozen=True)
class Fixture:
    """What the API holds before the load starts, and the baseline's copies of it."""

    cluster_id: str
    get_id: str
    scale_ids: tuple[str, ...]
    scale_names: tuple[str, ...]
    status_ids: tuple[str, ...]
    many_get_id: str  # a nodepool of a shared project of bodies.MANY's


@dataclass(frozen=True)
class Endpoint:
    label: str
    target: float
    api: Callable[[int], LoadPlan]  # round start -> plan
    baseline: Callable[[int], LoadPlan]


def _create_nodepools(client: httpx.Client, cluster_id: str, prefix: str, count: int) -> list[str]:
    ids = []
    for i in range(count):
        body = bodies.nodepool_body(cluster_id, f"{prefix}-{i}")
        response = client.post("/api/v1/nodepools", json=body, headers=bodies.USER_HEADERS)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def _post(client: httpx.Client, path: str, body: dict[str, Any], user: dict[str, str]) -> str:
    """POST as ``user``; the id created."""
    response = client.post(path, json=body, headers=user)
    response.raise_for_status()
    return str(response.json()["id"])


def _seed_many_projects(client: httpx.Client) -> str:
    """bodies.MANY in MANY_PROJECTS projects: their personal one and shared ones that
    bodies.LEAD made them an editor of, each with a cluster and POOLS_PER_PROJECT nodepools
    (created round-robin over the projects, so a page of the merged list draws from every
    project's index). Returns the id of a nodepool of a shared project: reading it reads the
    caller's role there (in their personal project the role is known without a read)."""
    lead, many = bodies.LEAD_HEADERS, bodies.MANY_HEADERS
    clusters = [_post(client, "/api/v1/clusters", bodies.cluster_body("personal"), many)]
    for i in range(1, MANY_PROJECTS):
        project_id = _post(client, "/api/v1/projects", {"name": f"team-{i}"}, lead)
        role = client.put(
            f"/api/v1/projects/{project_id}/members/{bodies.MANY}",
            json={"role": "editor"},
            headers=lead,
        )
        role.raise_for_status()
        body = {**bodies.cluster_body(f"team-{i}"), "project_id": project_id}
        clusters.append(_post(client, "/api/v1/clusters", body, lead))
    ids = [
        _post(client, "/api/v1/nodepools", bodies.nodepool_body(cluster_id, f"many-{n}"), many)
        for n in range(POOLS_PER_PROJECT)
        for cluster_id in clusters
    ]
    return ids[-1]  # the last project's: a shared one


def prepare(api: Server, baseline_namespace: str, redis_url: str, pool: int) -> Fixture:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        response = client.post(
            "/api/v1/clusters", json=bodies.cluster_body("bench"), headers=bodies.USER_HEADERS
        )
        response.raise_for_status()
        cluster_id = response.json()["id"]
        get_id = _create_nodepools(client, cluster_id, "get", 1)[0]
        scale_ids = _create_nodepools(client, cluster_id, "scale", pool)
        status_ids = _create_nodepools(client, cluster_id, "status", pool)
        many_get_id = _seed_many_projects(client)
        one = client.get(f"/api/v1/nodepools/{get_id}", headers=bodies.USER_HEADERS)
        page = client.get("/api/v1/nodepools?limit=50", headers=bodies.USER_HEADERS)
        many_one = client.get(f"/api/v1/nodepools/{many_get_id}", headers=bodies.MANY_HEADERS)
        many_page = client.get("/api/v1/nodepools?limit=50", headers=bodies.MANY_HEADERS)
        projects = client.get("/api/v1/projects?limit=100", headers=bodies.MANY_HEADERS)
    for got in (one, page, many_one, many_page, projects):
        got.raise_for_status()
    assert len(page.json()["nodepools"]) == 50, "the list page must be full"
    assert len(many_page.json()["nodepools"]) == 50, "the list page must be full"
    assert projects.json()["total"] == MANY_PROJECTS, projects.text
    # The baseline serves the very bytes the API answers, from one Redis GET each.
    with Redis.from_url(redis_url) as redis:
        redis.set(doc_key(baseline_namespace, "one"), one.content)
        redis.set(doc_key(baseline_namespace, "page"), page.content)
        redis.set(doc_key(baseline_namespace, "many-one"), many_one.content)
        redis.set(doc_key(baseline_namespace, "many-page"), many_page.content)
    names = tuple(f"scale-{i}" for i in range(pool))
    return Fixture(cluster_id, get_id, tuple(scale_ids), names, tuple(status_ids), many_get_id)


def endpoints(fx: Fixture) -> list[Endpoint]:
    user, json_user = bodies.USER_HEADERS, bodies.JSON_HEADERS
    create_body, scale_body = bodies.create_template(fx.cluster_id), bodies.scale_template()
    status_body = bodies.status_template()
    json_only = {"Content-Type": "application/json"}
    many = bodies.MANY_HEADERS
    return [
        Endpoint(
            "GET /nodepools/{id}",
            GET_TARGET,
            lambda s: LoadPlan("GET", "/api/v1/nodepools/{id}", user, ids=(fx.get_id,), start=s),
            lambda s: LoadPlan("GET", "/doc/one", start=s),
        ),
        Endpoint(
            "GET /nodepools?limit=50",
            LIST_TARGET,
            lambda s: LoadPlan("GET", "/api/v1/nodepools?limit=50", user, start=s),
            lambda s: LoadPlan("GET", "/doc/page", start=s),
        ),
        Endpoint(
            f"GET /nodepools/{{id}}, caller in {MANY_PROJECTS} projects",
            GET_TARGET,
            lambda s: LoadPlan(
                "GET", "/api/v1/nodepools/{id}", many, ids=(fx.many_get_id,), start=s
            ),
            lambda s: LoadPlan("GET", "/doc/many-one", start=s),
        ),
        Endpoint(
            f"GET /nodepools?limit=50, caller in {MANY_PROJECTS} projects",
            LIST_TARGET,
            lambda s: LoadPlan("GET", "/api/v1/nodepools?limit=50", many, start=s),
            lambda s: LoadPlan("GET", "/doc/many-page", start=s),
        ),
        Endpoint(
            "POST /nodepools",
            0.5,
            lambda s: LoadPlan("POST", "/api/v1/nodepools", json_user, create_body, start=s),
            lambda s: LoadPlan("POST", "/doc", json_only, create_body, start=s),
        ),
        Endpoint(
            "PUT /nodepools/{id} (scale)",
            0.5,
            lambda s: LoadPlan(
                "PUT",
                "/api/v1/nodepools/{id}",
                json_user,
                scale_body,
                fx.scale_ids,
                fx.scale_names,
                start=s,
            ),
            lambda s: LoadPlan(
                "PUT", "/doc/{id}", json_only, scale_body, fx.scale_ids, fx.scale_names, start=s
            ),
        ),
        Endpoint(
            "PUT /nodepools/{id}/status",
            0.5,
            lambda s: LoadPlan(
                "PUT",
                "/api/v1/nodepools/{id}/status",
                STATUS_HEADERS,
                status_body,
                fx.status_ids,
                start=s,
            ),
            lambda s: LoadPlan("PUT", "/doc/{id}", json_only, status_body, fx.status_ids, start=s),
        ),
    ]


@dataclass(frozen=True)
class Sample:
    """One load round, and the CPU the server spent per request during it."""

    load: LoadResult
    cpu_ms: float


def _sample(server: Server, plan: LoadPlan, conns: int, seconds: float) -> Sample:
    before = cpu_seconds(server.pid)
    load = run_load(server.url, plan, conns, seconds)
    spent = cpu_seconds(server.pid) - before
    return Sample(load, 1e3 * spent / max(load.requests, 1))


def _describe(samples: list[Sample]) -> str:
    rps = median([s.load.rps for s in samples])
    p50 = median([s.load.p50_ms for s in samples])
    p99 = median([s.load.p99_ms for s in samples])
    cpu = median([s.cpu_ms for s in samples])
    return f"{rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {cpu:.2f} ms CPU/req"


def measure(ctx: RunContext, api: Server, base: Server, endpoint: Endpoint) -> None:
    cfg = ctx.config
    starts = itertools.count(1_000_000, 1_000_000)  # every round names its nodepools apart
    if cfg.warmup_seconds:
        run_load(api.url, endpoint.api(next(starts)), 16, cfg.warmup_seconds)
        run_load(base.url, endpoint.baseline(next(starts)), 16, cfg.warmup_seconds)
    for concurrency in cfg.concurrencies:

        def round_of(
            server: Server, plan: Callable[[int], LoadPlan], conns: int = concurrency
        ) -> Callable[[int], Sample]:
            return lambda _i: _sample(server, plan(next(starts)), conns, cfg.seconds)

        subject, baseline = interleaved(
            cfg.rounds, round_of(api, endpoint.api), round_of(base, endpoint.baseline)
        )
        ratio = paired_ratio([s.load.rps for s in subject], [s.load.rps for s in baseline])
        # Work per request, steadier than throughput when other jobs share the 2 cores.
        cpu_ratio = paired_ratio([s.cpu_ms for s in baseline], [s.cpu_ms for s in subject])
        errors = sum(s.load.errors for s in subject + baseline)
        ctx.add(
            Figure(
                SECTION,
                f"{endpoint.label}, {concurrency} conn",
                _describe(subject),
                _describe(baseline),
                ratio,
                f">= {endpoint.target}x",
                ratio >= endpoint.target,
                f"CPU/req ratio {cpu_ratio:.2f}x"
                + (f"; {errors} failed requests" if errors else ""),
            )
        )


NOTE = (
    "HTTP: the API is `python -m api_service` as deployed (`CLS_EVENT_JOBS=separate`, a "
    "`python -m event_jobs` beside it relays the writes' events; its CPU is not in the "
    "API's CPU/req), the baseline `python -m bench.baseline_app`, both served with "
    "api_service's `uvicorn_options()` (one worker; uvloop and httptools; no uvicorn access "
    "log). The API also writes its own JSON access line per request and runs with its "
    "collector tuning (cls_runtime/gc_tuning.py); the bare baseline does neither. Rounds "
    "alternate API and baseline; a ratio is the median of the per-round throughput ratios; "
    "CPU/req is the server process's user+system time per request. The plain GET and list "
    "figures are a caller in their personal project only (one Lua call per list, no role read); "
    f"the 'caller in {MANY_PROJECTS} projects' ones a caller who is also an editor of "
    f"{MANY_PROJECTS - 1} shared projects, each with a cluster and {POOLS_PER_PROJECT} "
    "nodepools: the list merges 20 indexes (two Lua calls), the GET reads a nodepool of a "
    "shared project (so the caller's role there is read from Redis)."
)


def run(ctx: RunContext) -> None:
    ctx.notes.append(NOTE)
    namespace = ctx.new_namespace("http")
    base_namespace = ctx.new_namespace("base")
    pool = 32 if ctx.config.quick else 256  # at least 25: the list page of 50 must be full
    with (
        deployed_api(namespace, ctx.log_dir, ctx.config.redis_url, **QUIET) as api,
        baseline_server(base_namespace, ctx.log_dir) as base,
    ):
        fixture = prepare(api, base_namespace, ctx.config.redis_url, pool)
        for endpoint in endpoints(fixture):
            print(f"HTTP: {endpoint.label}")
            measure(ctx, api, base, endpoint)
