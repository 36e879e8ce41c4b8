"""From an AMQP delivery to a validated report, or the reason it can never be applied.

Everything decided here depends on the message alone, so a message judged poison is poison on
every delivery: it goes straight to the dead-letter queue instead of burning its delivery limit.

A report is applied only if its ``user_id`` names its ``controller_name``: the broker refuses a
``user_id`` other than the publishing connection's user, and each controller has a broker user of
its own name (cls_runtime/broker_users.py), so a report cannot claim another controller's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage

from cls_core.services.status import InvalidReport, load_json_object, validate_report
from shared_models.names import Kind
from shared_models.status import ClusterStatusReport, ControllerReport, NodePoolStatusReport

ROUTING_KINDS: dict[str, Kind] = {"nodepool.status": "nodepool", "cluster.status": "cluster"}
_JSON_TYPES = ("application/json",)
_IDENTITY_ENCODINGS = ("", "identity", "utf-8", "utf8")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Report:
    """A report that passed validation: apply it to ``kind`` ``resource_id``."""

    kind: Kind
    resource_id: str
    report: ControllerReport

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.resource_id}"

    def log_fields(self) -> dict[str, object]:
        return {
            f"{self.kind}_id": self.resource_id,
            "controller": self.report.controller_name,
            "observed_generation": self.report.observed_generation,
        }


@dataclass(frozen=True)
class Poison:
    """A message no number of retries can apply, and why."""

    reason: str


def decode(message: AbstractIncomingMessage, max_bytes: int) -> Report | Poison:
    problem = _envelope_problem(message, max_bytes)
    if problem is not None:
        return Poison(problem)
    # The same parser and validation as ``PUT .../status``.
    try:
        body = load_json_object(message.body)
        kind = _kind_of(message.routing_key or "", body)
        if kind == "nodepool":
            nodepool = validate_report(body, NodePoolStatusReport)
            return _report(kind, nodepool.nodepool_id, nodepool, message.user_id)
        cluster = validate_report(body, ClusterStatusReport)
        return _report(kind, cluster.cluster_id, cluster, message.user_id)
    except InvalidReport as exc:
        return Poison(str(exc))


def _envelope_problem(message: AbstractIncomingMessage, max_bytes: int) -> str | None:
    content_type = (message.content_type or "").split(";")[0].strip().lower()
    # An absent content type is tolerated (plain clients often omit it); a different one is not.
    if content_type and content_type not in _JSON_TYPES:
        return f"content type {message.content_type!r} is not application/json"
    encoding = (message.content_encoding or "").strip().lower()
    if encoding not in _IDENTITY_ENCODINGS:
        return f"content encoding {message.content_encoding!r} is not supported"
    if len(message.body) > max_bytes:
        return f"body of {len(message.body)} bytes exceeds the limit of {max_bytes}"
    return None


def _kind_of(routing_key: str, body: dict[str, object]) -> Kind:
    """The routing key decides; a report sent straight to the queue is told apart by its body."""
    kind = ROUTING_KINDS.get(routing_key)
    if kind is not None:
        return kind
    return "cluster" if "cluster_id" in body and "nodepool_id" not in body else "nodepool"


def _report(
    kind: Kind, raw_id: str, report: ControllerReport, user_id: str | None
) -> Report | Poison:
    resource_id = raw_id.lower()
    if not _UUID.match(resource_id):
        return Poison(f"{kind}_id {raw_id[:80]!r} is not a UUID")
    problem = publisher_problem(report.controller_name, user_id)
    if problem is not None:
        return Poison(problem)
    return Report(kind, resource_id, report)


def publisher_problem(controller_name: str, user_id: str | None) -> str | None:
    """Why the publisher (the broker user that ``user_id`` names, as the broker checked) may not
    report as ``controller_name``; None when it may."""
    if not user_id:
        return "no user_id: a report must be published as its controller's broker user"
    if user_id != controller_name:
        return f"user_id {user_id[:80]!r} may not report as controller {controller_name[:80]!r}"
    return None
