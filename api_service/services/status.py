"""Applying a controller's status report: the one code path for the queue and for HTTP.

A report body is parsed and validated by ``parse_report`` (both the ingester and
``PUT .../status`` call it), then applied by ``StatusService.apply``: the report is stored per
controller, and the aggregate is recomputed with ``shared_models.aggregation`` and written with
the phase/health indexes, all in one guarded Redis transaction. Reports never move a
controller's ``observed_generation`` backwards, and applying the same report twice writes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from api_service.errors import Conflict
from api_service.services.common import RV_CHANGED, new_resource_version, utcnow
from api_service.services.nodepools import stored_reports
from api_service.services.validation import field_errors
from api_service.store import ClusterRecord, NodePoolRecord, RedisStore, Txn, TxnFailed
from shared_models import strict_json
from shared_models.aggregation import aggregate
from shared_models.errors import FieldError
from shared_models.logs import bind
from shared_models.names import Kind
from shared_models.settings import Settings
from shared_models.status import AggregatedStatus, ControllerReport, Phase, StoredControllerStatus

R = TypeVar("R", bound=ControllerReport)


class Outcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # the same report again: nothing written
    STALE = "stale"  # older than what this controller already reported
    FUTURE_GENERATION = "future_generation"  # a generation the resource has not reached
    NOT_FOUND = "not_found"  # unknown or deleted resource


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

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f.message for f in fields))
        self.fields = fields


def load_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a body with the parser both paths share (no NaN, duplicate keys or deep nesting)."""
    try:
        data = strict_json.loads(raw)
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
        raise InvalidReport(field_errors(exc, resource="status report")) from exc


def parse_report(raw: bytes, model: type[R]) -> R:
    return validate_report(load_json_object(raw), model)


# ---- applying ---------------------------------------------------------------------------------

MAX_ATTEMPTS = 50
_REPORT_FIELDS = set(ControllerReport.model_fields)


class StatusService:
    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store = store
        self.names = store.names
        self.settings = settings

    async def apply(self, kind: Kind, resource_id: str, report: ControllerReport) -> ApplyResult:
        """Apply one report; retried when another write to the same resource got there first."""
        report = _bare(report)
        bind(
            **{f"{kind}_id": resource_id},
            controller=report.controller_name,
            observed_generation=report.observed_generation,
        )
        for _ in range(MAX_ATTEMPTS):
            try:
                result = await self._attempt(kind, resource_id, report)
                bind(generation=result.generation or None, outcome=result.outcome.value)
                return result
            except TxnFailed as failed:
                if failed.code != RV_CHANGED:
                    raise
        raise Conflict(
            f"The {kind} is being changed too often; retry the status report",
            f"{MAX_ATTEMPTS} attempts lost a race with other writes",
        )

    async def _attempt(self, kind: Kind, resource_id: str, report: ControllerReport) -> ApplyResult:
        record, raw_reports = await self._read(kind, resource_id)
        if record is None:
            return ApplyResult(Outcome.NOT_FOUND)
        reports = {r.controller_name: r for r in stored_reports(raw_reports)}
        verdict = _judge(record.generation, reports.get(report.controller_name), report)
        if verdict is not None:
            return replace(verdict, record=record, reports=raw_reports)
        now = utcnow()
        stored = StoredControllerStatus(**report.model_dump(), updated_at=now)
        reports[report.controller_name] = stored
        old_status = AggregatedStatus.model_validate(record.status)
        new_status = aggregate(record.generation, list(reports.values()), old_status, now)
        updated = record.with_changes(
            rv=new_resource_version(), status=new_status.model_dump(mode="json")
        )
        stored_json = orjson.dumps(stored.model_dump(mode="json")).decode()
        txn = Txn()
        record_key = self.names.record(kind, resource_id)
        # Every status write changes rv, so this one check also covers the reports read above.
        txn.expect_field(record_key, "rv", record.rv, RV_CHANGED)
        txn.hset(
            self.names.controller_reports(kind, resource_id), {report.controller_name: stored_json}
        )
        txn.hset(
            record_key,
            {
                "rv": updated.rv,
                "status": orjson.dumps(updated.status).decode(),
                "phase": updated.phase,
                "health": updated.health,
                **updated.view_fields(),
            },
        )
        txn.move_in_indexes(
            record.index_keys(self.names), updated.index_keys(self.names), record.seq, resource_id
        )
        if kind == "nodepool" and old_status.phase != new_status.phase:
            self._reschedule(txn, resource_id, new_status.phase)
        await self.store.run(txn)
        return ApplyResult(
            Outcome.APPLIED,
            record.generation,
            report.observed_generation,
            updated,
            {**raw_reports, report.controller_name: stored_json},
        )

    async def _read(
        self, kind: Kind, resource_id: str
    ) -> tuple[NodePoolRecord | ClusterRecord | None, dict[str, str]]:
        if kind == "nodepool":
            return await self.store.get_nodepool_with_reports(resource_id)
        return await self.store.get_cluster_with_reports(resource_id)

    def _reschedule(self, txn: Txn, nodepool_id: str, phase: Phase) -> None:
        """Ready resources are re-checked rarely; the others soon."""
        interval = (
            self.settings.reconcile_ready_interval
            if phase == Phase.READY
            else self.settings.reconcile_interval
        )
        txn.zadd(
            self.names.reconcile_due, utcnow().timestamp() + interval, f"nodepool:{nodepool_id}"
        )


def _bare(report: ControllerReport) -> ControllerReport:
    """The report without the queue's resource id (or any other subclass field)."""
    if type(report) is ControllerReport:
        return report
    return ControllerReport.model_validate(report.model_dump(include=_REPORT_FIELDS))


def _judge(
    generation: int, previous: StoredControllerStatus | None, report: ControllerReport
) -> ApplyResult | None:
    """The outcome when the report must not be written, or None when it must."""
    if report.observed_generation > generation:
        return ApplyResult(Outcome.FUTURE_GENERATION, generation)
    if previous is None:
        return None
    if report.observed_generation < previous.observed_generation:
        return ApplyResult(Outcome.STALE, generation, previous.observed_generation)
    if _bare_stored(previous) == report:
        return ApplyResult(Outcome.UNCHANGED, generation, previous.observed_generation)
    return None


def _bare_stored(stored: StoredControllerStatus) -> ControllerReport:
    return ControllerReport.model_validate(stored.model_dump(include=_REPORT_FIELDS))
