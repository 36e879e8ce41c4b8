"""The HTTP side of ``Idempotency-Key`` (the rules are in ``services/idempotency.py``).

The create routes declare ``idempotency: IdempotencyKey``: the header is read from the request,
validated (on dry runs too), and the request fingerprinted (method, path and body as a canonical
document, so whitespace and key order do not matter). A retry answers 200 with the resource as
it is now (as a GET would), its ETag and Location, and ``Idempotent-Replayed: true``. Dry runs
neither read nor store keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from api_service.deps import User, state_of
from api_service.routes.responses import ETAG_AND_LOCATION
from cls_core.errors import ValidationFailed
from cls_core.services.common import etag
from cls_core.services.idempotency import HEADER, IdempotentCreate, Replay, claim_key

# Visible ASCII, as the IETF draft's examples and every major API use; room for a UUID or a
# client's own request id, short enough for a Redis key.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_LOCATIONS = {"cluster": "/api/v1/clusters/{id}", "nodepool": "/api/v1/nodepools/{id}"}
_FALSE = ("false", "0", "no", "off", "f", "n")

# For the create routes' ``openapi_extra``.
IDEMPOTENCY_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
            "description": "Makes a retried create safe: the same key with the same request "
            "answers 200 with the resource it created, as it is now, instead of creating a "
            "duplicate; the same key with another request is a 409. A key lives as long as its "
            "resource, and at most 24 hours by default. Per caller.",
        }
    ]
}


def replayed(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The create routes' 200: the replay of a retried create."""
    return {
        200: {
            "model": model,
            "description": "A retried create (same Idempotency-Key, same request): the resource "
            "it created, as it is now, with the header Idempotent-Replayed: true",
            "headers": {
                "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}},
                **ETAG_AND_LOCATION,
            },
        }
    }


async def _idempotency(request: Request, user: User) -> IdempotentCreate | Replay | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    # Checked on a dry run too: a dry run validates everything the real request would.
    if not _KEY.fullmatch(raw):
        raise ValidationFailed.of(HEADER, f"{HEADER}: 1-255 visible ASCII characters, no spaces")
    if _dry_run(request):
        return None
    fingerprint = await _fingerprint(request)
    state = state_of(request)
    ttl = state.settings.idempotency_ttl
    access = user.clusters.access
    return await claim_key(state.store, access, user.caller, raw, fingerprint, ttl)


# A free key's claim, the replay of the create that used the key, or None (no key, a dry run).
IdempotencyKey = Annotated[IdempotentCreate | Replay | None, Depends(_idempotency)]


def _dry_run(request: Request) -> bool:
    value = request.query_params.get("dryRun")
    return value is not None and value.strip().lower() not in ("", *_FALSE)


async def _fingerprint(request: Request) -> str:
    return fingerprint_of(request.method, request.url.path, await request.body())


def fingerprint_of(method: str, path: str, body: bytes) -> str:
    """What tells one create request from another: method, path and body as canonical JSON."""
    # Not JSON: the route refuses it anyway; the raw bytes still tell requests apart.
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def replay_response(replay: Replay) -> Response:
    """200 with the resource the key created, as it is now."""
    headers = {
        "ETag": etag(replay.resource_version),
        "Location": _LOCATIONS[replay.kind].format(id=replay.resource_id),
        "Idempotent-Replayed": "true",
    }
    return Response(replay.body, media_type="application/json", headers=headers)
