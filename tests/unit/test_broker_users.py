"""The broker permissions of each role, as regular expressions over resource names (RabbitMQ
matches them the same way: an unanchored search, anchored here by ^ and $)."""

from __future__ import annotations

import re

import pytest

from cls_runtime.broker_users import (
    BrokerUser,
    Permissions,
    controller_permissions,
    ingester_permissions,
    password_hash,
    password_matches,
    relay_permissions,
    url_as,
    vhost_of,
)
from shared_models.names import Names

NAMES = Names("t0a1b2c3d4e5f")
GCP, AWS = "gcp-nodepool-controller", "aws-nodepool-controller"
ALL_RESOURCES = (
    NAMES.events_exchange,
    NAMES.status_exchange,
    NAMES.status_queue,
    NAMES.status_dead_exchange,
    NAMES.status_dead_queue,
    NAMES.controller_queue(GCP),
    NAMES.controller_queue(AWS),
    "amq.default",
    "amq.topic",
)


def allowed(regex: str) -> set[str]:
    return {name for name in ALL_RESOURCES if re.search(regex, name)}


def rights(permissions: Permissions) -> tuple[set[str], set[str], set[str]]:
    return (
        allowed(permissions.configure),
        allowed(permissions.write),
        allowed(permissions.read),
    )


def test_a_controller_writes_reports_and_uses_its_own_queue_only() -> None:
    own = NAMES.controller_queue(GCP)
    configure, write, read = rights(controller_permissions(GCP))
    assert configure == {own}
    assert write == {NAMES.status_exchange, own}
    assert read == {NAMES.events_exchange, own}


def test_the_relay_configures_and_writes_the_events_exchange_only() -> None:
    assert rights(relay_permissions()) == ({NAMES.events_exchange}, {NAMES.events_exchange}, set())


def test_the_ingester_owns_the_status_queue_and_its_dead_letters_but_writes_no_report() -> None:
    status = {NAMES.status_exchange, NAMES.status_queue}
    dead = {NAMES.status_dead_exchange, NAMES.status_dead_queue}
    configure, write, read = rights(ingester_permissions())
    assert configure == status | dead
    assert write == {NAMES.status_queue} | dead
    assert read == status | {NAMES.status_dead_exchange}


@pytest.mark.parametrize("namespace", ["cls", "t0123456789ab", "my_stack-2"])
def test_the_permissions_hold_in_any_namespace(namespace: str) -> None:
    names = Names(namespace)
    assert re.search(controller_permissions(GCP).write, names.status_exchange)
    assert re.search(relay_permissions().write, names.events_exchange)
    assert not re.search(controller_permissions(GCP).write, f"x.{names.status_exchange}")


def test_a_password_hash_is_rabbitmqs_salted_sha256() -> None:
    stored = password_hash("s3cret", salt=b"\x90\x8d\xc6\x0a")
    assert password_matches(stored, "s3cret")
    assert not password_matches(stored, "other")
    assert password_hash("s3cret") != password_hash("s3cret")  # a new salt each time


def test_a_service_connects_as_its_user_whatever_the_url_says() -> None:
    user = BrokerUser("cls-events", "p@ss/word")
    url = url_as("amqp://guest:guest@mq:5672/prod", user)
    assert url.startswith("amqp://cls-events:") and url.endswith("@mq:5672/prod")
    assert vhost_of(url) == "prod" and vhost_of("amqp://mq:5672/") == "/"


def test_a_broker_user_never_shows_its_password() -> None:
    assert "s3cret" not in repr(BrokerUser("cls-events", "s3cret"))
