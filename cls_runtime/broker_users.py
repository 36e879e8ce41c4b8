"""Who may do what on the broker: one RabbitMQ user per role, and its permissions.

RabbitMQ vouches for who published a message when the publisher sets ``user_id``: the broker
refuses a ``user_id`` other than the connection's user. So each controller publishes as a user of
its own name, the events relay as its own user, and consumers trust ``user_id`` alone:

- a controller writes only to ``<ns>.status``, and declares, binds and reads only its own queue
  ``<ns>.controller.<name>`` (and reads ``<ns>.events``, which binding to it needs);
- the relay alone configures and writes ``<ns>.events``;
- the ingester configures and reads the status queue, its dead-letter exchange and queue.

The permissions are regular expressions over resource names, so they hold in every namespace of
one vhost (the tests run each in a namespace of its own on one broker). Nobody but an
administrator may configure another's resources, write to the default exchange, or read a queue
not theirs. ``definitions`` is what ``rabbitmqctl import_definitions`` (``make run``, ``make
test``) and docker-compose's ``load_definitions`` load: the same users everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

from yarl import URL

# Any namespace (Settings.namespace's pattern): the same permissions serve every one.
NS = r"[A-Za-z0-9_-]+"
# Nothing: a regular expression no resource name matches.
NOTHING = "^$"


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class BrokerUser:
    name: str
    password: str = ""

    def __repr__(self) -> str:  # never a password in a log line or a traceback
        return f"BrokerUser({self.name!r})"


def relay_permissions() -> Permissions:
    events = rf"^{NS}\.events$"
    return Permissions(configure=events, write=events, read=NOTHING)


def ingester_permissions() -> Permissions:
    # configure: declare the status exchange, its queue, the dead-letter exchange and queue;
    # write: bind those queues, declare a queue with a dead-letter exchange, dead-letter a copy;
    # read: bind from the exchanges, declare the queue with its dead-letter exchange, consume.
    return Permissions(
        configure=rf"^{NS}\.status(\.ingest|\.dlx|\.dead)?$",
        write=rf"^{NS}\.status\.(ingest|dlx|dead)$",
        read=rf"^{NS}\.status(\.ingest|\.dlx)?$",
    )


def controller_permissions(name: str) -> Permissions:
    own = rf"controller\.{re.escape(name)}"
    # write: publish reports, bind its own queue; read: bind from <ns>.events, consume its queue.
    return Permissions(
        configure=rf"^{NS}\.{own}$",
        write=rf"^{NS}\.(status|{own})$",
        read=rf"^{NS}\.(events|{own})$",
    )


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def password_matches(stored_hash: str, password: str) -> bool:
    salt = base64.b64decode(stored_hash)[:4]
    return password_hash(password, salt) == stored_hash


def user_entry(user: BrokerUser, tags: str = "") -> dict[str, Any]:
    return {
        "name": user.name,
        "password_hash": password_hash(user.password),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": tags,
    }


def permission_entry(user: str, vhost: str, permissions: Permissions) -> dict[str, str]:
    return {
        "user": user,
        "vhost": vhost,
        "configure": permissions.configure,
        "write": permissions.write,
        "read": permissions.read,
    }


def definitions(
    relay: BrokerUser, ingester: BrokerUser, controllers: list[BrokerUser], vhost: str
) -> dict[str, Any]:
    """RabbitMQ definitions of every role's user and permissions (no tags: none may manage the
    broker, nor impersonate another with ``user_id``)."""
    roles = [
        (relay, relay_permissions()),
        (ingester, ingester_permissions()),
        *((c, controller_permissions(c.name)) for c in controllers),
    ]
    return {
        "users": [user_entry(user) for user, _ in roles],
        "permissions": [permission_entry(user.name, vhost, perms) for user, perms in roles],
    }


def vhost_of(url: str) -> str:
    """The vhost an AMQP URL names ("/" when it names none, as aio-pika reads it)."""
    path = URL(url).path
    return path[1:] if len(path) > 1 else "/"


def url_as(url: str, user: BrokerUser) -> str:
    """``url`` with ``user``'s name and password in place of the ones it may carry."""
    return str(URL(url).with_user(user.name).with_password(user.password))
