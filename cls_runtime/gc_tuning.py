"""Garbage-collector settings for a long-running service process.

Profiles of the API under load (``bench/``, GC callbacks counting time per generation) showed the
cyclic collector taking 10-15% of its CPU: a POST spent about 135 us of its ~0.95 ms in it. Two
causes, each with the standard remedy:

- Every full (generation 2) collection walked the whole start-up heap: imported modules,
  FastAPI's routes and dependency graphs, pydantic's schemas and validators. That is 40-55 ms
  per collection, stopping every request in flight, once every 1,500-2,000 requests. Those
  objects live as long as the process, so ``gc.freeze()`` moves them to the permanent
  generation, which no collection walks.
- The young generation was collected every 700 net allocations of container objects, i.e.
  every few requests. Request garbage is freed by reference counting; a young collection mostly
  re-walks objects that are still alive (requests in flight, connection state). Collecting it
  every 20,000 allocations does the same work a thirtieth as often. The few reference cycles a
  request leaves (exception tracebacks, futures) wait a little longer to be freed: a few MB at
  most, well inside the memory budget.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 50
OLD_THRESHOLD = 100


def tune_for_service() -> None:
    """Call once a service's code is imported and its app is built, just before it serves."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    gc.collect()  # free start-up garbage first: frozen objects are never freed
    gc.freeze()
