"""How a background service process lives: stopped by SIGTERM or SIGINT, run on uvloop.

Shared by the processes that serve no HTTP (``status_ingester``, ``event_jobs``), so that
they stop and log alike: ``main()`` configures logging (``cls_runtime.logs``), then ``run``s a
coroutine that waits on ``stop_on_signals()`` and drains its work once it is set.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets (call it in the running loop).

    A second signal sets it again and changes nothing: each service's drain is bounded already,
    and a signal that cut it short could lose what it was finishing.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when it is installed (it comes with uvicorn[standard]): it cuts the CPU spent per
    report or event by about a third, and these processes are CPU-bound under load."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(main)
    else:
        uvloop.run(main)
