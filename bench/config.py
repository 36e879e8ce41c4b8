"""How much to measure: the full run of ``make bench`` or the quick one (``BENCH_QUICK=1``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cls_runtime.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "RESULTS.md"


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    rounds: int  # rounds per figure; figures are medians over rounds
    seconds: float  # length of one load round (wrk rounds it to whole seconds, at least 1)
    warmup_seconds: int
    concurrencies: tuple[int, ...]
    list_sizes: tuple[int, ...]  # nodepools stored for the listing-growth scenario
    e2e_batch: int  # nodepools created at once for the end-to-end batch figure
    ingest_reports: int  # reports pushed through the queue per ingestion round
    event_backlog: int  # events waiting in the outbox when the relay starts
    event_lag_writes: int  # API writes whose events are timed, one after the other
    redis_url: str
    amqp_url: str

    @property
    def results_path(self) -> Path | None:
        """Only a full run updates bench/RESULTS.md; a quick run is a smoke test."""
        return None if self.quick else RESULTS_PATH


def _concurrencies(default: tuple[int, ...]) -> tuple[int, ...]:
    """BENCH_CONNS=16 (or 1,64) measures fewer concurrencies, e.g. while profiling."""
    raw = os.environ.get("BENCH_CONNS", "")
    return tuple(int(x) for x in raw.split(",") if x) or default


def load_config() -> BenchConfig:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0", "false", "no")
    defaults = Settings()
    common = {"redis_url": defaults.redis_url, "amqp_url": defaults.amqp_url}
    if quick:
        return BenchConfig(
            quick=True,
            rounds=int(os.environ.get("BENCH_ROUNDS", "1")),
            seconds=float(os.environ.get("BENCH_SECONDS", "0.5")),
            warmup_seconds=0,
            concurrencies=_concurrencies((16,)),
            list_sizes=(50, 200),  # the smallest fills one page of 50
            e2e_batch=20,
            ingest_reports=200,
            event_backlog=200,
            event_lag_writes=20,
            **common,
        )
    return BenchConfig(
        quick=False,
        rounds=int(os.environ.get("BENCH_ROUNDS", "5")),
        seconds=float(os.environ.get("BENCH_SECONDS", "3")),
        warmup_seconds=1,
        concurrencies=_concurrencies((1, 16, 64)),
        list_sizes=(1_000, 10_000, 100_000),
        e2e_batch=1_000,
        ingest_reports=5_000,
        event_backlog=5_000,
        event_lag_writes=200,
        **common,
    )
