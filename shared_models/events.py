"""Spec-change events on ``<ns>.events``: the one definition producers and consumers use."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared_models.specs import Platform

EventType = Literal[
    "nodepool.created",
    "nodepool.updated",
    "nodepool.deleted",
    "nodepool.reconcile",
    "cluster.created",
    "cluster.updated",
    "cluster.deleted",
    "cluster.reconcile",
]

EVENT_SOURCE = "cls-backend/api_service"


class Event(BaseModel):
    """One spec change (or reconcile request), with the resource as it was at ``generation``.

    ``id`` is also the AMQP ``message_id``. Delivery is at-least-once: consumers deduplicate by
    ``id`` and ignore events whose ``generation`` is older than one they have already handled.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    type: EventType
    cluster_id: str
    nodepool_id: str | None
    generation: int
    timestamp: datetime
    source: str = EVENT_SOURCE
    platform: Platform
    resource: dict[str, Any]
    # The operation the change started (GET /api/v1/operations/{id}); absent on reconciles.
    operation_id: str | None = None

    @property
    def routing_key(self) -> str:
        return routing_key(self.type, self.platform)


def routing_key(event_type: EventType | str, platform: Platform | str) -> str:
    """``<type>.<platform>``, e.g. ``nodepool.created.gcp``."""
    return f"{event_type}.{platform}"
