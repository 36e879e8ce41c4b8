"""Turning pydantic errors into field errors, and the rules that need the parent cluster."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from cls_core.errors import MAX_FIELD_ERRORS, ValidationFailed
from cls_core.store import ClusterRecord
from shared_models.errors import FieldError
from shared_models.specs import PATTERN_HINTS, ClusterSpec, NodePoolSpec, zone_region_problem

_PREFIXES = ("Value error, ", "Assertion failed, ")


# A path names a map key it found (a label key, an unknown field): a client's string, cut short
# so that an error about a huge key does not send the key back (twice).
MAX_PATH_PART = 64


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """('spec', 'platform', 'gcp', 'zones', 2) -> 'spec.platform.gcp.zones[2]'."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            text = str(part)
            if len(text) > MAX_PATH_PART:
                text = text[:MAX_PATH_PART] + "..."
            path = f"{path}.{text}" if path else text
    return path


# pydantic's error types for "this is not an object" (a JSON array, string or number).
_NOT_AN_OBJECT = {"model_type", "model_attributes_type", "dict_type"}


def _describe(error: dict[str, Any], path: str, resource: str) -> str:
    kind = error["type"]
    if not path and kind == "missing":
        return "request body is required: a JSON object"
    if not path and kind in _NOT_AN_OBJECT:
        return "request body must be a JSON object"
    if kind == "missing":
        return f"{resource} {path} is required" if "." not in path else f"{path} is required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field"
    hint = PATTERN_HINTS.get(str((error.get("ctx") or {}).get("pattern")))
    if kind == "string_pattern_mismatch" and hint is not None:
        return f"{path}: {str(error.get('input'))[:80]!r} {hint}"
    message = str(error["msg"])
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    return f"{path}: {message}" if path else message


def field_errors(
    exc: ValidationError | Iterable[dict[str, Any]],
    prefix: str = "",
    resource: str = "nodepool",
    limit: int = MAX_FIELD_ERRORS,
) -> list[FieldError]:
    """The first ``limit`` errors as field errors: a body can cause thousands, and only these are
    shown, so no more are converted (pass the total to ``ValidationFailed``)."""
    errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc
    result: list[FieldError] = []
    for error in errors:
        if len(result) >= limit:
            break
        loc = tuple(error["loc"])
        rule_field = (error.get("ctx") or {}).get("field") if error["type"] == "rule" else None
        if rule_field:
            loc = (*loc, rule_field)  # a cross-field rule names the field it blames
        path = field_path(loc, prefix)
        described = _describe(dict(error), path, resource)
        result.append(FieldError(field=path or "body", message=described))
    return result


def validate_nodepool_against_cluster(spec: NodePoolSpec, cluster: ClusterRecord) -> None:
    """Rules that depend on the parent: same platform, zones inside the cluster's region."""
    platform = spec.platform.type
    if platform != cluster.platform:
        raise ValidationFailed.of(
            "spec.platform.type",
            f"spec.platform.type '{platform}' does not match the cluster's platform "
            f"'{cluster.platform}'",
        )
    region = ClusterSpec.model_validate(cluster.doc["spec"]).platform.region
    zones_field = "zones" if platform == "gcp" else "availabilityZones"
    problems = []
    for i, zone in enumerate(spec.platform.zones):
        problem = zone_region_problem(platform, region, zone)
        if problem is not None:
            path = f"spec.platform.{platform}.{zones_field}[{i}]"
            problems.append(FieldError(field=path, message=f"{path}: {problem}"))
    if problems:
        raise ValidationFailed(problems)
