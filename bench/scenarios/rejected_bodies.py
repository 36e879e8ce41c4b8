"""What a rejected body costs the server: CPU per request for the worst bodies found, against a
normal create on the same API process, and the ingester's CPU per rejected report against a
valid one (issue 12: a 980 KB body of unknown keys once cost 578 ms of API CPU).

CPU is the server process's user + system time (``/proc``), read before and after a batch of
requests sent one at a time: unlike wall time it does not move much when other jobs share the
machine. Each round measures the normal create first, then every bad body; the ratios are
medians over rounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson
from redis.asyncio import Redis

from bench import bodies
from bench.amqp_tools import publish_raw_as, wait_for
from bench.context import RunContext
from bench.procs import (
    CONTROLLER_TOKENS,
    Server,
    api_server,
    cpu_seconds,
    registry_file,
    worker,
)
from bench.report import Figure
from bench.stats import median
from cls_runtime import amqp
from cls_runtime.settings import Settings
from shared_models.strict_json import MAX_KEYS, MAX_OBJECT_KEYS

# Publishes every report of the queue rounds, with its broker user (`make bench` creates it).
CONTROLLER = "gcp-nodepool-controller"

SECTION = "Rejected bodies (server CPU per request; ratio to a valid request, same process)"
TARGET = 10.0
QUIET = {"reconcile_interval": "86400", "reconcile_ready_interval": "86400"}
STATUS_HEADERS = {
    "Authorization": f"Bearer {CONTROLLER_TOKENS['gcp-nodepool-controller']}",
    "Content-Type": "application/json",
}
MERGE_PATCH_HEADERS = {**bodies.USER_HEADERS, "Content-Type": "application/merge-patch+json"}
KEYS = 70_000  # ~0.8 MB of ``"k00000":0,``: under the 1 MiB body limit
# The most unknown keys a body passing the key bounds can carry, spread over 64 taints or
# 16 conditions (each of them one pydantic error).
TAINT_KEYS = (MAX_KEYS - 100) // 64
CONDITION_KEYS = (MAX_KEYS - 100) // 16
UNDER = MAX_OBJECT_KEYS - 12  # unknown keys in one object, under the per-object bound


def _keys(count: int, prefix: str = "k") -> dict[str, int]:
    return {f"{prefix}{i:05d}": 0 for i in range(count)}


def _nodepool(cluster_id: str, **gcp: object) -> dict[str, object]:
    body = bodies.nodepool_body(cluster_id, "bad")
    body["spec"]["platform"]["gcp"].update(gcp)
    return body


@dataclass(frozen=True)
class Bad:
    """One bad request: where it goes, and its body."""

    label: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _json(value: object) -> bytes:
    return orjson.dumps(value)


def bad_requests(cluster_id: str, nodepool_id: str) -> list[Bad]:
    user = bodies.JSON_HEADERS
    report = bodies.status_report("gcp-nodepool-controller", 1, True, "ready", 3)
    azure = {
        "name": "bad",
        "cluster_id": cluster_id,
        "spec": {
            "platform": {
                "type": "azure",
                "azure": {"vmSize": "Standard_D4s_v3", "availabilityZones": ["x"] * 200_000},
            },
            "nodeCount": 3,
        },
    }
    return [
        Bad(
            f"POST /nodepools, {KEYS:,} unknown keys",
            "POST",
            "/api/v1/nodepools",
            user,
            _json({**bodies.nodepool_body(cluster_id, "bad"), **_keys(KEYS)}),
        ),
        Bad(
            "POST /nodepools, 40,000 bad label keys",
            "POST",
            "/api/v1/nodepools",
            user,
            _json(_nodepool(cluster_id, labels={f"-k{i}": "v" for i in range(40_000)})),
        ),
        Bad(
            "POST /nodepools, 64 taints of 1,000 unknown keys",
            "POST",
            "/api/v1/nodepools",
            user,
            _json(_nodepool(cluster_id, taints=[_keys(1_000, f"t{t}-") for t in range(64)])),
        ),
        Bad(
            f"POST /nodepools, 64 taints of {TAINT_KEYS} unknown keys (passes the key bounds)",
            "POST",
            "/api/v1/nodepools",
            user,
            _json(_nodepool(cluster_id, taints=[_keys(TAINT_KEYS, f"t{t}-") for t in range(64)])),
        ),
        Bad(
            "POST /nodepools, 200,000 bad azure zones",
            "POST",
            "/api/v1/nodepools",
            user,
            _json(azure),
        ),
        Bad(
            f"POST /clusters, {KEYS:,} unknown keys",
            "POST",
            "/api/v1/clusters",
            user,
            _json({**bodies.cluster_body("bad"), **_keys(KEYS)}),
        ),
        Bad(
            f"PATCH /nodepools/{{id}}, {KEYS:,} unknown spec keys",
            "PATCH",
            f"/api/v1/nodepools/{nodepool_id}",
            MERGE_PATCH_HEADERS,
            _json({"spec": _keys(KEYS)}),
        ),
        Bad(
            f"PUT /nodepools/{{id}}/status, {KEYS:,} unknown keys",
            "PUT",
            f"/api/v1/nodepools/{nodepool_id}/status",
            STATUS_HEADERS,
            _json({**report, **_keys(KEYS)}),
        ),
        Bad(
            f"PUT /nodepools/{{id}}/status, {UNDER} unknown keys (passes the key bounds)",
            "PUT",
            f"/api/v1/nodepools/{nodepool_id}/status",
            STATUS_HEADERS,
            _json({**report, **_keys(UNDER)}),
        ),
        Bad(
            f"PUT /nodepools/{{id}}/status, {KEYS:,} metadata keys",
            "PUT",
            f"/api/v1/nodepools/{nodepool_id}/status",
            STATUS_HEADERS,
            _json({**report, "metadata": _keys(KEYS)}),
        ),
    ]


def bad_reports(nodepool_id: str) -> list[tuple[str, bytes]]:
    report = {
        **bodies.status_report("gcp-nodepool-controller", 1, True, "ready", 3),
        "nodepool_id": nodepool_id,
    }
    condition = report["conditions"][0]
    return [
        (f"{KEYS:,} unknown keys", _json({**report, **_keys(KEYS)})),
        (f"{KEYS:,} metadata keys", _json({**report, "metadata": _keys(KEYS)})),
        (
            "16 conditions of 1,000 unknown keys",
            _json({**report, "conditions": [{**condition, **_keys(1_000)}] * 16}),
        ),
        (
            f"16 conditions of {CONDITION_KEYS} unknown keys (passes the key bounds)",
            _json({**report, "conditions": [{**condition, **_keys(CONDITION_KEYS)}] * 16}),
        ),
    ]


def _batch_cpu(server: Server, send: Callable[[], None], count: int) -> float:
    """CPU milliseconds the server spent per call of ``send``."""
    before = cpu_seconds(server.pid)
    for _ in range(count):
        send()
    return 1e3 * (cpu_seconds(server.pid) - before) / count


def _measure_http(ctx: RunContext, api: Server) -> list[str]:
    cfg = ctx.config
    normal_count, bad_count = (10, 2) if cfg.quick else (200, 20)
    rounds = 1 if cfg.quick else 3
    with httpx.Client(base_url=api.url, timeout=120) as client:
        made = client.post(
            "/api/v1/clusters", json=bodies.cluster_body("bodies"), headers=bodies.USER_HEADERS
        )
        made.raise_for_status()
        cluster_id = made.json()["id"]
        created: list[str] = []

        def create() -> None:
            body = bodies.nodepool_body(cluster_id, f"np-{len(created)}")
            response = client.post("/api/v1/nodepools", json=body, headers=bodies.USER_HEADERS)
            response.raise_for_status()
            created.append(response.json()["id"])

        create()
        bad = bad_requests(cluster_id, created[0])
        normal: list[float] = []
        costs: dict[str, list[float]] = {b.label: [] for b in bad}
        for _ in range(rounds):
            normal.append(_batch_cpu(api, create, normal_count))
            for request in bad:

                def send(r: Bad = request) -> None:
                    response = client.request(r.method, r.path, content=r.body, headers=r.headers)
                    assert response.status_code == 400, (r.label, response.text[:300])

                costs[request.label].append(_batch_cpu(api, send, bad_count))
    base = median(normal)
    ctx.add(Figure(SECTION, "POST /nodepools, valid (the baseline)", f"{base:.2f} ms CPU/req"))
    for request in bad:
        ratios = [c / n for c, n in zip(costs[request.label], normal, strict=True) if n > 0]
        ratio = median(ratios)
        ctx.add(
            Figure(
                SECTION,
                f"{request.label} ({len(request.body) / 1e3:,.0f} KB), 400",
                f"{median(costs[request.label]):.2f} ms CPU/req",
                f"{base:.2f} ms CPU/req",
                ratio,
                f"<= {TARGET:.0f}x",
                ratio <= TARGET,
                "baseline: a valid POST /nodepools",
            )
        )
    return created


async def _measure_queue(ctx: RunContext, settings: Settings, ids: list[str]) -> None:
    cfg = ctx.config
    bad_count = 2 if cfg.quick else 20
    rounds = 1 if cfg.quick else 3
    names = settings.names
    counters = names.metric("ingest")
    connection = await amqp.connect(settings.amqp_url)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        channel = await connection.channel()
        await amqp.declare_status_queue(channel, names, settings.ingest_delivery_limit)

        async def count(name: str) -> int:
            return int(await redis.hget(counters, name) or 0)

        async def send_and_wait(
            batch: list[tuple[str, bytes]], counter: str, publisher: str = CONTROLLER
        ) -> None:
            target = await count(counter) + len(batch)
            # As a controller with its user_id: the bad bodies fail for what they are, and a
            # valid report is published by the controller it names.
            await publish_raw_as(settings, publisher, batch)

            async def reached() -> bool:
                return await count(counter) >= target

            await wait_for(reached, 300, f"ingester: {counter} {target}", every=0.01)

        bad = bad_reports(ids[0])
        valid_cpu: list[float] = []
        bad_cpu: dict[str, list[float]] = {label: [] for label, _ in bad}
        # Each round reports as a new controller, so that every valid report is applied; only
        # registered controllers' reports are.
        controllers = ["warm-up", *(f"ctl-{r}" for r in range(rounds))]
        registry = registry_file(ctx.log_dir / "bodies-controllers.yaml", controllers)
        with worker(
            "status_ingester", settings.namespace, ctx.log_dir, controllers_file=str(registry)
        ) as ingester:
            await send_and_wait([_valid(ids[0], "warm-up")], "applied", "warm-up")
            for r in range(rounds):
                valid = [_valid(i, f"ctl-{r}") for i in ids]
                before = cpu_seconds(ingester.pid)
                await send_and_wait(valid, "applied", f"ctl-{r}")
                valid_cpu.append(1e3 * (cpu_seconds(ingester.pid) - before) / len(valid))
                for label, body in bad:
                    before = cpu_seconds(ingester.pid)
                    await send_and_wait([("nodepool.status", body)] * bad_count, "dead_lettered")
                    bad_cpu[label].append(1e3 * (cpu_seconds(ingester.pid) - before) / bad_count)
    finally:
        await redis.aclose()
        await connection.close()
    base = median(valid_cpu)
    section = "Rejected reports (status ingester CPU per report; ratio to a valid report)"
    ctx.add(Figure(section, f"valid report ({len(ids)} per round)", f"{base:.2f} ms CPU/report"))
    for label, body in bad:
        ratios = [c / v for c, v in zip(bad_cpu[label], valid_cpu, strict=True) if v > 0]
        ratio = median(ratios)
        ctx.add(
            Figure(
                section,
                f"{label} ({len(body) / 1e3:,.0f} KB), dead-lettered",
                f"{median(bad_cpu[label]):.2f} ms CPU/report",
                f"{base:.2f} ms CPU/report",
                ratio,
                f"<= {TARGET:.0f}x",
                ratio <= TARGET,
                "baseline: a valid report, applied",
            )
        )


def _valid(nodepool_id: str, controller: str) -> tuple[str, bytes]:
    report = bodies.status_report(controller, 1, True, f"ready {time.monotonic()}", 3)
    return "nodepool.status", _json({**report, "nodepool_id": nodepool_id})


def run(ctx: RunContext) -> None:
    namespace = ctx.new_namespace("bodies")
    with api_server(namespace, ctx.log_dir, **QUIET) as api:
        ids = _measure_http(ctx, api)
    settings = Settings(
        namespace=namespace, redis_url=ctx.config.redis_url, amqp_url=ctx.config.amqp_url
    )
    asyncio.run(_measure_queue(ctx, settings, ids))
