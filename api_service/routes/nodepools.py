"""/api/v1 nodepool routes."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from api_service.deps import (
    NodePoolId,
    ParentClusterId,
    Precondition,
    Reader,
    User,
    UserCall,
)
from api_service.routes.idempotency import (
    IDEMPOTENCY_DOC,
    IdempotencyKey,
    replay_response,
    replayed,
)
from api_service.routes.queries import (
    NodePoolListWatchQuery,
    NodePoolPageQuery,
    ResourceGetQuery,
)
from api_service.routes.responses import (
    API_PREFIX,
    CREATED,
    DELETE_REFUSED,
    DELETED_204,
    ERRORS,
    ETAG_HEADER,
    WRITTEN,
    operation_header,
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
from cls_core.errors import ValidationFailed
from cls_core.services.idempotency import Replay
from cls_core.services.watch import WatchFilter
from cls_core.store import NodePoolRecord
from shared_models.resources import (
    NodePool,
    NodePoolCreate,
    NodePoolList,
    NodePoolPatch,
    NodePoolUpdate,
)

router = APIRouter(prefix=API_PREFIX, tags=["nodepools"], responses=ERRORS, route_class=ApiRoute)

DryRun = Annotated[bool, Query(alias="dryRun", description="Validate everything, write nothing")]
MAX_REASON_LENGTH = 512
Reason = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_REASON_LENGTH,
        description="Why the deletion is forced (required with force=true); kept with the "
        "resource's tombstone and logged",
    ),
]


def forced_reason(force: bool, reason: str | None, *, required: bool = True) -> str | None:
    """The reason of a forced delete (None: not forced); a force without one is refused."""
    if not force:
        return None
    if reason is None:
        if not required:
            return None
        raise ValidationFailed.of(
            "reason", "reason is required with force=true (why the deletion is forced)"
        )
    return reason


MERGE_PATCH = "application/merge-patch+json"


async def read_merge_patch(request: Request) -> Any:
    """The body of a PATCH, any JSON value (the service judges it as a merge patch)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (MERGE_PATCH, "application/json"):
        raise ValidationFailed.of(
            "Content-Type", f"Content-Type: PATCH takes {MERGE_PATCH} (or application/json)"
        )
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed.of("body", f"request body is not valid JSON: {exc}") from exc


# Read by hand: a merge patch is any JSON value, judged by the service against the stored
# resource; its schema is documented in the route's ``openapi_extra``.
MergePatch = Annotated[Any, Depends(read_merge_patch)]


@router.post(
    "/clusters/{clusterId}/nodepools",
    status_code=201,
    response_model=NodePool,
    responses={**CREATED, **replayed(NodePool)},
    openapi_extra=IDEMPOTENCY_DOC,
)
async def create_in_cluster(
    user: User,
    cluster_id: ParentClusterId,
    body: NodePoolCreate,
    idempotency: IdempotencyKey,
    dry_run: DryRun = False,
) -> Response:
    if isinstance(idempotency, Replay):
        return replay_response(idempotency)
    created = await user.nodepools.create(user.caller, body, cluster_id, dry_run, idempotency)
    return _created(created)


@router.post(
    "/nodepools",
    status_code=201,
    response_model=NodePool,
    responses={**CREATED, **replayed(NodePool)},
    openapi_extra=IDEMPOTENCY_DOC,
)
async def create(
    user: User,
    body: NodePoolCreate,
    idempotency: IdempotencyKey,
    dry_run: DryRun = False,
) -> Response:
    if isinstance(idempotency, Replay):
        return replay_response(idempotency)
    created = await user.nodepools.create(user.caller, body, None, dry_run, idempotency)
    return _created(created)


def _created(created: NodePoolRecord | Replay) -> Response:
    if isinstance(created, Replay):  # a retry that raced the first request to the key
        return replay_response(created)
    return resource_response(created, 201, f"/api/v1/nodepools/{created.id}")


@router.get("/clusters/{clusterId}/nodepools", response_model=NodePoolList)
async def list_in_cluster(
    user: User,
    cluster_id: ParentClusterId,
    query: Annotated[NodePoolPageQuery, Query()],
) -> Response:
    cluster = await user.nodepools.cluster_for(user.caller, cluster_id)
    return await _page(user, cluster_id, cluster.project_id, query)


@router.get("/nodepools", response_model=NodePoolList, responses=watchable())
async def list_all(
    user: User,
    query: Annotated[NodePoolListWatchQuery, Query()],
    last_event_id: LastEventId = None,
) -> Response:
    token = resume_token(query, last_event_id)
    if query.watch:
        wanted = WatchFilter(
            "nodepool",
            project_id=query.project_id,
            cluster_id=query.cluster_id,
            phase=query.phase.value if query.phase else None,
            health=query.health.value if query.health else None,
        )
        return await watch_response(user.watch, user.caller, wanted, token)
    return await _page(user, query.cluster_id, query.project_id, query)


async def _page(
    user: UserCall, cluster_id: str | None, project_id: str | None, query: NodePoolPageQuery
) -> Response:
    total, items = await user.nodepools.list(
        user.caller,
        cluster_id=cluster_id,
        project_id=project_id,
        phase=query.phase.value if query.phase else None,
        health=query.health.value if query.health else None,
        limit=query.limit,
        offset=query.offset,
    )
    return page_response("nodepools", total, items, query.limit, query.offset)


@router.get("/nodepools/{id}", response_model=NodePool, responses=waitable(ETAG_HEADER))
async def get(
    reader: Reader,
    nodepool_id: NodePoolId,
    query: Annotated[ResourceGetQuery, Query()],
    last_event_id: LastEventId = None,
) -> Response:
    watched = await one_resource(
        reader.watch, reader.caller, "nodepool", nodepool_id, query, last_event_id
    )
    if watched is not None:
        return watched
    service = reader.nodepools
    if reader.caller is None:
        return stored_resource_response(*await service.controller_view(nodepool_id))
    return stored_resource_response(*await service.get_view(reader.caller, nodepool_id))


@router.put("/nodepools/{id}", response_model=NodePool, responses=WRITTEN)
async def replace(
    user: User,
    nodepool_id: NodePoolId,
    body: NodePoolUpdate,
    preconditions: Precondition,
    dry_run: DryRun = False,
) -> Response:
    record = await user.nodepools.replace(user.caller, nodepool_id, body, preconditions, dry_run)
    return resource_response(record)


@router.patch(
    "/nodepools/{id}",
    response_model=NodePool,
    responses=WRITTEN,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MERGE_PATCH: {"schema": NodePoolPatch.model_json_schema()},
                "application/json": {"schema": NodePoolPatch.model_json_schema()},
            },
            "description": "JSON merge patch (RFC 7386) over {name, spec}",
        }
    },
)
async def patch(
    user: User,
    nodepool_id: NodePoolId,
    patch_body: MergePatch,
    preconditions: Precondition,
    dry_run: DryRun = False,
) -> Response:
    record = await user.nodepools.patch(
        user.caller, nodepool_id, patch_body, preconditions, dry_run
    )
    return resource_response(record)


@router.delete(
    "/nodepools/{id}",
    status_code=204,
    response_class=Response,
    responses={**DELETED_204, **DELETE_REFUSED},
)
async def delete(
    user: User,
    nodepool_id: NodePoolId,
    preconditions: Precondition,
    force: Annotated[
        bool,
        Query(
            description="Purge the nodepool now, without its controllers' confirmation "
            "(reason required)"
        ),
    ] = False,
    reason: Reason = None,
    dry_run: DryRun = False,
) -> Response:
    """204: the nodepool is being deleted (phase Deleting until its controllers confirm), or
    purged when forced or when no controller has to confirm."""
    why = forced_reason(force, reason)
    operation_id = await user.nodepools.delete(
        user.caller, nodepool_id, preconditions, dry_run, why
    )
    return Response(status_code=204, headers=operation_header(operation_id))
