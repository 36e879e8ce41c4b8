"""Response helpers shared by the resource routes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from cls_core.services.common import etag
from cls_core.store import ClusterRecord, NodePoolRecord
from cls_runtime.logs import bind, resource_log_fields
from shared_models.errors import ErrorEnvelope

# Where the resource routes live (the routers carry it: see api_service.app).
API_PREFIX = "/api/v1"

# Documented on every route so that generated clients know the error shape. "default" also
# stops FastAPI from documenting its own 422 body, which this API never sends.
_ERROR_CODES: dict[int | str, str] = {
    400: "Validation failed: body, query or path (VALIDATION_ERROR)",
    401: "X-User-Email missing or invalid (UNAUTHORIZED)",
    403: "Controller credentials on a user endpoint, or a user on a controller one (FORBIDDEN)",
    404: "Not found, or owned by someone else (NOT_FOUND)",
    409: "Name or id taken, a stale If-Match or If-Generation-Match, nodepools left, or a "
    "stale report (CONFLICT); a write to a resource being deleted (RESOURCE_DELETING), a "
    "nodepool created or changed in a cluster being deleted (CLUSTER_DELETING)",
    413: "Body over the size limit (PAYLOAD_TOO_LARGE)",
    503: "Storage unavailable, or too many concurrent writers; retry after Retry-After "
    "(UNAVAILABLE)",
    "default": "Unexpected error (INTERNAL)",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": description}
    for code, description in _ERROR_CODES.items()
}

ETAG_HEADER = {
    "ETag": {
        "description": "The resource_version, quoted; send it back in If-Match",
        "schema": {"type": "string"},
    }
}
_LOCATION = {"Location": {"description": "URL of the new resource", "schema": {"type": "string"}}}
# Every write that changes what the controllers must do starts an operation.
OPERATION_ID = "X-Operation-Id"
OPERATION_HEADER: dict[str, Any] = {
    OPERATION_ID: {
        "description": "The id of the operation this write started (GET /api/v1/operations/{id}); "
        "absent when it started none: a dry run, a rename, a change of "
        "spec.deletion_protection alone, a write that changed nothing, an idempotent replay",
        "schema": {"type": "string", "format": "uuid"},
    }
}

# The deletes: their 409 may also be a deletion protection.
DELETE_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorEnvelope,
        "description": f"{_ERROR_CODES[409]}; or the resource, or with force one of a "
        "cluster's nodepools, has spec.deletion_protection true, which force does not "
        "override (DELETION_PROTECTED)",
    },
}

# Headers of the responses that carry one resource.
WITH_ETAG: dict[int | str, dict[str, Any]] = {200: {"headers": ETAG_HEADER}}
# The writes of one resource: an ETag, and the operation the write started.
WRITTEN: dict[int | str, dict[str, Any]] = {200: {"headers": {**ETAG_HEADER, **OPERATION_HEADER}}}
# The deletes' success responses carry the operation too.
DELETED_204: dict[int | str, dict[str, Any]] = {
    204: {"description": "Deletion accepted", "headers": OPERATION_HEADER}
}
ETAG_AND_LOCATION: dict[str, Any] = {**ETAG_HEADER, **_LOCATION}
# The create routes: their 201, and a 403 that may also be a quota.
CREATED: dict[int | str, dict[str, Any]] = {
    201: {"headers": {**ETAG_AND_LOCATION, **OPERATION_HEADER}},
    403: {
        "model": ErrorEnvelope,
        "description": f"{_ERROR_CODES[403]}, or a create beyond a quota: nodepools per "
        "cluster, clusters per owner (QUOTA_EXCEEDED)",
    },
}


def resource_response(
    record: ClusterRecord | NodePoolRecord, status_code: int = 200, location: str | None = None
) -> Response:
    """A resource a write has just stored, answered as the very JSON it stored."""
    headers = {"ETag": etag(record.rv), **operation_header(record.started_op)}
    bind(**resource_log_fields(record.view()))
    if location is not None:
        headers["Location"] = location
    return Response(
        record.view_json, status_code=status_code, media_type="application/json", headers=headers
    )


def operation_header(operation_id: str | None) -> dict[str, str]:
    return {} if operation_id is None else {OPERATION_ID: operation_id}


def stored_resource_response(resource_version: str, body: str) -> Response:
    """A resource whose JSON comes rendered from the store, sent as is."""
    return Response(body, media_type="application/json", headers={"ETag": etag(resource_version)})


def page_response(key: str, total: int, items: str, limit: int, offset: int) -> Response:
    """A list page around its items' stored JSON (``items``: joined with ","), parsing none."""
    tail = orjson.dumps({"total": total, "limit": limit, "offset": offset}).decode()[1:]
    return Response(f'{{"{key}":[{items}],{tail}', media_type="application/json")
