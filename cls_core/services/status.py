"""Applying a controller's status report: the one code path for the queue and for HTTP.

A report body is parsed and validated by ``parse_report`` (both the ingester and
``PUT .../status`` call it), then applied by ``StatusService.apply_many`` (``PUT .../status``
calls it through ``apply``, with one report; the ingester with a prefetch window of them): the
report is stored per controller, and the aggregate is recomputed with
``shared_models.aggregation`` and written with the phase/health indexes, all in one guarded Redis
transaction per resource. Reports never move a controller's ``observed_generation`` backwards,
and applying the same report twice writes nothing.

Only a controller the registry (``settings.controller_registry``) lists for the resource's kind
and platform may report on it: any other report is refused (``UNREGISTERED``) and never stored,
so the reports a resource holds are bounded by the registry, and the aggregate waits for the
registry's required controllers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

import orjson
from pydantic import ValidationError

from cls_core.errors import Conflict
from cls_core.services import deletion
from cls_core.services.common import RV_CHANGED, new_resource_version, utcnow
from cls_core.services.operations import OperationLog
from cls_core.services.reconcile_schedule import ReconcileSchedule, is_ready, member
from cls_core.services.validation import field_errors
from cls_core.store import ClusterRecord, NodePoolRecord, RedisStore, Txn, TxnFailed
from cls_runtime.logs import bind
from cls_runtime.settings import Settings
from shared_models import strict_json
from shared_models.aggregation import (
    Controller,
    StoredStatus,
    aggregate_json,
    controller_of,
    controller_of_json,
    deletion_confirmed,
    timestamp,
)
from shared_models.controllers import ControllerRegistry
from shared_models.errors import FieldError
from shared_models.names import Kind
from shared_models.status import ControllerReport

R = TypeVar("R", bound=ControllerReport)


class Outcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # the same report again: nothing written
    STALE = "stale"  # older than what this controller already reported
    FUTURE_GENERATION = "future_generation"  # a generation the resource has not reached
    NOT_FOUND = "not_found"  # unknown or deleted resource
    # The controller is not registered for the resource's kind and platform: never stored.
    UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class ApplyResult:
    outcome: Outcome
    generation: int = 0
    stored_generation: int = 0  # the controller's observed_generation already stored
    # The resource and its reports (controller -> JSON) as they are once the report is handled,
    # so that callers answer without reading them again (APPLIED and UNCHANGED only).
    record: NodePoolRecord | ClusterRecord | None = None
    reports: dict[str, str] = field(default_factory=dict)


# ---- parsing: the same rules for a queue message and an HTTP body ----------------------------


class InvalidReport(ValueError):
    """A report body that can never be applied; ``fields`` says where and why."""

    def __init__(self, fields: list[FieldError], total: int = 0) -> None:
        message = "; ".join(f.message for f in fields)
        if total > len(fields):  # only the first ones were converted
            message += f" ({total} errors, the first {len(fields)} listed)"
        super().__init__(message)
        self.fields = fields
        self.total = max(total, len(fields))


def load_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a body with the parser both paths share (no NaN, duplicate keys or deep nesting)."""
    try:
        data = strict_json.loads(raw)
    except strict_json.TooMany as exc:
        raise _body_error(f"body refused: {exc}") from exc
    except strict_json.StrictJsonError as exc:
        raise _body_error(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _body_error(f"body is a JSON {type(data).__name__}, not an object")
    return data


def _body_error(message: str) -> InvalidReport:
    return InvalidReport([FieldError(field="body", message=message)])


def validate_report(data: dict[str, Any], model: type[R]) -> R:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = field_errors(exc, resource="status report")
        raise InvalidReport(fields, total=exc.error_count()) from exc


def parse_report(raw: bytes, model: type[R]) -> R:
    return validate_report(load_json_object(raw), model)


# ---- applying ---------------------------------------------------------------------------------

MAX_ATTEMPTS = 50
_REPORT_FIELD_SET: set[str] = set(ControllerReport.model_fields)  # never changed

Record = NodePoolRecord | ClusterRecord
Resource = tuple[Kind, str]


class ReportFor(NamedTuple):
    """One report to apply, and the resource it is about."""

    kind: Kind
    resource_id: str
    report: ControllerReport


class _Now(NamedTuple):
    """The time a window's reports are judged at: as stored (``timestamp``) and in seconds."""

    text: str
    seconds: float
    moment: datetime

    @classmethod
    def current(cls) -> _Now:
        moment = utcnow()
        return cls(timestamp(moment), moment.timestamp(), moment)


class StatusService:
    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store = store
        self.names = store.names
        self.settings = settings
        self.registry = settings.controller_registry
        self._schedule = ReconcileSchedule(store.names, settings)
        self._operations = OperationLog(store.names, settings)

    async def apply(self, kind: Kind, resource_id: str, report: ControllerReport) -> ApplyResult:
        """Apply one report; retried when another write to the same resource got there first.

        ``apply_many`` with one item: HTTP and the queue go through the same rules.
        """
        bind(
            **{f"{kind}_id": resource_id},
            controller=report.controller_name,
            observed_generation=report.observed_generation,
        )
        (result,) = await self.apply_many([ReportFor(kind, resource_id, report)])
        if isinstance(result, Exception):
            raise result
        bind(generation=result.generation or None, outcome=result.outcome.value)
        return result

    async def apply_many(self, items: Sequence[ReportFor]) -> list[ApplyResult | Exception]:
        """Apply reports in their order, in a few round trips whatever their number.

        The result of each item is what applying the items one after the other would give:
        reports on one resource are judged in order, each against the state the ones before it
        left, and the state the last one leaves is written in one guarded transaction (the
        intermediate states are never stored: each item's ``record`` is the state it left);
        reports on different resources are independent. One round trip reads every resource,
        one writes every changed one; only the resources whose write lost a race with another
        writer are read and judged again (at most ``MAX_ATTEMPTS`` times, then ``Conflict``).

        Each item's result is an ``ApplyResult`` or the exception it failed with (an error
        reply from Redis fails the items of its resource only). A lost connection raises: then
        any of the resources may have been written, and applying the items again is safe.
        """
        # A report is stored as a ControllerReport's fields only (never the queue's resource id).
        reports = [item.report for item in items]
        groups: dict[Resource, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault((item.kind, item.resource_id), []).append(index)
        results: list[ApplyResult | Exception | None] = [None] * len(items)
        pending = list(groups)
        for _ in range(MAX_ATTEMPTS):
            if not pending:
                break
            reads = await self.store.get_many_with_reports(pending)
            # One time for the whole window: the reports of a window arrived together.
            now = _Now.current()
            writes: list[tuple[Resource, list[ApplyResult | Exception], Txn]] = []
            for resource, read in zip(pending, reads, strict=True):
                indexes = groups[resource]
                if isinstance(read, Exception):
                    for index in indexes:
                        results[index] = read
                    continue
                outcomes, txn = self._plan(resource, read, [reports[i] for i in indexes], now)
                if txn is None:
                    for index, outcome in zip(indexes, outcomes, strict=True):
                        results[index] = outcome
                else:
                    writes.append((resource, outcomes, txn))
            pending = []
            replies = await self.store.run_each_settled([txn for _, _, txn in writes])
            for (resource, outcomes, _), reply in zip(writes, replies, strict=True):
                if isinstance(reply, TxnFailed) and reply.code == RV_CHANGED:
                    pending.append(resource)  # another write got there first: judge again
                    continue
                for index, outcome in zip(groups[resource], outcomes, strict=True):
                    results[index] = outcome if reply is None else reply
        for resource in pending:
            kind = resource[0]
            conflict = Conflict(
                f"The {kind} is being changed too often; retry the status report",
                f"{MAX_ATTEMPTS} attempts lost a race with other writes",
            )
            for index in groups[resource]:
                results[index] = conflict
        return [result for result in results if result is not None]

    async def mark_overdue(self, kind: Kind, resource_id: str) -> bool:
        """A deletion not confirmed within ``deletion_timeout``: its status turns Unhealthy,
        naming the controllers that did not confirm (written to the record, so that the
        health index and filters agree); it leaves the timeout schedule. False: a write got
        there first (the next tick tries again)."""
        due = member(kind, resource_id)
        (read,) = await self.store.get_many_with_reports([(kind, resource_id)])
        if isinstance(read, Exception):
            raise read
        record, raw = read
        txn = Txn()
        if record is None or record.deletion_timestamp is None:
            (failed,) = await self.store.run_each([txn.zrem(self.names.deletion_due, due)])
            return failed is None
        status = deletion.deleting_status(record, raw, self.registry, utcnow(), is_overdue=True)
        updated = record.with_changes(rv=new_resource_version(), status=status)
        record_key = self.names.record(kind, resource_id)
        txn.expect_field(record_key, "rv", record.rv, RV_CHANGED)
        txn.hset(
            record_key,
            {
                "rv": updated.rv,
                "status": orjson.dumps(status).decode(),
                "phase": updated.phase,
                "health": updated.health,
            },
        )
        updated.put_view(txn, self.names)
        txn.move_in_indexes(
            record.index_keys(self.names), updated.index_keys(self.names), record.seq, record.id
        )
        txn.zrem(self.names.deletion_due, due)
        (failed,) = await self.store.run_each([txn])
        return failed is None

    def _plan(
        self,
        resource: Resource,
        read: tuple[Record | None, dict[str, str]],
        reports: list[ControllerReport],
        now: _Now,
    ) -> tuple[list[ApplyResult | Exception], Txn | None]:
        """Judge the reports on one resource in order; the outcome of each, and the guarded
        transaction storing the state the last one left (None when nothing is to be written)."""
        kind, resource_id = resource
        record, raw_reports = read
        if record is None:
            return [ApplyResult(Outcome.NOT_FOUND) for _ in reports], None
        try:
            late = deletion.overdue(record, self.settings, now.moment)
            state = _State(kind, record, raw_reports, self.registry, overdue=late)
        except Exception as exc:  # what is stored cannot be read back: a bug, not the reports'
            return [exc for _ in reports], None
        outcomes: list[ApplyResult | Exception] = []
        for report in reports:
            try:
                outcomes.append(state.apply(report, now.text))
            except Exception as exc:  # this report's bug; the others still apply
                outcomes.append(exc)
        if not state.changed:
            return outcomes, None
        try:
            return outcomes, self._txn(kind, resource_id, record, state, now)
        except Exception as exc:
            return [exc if isinstance(o, ApplyResult) else o for o in outcomes], None

    def _txn(self, kind: Kind, resource_id: str, original: Record, state: _State, now: _Now) -> Txn:
        updated = state.record
        txn = Txn()
        record_key = self.names.record(kind, resource_id)
        # Every status write changes rv, so this one check also covers the reports read.
        txn.expect_field(record_key, "rv", original.rv, RV_CHANGED)
        txn.hset(
            self.names.controller_reports(kind, resource_id),
            {name: state.raw[name] for name in state.written},
        )
        txn.hset(
            record_key,
            {
                "rv": updated.rv,
                "status": orjson.dumps(updated.status).decode(),
                "phase": updated.phase,
                "health": updated.health,
            },
        )
        updated.put_view(txn, self.names)
        if (original.phase, original.health) != (updated.phase, updated.health):
            # Of the index dimensions (owner, cluster, phase, health) a report changes only
            # phase and health: when neither moved, no index entry does.
            txn.move_in_indexes(
                original.index_keys(self.names),
                updated.index_keys(self.names),
                original.seq,
                resource_id,
            )
        if kind == "nodepool" and state.phase_changed:
            ready = is_ready(updated.status, updated.generation)
            self._schedule.schedule(txn, "nodepool", resource_id, ready, now.seconds)
        # Written only when the status ends the running operation: most reports write nothing.
        self._operations.end_by_status(txn, updated, state.raw, now.moment)
        if kind == "nodepool" and state.confirmed():
            # The last confirmation of a deletion: the purge, in the transaction that would
            # have stored it (a cluster's is the cascade job's: its nodepools go first); the
            # delete's operation ends with it.
            deletion.add_purge(txn, self.names, updated, now.moment, self.settings)
            self._operations.finish_deleted(
                txn,
                kind,
                resource_id,
                updated.ops,
                now.moment,
                retention_seconds=self.settings.tombstone_retention,
            )
        return txn


class _State:
    """A resource and its reports as the reports judged so far left them (not yet stored).

    Reports and status are kept as the JSON documents that are stored: a report is judged and
    aggregated without a model round trip.
    """

    def __init__(
        self,
        kind: Kind,
        record: Record,
        raw: dict[str, str],
        registry: ControllerRegistry,
        *,
        overdue: bool = False,
    ) -> None:
        self.kind = kind
        # Being deleted: phase Deleting, and the reports at its generation confirm or fail it.
        self.deleting = record.deletion_timestamp is not None
        self.overdue = overdue
        self.record = record
        self.registry = registry
        # What Ready waits for on this resource (its kind and platform never change).
        self.required = registry.required_for(kind, record.platform)
        self.raw = raw  # controller -> its report as stored (JSON)
        # Read from ``raw`` when first needed: judging a report needs only its controller's
        # stored report, and only a report that changes something needs the others (their
        # facts, for the aggregate).
        self._reports: dict[str, dict[str, Any]] = {}
        self._controllers: dict[str, Controller] | None = None
        self.status: StoredStatus = record.status
        self.written: list[str] = []  # controllers whose report is to be written
        self.phase_changed = False  # by a report of this window
        self.changed = False

    def _stored(self, name: str) -> dict[str, Any]:
        """The report of ``name`` (a controller with a stored report), as stored."""
        report = self._reports.get(name)
        if report is None:
            report = self._reports[name] = orjson.loads(self.raw[name])
        return report

    def _every_controller(self) -> dict[str, Controller]:
        if self._controllers is None:
            counted = self.registry.counted(self.raw, self.kind, self.record.platform)
            self._controllers = {name: controller_of_json(self._stored(name)) for name in counted}
        return self._controllers

    def apply(self, report: ControllerReport, now: str) -> ApplyResult:
        name = report.controller_name
        if not self.registry.allows(name, self.kind, self.record.platform):
            return ApplyResult(Outcome.UNREGISTERED, self.record.generation)
        # The report as it is stored, but for its time of storage.
        fields = report.model_dump(mode="json", include=_REPORT_FIELD_SET)
        previous = self._stored(name) if name in self.raw else None
        verdict = _judge(self.record.generation, previous, report, fields)
        if verdict is not None:
            return replace(verdict, record=self.record, reports=self.raw)
        stored = {**fields, "updated_at": now}
        controllers = {**self._every_controller(), name: controller_of(report)}
        generation = self.record.generation
        status = aggregate_json(
            generation,
            list(controllers.values()),
            self.status,
            now,
            required=self.required,
            deleting=self.deleting,
            overdue=self.overdue,
        )
        record = self.record.with_changes(rv=new_resource_version(), status=status)
        stored_json = orjson.dumps(stored).decode()
        # Nothing above raised: the report is part of the state.
        if status["phase"] != self.status["phase"]:
            self.phase_changed = True
        self.record, self.status = record, status
        self._reports[name] = stored
        self._controllers = controllers
        self.raw = {**self.raw, name: stored_json}
        if name not in self.written:
            self.written.append(name)
        self.changed = True
        return ApplyResult(
            Outcome.APPLIED, generation, report.observed_generation, record, self.raw
        )

    def confirmed(self) -> bool:
        """Being deleted, and every required controller confirmed it."""
        if not self.deleting:
            return False
        controllers = self._every_controller().values()
        return deletion_confirmed(self.record.generation, controllers, self.required)


def _judge(
    generation: int,
    previous: dict[str, Any] | None,
    report: ControllerReport,
    fields: dict[str, Any],
) -> ApplyResult | None:
    """The outcome when the report must not be written, or None when it must. ``previous`` is
    the controller's report as stored, ``fields`` this one as it would be stored."""
    if report.observed_generation > generation:
        return ApplyResult(Outcome.FUTURE_GENERATION, generation)
    if previous is None:
        return None
    stored_generation: int = previous["observed_generation"]
    if report.observed_generation < stored_generation:
        return ApplyResult(Outcome.STALE, generation, stored_generation)
    if _same_report(previous, fields):
        return ApplyResult(Outcome.UNCHANGED, generation, stored_generation)
    return None


def _same_report(stored: dict[str, Any], fields: dict[str, Any]) -> bool:
    """True when ``stored`` is the report of ``fields`` (its time of storage aside)."""
    return all(stored.get(name) == value for name, value in fields.items())
