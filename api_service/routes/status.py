"""/api/v1 status routes: users read a resource's status, controllers report it.

``PUT .../status`` is the HTTP face of the status queue: the body is parsed and validated by the
same ``parse_report`` and applied by the same ``StatusService.apply`` as a queue message; only
the outcomes become status codes (stale: 409, future generation: 400, unknown: 404, a controller
the registry does not list for the resource: 403). Before the body is read, the token's
controller must be one the registry lists for the route's kind (403).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from api_service.deps import (
    ClusterController,
    ClusterId,
    ControllerCall,
    NodePoolController,
    NodePoolId,
    User,
)
from api_service.json_response import OrjsonResponse
from api_service.routes.responses import API_PREFIX, ERRORS
from api_service.routing import ApiRoute
from cls_core.errors import ApiError, Conflict, Forbidden, NotFound, ValidationFailed
from cls_core.services.common import status_document
from cls_core.services.status import ApplyResult, InvalidReport, Outcome, parse_report
from shared_models.errors import ErrorEnvelope
from shared_models.names import Kind
from shared_models.resources import ClusterStatusView, NodePoolStatusView
from shared_models.status import ControllerReport

router = APIRouter(prefix=API_PREFIX, tags=["status"], responses=ERRORS, route_class=ApiRoute)

_CONTENT_TYPES = ("", "application/json")


def _report_schema() -> dict[str, Any]:
    # The body is parsed by hand (see read_report); document it as FastAPI would have, with its
    # definitions inlined: the components section holds the models as responses show them, and
    # a report's last_error.retryAfter accepts more (an integer of nanoseconds) than it shows.
    schema = ControllerReport.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


_REPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _report_schema()}},
        "description": "One controller's report (controllers only: Authorization: Bearer)",
    }
}
_WHO: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorEnvelope,
        "description": (
            "A user; a controller reporting as another, or on a resource whose kind and "
            "platform the registry of controllers does not give it (FORBIDDEN)"
        ),
    },
}


async def read_nodepool_report(
    controller: NodePoolController, request: Request
) -> ControllerReport:
    """The body, validated exactly as a queue message is, once the caller is authorised."""
    return await read_report(request)


async def read_cluster_report(controller: ClusterController, request: Request) -> ControllerReport:
    """The same, for a cluster's status."""
    return await read_report(request)


async def read_report(request: Request) -> ControllerReport:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _CONTENT_TYPES:
        raise ValidationFailed.of(
            "Content-Type", "Content-Type: a status report is application/json"
        )
    try:
        return parse_report(await request.body(), ControllerReport)
    except InvalidReport as exc:
        raise ValidationFailed(exc.fields, total=exc.total) from exc


# A report's body is read by hand, by the queue's own parser (documented in ``_REPORT_BODY``),
# once its caller is known to report on the route's kind.
NodePoolReport = Annotated[ControllerReport, Depends(read_nodepool_report)]
ClusterReport = Annotated[ControllerReport, Depends(read_cluster_report)]


@router.get("/nodepools/{id}/status", response_model=NodePoolStatusView, tags=["nodepools"])
async def get_nodepool_status(user: User, nodepool_id: NodePoolId) -> OrjsonResponse:
    return OrjsonResponse(await user.nodepools.status_view(user.caller, nodepool_id))


@router.put(
    "/nodepools/{id}/status",
    response_model=NodePoolStatusView,
    openapi_extra=_REPORT_BODY,
    responses=_WHO,
)
async def put_nodepool_status(
    controller: NodePoolController, nodepool_id: NodePoolId, report: NodePoolReport
) -> OrjsonResponse:
    result = await apply_report(controller, "nodepool", nodepool_id, report)
    # A controller may report on any project's nodepool; answer with what its users would see.
    return status_response("nodepool_id", nodepool_id, result)


@router.get("/clusters/{id}/status", response_model=ClusterStatusView, tags=["clusters"])
async def get_cluster_status(user: User, cluster_id: ClusterId) -> OrjsonResponse:
    return OrjsonResponse(await user.clusters.status_view(user.caller, cluster_id))


@router.put(
    "/clusters/{id}/status",
    response_model=ClusterStatusView,
    openapi_extra=_REPORT_BODY,
    responses=_WHO,
)
async def put_cluster_status(
    controller: ClusterController, cluster_id: ClusterId, report: ClusterReport
) -> OrjsonResponse:
    result = await apply_report(controller, "cluster", cluster_id, report)
    return status_response("cluster_id", cluster_id, result)


def status_response(id_field: str, resource_id: str, result: ApplyResult) -> OrjsonResponse:
    """The status document as the report left it: the apply path read and wrote both the
    resource and its reports, so nothing is read again."""
    assert result.record is not None  # every outcome without a record raised already
    record = result.record
    return OrjsonResponse(
        status_document(id_field, resource_id, record.generation, record.status, result.reports)
    )


async def apply_report(
    controller: ControllerCall, kind: Kind, resource_id: str, report: ControllerReport
) -> ApplyResult:
    if report.controller_name != controller.name:
        raise Forbidden(
            "A controller may only report as itself",
            f"the token belongs to '{controller.name}', "
            f"the report names '{report.controller_name}'",
        )
    result = await controller.status.apply(kind, resource_id, report)
    what = "NodePool" if kind == "nodepool" else "Cluster"
    errors: dict[Outcome, ApiError] = {
        Outcome.NOT_FOUND: NotFound(f"{what} not found"),
        Outcome.STALE: Conflict(
            "Stale status report",
            f"{report.controller_name} already reported observed_generation "
            f"{result.stored_generation}; this report has {report.observed_generation}",
        ),
        Outcome.FUTURE_GENERATION: ValidationFailed.of(
            "observed_generation",
            f"observed_generation {report.observed_generation} is newer than the "
            f"{what.lower()}'s generation {result.generation}",
        ),
        Outcome.UNREGISTERED: Forbidden(
            f"This controller does not report on this {what}",
            f"the registry of controllers does not list '{report.controller_name}' for this "
            f"{what.lower()}'s platform",
        ),
    }
    if result.outcome in errors:
        raise errors[result.outcome]
    return result
