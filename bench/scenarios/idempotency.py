"""What an ``Idempotency-Key`` leaves in Redis: bytes per key, and keys left by create + delete.

Issue 12: each key held the whole first response for 24 hours and outlived its resource, so a
client creating and deleting in a loop grew Redis without holding anything. Only the HTTP API
and Redis reads are used, so the same scenario measures any version of the API.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from redis import Redis

from bench import bodies
from bench.context import RunContext
from bench.procs import api_server
from bench.report import Figure
from shared_models.names import Names

SECTION = "Idempotency-Key storage (Redis MEMORY USAGE)"
QUIET = {"reconcile_interval": "86400", "reconcile_ready_interval": "86400"}
# A UUID, as most clients send; the Redis key's name is part of what MEMORY USAGE counts.
KEY_LENGTH = len(str(uuid.uuid4()))


def _keyed(key: str) -> dict[str, str]:
    return {**bodies.JSON_HEADERS, "Idempotency-Key": key}


def _bytes_of_key(http: httpx.Client, redis: Redis, names: Names, body: dict[str, Any]) -> int:
    key = str(uuid.uuid4())
    response = http.post("/api/v1/nodepools", json=body, headers=_keyed(key))
    response.raise_for_status()
    return int(redis.memory_usage(names.idempotency(bodies.OWNER, key), samples=0) or 0)


def _keys_left(redis: Redis, names: Names) -> tuple[int, int]:
    """(idempotency keys stored, their bytes): SCAN is fine here, nothing else uses them."""
    keys = list(redis.scan_iter(match=names.idempotency(bodies.OWNER, "*"), count=5000))
    return len(keys), sum(int(redis.memory_usage(k, samples=0) or 0) for k in keys)


def run(ctx: RunContext) -> None:
    loops = 20 if ctx.config.quick else 500
    namespace = ctx.new_namespace("idem")
    names = Names(namespace)
    with (
        api_server(namespace, ctx.log_dir, **QUIET) as api,
        httpx.Client(base_url=api.url, timeout=30) as http,
        Redis.from_url(ctx.config.redis_url) as redis,
    ):
        created = http.post(
            "/api/v1/clusters", json=bodies.cluster_body("idem"), headers=bodies.USER_HEADERS
        )
        created.raise_for_status()
        cluster_id = created.json()["id"]
        guide = _bytes_of_key(http, redis, names, bodies.nodepool_body(cluster_id, "guide"))
        largest = _bytes_of_key(http, redis, names, bodies.largest_nodepool(cluster_id, "largest"))
        before, before_bytes = _keys_left(redis, names)
        started = time.monotonic()
        for i in range(loops):
            body = bodies.largest_nodepool(cluster_id, f"loop-{i}")
            response = http.post("/api/v1/nodepools", json=body, headers=_keyed(str(uuid.uuid4())))
            response.raise_for_status()
            nodepool_id = response.json()["id"]
            gone = http.delete(f"/api/v1/nodepools/{nodepool_id}", headers=bodies.USER_HEADERS)
            gone.raise_for_status()
        took = time.monotonic() - started
        after, left_bytes = _keys_left(redis, names)
    note = f"a {KEY_LENGTH}-character key (a UUID); the key's name is counted"
    ctx.add(Figure(SECTION, "bytes per key, the guide's nodepool", f"{guide:,} B", note=note))
    ctx.add(Figure(SECTION, "bytes per key, the largest valid nodepool", f"{largest:,} B"))
    ctx.add(
        Figure(
            SECTION,
            f"keys left by {loops} create + delete (largest nodepool)",
            f"{after - before:,} keys, {left_bytes - before_bytes:,} B",
            note=f"{took:.1f} s; every resource deleted",
        )
    )
