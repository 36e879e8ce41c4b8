"""Identity headers only from the gateway: ``CLS_TRUSTED_PROXIES`` (pure ASGI middleware).

``X-User-Email`` is as trustworthy as whoever set it. Deployed behind an authenticating gateway
that sets it from a verified identity, the API is safe only if nobody can reach it around the
gateway. ``CLS_TRUSTED_PROXIES`` (addresses and CIDR blocks) makes that an enforced rule instead
of a network assumption: a request that carries ``X-User-Email`` from any other peer address is
refused with 401, whatever the header says. Requests without the header pass (health probes,
controllers authenticating with their own Bearer tokens); a user endpoint then answers 401 as
for any request without an identity.

The peer is the TCP peer (``scope["client"]``): the server must not rewrite it from
``X-Forwarded-For`` (``python -m api_service`` runs uvicorn with ``proxy_headers=False``), or a
client could claim the gateway's address. Unset (the default), any peer is trusted, as before.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.types import ASGIApp, Receive, Scope, Send

from api_service.error_handlers import error_response
from cls_core.errors import Unauthorized
from cls_runtime.settings import IPNetwork, Settings

IDENTITY_HEADER = b"x-user-email"


def identity_headers(settings: Settings) -> frozenset[bytes]:
    """The headers that assert who the caller is: the email, and the groups when
    ``CLS_GROUPS_HEADER`` names a header (trusted by the same rule)."""
    groups = settings.groups_header.lower().encode()
    return frozenset({IDENTITY_HEADER, groups} if groups else {IDENTITY_HEADER})


class TrustedProxyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        networks: tuple[IPNetwork, ...],
        identity_headers: frozenset[bytes] = frozenset({IDENTITY_HEADER}),
    ) -> None:
        self.app = app
        self.networks = networks
        self.identity_headers = identity_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and any(name in self.identity_headers for name, _ in scope["headers"])
            and not is_trusted(_peer(scope), self.networks)
        ):
            refusal = Unauthorized(
                "Authentication required",
                "identity headers (X-User-Email, the groups header) are accepted only from the "
                "gateway (CLS_TRUSTED_PROXIES)",
            )
            await error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


@lru_cache(maxsize=4096)
def is_trusted(peer: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether ``peer`` (an address as the server reports it) is in ``networks``."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False  # a Unix socket, or no address at all
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 is 10.0.0.5
    return any(address in network for network in networks)
