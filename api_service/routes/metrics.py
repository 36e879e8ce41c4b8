"""``GET /metrics``: Prometheus text exposition (outside /api/v1, no identity, like /ready)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import PlainTextResponse, Response

from api_service.deps import State
from api_service.metrics import ApiMetrics
from api_service.routing import ApiRoute

router = APIRouter(tags=["operations"], route_class=ApiRoute)
log = logging.getLogger("api_service.metrics")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request, state: State) -> Response:
    """Prometheus metrics: HTTP traffic, the event pipeline, ingestion, nodepools by phase."""
    collected: ApiMetrics = request.app.state.metrics
    try:
        await collected.refresh(state.store)
    except (RedisError, OSError) as exc:
        # The process's own numbers matter most while Redis is away: serve them, with the
        # system numbers of the last good scrape and cls_redis_up 0.
        log.debug("metrics: redis unavailable (%s)", exc)
        collected.snapshot.redis_up = False
    return collected.render()
