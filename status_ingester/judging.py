"""Judging a window of deliveries: apply the reports, and say how each delivery is settled.

Every report goes through ``StatusService.apply_many``, the same rules the API's
``PUT .../status`` runs:

- applied, unchanged (a duplicate), stale (an older generation): ack;
- unknown or deleted resource: ack, counted as ``unknown``;
- malformed, wrong content type, invalid, for a generation the resource has not reached, or from
  a controller the registry does not list for the resource's kind and platform: dead-letter;
- an unexpected failure: requeue; the queue's delivery limit dead-letters a report that keeps
  failing;
- Redis away: no verdict yet. The reports wait behind the ``RedisGate`` and are applied when
  Redis answers again. Handing them back to the broker instead would count against their
  delivery limit.
"""

from __future__ import annotations

import logging

from cls_core.services.status import ApplyResult, Outcome, ReportFor, StatusService
from cls_runtime.logs import log_context
from status_ingester.counters import Count
from status_ingester.decode import Poison, Report
from status_ingester.redis_health import RedisGate, is_redis_unavailable
from status_ingester.settling import Delivery, Settle, Verdict, channel_of

log = logging.getLogger("status_ingester")

BY_OUTCOME: dict[Outcome, tuple[Settle, Count]] = {
    Outcome.APPLIED: (Settle.ACK, Count.APPLIED),
    Outcome.UNCHANGED: (Settle.ACK, Count.UNCHANGED),
    Outcome.STALE: (Settle.ACK, Count.STALE),
    Outcome.NOT_FOUND: (Settle.ACK, Count.UNKNOWN),
    # A report claiming a generation the resource never had is wrong, not early: the event of a
    # generation is published only after that generation is stored.
    Outcome.FUTURE_GENERATION: (Settle.DEAD, Count.DEAD_LETTERED),
    # Not a controller of this resource (kind and platform): refused, and kept for inspection.
    Outcome.UNREGISTERED: (Settle.DEAD, Count.DEAD_LETTERED),
}


class WindowJudge:
    def __init__(self, status: StatusService, gate: RedisGate) -> None:
        self.status = status
        self.gate = gate
        self._failing = False

    async def judge(self, window: list[Delivery]) -> list[Verdict]:
        """The verdict on each delivery of ``window`` still alive once its report is applied."""
        verdicts: list[Verdict] = []
        reports: list[Delivery] = []
        for delivery in window:
            decoded = delivery.decoded
            if isinstance(decoded, Poison):
                log.debug("dead-lettering %s: %s", delivery.message.message_id, decoded.reason)
                delivery.dead_reason = decoded.reason
                verdicts.append((delivery, Settle.DEAD, Count.DEAD_LETTERED))
            elif isinstance(decoded, Exception):
                self._failed(delivery, decoded)
                verdicts.append((delivery, Settle.REQUEUE, Count.REQUEUED))
            else:
                reports.append(delivery)
        applied = False
        for delivery, result in await self._apply(reports):
            if isinstance(result, Exception):
                self._failed(delivery, result)
                verdicts.append((delivery, Settle.REQUEUE, Count.REQUEUED))
            else:
                applied = True
                delivery.dead_reason = _dead_reason(delivery, result)
                verdicts.append((delivery, *BY_OUTCOME[result.outcome]))
        if applied:
            self._succeeded()
        return verdicts

    async def _apply(
        self, deliveries: list[Delivery]
    ) -> list[tuple[Delivery, ApplyResult | Exception]]:
        """Apply the reports of a window, waiting through Redis outages. The deliveries that
        died meanwhile (the broker has taken them back and will deliver them again) are left
        out."""
        done: list[tuple[Delivery, ApplyResult | Exception]] = []
        waiting = deliveries
        while waiting:
            await self.gate.passage()
            waiting = [d for d in waiting if channel_of(d.message) is not None]
            if not waiting:
                break
            try:
                results = await self.status.apply_many([_item(d) for d in waiting])
            except Exception as exc:
                if not is_redis_unavailable(exc):
                    done += [(d, exc) for d in waiting]
                    break
                # Retrying is safe even if some writes landed before the error: applying the
                # same reports again is a no-op.
                self.gate.lost()
                continue
            # Each resource's reports fail or succeed together, so those retried are still in
            # delivery order among themselves.
            retry = []
            for delivery, result in zip(waiting, results, strict=True):
                if isinstance(result, Exception) and is_redis_unavailable(result):
                    retry.append(delivery)
                else:
                    done.append((delivery, result))
            if retry:
                self.gate.lost()
            waiting = retry
        return done

    def _failed(self, delivery: Delivery, exc: Exception) -> None:
        # One line when reports start failing, not one per report of a poison storm.
        message, decoded = delivery.message, delivery.decoded
        fields = decoded.log_fields() if isinstance(decoded, Report) else {}
        with log_context(message_id=message.message_id, **fields):
            if not self._failing:
                log.warning(
                    "reports are failing; requeued until their delivery limit (first: %s: %r)",
                    message.message_id,
                    exc,
                    exc_info=exc,
                )
                self._failing = True
            else:
                log.debug("report %s failed (%r); requeued", message.message_id, exc)

    def _succeeded(self) -> None:
        if self._failing:
            log.info("reports apply again")
            self._failing = False


def _dead_reason(delivery: Delivery, result: ApplyResult) -> str:
    if result.outcome is not Outcome.FUTURE_GENERATION:
        return ""
    report = delivery.decoded
    assert isinstance(report, Report)
    return (
        f"observed_generation {report.report.observed_generation} is ahead of the "
        f"{report.kind}'s generation {result.generation}"
    )


def _item(delivery: Delivery) -> ReportFor:
    report = delivery.decoded
    assert isinstance(report, Report)
    return ReportFor(report.kind, report.resource_id, report.report)
