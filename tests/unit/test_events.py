"""Events are constructed without re-validation (cls_core/services/common.py): each kind's event
must still be exactly what validating it against the contract gives."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from cls_core.services.common import build_event, outbox_fields
from shared_models.events import Event, EventType

MOMENT = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=UTC)
RESOURCE = {"id": "n1", "name": "pool", "spec": {"nodeCount": 3, "ratio": 0.5, "label": "é"}}


@pytest.mark.parametrize(
    ("event_type", "nodepool_id"),
    [("nodepool.created", "n1"), ("nodepool.reconcile", "n1"), ("cluster.deleted", None)],
)
def test_an_outbox_body_is_what_the_validated_event_serialises_to(
    event_type: EventType, nodepool_id: str | None
) -> None:
    event = build_event(
        event_type,
        cluster_id="c1",
        nodepool_id=nodepool_id,
        generation=2,
        platform="gcp",
        resource=RESOURCE,
        moment=MOMENT,
    )
    body = outbox_fields(event)["body"]
    validated = Event.model_validate(orjson.loads(body))
    assert validated == Event.model_validate(event.model_dump())
    assert body == orjson.dumps(validated.model_dump(mode="json")).decode()


def test_an_outbox_entry_names_its_routing_key_resource_and_generation() -> None:
    event = build_event(
        "nodepool.updated",
        cluster_id="c1",
        nodepool_id="n1",
        generation=4,
        platform="aws",
        resource=RESOURCE,
        moment=MOMENT,
    )
    fields = outbox_fields(event)
    assert (fields["rk"], fields["res"], fields["gen"]) == ("nodepool.updated.aws", "n1", "4")
    assert fields["id"] == event.id
