"""The query strings of the list routes, one pydantic model each, parsed here, not by FastAPI.

FastAPI re-inspects the annotations of every field of a query model (or of every ``Query``
parameter) on every request: for a list route's five fields that cost more CPU than reading a
page of 50 from Redis. ``parse_query`` validates the query string with the model in one call
and reports a bad value exactly as FastAPI would (a RequestValidationError located in the
query, so 400 in the envelope, naming the parameter); ``documented`` describes each field as a
query parameter in OpenAPI, as FastAPI would have.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from api_service.deps import UUID_DOC, resource_id
from shared_models.specs import Platform
from shared_models.status import Health, Phase


class PageQuery(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    limit: int = Field(50, ge=1, le=100, description="Page size (1-100)")
    offset: int = Field(0, ge=0, le=1_000_000, description="Items to skip")


class NodePoolPageQuery(PageQuery):
    """The nodepools of one cluster (the cluster is in the path)."""

    phase: Phase | None = Field(None, alias="status", description="Filter by phase")
    health: Health | None = Field(None, description="Filter by health")


def _cluster_filter(raw: str | None) -> str | None:
    # Checked like a path id: a non-UUID would silently match nothing (or, for '*', the
    # wildcard of the index keys, i.e. every cluster).
    return None if raw is None else resource_id(raw, "cluster_id")


class NodePoolListQuery(NodePoolPageQuery):
    cluster_id: Annotated[str | None, AfterValidator(_cluster_filter)] = Field(
        None, description="Only the nodepools of this cluster (UUID)", json_schema_extra=UUID_DOC
    )


class ClusterListQuery(PageQuery):
    platform: Platform | None = Field(None, description="Filter by platform")
    phase: Phase | None = Field(None, alias="status", description="Filter by phase")


Q = TypeVar("Q", bound=BaseModel)
COMPONENT_REF = "#/components/schemas/{model}"


def parse_query(model: type[Q], request: Request) -> Q:
    """The request's query string as ``model`` (the last value of a repeated parameter, as
    FastAPI takes it; parameters the model does not name are ignored)."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def documented(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The fields of ``model`` as optional query parameters, for OpenAPI. Their enums refer to
    the document's own schemas (Phase, Health: the responses define them)."""
    schema = model.model_json_schema(ref_template=COMPONENT_REF)
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": field,
            "description": field.get("description", ""),
        }
        for name, field in schema["properties"].items()
    ]
