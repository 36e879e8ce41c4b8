"""Liveness, readiness and build info (outside /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api_service.deps import State
from api_service.json_response import OrjsonResponse
from api_service.routing import ApiRoute
from shared_models.errors import ErrorBody, ErrorCode, envelope

router = APIRouter(tags=["operations"], route_class=ApiRoute)


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


class NotReady(BaseModel):
    error: ErrorBody
    checks: dict[str, str]


class BuildInfo(BaseModel):
    name: str
    version: str
    namespace: str


@router.get("/health", response_model=Liveness)
async def health() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": NotReady, "description": "A dependency is not answering"}},
)
async def ready(state: State) -> OrjsonResponse:
    """Ready to serve: Redis answers (and the broker, once the relay runs)."""
    checks: dict[str, str] = {}
    try:
        await state.store.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    for name, probe in state.readiness_probes.items():
        checks[name] = "ok" if probe() else "unavailable"
    if all(value == "ok" for value in checks.values()):
        return OrjsonResponse({"status": "ready", "checks": checks})
    body = envelope(
        ErrorCode.UNAVAILABLE,
        "Not ready",
        ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
    )
    body["checks"] = checks
    return OrjsonResponse(body, status_code=503)


@router.get("/info", response_model=BuildInfo)
async def info(state: State) -> dict[str, str]:
    from importlib.metadata import version

    return {
        "name": "cls-backend",
        "version": version("cls-backend"),
        "namespace": state.settings.namespace,
    }
