"""Controller credentials: compared in constant time against every known token, good for status
writes only (as that controller), never for specs; users never write status."""

from __future__ import annotations

import hmac
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from api_service import auth
from cls_runtime.settings import Settings
from tests.api.conftest import MERGE_PATCH, assert_error, update_body
from tests.conftest import (
    CONTROLLER_TOKENS,
    USER,
    controller_headers,
    gcp_cluster_body,
    seed_nodepool_body,
)

API = "/api/v1"

SPEC_WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/clusters", gcp_cluster_body("by-a-controller")),
    ("PUT", "/clusters/{cl}", gcp_cluster_body("renamed")),
    ("DELETE", "/clusters/{cl}?force=true", None),
    ("POST", "/nodepools", "nodepool"),
    ("POST", "/clusters/{cl}/nodepools", "nodepool"),
    ("PUT", "/nodepools/{np}", update_body("renamed", 1)),
    ("PATCH", "/nodepools/{np}", {"spec": {"nodeCount": 0}}),
    ("DELETE", "/nodepools/{np}", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), SPEC_WRITES, ids=[f"{m} {p}" for m, p, _ in SPEC_WRITES]
)
@pytest.mark.parametrize("with_email", [False, True], ids=["token alone", "token and email"])
async def test_a_controller_token_cannot_write_specs(
    api: httpx.AsyncClient,
    owned: dict[str, Any],
    redis: Redis,
    settings: Settings,
    method: str,
    path: str,
    body: Any,
    with_email: bool,
) -> None:
    headers = {**controller_headers(), **(USER if with_email else {})}
    if method == "PATCH":
        headers.update(MERGE_PATCH)
    if body == "nodepool":
        body = seed_nodepool_body(owned["cl"]["id"], "by-a-controller")
    url = API + path.format(np=owned["np"]["id"], cl=owned["cl"]["id"])
    outbox = await redis.xlen(settings.names.outbox)
    response = await api.request(method, url, json=body, headers=headers)
    assert_error(response, 403, "FORBIDDEN")
    assert await redis.xlen(settings.names.outbox) == outbox
    np = await api.get(f"{API}/nodepools/{owned['np']['id']}", headers=USER)
    assert np.json() == owned["np"]


@pytest.mark.parametrize("kind", ["nodepools", "clusters"])
@pytest.mark.parametrize(
    "headers",
    [
        USER,
        {**USER, "Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic Z2NwLXRva2Vu"},
        {"Authorization": f"Token {CONTROLLER_TOKENS['gcp-nodepool-controller']}"},
    ],
    ids=["user email", "email and bad token", "empty bearer", "basic auth", "other scheme"],
)
async def test_only_a_controller_token_writes_status(
    api: httpx.AsyncClient, owned: dict[str, Any], kind: str, headers: dict[str, str]
) -> None:
    key = "np" if kind == "nodepools" else "cl"
    report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 1}
    response = await api.put(
        f"{API}/{kind}/{owned[key]['id']}/status", json=report, headers=headers
    )
    assert response.status_code in (401, 403), response.text
    status = await api.get(f"{API}/{kind}/{owned[key]['id']}/status", headers=USER)
    assert status.json()["controller_status"] == []


async def test_a_controller_reports_only_as_itself(
    api: httpx.AsyncClient, owned: dict[str, Any]
) -> None:
    # The name claimed is the GCP nodepool's own controller: only the token's name refuses it.
    report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 1}
    response = await api.put(
        f"{API}/nodepools/{owned['np']['id']}/status",
        json=report,
        headers=controller_headers("aws-nodepool-controller"),
    )
    assert_error(response, 403, "FORBIDDEN")
    status = await api.get(f"{API}/nodepools/{owned['np']['id']}/status", headers=USER)
    assert status.json()["controller_status"] == []


def test_a_token_is_compared_with_every_known_token_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    constant_time = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare)
    first = next(iter(CONTROLLER_TOKENS.values()))
    for presented in (first, "nope", first[:-1]):
        compared.clear()
        auth.controller_for_token(settings, f"Bearer {presented}")
        # Every token, whether or not one already matched: timing says nothing about which.
        assert sorted(b for _, b in compared) == sorted(
            t.encode() for t in CONTROLLER_TOKENS.values()
        )
        assert {a for a, _ in compared} == {presented.encode()}


def test_the_bearer_scheme_is_case_insensitive_and_the_token_exact(settings: Settings) -> None:
    token = CONTROLLER_TOKENS["gcp-nodepool-controller"]
    assert auth.controller_for_token(settings, f"bearer {token}") == "gcp-nodepool-controller"
    assert auth.controller_for_token(settings, f"Bearer {token.upper()}") is None
    assert auth.controller_for_token(settings, f"Bearer {token}x") is None


# ---- an identity header sent twice -----------------------------------------------------------
# Which of two values a server reads (the first, the last, both joined) differs between servers
# and proxies: a gateway that adds its X-User-Email beside the client's must not let one win.

EMAILS = [("user@example.com", "other@example.com"), ("user@example.com", "user@example.com")]


@pytest.mark.parametrize("emails", EMAILS, ids=["different", "identical"])
async def test_x_user_email_sent_twice_is_401(
    api: httpx.AsyncClient, owned: dict[str, Any], emails: tuple[str, str]
) -> None:
    headers = [("X-User-Email", email) for email in emails]
    response = await api.get(f"{API}/clusters/{owned['cl']['id']}", headers=headers)
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert error["message"] == "X-User-Email was sent more than once"


async def test_authorization_sent_twice_on_a_status_write_is_401(
    api: httpx.AsyncClient, owned: dict[str, Any]
) -> None:
    token = controller_headers()["Authorization"]
    report = {"controller_name": "gcp-nodepool-controller", "observed_generation": 1}
    response = await api.put(
        f"{API}/nodepools/{owned['np']['id']}/status",
        json=report,
        headers=[("Authorization", token), ("Authorization", "Bearer not-a-token")],
    )
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert error["message"] == "Authorization was sent more than once"
    status = await api.get(f"{API}/nodepools/{owned['np']['id']}/status", headers=USER)
    assert status.json()["controller_status"] == []


async def test_authorization_sent_twice_on_a_user_request_is_401(
    api: httpx.AsyncClient, owned: dict[str, Any]
) -> None:
    headers = [*USER.items(), ("Authorization", "Bearer a"), ("Authorization", "Bearer b")]
    response = await api.get(f"{API}/clusters/{owned['cl']['id']}", headers=headers)
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert error["message"] == "Authorization was sent more than once"
