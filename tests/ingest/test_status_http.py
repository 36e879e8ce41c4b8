"""PUT .../status over HTTP: who may write, and what each apply outcome answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import OTHER_USER, USER, controller_headers, seed_nodepool_body
from tests.ingest.conftest import create_cluster_id, create_nodepools, report


def status_url(nodepool: dict[str, Any]) -> str:
    return f"/api/v1/nodepools/{nodepool['id']}/status"


async def put_status(
    api: httpx.AsyncClient, nodepool: dict[str, Any], headers: dict[str, str], **kwargs: Any
) -> httpx.Response:
    return await api.put(status_url(nodepool), json=report(1, **kwargs), headers=headers)


async def test_user_email_alone_is_forbidden(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await put_status(api, nodepool, USER)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_no_credentials_is_unauthorized(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await put_status(api, nodepool, {})
    assert response.status_code == 401


async def test_unknown_token_is_unauthorized(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await put_status(api, nodepool, {"Authorization": "Bearer not-a-token", **USER})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_controller_reporting_as_another_controller_is_forbidden(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await put_status(api, nodepool, controller_headers("aws-nodepool-controller"))
    assert response.status_code == 403
    status = (await api.get(status_url(nodepool), headers=USER)).json()
    assert status["controller_status"] == []


async def test_credentials_are_checked_before_the_body(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.put(status_url(nodepool), content=b"{nope", headers=USER)
    assert response.status_code == 403


async def test_controller_may_write_status_of_any_owners_nodepool(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    response = await api.post("/api/v1/clusters", json=_cluster(), headers=OTHER_USER)
    other_cluster = response.json()["id"]
    body = seed_nodepool_body(other_cluster, name="theirs")
    theirs = (await api.post("/api/v1/nodepools", json=body, headers=OTHER_USER)).json()

    response = await put_status(api, theirs, controller_headers(), ready=True)
    assert response.status_code == 200, response.text
    assert response.json()["status"]["phase"] == "Ready"
    seen_by_owner = (await api.get(status_url(theirs), headers=OTHER_USER)).json()
    assert seen_by_owner["status"]["phase"] == "Ready"
    # ...and the owner of nothing there still sees nothing.
    assert (await api.get(status_url(theirs), headers=USER)).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/clusters", "cluster"),
        ("POST", "/api/v1/nodepools", "nodepool"),
        ("PUT", "/api/v1/nodepools/{id}", "nodepool"),
        ("PATCH", "/api/v1/nodepools/{id}", "patch"),
        ("DELETE", "/api/v1/nodepools/{id}", None),
        ("PUT", "/api/v1/clusters/{cluster_id}", "cluster"),
        ("DELETE", "/api/v1/clusters/{cluster_id}?force=true", None),
    ],
)
async def test_controller_token_cannot_write_specs(
    api: httpx.AsyncClient,
    nodepool: dict[str, Any],
    method: str,
    path: str,
    body: str | None,
) -> None:
    payloads: dict[str | None, Any] = {
        "cluster": {**_cluster(), "name": "renamed"},
        "nodepool": seed_nodepool_body(nodepool["cluster_id"], name="renamed"),
        "patch": {"spec": {"nodeCount": 9}},
        None: None,
    }
    payload = payloads[body]
    url = path.format(id=nodepool["id"], cluster_id=nodepool["cluster_id"])
    for headers in (controller_headers(), {**controller_headers(), **USER}):
        response = await api.request(method, url, json=payload, headers=headers)
        assert response.status_code == 403, (headers, response.text)
    after = (await api.get(f"/api/v1/nodepools/{nodepool['id']}", headers=USER)).json()
    assert after["resource_version"] == nodepool["resource_version"]


async def test_stale_report_is_a_conflict(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    await _bump(api, nodepool)
    ok = await api.put(status_url(nodepool), json=report(2), headers=controller_headers())
    assert ok.status_code == 200
    stale = await api.put(status_url(nodepool), json=report(1), headers=controller_headers())
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "CONFLICT"
    stored = (await api.get(status_url(nodepool), headers=USER)).json()["controller_status"]
    assert stored[0]["observed_generation"] == 2


async def test_future_generation_is_a_validation_error(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.put(status_url(nodepool), json=report(2), headers=controller_headers())
    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "observed_generation"


async def test_unknown_nodepool_is_not_found(api: httpx.AsyncClient) -> None:
    url = "/api/v1/nodepools/00000000-0000-4000-8000-000000000000/status"
    response = await api.put(url, json=report(1), headers=controller_headers())
    assert response.status_code == 404


async def test_same_report_twice_changes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    first = await put_status(api, nodepool, controller_headers(), ready=True)
    second = await put_status(api, nodepool, controller_headers(), ready=True)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()  # updated_at and lastTransitionTime included


async def test_ready_transition_time_kept_until_status_flips(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    def ready_since(response: httpx.Response) -> str:
        conditions = response.json()["status"]["conditions"]
        return str(next(c for c in conditions if c["type"] == "Ready")["lastTransitionTime"])

    first = await put_status(api, nodepool, controller_headers(), ready=True, step=1)
    again = await put_status(api, nodepool, controller_headers(), ready=True, step=2)
    assert ready_since(again) == ready_since(first)
    flipped = await put_status(api, nodepool, controller_headers(), ready=False, step=3)
    assert ready_since(flipped) > ready_since(first)


async def test_non_json_content_type_is_refused(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    response = await api.put(
        status_url(nodepool),
        content=b'{"controller_name":"gcp-nodepool-controller","observed_generation":1}',
        headers={**controller_headers(), "Content-Type": "text/plain"},
    )
    assert response.status_code == 400


async def test_cluster_status_written_by_controller_and_read_by_owner(
    api: httpx.AsyncClient,
) -> None:
    cluster_id = await create_cluster_id(api, "c1")
    body = report(1, controller="gcp-cluster-controller", ready=True)
    response = await api.put(
        f"/api/v1/clusters/{cluster_id}/status",
        json=body,
        headers=controller_headers("gcp-cluster-controller"),
    )
    assert response.status_code == 200, response.text
    view = (await api.get(f"/api/v1/clusters/{cluster_id}/status", headers=USER)).json()
    assert view["cluster_id"] == cluster_id
    assert view["generation"] == 1
    assert view["status"]["phase"] == "Ready"
    assert [c["controller_name"] for c in view["controller_status"]] == ["gcp-cluster-controller"]
    assert await create_nodepools(api, cluster_id, 1)  # the cluster still works as a parent


def _cluster() -> dict[str, Any]:
    return {
        "name": "demo",
        "spec": {
            "platform": {
                "type": "gcp",
                "gcp": {"projectID": "my-project-123", "region": "us-central1"},
            }
        },
    }


async def _bump(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    body = seed_nodepool_body(nodepool["cluster_id"], name=nodepool["name"])
    body.pop("cluster_id")
    body["spec"]["nodeCount"] += 1
    response = await api.put(f"/api/v1/nodepools/{nodepool['id']}", json=body, headers=USER)
    assert response.status_code == 200, response.text
