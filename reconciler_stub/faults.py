"""Fault injection: deterministic faults chosen per nodepool by a label, and random ones.

A test asks for a fault by putting a label on the nodepool's platform block, e.g.
``"labels": {"stub.cls.dev/fault": "quota-exceeded"}``. Removing the label (a spec change, so a
new generation) lets the next run succeed. See docs/simulated-controllers.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from reconciler_stub.simulation import chance

FAULT_LABEL = "stub.cls.dev/fault"


class Fault(StrEnum):
    NONE = "none"
    # One Provisioning step, then Ready=False reason QuotaExceeded with last_error: Failed.
    QUOTA_EXCEEDED = "quota-exceeded"
    # The controller takes the events and never reports anything: the nodepool stays Pending,
    # and its deletion is never confirmed.
    NO_RESPONSE = "no-response"
    # The nodes come up, but the report says Ready=True and Degraded=True.
    DEGRADED = "degraded"
    # Creates and updates run as usual; the deletion reports Deleted=False with last_error and
    # never confirms.
    DELETION_FAILS = "deletion-fails"


def fault_from_labels(labels: Mapping[str, str]) -> Fault:
    """The fault a nodepool's labels ask for; none for a value that names no fault (see
    :func:`label_problem`), since a careful controller ignores labels it does not understand."""
    value = labels.get(FAULT_LABEL)
    try:
        return Fault(value) if value is not None else Fault.NONE
    except ValueError:
        return Fault.NONE


def label_problem(labels: Mapping[str, str]) -> str | None:
    """Why the fault label is ignored, when it names no fault: worth a warning in the log."""
    value = labels.get(FAULT_LABEL)
    if value is None or value in {f.value for f in Fault}:
        return None
    known = ", ".join(f.value for f in Fault if f is not Fault.NONE)
    return f"label {FAULT_LABEL}={value!r} names no fault (known: {known}); ignored"


@dataclass(frozen=True)
class TransientFailures:
    """Random step failures for soak runs (``CLS_STUB_FAILURE_RATE``, ``CLS_STUB_SEED``).

    Each attempt of each step fails with probability ``rate``; a step never fails more than
    ``max_in_a_row`` times running, so that every run still converges (they are transient).
    """

    rate: float
    seed: int
    max_in_a_row: int = 3

    def fails(self, resource_id: str, generation: int, step: int, attempt: int) -> bool:
        if self.rate <= 0.0 or attempt >= self.max_in_a_row:
            return False
        return chance(self.seed, resource_id, generation, step, attempt) < self.rate
