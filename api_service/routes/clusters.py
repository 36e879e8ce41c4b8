"""/api/v1 cluster routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api_service.deps import ClusterId, Clusters, IfMatch, Owner
from api_service.json_response import OrjsonResponse
from api_service.routes.idempotency import IDEMPOTENCY_DOC, IdempotencyKey, replayed
from api_service.routes.nodepools import DryRun, Limit, Offset, PhaseFilter
from api_service.routes.responses import (
    CREATED,
    ERRORS,
    WITH_ETAG,
    page_response,
    resource_response,
    stored_resource_response,
)
from shared_models.resources import (
    Cluster,
    ClusterCreate,
    ClusterList,
    ClusterUpdate,
)
from shared_models.specs import Platform

router = APIRouter(tags=["clusters"], responses=ERRORS)


@router.post(
    "/clusters",
    status_code=201,
    response_model=Cluster,
    responses={**CREATED, **replayed(Cluster)},
    openapi_extra=IDEMPOTENCY_DOC,
)
async def create(
    owner: Owner,
    body: ClusterCreate,
    svc: Clusters,
    idempotency: IdempotencyKey,
    dry_run: DryRun = False,
) -> OrjsonResponse:
    record = await svc.create(owner, body, dry_run, idempotency)
    return resource_response(record.view(), 201, f"/api/v1/clusters/{record.id}")


@router.get("/clusters", response_model=ClusterList)
async def list_clusters(
    owner: Owner,
    svc: Clusters,
    limit: Limit = 50,
    offset: Offset = 0,
    platform: Annotated[Platform | None, Query(description="Filter by platform")] = None,
    phase: PhaseFilter = None,
) -> Response:
    total, items = await svc.list(
        owner,
        platform=platform,
        phase=phase.value if phase else None,
        limit=limit,
        offset=offset,
    )
    return page_response("clusters", total, items, limit, offset)


@router.get("/clusters/{id}", response_model=Cluster, responses=WITH_ETAG)
async def get(owner: Owner, cluster_id: ClusterId, svc: Clusters) -> Response:
    return stored_resource_response(*await svc.get_view(owner, cluster_id))


@router.put("/clusters/{id}", response_model=Cluster, responses=WITH_ETAG)
async def replace(
    owner: Owner,
    cluster_id: ClusterId,
    body: ClusterUpdate,
    svc: Clusters,
    if_match: IfMatch = None,
    dry_run: DryRun = False,
) -> OrjsonResponse:
    record = await svc.replace(owner, cluster_id, body, if_match, dry_run)
    return resource_response(record.view())


@router.delete("/clusters/{id}", status_code=204, response_class=Response)
async def delete(
    owner: Owner,
    cluster_id: ClusterId,
    svc: Clusters,
    if_match: IfMatch = None,
    force: Annotated[bool, Query(description="Also delete the cluster's nodepools")] = False,
) -> Response:
    await svc.delete(owner, cluster_id, if_match, force)
    return Response(status_code=204)
