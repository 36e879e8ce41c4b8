"""The status of a resource being deleted: phase Deleting whatever the reports, and health
saying whether the deletion goes well (confirmations, errors, the timeout)."""

from __future__ import annotations

from shared_models.aggregation import (
    StoredStatus,
    aggregate_json,
    controller_of,
    deletion_confirmed,
    unconfirmed,
)
from shared_models.status import ControllerReport

GEN = 3  # the deletion generation
NOW = "2026-01-01T00:00:00Z"
REQUIRED = ("a-controller", "b-controller")


def report(
    name: str, generation: int = GEN, *, deleted: bool = True, error: str = ""
) -> ControllerReport:
    return ControllerReport.model_validate(
        {
            "controller_name": name,
            "observed_generation": generation,
            "conditions": [{"type": "Deleted", "status": "True" if deleted else "False"}],
            **({"last_error": error} if error else {}),
        }
    )


def deleting(*reports: ControllerReport, overdue: bool = False) -> StoredStatus:
    controllers = [controller_of(r) for r in reports]
    return aggregate_json(
        GEN, controllers, None, NOW, required=REQUIRED, deleting=True, overdue=overdue
    )


def test_a_deletion_nobody_confirmed_yet_is_deleting_and_names_who_it_waits_for() -> None:
    status = deleting()
    assert (status["phase"], status["health"], status["reason"]) == (
        "Deleting",
        "Unknown",
        "WaitingForDeletion",
    )
    assert "not confirmed by a-controller, b-controller" in status["message"]


def test_a_ready_report_does_not_make_a_deleting_resource_ready() -> None:
    ready = ControllerReport.model_validate(
        {
            "controller_name": "a-controller",
            "observed_generation": GEN,
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    )
    status = deleting(ready)
    assert status["phase"] == "Deleting"
    assert status["conditions"][0]["status"] == "False"


def test_a_deletion_error_makes_it_unhealthy_with_the_error_in_the_message() -> None:
    status = deleting(report("a-controller", deleted=False, error="VM stuck in deleting"))
    assert (status["phase"], status["health"], status["reason"]) == (
        "Deleting",
        "Unhealthy",
        "DeletionFailed",
    )
    assert "a-controller: VM stuck in deleting" in status["message"]
    assert status["errors"][0]["controller"] == "a-controller"


def test_a_deletion_error_beside_a_confirmation_is_degraded() -> None:
    status = deleting(report("a-controller"), report("b-controller", deleted=False, error="x"))
    assert (status["phase"], status["health"]) == ("Deleting", "Degraded")


def test_an_overdue_deletion_is_unhealthy_naming_the_controllers_that_did_not_confirm() -> None:
    status = deleting(report("a-controller"), overdue=True)
    assert (status["phase"], status["health"], status["reason"]) == (
        "Deleting",
        "Unhealthy",
        "DeletionTimedOut",
    )
    assert "not confirmed by b-controller" in status["message"]
    assert "a-controller" not in status["message"].split("not confirmed by")[1]


def test_only_confirmations_at_the_deletion_generation_count() -> None:
    controllers = [
        controller_of(report("a-controller", GEN - 1)),
        controller_of(report("b-controller")),
    ]
    assert unconfirmed(GEN, controllers, REQUIRED) == ["a-controller"]
    assert not deletion_confirmed(GEN, controllers, REQUIRED)


def test_every_required_confirmation_confirms_the_deletion() -> None:
    controllers = [controller_of(report(name)) for name in REQUIRED]
    assert deletion_confirmed(GEN, controllers, REQUIRED)
