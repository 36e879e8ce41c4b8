"""Table-driven tests of the status aggregation rule (DESIGN.md, "Status aggregation").

Most rules are about the reports alone, so ``aggregate`` here requires no controller unless a
test says which (``required=``); the rule for required controllers has a section of its own.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest

from shared_models import aggregation
from shared_models.aggregation import (
    MAX_AGGREGATE_ERRORS,
    MAX_MESSAGE_LENGTH,
    StoredStatus,
    aggregate_json,
    aggregate_stored,
    controller_of_json,
    timestamp,
)
from shared_models.status import (
    AggregatedStatus,
    Condition,
    ConditionStatus,
    ControllerError,
    ControllerReport,
    Health,
    Phase,
    StoredControllerStatus,
)

GEN = 4
T1 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
T2 = datetime(2024, 1, 1, 12, 5, tzinfo=UTC)
T3 = datetime(2024, 1, 1, 12, 10, tzinfo=UTC)


# ---- helpers ----------------------------------------------------------------------------------


def aggregate(
    generation: int,
    reports: list[ControllerReport],
    previous: AggregatedStatus | None,
    now: datetime,
    required: Collection[str] = (),
) -> AggregatedStatus:
    return aggregation.aggregate(generation, reports, previous, now, required=required)


def report(
    name: str,
    generation: int = GEN,
    *,
    true: tuple[str, ...] = (),
    false: tuple[str, ...] = (),
    unknown: tuple[str, ...] = (),
    error: str | ControllerError | None = None,
    message: str = "",
) -> ControllerReport:
    """A report with conditions of each status; only the "True" ones carry ``message``."""
    conditions = [_condition(t, "True", message) for t in true]
    conditions += [_condition(t, "False", "") for t in false]
    conditions += [_condition(t, "Unknown", "") for t in unknown]
    return ControllerReport(
        controller_name=name,
        observed_generation=generation,
        conditions=conditions,
        last_error=error,
    )


def _condition(type_: str, status: ConditionStatus, message: str) -> Condition:
    return Condition(type=type_, status=status, message=message)


def ready(name: str, generation: int = GEN) -> ControllerReport:
    return report(name, generation, true=("Ready",))


def waiting(name: str, generation: int = GEN) -> ControllerReport:
    return report(name, generation, false=("Ready",))


def failed(
    name: str, generation: int = GEN, error: str | ControllerError = "boom"
) -> ControllerReport:
    return report(name, generation, error=error)


QUOTA = ControllerError(
    errorType="Configuration",
    errorCode="QUOTA_EXCEEDED",
    message="Quota CPUS exceeded in us-central1",
    userActionable=True,
    suggestions=["Request a CPUS quota increase", "Lower nodeCount"],
    details={"quota": "CPUS", "limit": 24},
    retryAfter="30m",
)


def condition_status(status: AggregatedStatus, type_: str) -> ConditionStatus:
    return next(c.status for c in status.conditions if c.type == type_)


# ---- the table --------------------------------------------------------------------------------

P, H = Phase, Health
TABLE = [
    # id, reports, generation, phase, reason, health, Ready, Available
    ("no-reports", [], GEN, P.PENDING, "NoControllers", H.UNKNOWN, "False", "False"),
    (
        "only-older-generation-ready",
        [ready("a", GEN - 1)],
        GEN,
        P.PROGRESSING,
        "NewGenerationPending",
        H.UNKNOWN,
        "False",
        "True",
    ),
    (
        "only-older-generation-waiting",
        [waiting("a", GEN - 1)],
        GEN,
        P.PROGRESSING,
        "NewGenerationPending",
        H.UNKNOWN,
        "False",
        "False",
    ),
    (
        "all-ready",
        [ready("a"), ready("b")],
        GEN,
        P.READY,
        "AllControllersReady",
        H.HEALTHY,
        "True",
        "True",
    ),
    (
        "all-ready-via-available",
        [report("a", true=("Available",)), ready("b")],
        GEN,
        P.READY,
        "AllControllersReady",
        H.HEALTHY,
        "True",
        "True",
    ),
    (
        "false-failure-conditions-are-not-errors",
        [
            report("a", true=("Ready",), false=("Failed", "Degraded")),
            report("b", true=("Ready",), error=""),
        ],
        GEN,
        P.READY,
        "AllControllersReady",
        H.HEALTHY,
        "True",
        "True",
    ),
    (
        "partial-progress",
        [ready("a"), waiting("b")],
        GEN,
        P.PROGRESSING,
        "PartialProgress",
        H.UNKNOWN,
        "False",
        "True",
    ),
    (
        "unknown-ready-is-not-ready",
        [ready("a"), report("b", unknown=("Ready", "Failed"))],
        GEN,
        P.PROGRESSING,
        "PartialProgress",
        H.UNKNOWN,
        "False",
        "True",
    ),
    (
        "some-ready-some-failed",
        [ready("a"), failed("b")],
        GEN,
        P.PROGRESSING,
        "ControllersWithErrors",
        H.DEGRADED,
        "False",
        "True",
    ),
    (
        "all-ready-but-one-degraded",
        [ready("a"), report("b", true=("Ready", "Degraded"))],
        GEN,
        P.PROGRESSING,
        "ControllersWithErrors",
        H.DEGRADED,
        "False",
        "True",
    ),
    (
        "only-ready-controller-has-error",
        [report("a", true=("Ready",), error="flaky"), waiting("b")],
        GEN,
        P.PROGRESSING,
        "ControllersWithErrors",
        H.DEGRADED,
        "False",
        "False",
    ),
    (
        "some-ready-some-failed-structured",
        [ready("a"), failed("b", error=QUOTA)],
        GEN,
        P.PROGRESSING,
        "ControllersWithErrors",
        H.DEGRADED,
        "False",
        "True",
    ),
    (
        "none-ready-structured-error",
        [failed("a", error=QUOTA), waiting("b")],
        GEN,
        P.FAILED,
        "ControllersFailed",
        H.UNHEALTHY,
        "False",
        "False",
    ),
    (
        "none-ready-last-error",
        [failed("a"), waiting("b")],
        GEN,
        P.FAILED,
        "ControllersFailed",
        H.UNHEALTHY,
        "False",
        "False",
    ),
    (
        "none-ready-failed-condition",
        [report("a", true=("Failed",))],
        GEN,
        P.FAILED,
        "ControllersFailed",
        H.UNHEALTHY,
        "False",
        "False",
    ),
    (
        "none-ready-degraded-condition",
        [report("a", true=("Degraded",))],
        GEN,
        P.FAILED,
        "ControllersFailed",
        H.UNHEALTHY,
        "False",
        "False",
    ),
    (
        "none-ready-none-failed",
        [waiting("a"), report("b")],
        GEN,
        P.PROGRESSING,
        "ControllersProgressing",
        H.UNKNOWN,
        "False",
        "False",
    ),
    (
        "older-generation-still-serves",
        [waiting("a"), ready("b", GEN - 1)],
        GEN,
        P.PROGRESSING,
        "ControllersProgressing",
        H.UNKNOWN,
        "False",
        "True",
    ),
]


@pytest.mark.parametrize(
    ("reports", "generation", "phase", "reason", "health", "ready_status", "available_status"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_aggregate_table(
    reports: list[ControllerReport],
    generation: int,
    phase: Phase,
    reason: str,
    health: Health,
    ready_status: ConditionStatus,
    available_status: ConditionStatus,
) -> None:
    status = aggregate(generation, reports, None, T1)

    assert (status.phase, status.reason, status.health) == (phase, reason, health)
    assert [c.type for c in status.conditions] == ["Ready", "Available"]
    assert condition_status(status, "Ready") == ready_status
    assert condition_status(status, "Available") == available_status
    assert status.message
    assert len(status.message) <= MAX_MESSAGE_LENGTH


def test_table_covers_every_phase_health_and_reason() -> None:
    # Deleting is the phase of a deletion (tests/unit/test_deletion_status.py), not of reports.
    assert {row[3] for row in TABLE} == set(Phase) - {Phase.DELETING}
    assert {row[5] for row in TABLE} == set(Health)
    assert {row[4] for row in TABLE} == {
        "NoControllers",
        "NewGenerationPending",
        "AllControllersReady",
        "PartialProgress",
        "ControllersWithErrors",
        "ControllersFailed",
        "ControllersProgressing",
    }


# ---- conditions and timestamps ----------------------------------------------------------------


def test_ready_condition_carries_aggregate_reason_and_message() -> None:
    status = aggregate(GEN, [ready("a"), waiting("b")], None, T1)

    ready_condition = status.conditions[0]
    assert (ready_condition.reason, ready_condition.message) == (status.reason, status.message)
    assert status.message == "1 of 2 controllers ready at generation 4"


def test_available_condition_reason_follows_status() -> None:
    serving = aggregate(GEN, [ready("a")], None, T1).conditions[1]
    none = aggregate(GEN, [waiting("a")], None, T1).conditions[1]

    assert (serving.status, serving.reason) == ("True", "ControllersAvailable")
    assert (none.status, none.reason) == ("False", "NoneAvailable")


def test_first_aggregate_uses_now_for_every_timestamp() -> None:
    status = aggregate(GEN, [ready("a")], None, T1)

    assert status.lastUpdateTime == T1
    assert [c.lastTransitionTime for c in status.conditions] == [T1, T1]


def test_transition_time_kept_while_status_unchanged() -> None:
    first = aggregate(GEN, [ready("a"), waiting("b"), waiting("c")], None, T1)
    second = aggregate(GEN, [ready("a"), ready("b"), waiting("c")], first, T2)

    # The message changed ("2 of 3"), so the aggregate was updated, but no condition flipped.
    assert second.message != first.message
    assert second.lastUpdateTime == T2
    assert [c.lastTransitionTime for c in second.conditions] == [T1, T1]


def test_transition_time_changes_on_flip() -> None:
    first = aggregate(GEN, [ready("a"), waiting("b")], None, T1)
    second = aggregate(GEN, [ready("a"), ready("b")], first, T2)
    third = aggregate(GEN, [failed("a"), failed("b")], second, T3)

    assert [c.lastTransitionTime for c in second.conditions] == [T2, T1]  # Ready flipped
    assert [c.lastTransitionTime for c in third.conditions] == [T3, T3]  # both flipped


@pytest.mark.parametrize(
    ("reports", "generation"), [pytest.param(row[1], row[2], id=row[0]) for row in TABLE]
)
def test_recomputing_same_inputs_is_idempotent(
    reports: list[ControllerReport], generation: int
) -> None:
    first = aggregate(generation, reports, None, T1)
    again = aggregate(generation, reports, first, T2)

    assert again == first
    assert again.lastUpdateTime == T1


def test_input_order_does_not_matter() -> None:
    reports = [failed("c", error="three"), ready("a"), failed("b", error="two"), waiting("d")]

    assert aggregate(GEN, reports, None, T1) == aggregate(GEN, reports[::-1], None, T1)


# ---- generations ------------------------------------------------------------------------------


def test_older_generation_reports_ignored_for_phase() -> None:
    # "a" failed at an older generation and has not reported on the current one yet.
    status = aggregate(GEN, [failed("a", GEN - 1), ready("b")], None, T1)

    assert (status.phase, status.reason, status.health) == (
        Phase.READY,
        "AllControllersReady",
        Health.HEALTHY,
    )
    assert status.message == "1 of 1 controller ready at generation 4"


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        pytest.param([], 0, id="no-reports"),
        pytest.param([ready("a", 2), ready("b", 3)], 3, id="highest-older-generation"),
        pytest.param([ready("a", 3), waiting("b", GEN)], GEN, id="current-generation"),
    ],
)
def test_observed_generation(reports: list[ControllerReport], expected: int) -> None:
    assert aggregate(GEN, reports, None, T1).observedGeneration == expected


def test_stored_controller_status_is_accepted() -> None:
    stored = StoredControllerStatus(
        controller_name="a",
        observed_generation=GEN,
        conditions=[_condition("Ready", "True", "")],
        updated_at=T1,
    )

    assert aggregate(GEN, [stored], None, T2).phase is Phase.READY


# ---- messages ---------------------------------------------------------------------------------


def test_message_names_failing_controller_and_last_error() -> None:
    status = aggregate(GEN, [failed("b", error="quota\nexceeded"), failed("a")], None, T1)

    assert status.message == (
        "0 of 2 controllers ready at generation 4; failing: a: boom; b: quota exceeded"
    )


def test_message_uses_failing_condition_message_without_last_error() -> None:
    reports = [ready("a"), report("b", true=("Ready", "Degraded"), message="disk pressure")]

    assert aggregate(GEN, reports, None, T1).message.endswith("failing: b: disk pressure")


def test_message_is_truncated() -> None:
    reports = [failed(f"c{i:02d}", error="x" * 4096) for i in range(20)]

    message = aggregate(GEN, reports, None, T1).message
    assert len(message) == MAX_MESSAGE_LENGTH
    assert message.endswith("…")
    assert "c00: " in message and "c01: " in message


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ((("Ready", "False"), ("Ready", "True")), Phase.PROGRESSING),
        ((("Ready", "True"), ("Ready", "False")), Phase.READY),
        ((("Ready", "True"), ("Failed", "False"), ("Failed", "True")), Phase.READY),
        ((("Available", "True"), ("Failed", "True"), ("Failed", "False")), Phase.PROGRESSING),
    ],
)
def test_the_first_condition_of_a_type_decides(
    conditions: tuple[tuple[str, ConditionStatus], ...], phase: Phase
) -> None:
    """As ``ControllerReport.is_true`` reads a report: a repeated type is read at its first."""
    repeated = ControllerReport(
        controller_name="a",
        observed_generation=GEN,
        conditions=[_condition(type_, status, "") for type_, status in conditions],
    )
    assert aggregate(GEN, [repeated], None, T1).phase is phase


# ---- structured errors: the message and status.errors -----------------------------------------


def errors_of(status: AggregatedStatus) -> list[dict[str, Any]]:
    return [error.model_dump(mode="json") for error in status.errors]


QUOTA_ENTRY = {
    "controller": "b",
    "errorType": "Configuration",
    "errorCode": "QUOTA_EXCEEDED",
    "message": "Quota CPUS exceeded in us-central1",
    "userActionable": True,
    "suggestions": ["Request a CPUS quota increase", "Lower nodeCount"],
    "retryAfter": "30m",
}


def test_failed_message_names_the_controller_and_its_structured_error() -> None:
    status = aggregate(GEN, [failed("b", error=QUOTA)], None, T1)

    assert (status.phase, status.reason) == (Phase.FAILED, "ControllersFailed")
    assert status.message == (
        "0 of 1 controller ready at generation 4; failing: "
        "b: Configuration error QUOTA_EXCEEDED: Quota CPUS exceeded in us-central1"
    )


def test_failed_status_lists_the_structured_error() -> None:
    status = aggregate(GEN, [failed("b", error=QUOTA)], None, T1)

    assert errors_of(status) == [QUOTA_ENTRY]


def test_degraded_message_names_the_controller_and_its_structured_error() -> None:
    status = aggregate(GEN, [ready("a"), report("b", true=("Ready",), error=QUOTA)], None, T1)

    assert (status.health, status.reason) == (Health.DEGRADED, "ControllersWithErrors")
    assert status.message.endswith(
        "failing: b: Configuration error QUOTA_EXCEEDED: Quota CPUS exceeded in us-central1"
    )


def test_degraded_status_lists_the_structured_error() -> None:
    status = aggregate(GEN, [ready("a"), report("b", true=("Ready",), error=QUOTA)], None, T1)

    assert errors_of(status) == [QUOTA_ENTRY]


def test_message_of_a_structured_error_without_code() -> None:
    fatal = ControllerError(errorType="Fatal", message="boot disk\nimage deleted")
    status = aggregate(GEN, [failed("a", error=fatal)], None, T1)

    assert status.message.endswith("failing: a: Fatal error: boot disk image deleted")


def test_string_last_error_is_listed_with_an_unknown_type() -> None:
    status = aggregate(GEN, [failed("a", error="quota\nexceeded")], None, T1)

    assert errors_of(status) == [
        {
            "controller": "a",
            "errorType": "Unknown",
            "errorCode": "",
            "message": "quota\nexceeded",
            "userActionable": False,
            "suggestions": [],
            "retryAfter": None,
        }
    ]


def test_failing_condition_is_listed_with_its_reason_as_code() -> None:
    failing = ControllerReport(
        controller_name="a",
        observed_generation=GEN,
        conditions=[
            Condition(type="Ready", status="True"),
            Condition(type="Degraded", status="True", reason="NodesUnhealthy", message="1 of 3"),
        ],
    )
    (error,) = errors_of(aggregate(GEN, [failing], None, T1))

    assert (error["errorType"], error["errorCode"], error["message"]) == (
        "Unknown",
        "NodesUnhealthy",
        "1 of 3",
    )


@pytest.mark.parametrize(
    ("reports", "generation"),
    [pytest.param(row[1], row[2], id=row[0]) for row in TABLE if row[3] is not Phase.FAILED],
)
def test_errors_are_absent_unless_failed_or_degraded(
    reports: list[ControllerReport], generation: int
) -> None:
    status = aggregate(generation, reports, None, T1)
    document = status.model_dump(mode="json", exclude_unset=True)

    assert ("errors" in document) is (status.health is Health.DEGRADED)


def test_errors_count_only_the_current_generation() -> None:
    status = aggregate(GEN, [failed("a", GEN - 1, error=QUOTA), failed("b")], None, T1)

    assert [error["controller"] for error in errors_of(status)] == ["b"]


def test_errors_are_ordered_by_controller_and_capped() -> None:
    reports = [failed(f"c{i:02d}", error=QUOTA) for i in reversed(range(20))]
    names = [error["controller"] for error in errors_of(aggregate(GEN, reports, None, T1))]

    assert names == [f"c{i:02d}" for i in range(MAX_AGGREGATE_ERRORS)]


def test_long_error_message_is_cut_in_errors() -> None:
    long = ControllerError(errorType="System", message="x" * 4096)
    (error,) = errors_of(aggregate(GEN, [failed("a", error=long)], None, T1))

    assert len(error["message"]) == MAX_MESSAGE_LENGTH and error["message"].endswith("…")


def test_details_and_timestamp_stay_out_of_the_aggregate() -> None:
    dated = QUOTA.model_copy(update={"timestamp": T1})
    document = aggregate(GEN, [failed("b", error=dated)], None, T2).model_dump(mode="json")

    assert set(document["errors"][0]) == set(QUOTA_ENTRY)


def test_a_new_suggestion_is_a_change_of_status() -> None:
    first = aggregate(GEN, [failed("b", error=QUOTA)], None, T1)
    advised = QUOTA.model_copy(update={"suggestions": ["Use another region"]})
    second = aggregate(GEN, [failed("b", error=advised)], first, T2)

    assert second.message == first.message
    assert second.lastUpdateTime == T2


# ---- the two forms of the rule agree ----------------------------------------------------------
#
# aggregate (models, as HTTP validated them) and aggregate_json / aggregate_stored (the stored
# JSON, as the ingester and spec writes read it) must write the same document for the same
# reports, or a report applied twice would not be a no-op and a spec write would rewrite the
# status of an unchanged resource.

_TYPES = ("Ready", "Available", "Failed", "Degraded", "Progressing")
_STATUSES: tuple[ConditionStatus, ...] = ("True", "False", "Unknown")
_TEXTS = ("", "quota exceeded", "multi\nline\ttrace", "ü" * 300, "x" * 4096)


def random_error(rng: random.Random) -> str | ControllerError | None:
    form = rng.randrange(4)
    if form == 0:
        return None
    if form == 1:
        return rng.choice(_TEXTS)
    return ControllerError(
        controllerName=rng.choice([None, "gcp-nodepool-controller"]),
        errorType=rng.choice(["Transient", "Configuration", "Fatal", "System"]),
        errorCode=rng.choice(["", "QUOTA_EXCEEDED", "E" * 128]),
        message=rng.choice([t for t in _TEXTS if t]),
        userActionable=rng.random() < 0.5,
        suggestions=rng.sample(["retry", "lower nodeCount", "s" * 512], rng.randrange(4)),
        details=rng.choice([{}, {"zone": "us-central1-a", "n": [1, 2.5, None]}]),
        retryAfter=rng.choice([None, "0", "500ms", "1m30s", "2h"]),
        timestamp=rng.choice([None, T1]),
    )


def random_report(rng: random.Random, name: str) -> ControllerReport:
    conditions = [
        Condition(
            type=rng.choice(_TYPES),
            status=rng.choice(_STATUSES),
            reason=rng.choice(["", "QuotaExceeded"]),
            message=rng.choice(_TEXTS),
        )
        for _ in range(rng.randrange(4))
    ]
    return ControllerReport(
        controller_name=name,
        observed_generation=rng.choice([GEN - 1, GEN, GEN]),
        conditions=conditions,
        last_error=random_error(rng),
    )


def random_reports(rng: random.Random) -> list[ControllerReport]:
    names = rng.sample([f"c{i}" for i in range(20)], rng.randrange(0, 20))
    return [random_report(rng, name) for name in names]


def random_required(rng: random.Random) -> list[str]:
    """Some controllers required: some of them reported, some did not."""
    return rng.sample([f"c{i}" for i in range(20)], rng.randrange(0, 4))


def stored(report: ControllerReport, at: datetime) -> str:
    """The report as ``StatusService`` stores it."""
    return orjson.dumps({**report.model_dump(mode="json"), "updated_at": timestamp(at)}).decode()


@pytest.mark.parametrize("seed", range(300))
def test_models_and_stored_json_give_the_same_document(seed: int) -> None:
    rng = random.Random(seed)
    reports = random_reports(rng)
    required = random_required(rng)
    # A previous status of other reports, or none, or the same reports' (a no-op recompute).
    before = rng.choice([None, random_reports(rng), reports])
    previous = None if before is None else aggregate(GEN, before, None, T1, required)
    previous_json = (
        None
        if previous is None
        else cast(StoredStatus, previous.model_dump(mode="json", exclude_unset=True))
    )
    raw = {r.controller_name: stored(r, T1) for r in reports}

    by_models = aggregate(GEN, reports, previous, T2, required).model_dump(
        mode="json", exclude_unset=True
    )
    by_json = aggregate_json(
        GEN,
        [controller_of_json(orjson.loads(text)) for text in raw.values()],
        previous_json,
        timestamp(T2),
        required=required,
    )
    by_stored = aggregate_stored(GEN, raw, previous_json, T2, required=required)

    assert by_models == by_json == by_stored
    # What is stored validates as the documented model, field for field.
    assert (
        AggregatedStatus.model_validate(by_json).model_dump(mode="json", exclude_unset=True)
        == by_json
    )


@pytest.mark.parametrize("seed", range(100))
def test_recomputing_the_stored_document_changes_nothing(seed: int) -> None:
    rng = random.Random(seed)
    raw = {r.controller_name: stored(r, T1) for r in random_reports(rng)}
    required = random_required(rng)
    first = aggregate_stored(GEN, raw, None, T1, required=required)

    later = T1 + timedelta(minutes=5)
    assert aggregate_stored(GEN, raw, first, later, required=required) == first


# ---- required controllers ---------------------------------------------------------------------
#
# The registry names the controllers a resource cannot be Ready without; the caller passes them.


def test_ready_waits_for_a_required_controller_that_has_not_reported() -> None:
    status = aggregate(GEN, [ready("a")], None, T1, required=("a", "b"))

    assert (status.phase, status.health) == (Phase.PROGRESSING, Health.UNKNOWN)
    assert status.reason == "WaitingForControllers"
    assert status.message == f"1 of 2 controllers ready at generation {GEN}; waiting for b"
    assert condition_status(status, "Ready") == "False"


def test_a_required_controller_at_an_older_generation_is_still_waited_for() -> None:
    status = aggregate(GEN, [ready("a"), ready("b", GEN - 1)], None, T1, required=("a", "b"))

    assert status.phase is Phase.PROGRESSING
    assert status.message.endswith("waiting for b")


def test_ready_once_every_required_controller_is_ready() -> None:
    status = aggregate(GEN, [ready("a"), ready("b")], None, T1, required=("b", "a"))

    assert (status.phase, status.reason) == (Phase.READY, "AllControllersReady")
    assert status.message == f"2 of 2 controllers ready at generation {GEN}"


def test_every_missing_required_controller_is_named() -> None:
    status = aggregate(GEN, [ready("x")], None, T1, required=("c", "a", "b"))

    assert status.message.endswith("waiting for a, b, c")


def test_a_new_resource_names_the_controllers_it_waits_for() -> None:
    status = aggregate(1, [], None, T1, required=("gcp-nodepool-controller",))

    assert (status.phase, status.reason) == (Phase.PENDING, "NoControllers")
    assert status.message == (
        "No controller has reported yet (generation 1); waiting for gcp-nodepool-controller"
    )


def test_a_new_generation_names_the_controllers_it_waits_for() -> None:
    status = aggregate(GEN, [ready("a", GEN - 1)], None, T1, required=("a",))

    assert status.reason == "NewGenerationPending"
    assert status.message.endswith("; waiting for a")


def test_an_optional_controller_that_has_not_reported_does_not_hold_ready() -> None:
    # "b" is optional: it is simply not among the required names.
    status = aggregate(GEN, [ready("a")], None, T1, required=("a",))

    assert status.phase is Phase.READY


def test_an_optional_controller_in_error_counts_as_before() -> None:
    reports = [ready("a"), failed("b")]

    with_registry = aggregate(GEN, reports, None, T1, required=("a",))

    assert with_registry == aggregate(GEN, reports, None, T1)
    assert (with_registry.phase, with_registry.health) == (Phase.PROGRESSING, Health.DEGRADED)


def test_a_failure_is_still_a_failure_while_a_required_controller_is_missing() -> None:
    status = aggregate(GEN, [failed("b", error="quota")], None, T1, required=("a",))

    assert (status.phase, status.reason) == (Phase.FAILED, "ControllersFailed")
    assert status.message == (
        f"0 of 2 controllers ready at generation {GEN}; waiting for a; failing: b: quota"
    )
