"""The ingester ends operations as the API's status path does: a report over the queue that
makes a nodepool Ready at its operation's generation ends the operation."""

from __future__ import annotations

from typing import Any

import httpx

from status_ingester.consumer import StatusIngester
from tests.conftest import USER, seed_nodepool_body
from tests.ingest.conftest import Publisher, nodepool_report
from tests.support.polling import eventually


async def state_of(api: httpx.AsyncClient, operation_id: str) -> str:
    response = await api.get(f"/api/v1/operations/{operation_id}", headers=USER)
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


async def test_a_report_over_the_queue_ends_the_operation_of_its_generation(
    api: httpx.AsyncClient, cluster: dict[str, Any], publisher: Publisher, ingester: StatusIngester
) -> None:
    created = await api.post(
        "/api/v1/nodepools", json=seed_nodepool_body(cluster["id"]), headers=USER
    )
    nodepool_id, operation_id = created.json()["id"], created.headers["X-Operation-Id"]
    await publisher.report(nodepool_report(nodepool_id, 1, ready=False, step=1))
    await publisher.report(nodepool_report(nodepool_id, 1, ready=True, step=3))
    await eventually(
        lambda: state_of(api, operation_id),
        lambda state: state == "Succeeded",
        what="the create's operation Succeeded",
    )
    response = await api.get(f"/api/v1/operations/{operation_id}", headers=USER)
    assert response.json()["progress"]["active_nodes"] == 3
