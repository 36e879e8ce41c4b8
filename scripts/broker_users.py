"""Create the broker users of every role and their permissions (cls_runtime/broker_users.py).

    python scripts/broker_users.py                      # into the local RabbitMQ (rabbitmqctl)
    python scripts/broker_users.py --write FILE         # a definitions file (docker-compose)

The users and passwords are the services' own settings (``CLS_AMQP_*``, read from the
environment like the services read them): the relay's, the ingester's, and one per controller
of the registry (``CLS_CONTROLLERS_FILE``; by default the six simulated ones). One ``rabbitmqctl
import_definitions`` call creates or updates them all, so running it again is harmless (``make
run`` and ``make test`` do, every time). It needs to administer the
local node (root, or the rabbitmq user); a broker elsewhere gets its users from its operator
(docs/deployment.md). ``--write`` adds the ``/`` vhost and an administrator, since a node that
loads definitions at boot creates neither.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from yarl import URL

from cls_runtime.broker_users import BrokerUser, definitions, user_entry, vhost_of
from cls_runtime.settings import Settings

IMPORT_TIMEOUT = 60
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
# The administrator of a docker-compose broker (its management UI, rabbitmqctl in the container).
COMPOSE_ADMIN = BrokerUser("guest", "guest")


def role_definitions(settings: Settings) -> dict[str, Any]:
    # A user for every controller of the registry (CLS_CONTROLLERS_FILE, or the six simulated).
    registry = settings.controller_registry
    controllers = [settings.controller_broker_user(name) for name in sorted(registry.names)]
    return definitions(
        settings.relay_broker_user,
        settings.ingester_broker_user,
        controllers,
        vhost_of(settings.amqp_url),
    )


def compose_definitions(settings: Settings) -> dict[str, Any]:
    found = role_definitions(settings)
    vhost = vhost_of(settings.amqp_url)
    admin = {"user": COMPOSE_ADMIN.name, "vhost": vhost, "configure": ".*", "write": ".*"}
    return {
        "vhosts": [{"name": vhost}],
        "users": [user_entry(COMPOSE_ADMIN, tags="administrator"), *found["users"]],
        "permissions": [{**admin, "read": ".*"}, *found["permissions"]],
    }


def import_locally(found: dict[str, Any]) -> int:
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        print(
            "broker_users: rabbitmqctl not found: create the broker users yourself "
            "(docs/deployment.md, 'Broker users')",
            file=sys.stderr,
        )
        return 1
    # Password hashes, not passwords; removed right after. Readable by all: Debian's rabbitmqctl
    # runs as the rabbitmq user.
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(found, handle)
    try:
        os.chmod(handle.name, 0o644)
        done = subprocess.run(
            [rabbitmqctl, "-q", "import_definitions", handle.name],
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT,
            check=False,
        )
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        print(
            f"broker_users: rabbitmqctl import_definitions failed:\n{done.stderr}", file=sys.stderr
        )
        return done.returncode
    names = ", ".join(user["name"] for user in found["users"])
    print(f"broker_users: broker users in place: {names}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="write a definitions file for docker-compose")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.write is not None:
        args.write.write_text(json.dumps(compose_definitions(settings), indent=2) + "\n")
        return 0
    host = URL(settings.amqp_url).host or "localhost"
    if host not in LOCAL_HOSTS:
        print(
            f"broker_users: the broker at {host} is not this machine's: its operator creates "
            "the users (docs/deployment.md, 'Broker users')"
        )
        return 0
    return import_locally(role_definitions(settings))


if __name__ == "__main__":
    sys.exit(main())
