"""Prometheus metrics of the API process, served at ``GET /metrics``.

Two kinds of numbers:

- this process's own, counted as things happen: HTTP requests by route template (never the raw
  path, whose ids would make one series per resource) and status code, their latency, and the
  work of the event jobs this replica runs (relay, reconcile);
- the system's, read from Redis when /metrics is scraped, in one pipelined round trip and each
  in O(1): the outbox backlog and the age of its oldest event (how far the relay lags), outbox
  entries set aside as unreadable, the status ingesters' counters (the hash every ingester
  process adds to), and nodepools per phase (the ZCARD of a global index per phase that every
  write keeps, in the same transaction that moves the nodepool's other index entries).

Every replica reports the system numbers alike; aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response

from cls_core.store import RedisStore
from event_jobs import EventPipeline
from shared_models.status import Phase

# The *_created series double the output and tell nothing a scraper does not know.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Request latency buckets: from a cache-speed GET to a request stuck behind a Redis timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INGEST_OUTCOMES = ("applied", "unchanged", "stale", "unknown", "dead_lettered", "requeued")
PHASES = tuple(phase.value for phase in Phase)
UNMATCHED = "<unmatched>"


@dataclass
class SystemSnapshot:
    """The numbers read from Redis at the last scrape."""

    outbox_backlog: int = 0
    outbox_oldest_age: float = 0.0
    outbox_dead: int = 0
    ingest: dict[str, int] = field(default_factory=dict)
    nodepools_by_phase: dict[str, int] = field(default_factory=dict)
    redis_up: bool = True  # False: the last scrape could not read Redis (numbers are older)


class _EventsAndSystem(Collector):
    """Reads the event jobs' live stats and the last system snapshot at collection time."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        yield from self._system(self.metrics.snapshot)
        events = self.metrics.events
        if events is not None:
            yield from self._events(events)

    @staticmethod
    def _system(snap: SystemSnapshot) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "cls_redis_up",
            "1 when this scrape read the system numbers from Redis",
            value=float(snap.redis_up),
        )
        yield GaugeMetricFamily(
            "cls_outbox_backlog",
            "Committed events not yet confirmed by the broker",
            value=snap.outbox_backlog,
        )
        yield GaugeMetricFamily(
            "cls_outbox_oldest_age_seconds",
            "Age of the oldest event waiting in the outbox (0 when empty): the relay's lag",
            value=snap.outbox_oldest_age,
        )
        yield GaugeMetricFamily(
            "cls_outbox_dead_letters",
            "Outbox entries set aside as unreadable",
            value=snap.outbox_dead,
        )
        reports = CounterMetricFamily(
            "cls_status_reports",
            "Status reports taken from the queue by the ingesters, by outcome",
            labels=["outcome"],
        )
        for outcome in INGEST_OUTCOMES:
            reports.add_metric([outcome], snap.ingest.get(outcome, 0))
        yield reports
        phases = GaugeMetricFamily("cls_nodepools", "Nodepools by phase", labels=["phase"])
        for phase in PHASES:
            phases.add_metric([phase], snap.nodepools_by_phase.get(phase, 0))
        yield phases

    @staticmethod
    def _events(events: EventPipeline) -> Iterable[Metric]:
        stats = events.relay.stats
        yield CounterMetricFamily(
            "cls_relay_published",
            "Events this replica's relay published (confirmed)",
            value=stats.published,
        )
        yield CounterMetricFamily(
            "cls_relay_publish_failures",
            "Batches this replica's relay could not get confirmed",
            value=stats.publish_failures,
        )
        yield GaugeMetricFamily(
            "cls_relay_lag_seconds",
            "Age of the oldest event in the last batch this replica's relay read",
            value=stats.lag_seconds,
        )
        leading = GaugeMetricFamily(
            "cls_leader", "1 while this replica holds the job's leader lock", labels=["job"]
        )
        leading.add_metric(["outbox-relay"], float(events.relay_lease.is_leader))
        leading.add_metric(["reconcile"], float(events.reconcile_lease.is_leader))
        yield leading
        yield CounterMetricFamily(
            "cls_reconcile_ticks",
            "Reconcile ticks this replica ran as leader",
            value=events.reconcile.ticks,
        )
        yield CounterMetricFamily(
            "cls_reconcile_events",
            "Reconcile events this replica committed",
            value=events.reconcile.published,
        )


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # labels() takes a lock and hashes its arguments: keep the children at hand.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.snapshot = SystemSnapshot()
        self.events: EventPipeline | None = None
        self.registry.register(_EventsAndSystem(self))

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        key = (method, route, code)
        children = self._children.get(key)
        if children is None:
            children = (
                self._requests.labels(method, route, str(code)),
                self._latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def refresh(self, store: RedisStore) -> None:
        """Read the system numbers from Redis (one round trip, every command O(1))."""
        counts = await store.system_counts(PHASES)
        self.snapshot = SystemSnapshot(
            outbox_backlog=counts.outbox_backlog,
            outbox_oldest_age=_age(counts.outbox_oldest_id),
            outbox_dead=counts.outbox_dead,
            ingest=counts.ingest,
            nodepools_by_phase=counts.nodepools_by_phase,
        )

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _age(oldest_id: str | None) -> float:
    """Seconds since the commit of the oldest outbox entry (its id starts with the server's
    clock in milliseconds); 0 when the outbox is empty."""
    if oldest_id is None:
        return 0.0
    return max(0.0, time.time() - int(oldest_id.split("-", 1)[0]) / 1000)
