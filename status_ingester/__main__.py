"""``python -m status_ingester``: consume status reports until SIGTERM or SIGINT, then drain.

On a signal the consumer is cancelled, the reports in hand are applied and acked, and the
process exits 0. A second signal does not cut the drain short: the drain is already bounded.
"""

from __future__ import annotations

import asyncio
import sys

from cls_runtime.process import launch
from cls_runtime.settings import Settings
from status_ingester.consumer import StatusIngester


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    await StatusIngester(settings).run(stop)


def banner(settings: Settings) -> str:
    return f"namespace={settings.namespace} queue={settings.names.status_queue}"


if __name__ == "__main__":
    sys.exit(launch("status_ingester", serve, banner))
