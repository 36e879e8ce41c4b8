"""Response helpers shared by the resource routes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from api_service.json_response import OrjsonResponse
from api_service.services.common import etag
from shared_models.errors import ErrorEnvelope

# Documented on every route so that generated clients know the error shape.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": description}
    for code, description in {
        400: "Validation failed (VALIDATION_ERROR)",
        401: "X-User-Email missing or invalid (UNAUTHORIZED)",
        404: "Not found, or owned by someone else (NOT_FOUND)",
        409: "Name taken, stale If-Match or stale report (CONFLICT)",
        413: "Body over the size limit (PAYLOAD_TOO_LARGE)",
        503: "Storage unavailable (UNAVAILABLE)",
    }.items()
}


def resource_response(
    view: dict[str, Any], status_code: int = 200, location: str | None = None
) -> OrjsonResponse:
    headers = {"ETag": etag(view["resource_version"])}
    if location is not None:
        headers["Location"] = location
    return OrjsonResponse(view, status_code=status_code, headers=headers)


def stored_resource_response(resource_version: str, body: str) -> Response:
    """A resource whose JSON comes rendered from the store, sent as is."""
    return Response(body, media_type="application/json", headers={"ETag": etag(resource_version)})


def page_response(key: str, total: int, items: list[str], limit: int, offset: int) -> Response:
    """A list page assembled from the items' stored JSON, without parsing any of them."""
    tail = orjson.dumps({"total": total, "limit": limit, "offset": offset}).decode()[1:]
    return Response(f'{{"{key}":[{",".join(items)}],{tail}', media_type="application/json")
