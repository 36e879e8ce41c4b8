"""A controller token is scoped by the registry of controllers: it writes status only on the kinds
and platforms the registry gives its controller (403 with the envelope otherwise), and a token
for a controller the registry does not list is refused at start-up."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from cls_runtime.settings import Settings
from shared_models.names import Kind
from tests.api.conftest import API, assert_error
from tests.conftest import USER, controller_headers
from tests.support.registry import OPTIONAL, optional_headers, with_extra_controllers

MISSING = "00000000-0000-4000-8000-000000000000"


def ready(name: str) -> dict[str, Any]:
    return {
        "controller_name": name,
        "observed_generation": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "NodesReady"}],
    }


async def put_status(
    api: httpx.AsyncClient, path: str, name: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await api.put(
        f"{API}/{path}/status", json=ready(name), headers=headers or controller_headers(name)
    )


async def stored(redis: Redis, settings: Settings, kind: Kind, resource_id: str) -> int:
    """How many controllers' reports the resource holds."""
    return int(await redis.hlen(settings.names.controller_reports(kind, resource_id)))


async def test_an_aws_nodepool_token_cannot_write_a_gcp_nodepool_status(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    response = await put_status(api, f"nodepools/{nodepool['id']}", "aws-nodepool-controller")

    error = assert_error(response, 403, "FORBIDDEN")
    assert "aws-nodepool-controller" in error["details"]
    assert await stored(redis, settings, "nodepool", nodepool["id"]) == 0
    view = await api.get(f"{API}/nodepools/{nodepool['id']}/status", headers=USER)
    assert view.json()["status"]["phase"] == "Pending"


async def test_a_cluster_token_cannot_write_a_nodepool_status(
    api: httpx.AsyncClient, nodepool: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    response = await put_status(api, f"nodepools/{nodepool['id']}", "gcp-cluster-controller")

    assert_error(response, 403, "FORBIDDEN")
    assert await stored(redis, settings, "nodepool", nodepool["id"]) == 0


async def test_a_nodepool_token_cannot_write_a_cluster_status(
    api: httpx.AsyncClient, cluster: dict[str, Any], redis: Redis, settings: Settings
) -> None:
    response = await put_status(api, f"clusters/{cluster['id']}", "gcp-nodepool-controller")

    assert_error(response, 403, "FORBIDDEN")
    assert await stored(redis, settings, "cluster", cluster["id"]) == 0


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (f"nodepools/{MISSING}", "gcp-cluster-controller"),
        (f"clusters/{MISSING}", "gcp-nodepool-controller"),
    ],
    ids=["cluster token on a nodepool", "nodepool token on a cluster"],
)
async def test_a_token_out_of_its_kind_is_refused_before_its_body_or_resource_is_looked_at(
    api: httpx.AsyncClient, path: str, name: str
) -> None:
    # An invalid body on a resource that does not exist: a 400 or a 404 would tell the token's
    # holder about bodies and resources it has no business with.
    response = await api.put(
        f"{API}/{path}/status", content=b"{nope", headers=controller_headers(name)
    )

    error = assert_error(response, 403, "FORBIDDEN")
    assert name in error["details"]


def test_a_token_for_an_unregistered_controller_is_refused_at_start_up(
    settings: Settings,
) -> None:
    with pytest.raises(ValidationError, match="CLS_CONTROLLER_TOKENS: evil-controller not in"):
        Settings(namespace=settings.namespace, controller_tokens="evil-controller=evil-token")


@with_extra_controllers
async def test_an_optional_controller_of_a_registry_file_writes_status(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"nodepools/{nodepool['id']}"
    response = await put_status(api, url, OPTIONAL, headers=optional_headers())

    assert response.status_code == 200, response.text
    waiting = response.json()["status"]
    assert waiting["phase"] == "Progressing"
    assert waiting["message"].endswith("waiting for gcp-nodepool-controller")
    response = await put_status(api, url, "gcp-nodepool-controller")
    assert response.json()["status"]["phase"] == "Ready"
