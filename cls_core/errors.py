"""One error base class; ``api_service.error_handlers`` turns it into the envelope."""

from __future__ import annotations

from shared_models.errors import ErrorCode, FieldError


class ApiError(Exception):
    status_code = 500
    code = ErrorCode.INTERNAL

    def __init__(self, message: str, details: str = "", fields: list[FieldError] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.fields = fields
        self.headers: dict[str, str] = {}


# A body with thousands of bad items (20,000 taints) gets the first errors, not a response
# larger than the request.
MAX_FIELD_ERRORS = 20


class ValidationFailed(ApiError):
    status_code = 400
    code = ErrorCode.VALIDATION_ERROR

    def __init__(
        self, fields: list[FieldError], message: str = "Validation failed", total: int = 0
    ) -> None:
        # ``total``: how many errors there were, when only the first ones were converted.
        total = max(total, len(fields))
        fields = fields[:MAX_FIELD_ERRORS]
        if total > len(fields):
            message = f"{message}: {total} errors, the first {len(fields)} listed"
        # Each field message names its field, so the details read well on their own.
        super().__init__(message, "; ".join(f.message for f in fields), fields)

    @classmethod
    def of(cls, field: str, message: str) -> ValidationFailed:
        if field not in message:
            message = f"{field}: {message}"
        return cls([FieldError(field=field, message=message)])


class Unauthorized(ApiError):
    status_code = 401
    code = ErrorCode.UNAUTHORIZED


class Forbidden(ApiError):
    status_code = 403
    code = ErrorCode.FORBIDDEN


class QuotaExceeded(ApiError):
    """A create beyond a quota: 403, as the request is understood and allowed in kind, but
    refused for this owner or cluster until something is deleted (or the quota raised)."""

    status_code = 403
    code = ErrorCode.QUOTA_EXCEEDED


class NotFound(ApiError):
    status_code = 404
    code = ErrorCode.NOT_FOUND


class Conflict(ApiError):
    status_code = 409
    code = ErrorCode.CONFLICT


class DeletionProtected(ApiError):
    """A DELETE of a protected resource (spec.deletion_protection): 409 until a write turns
    the protection off; ``?force=true`` does not override it."""

    status_code = 409
    code = ErrorCode.DELETION_PROTECTED


class ResourceDeleting(ApiError):
    """A write to a resource in phase Deleting: its spec is frozen until it is purged."""

    status_code = 409
    code = ErrorCode.RESOURCE_DELETING


class ClusterDeleting(ApiError):
    """A nodepool created in, or changed within, a cluster in phase Deleting."""

    status_code = 409
    code = ErrorCode.CLUSTER_DELETING


class ResourceExpired(ApiError):
    """A watch resumed from a token older than the history kept (Kubernetes answers 410 so)."""

    status_code = 410
    code = ErrorCode.RESOURCE_EXPIRED


class TooManyRequests(ApiError):
    status_code = 429
    code = ErrorCode.TOO_MANY_REQUESTS


class PayloadTooLarge(ApiError):
    status_code = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


class Unavailable(ApiError):
    status_code = 503
    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str, details: str = "", retry_after: int | None = None) -> None:
        super().__init__(message, details)
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)
