"""``python -m reconciler_stub``: run the simulated platform controllers until SIGTERM/SIGINT.

On a signal: stop consuming, finish the event in hand, stop the runs, close, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from cls_runtime.settings import Settings
from reconciler_stub.catalog import ControllerSpec, select_controllers
from reconciler_stub.service import StubService

log = logging.getLogger("reconciler_stub")


async def run(settings: Settings, specs: list[ControllerSpec]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = StubService(settings, specs)
    starting = asyncio.create_task(service.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # Asked to stop while still waiting for the broker: nothing to finish.
        starting.cancel()
        await asyncio.wait([starting])
    else:
        starting.result()  # a start-up failure ends the process with its traceback
        await stopping
    stopping.cancel()
    await service.stop()
    return 0


def main() -> int:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # aio-pika logs every reconnection attempt at length; our own warnings say enough.
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    try:
        specs = select_controllers(settings.stub_controllers)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    return asyncio.run(run(settings, specs))


if __name__ == "__main__":
    sys.exit(main())
