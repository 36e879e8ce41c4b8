"""Service configuration, read from the environment (prefix ``CLS_``)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cls_runtime.broker_users import BrokerUser
from cls_runtime.controllers import load_registry
from shared_models.controllers import ControllerRegistry
from shared_models.names import Names

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    """Every knob of the services. Unset variables take the defaults of DESIGN.md."""

    model_config = SettingsConfigDict(env_prefix="CLS_", extra="ignore", frozen=True)

    redis_url: str = "redis://localhost:6379/0"
    # The broker's address and vhost. Every process connects as the broker user of its role
    # (the settings below), whatever user the URL names: RabbitMQ then vouches, with a message's
    # user_id, for who published it (cls_runtime/broker_users.py). Passwords: development
    # defaults, to be overridden in any real deployment; never logged.
    amqp_url: str = "amqp://localhost:5672/"
    amqp_relay_user: str = "cls-events"
    amqp_relay_password: SecretStr = SecretStr("cls-events-dev")
    amqp_ingester_user: str = "cls-ingester"
    amqp_ingester_password: SecretStr = SecretStr("cls-ingester-dev")
    # "name=password,name=password": the broker passwords of the simulated controllers, each of
    # which connects as the broker user of its own name; one not listed: "<name>-dev".
    amqp_controller_passwords: SecretStr = SecretStr("")
    namespace: str = Field(default="cls", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    auth_disabled: bool = False
    # "name=token,name=token": the controllers allowed to write status over HTTP; every name
    # must be in the registry of controllers.
    controller_tokens: str = ""
    # The registry of controllers (YAML, see cls_runtime/controllers.py); unset: the six
    # simulated controllers, each required for its own platform and kind.
    controllers_file: Path | None = None
    # Outbox relay and periodic reconciliation.
    relay_batch_size: int = Field(default=200, ge=1, le=10_000)
    reconcile_interval: float = Field(default=30.0, gt=0)
    reconcile_ready_interval: float = Field(default=300.0, gt=0)
    reconcile_batch_size: int = Field(default=500, ge=1, le=10_000)
    leader_lock_ttl: float = Field(default=10.0, gt=0)
    # Who runs those two jobs. "in-process": the API process does (the default, so that a lone
    # `python -m api_service` never leaves events in the outbox). "separate": the API does not,
    # and has no broker link at all; `python -m event_jobs` runs them (the deployed
    # stack does this, so that publishing does not take CPU from requests). Both jobs are
    # leader-elected, so any mix of API replicas and events processes is safe.
    event_jobs: Literal["in-process", "separate"] = "in-process"
    # Status ingester.
    ingest_prefetch: int = Field(default=64, ge=1, le=10_000)
    ingest_delivery_limit: int = Field(default=5, ge=1, le=1000)
    # Simulated controllers.
    stub_controllers: str = ""
    # The API they re-read a resource from when an event claims a generation they have not
    # seen (with their own CLS_CONTROLLER_TOKENS token). Empty: events are trusted as they come
    # (only for tests of the controllers without an API).
    stub_api_url: str = "http://localhost:8080"
    stub_delay_ms: int = Field(default=500, ge=0)
    stub_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Seed of the random transient failures; unset: a different sequence on every start.
    stub_seed: int | None = None
    # Events a simulated controller holds unacknowledged at once.
    stub_prefetch: int = Field(default=64, ge=1, le=10_000)
    # Requests.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The edge (api_service/http_edge.py, when served by `python -m api_service`): what one
    # connection may cost before its request reaches the app. The request line and headers at
    # most this many bytes (431 beyond), received within header_timeout seconds, the body within
    # body_timeout seconds of them (408 otherwise); at most max_connections open (503 beyond).
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=2048, ge=1)
    # The longest an Idempotency-Key is remembered (seconds); it goes sooner, with the resource
    # it created, when that is deleted.
    idempotency_ttl: float = Field(default=24 * 3600.0, gt=0)
    # Deletion (docs/controllers.md): a Deleting resource not confirmed by its required
    # controllers within deletion_timeout (seconds) turns Unhealthy; a purged resource's
    # tombstone is kept tombstone_retention seconds; the cascade of a cluster's deletion moves
    # deletion_batch_size nodepools per transaction round.
    deletion_timeout: float = Field(default=600.0, gt=0)
    tombstone_retention: float = Field(default=7 * 24 * 3600.0, gt=0)
    deletion_batch_size: int = Field(default=100, ge=1, le=10_000)
    # Quotas: a create beyond them answers 403 QUOTA_EXCEEDED. 100 each, as AKS allows nodepools
    # per cluster and EKS clusters per region by default. (CLS_MAX_CLUSTERS_PER_OWNER, its name
    # before clusters belonged to projects, is still read.)
    max_nodepools_per_cluster: int = Field(default=100, ge=1)
    # Operations (docs/user-guide.md, "Operations"): how many a resource keeps (its oldest are
    # deleted by the write that adds one more), and how long those of a deleted resource stay
    # readable (the deletion lifecycle passes its tombstone retention instead).
    operations_per_resource: int = Field(default=100, ge=1, le=10_000)
    operations_retention: float = Field(default=7 * 24 * 3600.0, gt=0)
    max_clusters_per_project: int = Field(
        default=100,
        ge=1,
        validation_alias=AliasChoices(
            "max_clusters_per_project",
            "CLS_MAX_CLUSTERS_PER_PROJECT",
            "CLS_MAX_CLUSTERS_PER_OWNER",
        ),
    )
    # How many projects one user, or one gateway group, may belong to (every list merges them);
    # and how many members and groups one project may have.
    max_projects_per_member: int = Field(default=100, ge=1, le=10_000)
    max_members_per_project: int = Field(default=1000, ge=1, le=100_000)
    # The header the gateway sets with the caller's groups (comma-separated), trusted as
    # X-User-Email is (CLS_TRUSTED_PROXIES). Empty (the default): groups are not read.
    groups_header: str = Field(default="", pattern=r"^[A-Za-z0-9-]{0,64}$")
    # Peers allowed to assert identity with X-User-Email: comma-separated addresses or CIDR
    # blocks (the gateway's). Empty: any peer (the API must then be reachable only through it).
    trusted_proxies: str = ""
    # Watch (GET ...?watch=true): the changes kept per project for resuming (about; a token
    # older answers 410), the open watch connections one caller may hold (429 beyond), the
    # seconds between heartbeats (an SSE comment) on an idle stream, the longest ?waitFor= wait.
    watch_history: int = Field(default=10_000, ge=10, le=1_000_000)
    max_watchers_per_caller: int = Field(default=10, ge=1, le=1000)
    watch_heartbeat: float = Field(default=15.0, gt=0, le=300)
    max_wait_timeout: float = Field(default=300.0, gt=0, le=3600)
    log_level: str = "INFO"
    # "json": one JSON object per line (for log pipelines); "text": for people at a terminal.
    log_format: Literal["json", "text"] = "json"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_well_formed(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("controller_tokens")
    @classmethod
    def _tokens_well_formed(cls, value: str) -> str:
        parse_controller_tokens(value)
        return value

    @field_validator("amqp_controller_passwords")
    @classmethod
    def _passwords_well_formed(cls, value: SecretStr) -> SecretStr:
        parse_pairs(value.get_secret_value(), "CLS_AMQP_CONTROLLER_PASSWORDS", "name=password")
        return value

    @model_validator(mode="after")
    def _tokens_name_registered_controllers(self) -> Settings:
        # Reading the registry here makes a bad file fail wherever settings are built: at the
        # start of every process, before it serves anything.
        registry = self.controller_registry
        unknown = sorted(set(self.controller_token_map.values()) - registry.names)
        if unknown:
            source = self.controllers_file or "the default registry"
            raise ValueError(
                f"CLS_CONTROLLER_TOKENS: {', '.join(unknown)} not in the registry of "
                f"controllers ({source}); a token is for a registered controller only"
            )
        return self

    @cached_property
    def controller_registry(self) -> ControllerRegistry:
        return load_registry(self.controllers_file)

    @cached_property
    def names(self) -> Names:
        return Names(self.namespace, self.watch_history)

    @cached_property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies)

    @cached_property
    def controller_token_map(self) -> dict[str, str]:
        """token -> controller name."""
        return parse_controller_tokens(self.controller_tokens)

    @property
    def relay_broker_user(self) -> BrokerUser:
        return BrokerUser(self.amqp_relay_user, self.amqp_relay_password.get_secret_value())

    @property
    def ingester_broker_user(self) -> BrokerUser:
        return BrokerUser(self.amqp_ingester_user, self.amqp_ingester_password.get_secret_value())

    def controller_broker_user(self, name: str) -> BrokerUser:
        """The broker user a controller publishes as: its own name."""
        raw = self.amqp_controller_passwords.get_secret_value()
        passwords = parse_pairs(raw, "CLS_AMQP_CONTROLLER_PASSWORDS", "name=password")
        return BrokerUser(name, passwords.get(name, f"{name}-dev"))

    def controller_token(self, name: str) -> str | None:
        """The HTTP token of controller ``name`` (a simulated controller reads the API with it)."""
        return next((t for t, n in self.controller_token_map.items() if n == name), None)


def parse_pairs(raw: str, setting: str, shape: str) -> dict[str, str]:
    """Parse ``name=value,name=value`` into ``{name: value}`` (the values are not echoed)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{setting} must look like '{shape},{shape}'")
        pairs[name.strip()] = value.strip()
    return pairs


def parse_controller_tokens(raw: str) -> dict[str, str]:
    """Parse ``name=token,name=token`` into ``{token: name}``."""
    tokens: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, token = item.partition("=")
        if not sep or not name.strip() or not token.strip():
            raise ValueError("CLS_CONTROLLER_TOKENS must look like 'name=token,name=token'")
        tokens[token.strip()] = name.strip()
    return tokens


def parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    """Parse ``10.0.0.5,10.1.0.0/16,::1`` into networks (an address is a network of one)."""
    networks = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(
                f"CLS_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR block"
            ) from exc
    return tuple(networks)
