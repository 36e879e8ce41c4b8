"""``python -m reconciler_stub``: run the simulated platform controllers until SIGTERM/SIGINT.

On a signal: stop consuming, finish the event in hand, stop the runs, close, exit 0.
"""

from __future__ import annotations

import asyncio
import sys

from cls_runtime.process import StartupError, launch
from cls_runtime.settings import Settings
from reconciler_stub.catalog import select_controllers
from reconciler_stub.service import StubService


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    try:
        specs = select_controllers(settings.stub_controllers)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    service = StubService(settings, specs)
    if await service.start(stop):  # False: asked to stop while waiting for the broker
        await stop.wait()
    await service.stop()


def banner(settings: Settings) -> str:
    controllers = settings.stub_controllers or "all"
    return f"simulated controllers: {controllers}, namespace={settings.namespace}"


if __name__ == "__main__":
    sys.exit(launch("reconciler_stub", serve, banner))
