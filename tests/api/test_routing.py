"""The route class: every API route is served by the compiled resolver, and the resolver reads a
request exactly as FastAPI's own handler would (same values, same validation errors)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from api_service.app import create_app
from api_service.routing import ApiRoute
from cls_runtime.settings import Settings


class Page(BaseModel):
    limit: int = Field(50, ge=1, le=100)
    kind: str | None = Field(None, alias="type")


class Body(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=0)
    tags: list[str] = []


async def caller(request: Request) -> str:
    return request.headers.get("x-caller", "nobody")


Caller = Annotated[str, Depends(caller)]


async def endpoint(
    who: Caller,
    item_id: Annotated[str, Path(alias="id")],
    page: Annotated[Page, Query()],
    body: Body,
    revision: Annotated[int | None, Header(alias="If-Revision", ge=1)] = None,
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
) -> JSONResponse:
    return JSONResponse(
        {
            "who": who,
            "id": item_id,
            "page": page.model_dump(),
            "body": body.model_dump(),
            "revision": revision,
            "dry_run": dry_run,
        }
    )


def twin_app() -> FastAPI:
    """The same operation twice: served by FastAPI's handler, and by the compiled resolver."""
    app = FastAPI()
    for prefix, route_class in (("/fastapi", APIRoute), ("/compiled", ApiRoute)):
        router = APIRouter(prefix=prefix, route_class=route_class)
        router.put("/items/{id}")(endpoint)
        app.include_router(router)

    async def errors(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"errors": jsonable_encoder(exc.errors())}, status_code=422)

    app.add_exception_handler(RequestValidationError, errors)
    return app


JSON = {"content-type": "application/json"}
REQUESTS: dict[str, dict[str, Any]] = {
    "valid": {"json": {"name": "a", "count": 1, "tags": ["x"]}},
    "valid with every input": {
        "json": {"name": "a", "count": 1},
        "params": {"limit": "7", "type": "big", "dryRun": "yes"},
        "headers": {"If-Revision": "3", "X-Caller": "me"},
    },
    "no body": {},
    "empty body with a JSON type": {"content": b"", "headers": JSON},
    "malformed JSON": {"content": b'{"name": "a",', "headers": JSON},
    "JSON sent as text/plain": {
        "content": b'{"name": "a", "count": 1}',
        "headers": {"content-type": "text/plain"},
    },
    "JSON without a content type": {"content": b'{"name": "a", "count": 1}'},
    "JSON as application/merge-patch+json": {
        "content": b'{"name": "a", "count": 1}',
        "headers": {"content-type": "application/merge-patch+json"},
    },
    "a body of the wrong types": {"json": {"name": "", "count": -1, "tags": "x"}},
    "a body that is a list": {"json": [1, 2]},
    "query values out of range": {"json": {"name": "a", "count": 1}, "params": {"limit": "0"}},
    "a query value of the wrong type": {
        "json": {"name": "a", "count": 1},
        "params": {"limit": "many", "dryRun": "maybe"},
    },
    "a header of the wrong type": {
        "json": {"name": "a", "count": 1},
        "headers": {"If-Revision": "zero"},
    },
    "a header out of range": {"json": {"name": "a", "count": 1}, "headers": {"If-Revision": "0"}},
}


@pytest.mark.parametrize("case", REQUESTS, ids=list(REQUESTS))
async def test_the_compiled_resolver_reads_a_request_as_fastapi_does(case: str) -> None:
    app = twin_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = [
            await client.put(f"/{served_by}/items/abc", **REQUESTS[case])
            for served_by in ("fastapi", "compiled")
        ]
    fastapi_answer, compiled_answer = answers
    assert compiled_answer.status_code == fastapi_answer.status_code
    assert compiled_answer.json() == fastapi_answer.json()


def test_every_api_route_is_served_by_the_compiled_resolver(settings: Settings) -> None:
    app = create_app(settings)
    routes = [r for r in app.router.routes if isinstance(r, APIRoute)]
    not_compiled = [
        f"{sorted(r.methods or ())} {r.path}"
        for r in routes
        if r.path.startswith("/api/v1") and not (isinstance(r, ApiRoute) and r.compiled)
    ]
    assert routes and not not_compiled
