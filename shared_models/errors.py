"""The one error envelope every HTTP error uses: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    # HTTP that no parser accepts (answered by the edge, api_service/http_edge.py).
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    CONFLICT = "CONFLICT"
    # A DELETE of a resource (or a cascade over one) whose spec.deletion_protection is true.
    DELETION_PROTECTED = "DELETION_PROTECTED"
    # A write to a resource that is being deleted (phase Deleting): its spec is frozen.
    RESOURCE_DELETING = "RESOURCE_DELETING"
    # A nodepool created in (or changed within) a cluster that is being deleted.
    CLUSTER_DELETING = "CLUSTER_DELETING"
    # A watch resumed from a token older than the history kept: list again, then watch.
    RESOURCE_EXPIRED = "RESOURCE_EXPIRED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    # More open watch connections than a caller may hold (CLS_MAX_WATCHERS_PER_CALLER).
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. spec.nodeCount")
    message: str


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str
    details: str = Field(
        default="", description="Human-readable detail; for validation, each offending field"
    )
    fields: list[FieldError] | None = Field(
        default=None, description="Validation errors only: one entry per offending field"
    )


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def envelope(
    code: ErrorCode, message: str, details: str = "", fields: list[FieldError] | None = None
) -> dict[str, Any]:
    body = ErrorBody(code=code, message=message, details=details, fields=fields)
    return {"error": body.model_dump(mode="json", exclude_none=True)}
