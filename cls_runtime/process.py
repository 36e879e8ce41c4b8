"""How a service process without HTTP lives: ``launch`` is the one launcher.

``event_jobs``, ``status_ingester`` and ``reconciler_stub`` start, log and stop alike: settings
from the environment, logging (``cls_runtime.logs``), GC tuning, then their ``serve`` coroutine
on uvloop with a stop event that SIGTERM or SIGINT sets; ``serve`` drains its work once it is set.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import ValidationError

from cls_runtime.gc_tuning import tune_for_service
from cls_runtime.logs import configure_logging
from cls_runtime.settings import Settings

Serve = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]

# The exit code of a process that cannot start with its configuration.
EXIT_BAD_CONFIGURATION = 2


class StartupError(Exception):
    """A configuration the service cannot run with: logged, and the process exits with 2."""


def launch(name: str, serve: Serve, banner: Callable[[Settings], str]) -> int:
    """Run ``serve(settings, stop)`` until it returns; the process's exit code."""
    settings = settings_or_exit(name)
    configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger(name)
    log.info("starting: %s", banner(settings))
    tune_for_service()

    async def until_stopped() -> None:
        await serve(settings, stop_on_signals())

    try:
        run(until_stopped())
    except StartupError as exc:
        log.error("%s", exc)
        return EXIT_BAD_CONFIGURATION
    return 0


def settings_or_exit(name: str) -> Settings:
    """The settings from the environment; when they are not valid (a bad registry file, a token
    for an unregistered controller...), one line on stderr and exit code 2: logging is not set
    up yet, and a traceback would hide the one thing to fix."""
    try:
        return Settings()
    except ValidationError as exc:
        print(f"{name}: cannot start: {settings_error(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_CONFIGURATION) from None


def settings_error(exc: ValidationError) -> str:
    """Every error of ``exc`` on one line, each naming its variable."""
    messages = []
    for error in exc.errors():
        message = " ".join(str(error["msg"]).removeprefix("Value error, ").split())
        if error["loc"]:
            variable = f"CLS_{str(error['loc'][0]).upper()}"
            if not message.startswith(variable):
                message = f"{variable}: {message}"
        messages.append(message)
    return "; ".join(messages)


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
