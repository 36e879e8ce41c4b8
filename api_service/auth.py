"""Who is calling: a user (X-User-Email) or a controller (Authorization: Bearer <token>).

The email header is set by the gateway in front of the API (see README, "Deployment"); the API
trusts it as it trusts the gateway. Controller tokens come from CLS_CONTROLLER_TOKENS and are
compared in constant time; they are never logged. A token is scoped by the registry of controllers
(docs/controllers.md, "Trust model"): its controller writes status only as itself (the status
route checks the report's name), only on the kinds the registry gives it (``ensure_reports_on``,
before the body is read), and only on its platforms (``StatusService``, which reads the resource).
"""

from __future__ import annotations

import hmac
import re

from cls_core.errors import Forbidden, Unauthorized
from cls_runtime.settings import Settings
from shared_models.controllers import ControllerRegistry
from shared_models.names import Kind
from shared_models.validators import normalise_email

ANONYMOUS = "anonymous@localhost"


def resolve_user(settings: Settings, email_header: str | None, authorization: str | None) -> str:
    """The owner identity of a user request."""
    if authorization and controller_for_token(settings, authorization) is not None:
        raise Forbidden("Controller credentials cannot be used for this operation")
    if email_header is None or email_header == "":
        if settings.auth_disabled:
            return ANONYMOUS
        raise Unauthorized("Authentication required", "the X-User-Email header is missing")
    owner = normalise_email(email_header)
    if owner is None:
        raise Unauthorized("Authentication required", "X-User-Email is not a valid email address")
    return owner


# Groups one request may claim: the gateway's list is read for every request, and each group is
# a membership a list merges.
MAX_GROUPS = 64
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def parse_groups(value: str | None, header: str) -> tuple[str, ...]:
    """The caller's groups from the gateway's header: comma-separated names (none when the
    header is absent or empty). A malformed list is a 401, as a malformed email is: the
    gateway is not saying what it should."""
    if not value:
        return ()
    groups = tuple(dict.fromkeys(g.strip() for g in value.split(",") if g.strip()))
    if len(groups) > MAX_GROUPS:
        raise Unauthorized(
            "Authentication required", f"{header} names more than {MAX_GROUPS} groups"
        )
    bad = next((g for g in groups if not _GROUP.match(g)), None)
    if bad is not None:
        raise Unauthorized("Authentication required", f"{header}: {bad[:80]!r} is not a group name")
    return groups


def controller_for_token(settings: Settings, authorization: str | None) -> str | None:
    """The controller name a Bearer token belongs to, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    presented = token.strip().encode()
    found: str | None = None
    # Compare with every token, always, so timing tells nothing about which one nearly matched.
    for known, name in settings.controller_token_map.items():
        if hmac.compare_digest(presented, known.encode()):
            found = name
    return found


def resolve_controller(
    settings: Settings, authorization: str | None, email_header: str | None
) -> str:
    """The controller making a status write. A user's email alone is not enough (403)."""
    name = controller_for_token(settings, authorization)
    if name is not None:
        return name
    if authorization:
        raise Unauthorized("Authentication required", "the controller token is not recognised")
    if email_header:
        raise Forbidden(
            "Only controllers may write status",
            "status is written by controllers with 'Authorization: Bearer <token>'",
        )
    raise Unauthorized(
        "Authentication required", "status writes need 'Authorization: Bearer <token>'"
    )


def ensure_reports_on(registry: ControllerRegistry, name: str, kind: Kind) -> None:
    """403 unless the registry lists controller ``name`` for ``kind`` (on some platform).

    Checked before the body is read or the resource looked up, so that a token out of its scope
    learns nothing from the answer: not whether its body is valid, nor whether the resource
    exists.
    """
    if not registry.reports_on(name, kind):
        raise Forbidden(
            f"This controller does not report on {kind}s",
            f"the registry of controllers lists '{name}' for no {kind}",
        )
