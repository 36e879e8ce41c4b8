"""The services tune the garbage collector just before they serve (see cls_runtime/gc_tuning)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

import api_service.__main__ as api_main
import event_jobs.__main__ as events_main
import reconciler_stub.__main__ as stub_main
import status_ingester.__main__ as ingester_main
from cls_runtime import process
from cls_runtime.gc_tuning import YOUNG_THRESHOLD


@pytest.fixture
def collector_state() -> Iterator[None]:
    """What a test changes in this process's collector is put back afterwards."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _collector_when_called(seen: dict[str, Any]) -> Any:
    def record(*_args: Any, **_kwargs: Any) -> None:
        seen["threshold"] = gc.get_threshold()[0]
        seen["frozen"] = gc.get_freeze_count()

    return record


@pytest.mark.usefixtures("collector_state")
def test_the_api_process_freezes_its_startup_heap_before_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", _collector_when_called(seen))
    monkeypatch.setattr(api_main, "configure_logging", lambda *_: None)
    api_main.main()
    assert seen["threshold"] == YOUNG_THRESHOLD
    assert seen["frozen"] > 10_000  # the modules, routes and schemas built at start-up


@pytest.mark.usefixtures("collector_state")
@pytest.mark.parametrize(
    "service", [ingester_main, events_main, stub_main], ids=["ingester", "events", "stub"]
)
def test_the_worker_processes_freeze_their_startup_heap_before_running(
    monkeypatch: pytest.MonkeyPatch, service: Any
) -> None:
    seen: dict[str, Any] = {}

    def run(coroutine: Any) -> None:
        coroutine.close()  # never started: only the collector's state matters here
        _collector_when_called(seen)()

    monkeypatch.setattr(process, "run", run)
    monkeypatch.setattr(process, "configure_logging", lambda *_: None)
    assert process.launch("test", service.serve, service.banner) == 0
    assert seen["threshold"] == YOUNG_THRESHOLD
    assert seen["frozen"] > 10_000
