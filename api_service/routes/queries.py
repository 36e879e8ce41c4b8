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


# A resume token: base64url of a small JSON object (cls_core/services/watch.py).
_TOKEN_DOC = (
    "With watch=true: resume after this token (an event's id) instead of listing first; "
    "Last-Event-ID, which a browser's EventSource sends, takes precedence"
)


class WatchFields(BaseModel):
    """The query of a route that can also stream the changes (``watch=true``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    watch: bool = Field(
        False,
        description="Stream the changes as server-sent events (text/event-stream): ADDED, "
        "MODIFIED, DELETED, each with the resource as GET returns it",
    )
    resource_version: str | None = Field(None, max_length=100_000, description=_TOKEN_DOC)


class NodePoolListWatchQuery(NodePoolListQuery, WatchFields):
    """GET /nodepools: a page, or with watch=true the changes (limit and offset unused)."""


class ClusterListWatchQuery(ClusterListQuery, WatchFields):
    """GET /clusters: a page, or with watch=true the changes (limit and offset unused)."""


class ResourceGetQuery(WatchFields):
    """GET of one resource: as it is, its changes (watch=true), or once a condition holds."""

    wait_for: str | None = Field(
        None,
        alias="waitFor",
        max_length=40,
        description="Answer once the resource is Ready (phase Ready at its generation), "
        "Deleted (204; a 404 when it is gone already), or generation:N (the controllers have "
        "observed generation N or later), or at the timeout",
    )
    timeout: float = Field(
        60.0, gt=0, le=300, description="With waitFor: the longest wait, in seconds (at most 300)"
    )
