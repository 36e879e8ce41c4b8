"""List filters on an enumerated value (``?status=Ready``, ``?health=Healthy``).

They are declared as plain strings, with their choices in the OpenAPI schema, and checked by
``choice`` with pydantic's own wording: FastAPI validating an optional enum query parameter cost
~200 us per parameter on every list request, about as much as serving the page.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import Query

from api_service.errors import ValidationFailed
from shared_models.status import Health, Phase

E = TypeVar("E", bound=StrEnum)


def _choices(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


PhaseFilter = Annotated[
    str | None,
    Query(
        alias="status",
        description="Filter by phase",
        json_schema_extra={"enum": _choices(Phase)},
    ),
]
HealthFilter = Annotated[
    str | None,
    Query(description="Filter by health", json_schema_extra={"enum": _choices(Health)}),
]


def choice(value: str | None, enum: type[E], name: str) -> E | None:
    """The member named by a filter's value; a 400 naming the filter and its choices otherwise."""
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        quoted = [f"'{c}'" for c in _choices(enum)]
        allowed = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        raise ValidationFailed.of(name, f"{name}: Input should be {allowed}") from None
