"""``python -m api_service``: serve the API on CLS_HOST:CLS_PORT."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from api_service.app import create_app
from shared_models.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How the API is served; the benchmark's bare baseline app is served the same way."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": 10,
    }


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    uvicorn.run(create_app(settings), **uvicorn_options(settings))


if __name__ == "__main__":
    main()
