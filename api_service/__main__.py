"""``python -m api_service``: serve the API on CLS_HOST:CLS_PORT."""

from __future__ import annotations

from typing import Any

import uvicorn

from api_service.app import create_app
from api_service.http_edge import edge_protocol
from cls_runtime.gc_tuning import tune_for_service
from cls_runtime.logs import configure_logging
from cls_runtime.process import settings_or_exit
from cls_runtime.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How the API is served; the benchmark's bare baseline app is served the same way."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": 10,
        # Our handler formats uvicorn's lines too, and the app logs one access line per
        # request itself (with its request id): uvicorn's would be a second, plainer one.
        "log_config": None,
        "access_log": False,
        # The peer address is the TCP peer: CLS_TRUSTED_PROXIES must not be fooled by a
        # client-supplied X-Forwarded-For (uvicorn trusts it from 127.0.0.1 by default).
        "proxy_headers": False,
        # What a connection may cost before its request reaches the app: header size, header
        # and body timeouts, connection count (api_service/http_edge.py).
        "http": edge_protocol(settings),
        # h11's own bound on a head is 16 KiB: it would answer a 400 before the edge's 431.
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        # No WebSocket route exists: an upgrade would take the connection away from the edge.
        "ws": "none",
    }


def main() -> None:
    settings = settings_or_exit("api_service")
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_for_service()
    uvicorn.run(app, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
