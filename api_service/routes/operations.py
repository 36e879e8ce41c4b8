"""/api/v1 operation routes: the operations of a resource, and one operation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api_service.deps import ClusterId, NodePoolId, OperationId, User
from api_service.routes.queries import PageQuery
from api_service.routes.responses import API_PREFIX, ERRORS
from api_service.routing import ApiRoute
from shared_models.names import Kind
from shared_models.operations import Operation, OperationList

router = APIRouter(prefix=API_PREFIX, tags=["operations"], responses=ERRORS, route_class=ApiRoute)


@router.get("/nodepools/{id}/operations", response_model=OperationList)
async def nodepool_operations(
    user: User, nodepool_id: NodePoolId, query: Annotated[PageQuery, Query()]
) -> Response:
    """The nodepool's operations, newest first (kept for the retention once it is deleted)."""
    return await _page(user, "nodepool", nodepool_id, query)


@router.get("/clusters/{id}/operations", response_model=OperationList)
async def cluster_operations(
    user: User, cluster_id: ClusterId, query: Annotated[PageQuery, Query()]
) -> Response:
    """The cluster's own operations, newest first (its nodepools' are theirs)."""
    return await _page(user, "cluster", cluster_id, query)


@router.get("/operations/{id}", response_model=Operation)
async def get(user: User, operation_id: OperationId) -> Response:
    operation = await user.operations.get(user.caller, operation_id)
    return Response(operation.model_dump_json(), media_type="application/json")


async def _page(user: User, kind: Kind, resource_id: str, query: PageQuery) -> Response:
    total, operations = await user.operations.list(
        user.caller, kind, resource_id, query.limit, query.offset
    )
    page = OperationList(operations=operations, total=total, limit=query.limit, offset=query.offset)
    return Response(page.model_dump_json(), media_type="application/json")
