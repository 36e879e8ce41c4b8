"""``python -m status_ingester``: consume status reports until SIGTERM or SIGINT, then drain.

On a signal the consumer is cancelled, the reports in hand are applied and acked, and the
process exits 0. A second signal does not cut the drain short: the drain is already bounded.
"""

from __future__ import annotations

import logging

from cls_runtime.gc_tuning import tune_for_service
from cls_runtime.logs import configure_logging
from cls_runtime.process import run, stop_on_signals
from cls_runtime.settings import Settings
from status_ingester.consumer import StatusIngester


async def serve(settings: Settings) -> None:
    await StatusIngester(settings).run(stop_on_signals())


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("status_ingester").info(
        "starting: namespace=%s queue=%s", settings.namespace, settings.names.status_queue
    )
    tune_for_service()
    run(serve(settings))


if __name__ == "__main__":
    main()
