"""The route class of every API router: an operation answers only the query it documents.

An unknown query parameter is refused with a 400 naming it, never ignored: ignored, a typo
(``?dryrun=true``, ``?forse=true``) or a feature this API lacks (``?watch=true``) would turn a
call the client meant as safe into one that acts, and the client would never know.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from cls_core.errors import ValidationFailed
from shared_models.errors import FieldError

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class DocumentedQueryRoute(APIRoute):
    """An ``APIRoute`` whose handler first refuses query parameters the operation does not
    document: those FastAPI resolves from its signature and those its ``openapi_extra``
    declares (the routes that read their query themselves)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        allowed = frozenset(documented_query_names(self))

        async def refuse_unknown_query(request: Request) -> Response:
            if request.scope["query_string"]:
                unknown = [name for name in request.query_params if name not in allowed]
                if unknown:
                    raise unknown_query_parameters(unknown, allowed)
            return await handler(request)

        return refuse_unknown_query


def documented_query_names(route: APIRoute) -> Iterator[str]:
    yield from _declared_query_names(route.dependant)
    for parameter in (route.openapi_extra or {}).get("parameters", []):
        if parameter.get("in") == "query":
            yield str(parameter["name"])


def _declared_query_names(dependant: Dependant) -> Iterator[str]:
    for field in dependant.query_params:
        yield field.alias
    for sub in dependant.dependencies:
        yield from _declared_query_names(sub)


def unknown_query_parameters(unknown: list[str], allowed: frozenset[str]) -> ValidationFailed:
    takes = ", ".join(sorted(allowed)) if allowed else "no query parameters"
    return ValidationFailed(
        [
            FieldError(
                field=name[:80],
                message=f"{name[:80]}: unknown query parameter (this operation takes {takes})",
            )
            for name in unknown
        ],
        message="Unknown query parameter",
    )
