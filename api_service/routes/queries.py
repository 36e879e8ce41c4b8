"""The query strings of the list routes, one pydantic model each.

A list route declares ``query: Annotated[NodePoolPageQuery, Query()]``: FastAPI documents each
field as a query parameter, and the route class validates the whole query string with the model
in one call (a bad value is a 400 naming the parameter).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


def _project_filter(raw: str | None) -> str | None:
    return None if raw is None else resource_id(raw, "project_id")


ProjectFilter = Annotated[str | None, AfterValidator(_project_filter)]
_PROJECT_FILTER_DOC = (
    "Only the resources of this project (UUID); by default, every project you belong to"
)


class NodePoolListQuery(NodePoolPageQuery):
    cluster_id: Annotated[str | None, AfterValidator(_cluster_filter)] = Field(
        None, description="Only the nodepools of this cluster (UUID)", json_schema_extra=UUID_DOC
    )
    project_id: ProjectFilter = Field(
        None, description=_PROJECT_FILTER_DOC, json_schema_extra=UUID_DOC
    )


class ClusterListQuery(PageQuery):
    platform: Platform | None = Field(None, description="Filter by platform")
    phase: Phase | None = Field(None, alias="status", description="Filter by phase")
    project_id: ProjectFilter = Field(
        None, description=_PROJECT_FILTER_DOC, json_schema_extra=UUID_DOC
    )


class OperationsQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    limit: int = Field(50, ge=1, le=1000, description="How many of the latest operations")
