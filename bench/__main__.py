"""``python -m bench``: run every scenario, print the table, write bench/RESULTS.md.

``BENCH_QUICK=1`` runs a tiny version of everything (a smoke test) and leaves RESULTS.md alone;
``BENCH_OUT=<dir>`` also writes the results file of any run to that folder.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.config import load_config
from bench.context import RunContext
from bench.load.driver import describe_generator
from bench.report import machine_lines, render_table, uptime, write_results
from bench.scenarios import (
    e2e,
    events,
    http,
    idempotency,
    ingestion,
    listing,
    rejected_bodies,
    slow_clients,
)

SCENARIOS: list[tuple[str, Callable[[RunContext], None]]] = [
    ("http", http.run),
    ("listing", listing.run),
    ("ingestion", ingestion.run),
    ("events", events.run),
    ("e2e", e2e.run),
    ("rejected_bodies", rejected_bodies.run),
    ("idempotency", idempotency.run),
    ("slow_clients", slow_clients.run),
]


def _selected() -> list[tuple[str, Callable[[RunContext], None]]]:
    """BENCH_ONLY=http,listing runs a subset (handy while profiling one path)."""
    only = {s for s in os.environ.get("BENCH_ONLY", "").split(",") if s}
    return [(name, run) for name, run in SCENARIOS if not only or name in only]


# The benchmarks store up to 100k nodepools in one cluster and create as fast as they can:
# quotas (read from the environment by every process and Settings they start) are lifted.
QUOTAS_LIFTED = {
    "CLS_MAX_NODEPOOLS_PER_CLUSTER": "100000000",
    "CLS_MAX_CLUSTERS_PER_PROJECT": "100000000",
}


def main() -> int:
    for name, value in QUOTAS_LIFTED.items():
        os.environ.setdefault(name, value)
    config = load_config()
    generator = describe_generator()
    load_at_start = uptime()
    mode = "quick (smoke test)" if config.quick else "full"
    print(f"bench: {mode} run, load generator: {generator}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cls-bench-") as tmp:
        ctx = RunContext(config, Path(tmp))
        began = time.monotonic()
        try:
            for name, scenario in _selected():
                print(f"== {name}", flush=True)
                scenario(ctx)
        finally:
            asyncio.run(ctx.cleanup())
        ctx.notes.append(f"whole run took {time.monotonic() - began:.0f} s")
    print()
    machine = machine_lines(generator, load_at_start)
    print("\n".join(machine))
    print()
    print(render_table(ctx.figures))
    for note in ctx.notes:
        print(f"note: {note}")
    targets = [f for f in ctx.figures if f.met is not None]
    print(f"targets met: {sum(bool(f.met) for f in targets)} of {len(targets)}")
    _write(config.results_path, ctx, machine)
    return 0


def _write(results_path: Path | None, ctx: RunContext, machine: list[str]) -> None:
    out_dir = os.environ.get("BENCH_OUT")
    paths = [results_path] if results_path else []
    if out_dir:
        paths.append(Path(out_dir) / "RESULTS.md")
    for path in paths:
        write_results(path, ctx.figures, machine, ctx.notes)
        print(f"results written to {path}")


if __name__ == "__main__":
    sys.exit(main())
