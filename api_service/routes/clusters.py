"""/api/v1 cluster routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api_service.deps import ClusterId, Precondition, Reader, User
from api_service.routes.idempotency import (
    IDEMPOTENCY_DOC,
    IdempotencyKey,
    replay_response,
    replayed,
)
from api_service.routes.nodepools import DryRun, Reason, forced_reason
from api_service.routes.queries import ClusterListWatchQuery, ResourceGetQuery
from api_service.routes.responses import (
    API_PREFIX,
    CREATED,
    DELETE_REFUSED,
    ERRORS,
    ETAG_HEADER,
    OPERATION_HEADER,
    WITH_ETAG,
    WRITTEN,
    page_response,
    resource_response,
    stored_resource_response,
)
from api_service.routes.watch import (
    LastEventId,
    one_resource,
    resume_token,
    waitable,
    watch_response,
    watchable,
)
from api_service.routing import ApiRoute
from cls_core.services.deletion import NO_REASON
from cls_core.services.idempotency import Replay
from cls_core.services.watch import WatchFilter
from shared_models.projects import ClusterTransfer
from shared_models.resources import (
    Cluster,
    ClusterCreate,
    ClusterList,
    ClusterUpdate,
)

router = APIRouter(prefix=API_PREFIX, tags=["clusters"], responses=ERRORS, route_class=ApiRoute)


@router.post(
    "/clusters",
    status_code=201,
    response_model=Cluster,
    responses={**CREATED, **replayed(Cluster)},
    openapi_extra=IDEMPOTENCY_DOC,
)
async def create(
    user: User,
    body: ClusterCreate,
    idempotency: IdempotencyKey,
    dry_run: DryRun = False,
) -> Response:
    if isinstance(idempotency, Replay):
        return replay_response(idempotency)
    created = await user.clusters.create(user.caller, body, dry_run, idempotency)
    if isinstance(created, Replay):  # a retry that raced the first request to the key
        return replay_response(created)
    return resource_response(created, 201, f"/api/v1/clusters/{created.id}")


@router.get("/clusters", response_model=ClusterList, responses=watchable())
async def list_clusters(
    user: User,
    query: Annotated[ClusterListWatchQuery, Query()],
    last_event_id: LastEventId = None,
) -> Response:
    token = resume_token(query, last_event_id)
    if query.watch:
        wanted = WatchFilter(
            "cluster",
            project_id=query.project_id,
            platform=query.platform,
            phase=query.phase.value if query.phase else None,
        )
        return await watch_response(user.watch, user.caller, wanted, token)
    total, items = await user.clusters.list(
        user.caller,
        platform=query.platform,
        phase=query.phase.value if query.phase else None,
        project_id=query.project_id,
        limit=query.limit,
        offset=query.offset,
    )
    return page_response("clusters", total, items, query.limit, query.offset)


@router.get("/clusters/{id}", response_model=Cluster, responses=waitable(ETAG_HEADER))
async def get(
    reader: Reader,
    cluster_id: ClusterId,
    query: Annotated[ResourceGetQuery, Query()],
    last_event_id: LastEventId = None,
) -> Response:
    watched = await one_resource(
        reader.watch, reader.caller, "cluster", cluster_id, query, last_event_id
    )
    if watched is not None:
        return watched
    service = reader.clusters
    if reader.caller is None:
        return stored_resource_response(*await service.controller_view(cluster_id))
    return stored_resource_response(*await service.get_view(reader.caller, cluster_id))


@router.put("/clusters/{id}", response_model=Cluster, responses=WRITTEN)
async def replace(
    user: User,
    cluster_id: ClusterId,
    body: ClusterUpdate,
    preconditions: Precondition,
    dry_run: DryRun = False,
) -> Response:
    record = await user.clusters.replace(user.caller, cluster_id, body, preconditions, dry_run)
    return resource_response(record)


@router.delete(
    "/clusters/{id}",
    status_code=202,
    response_model=Cluster,
    responses={
        202: {
            "description": "Deletion accepted: the cluster as it was",
            "headers": OPERATION_HEADER,
        },
        **DELETE_REFUSED,
    },
)
async def delete(
    user: User,
    cluster_id: ClusterId,
    preconditions: Precondition,
    force: Annotated[
        bool,
        Query(
            description="Also delete the cluster's nodepools (a project admin's call), and "
            "purge the cluster and them without waiting for their controllers"
        ),
    ] = False,
    reason: Reason = None,
    dry_run: DryRun = False,
) -> Response:
    """202 with the cluster as it was when its deletion was accepted (phase Deleting): a body,
    so clients of the original system (which answered 202 with JSON) keep working. The
    guide's documented ``?force=true`` sends no reason: for a cluster it is optional."""
    why = forced_reason(force, reason, required=False)
    if force and why is None:
        why = NO_REASON
    record = await user.clusters.delete(
        user.caller, cluster_id, preconditions, dry_run, forced_reason=why
    )
    return resource_response(record, 202)


@router.post("/clusters/{id}/transfer", response_model=Cluster, responses=WITH_ETAG)
async def transfer(
    user: User,
    cluster_id: ClusterId,
    body: ClusterTransfer,
    preconditions: Precondition,
    dry_run: DryRun = False,
) -> Response:
    """Move the cluster and all its nodepools to another project, in one transaction. The
    caller must be an admin of both projects; the cluster's name must be free in the target."""
    record = await user.clusters.transfer(
        user.caller, cluster_id, body.project_id, preconditions, dry_run
    )
    return resource_response(record)
