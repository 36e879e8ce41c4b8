"""``last_error`` in both forms: a string, or the object the original system's controllers send.

Validated as ``PUT .../status`` and the status queue validate it (``validate_report``): the
refusals are the field errors of the HTTP error envelope and of the ingester's dead letters.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from cls_core.services.status import InvalidReport, validate_report
from shared_models.status import (
    MAX_RETRY_AFTER_SECONDS,
    ControllerError,
    ControllerReport,
    NodePoolStatusReport,
    StoredControllerStatus,
)

QUOTA: dict[str, Any] = {
    "errorType": "Configuration",
    "errorCode": "QUOTA_EXCEEDED",
    "message": "Quota CPUS exceeded in us-central1",
}


def body(last_error: Any) -> dict[str, Any]:
    return {"controller_name": "gcp", "observed_generation": 1, "last_error": last_error}


def stored_error(last_error: Any) -> Any:
    """``last_error`` as a report stores it (``StatusService`` stores the report's JSON dump)."""
    return validate_report(body(last_error), ControllerReport).model_dump(mode="json")["last_error"]


def refusal(last_error: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidReport) as refused:
        validate_report(body(last_error), ControllerReport)
    return [(f.field, f.message) for f in refused.value.fields]


# ---- accepted ---------------------------------------------------------------------------------


def test_string_last_error_is_stored_as_a_string() -> None:
    assert stored_error("instance template not found") == "instance template not found"


def test_object_last_error_is_stored_with_every_field() -> None:
    assert stored_error(QUOTA) == {
        "controllerName": None,
        "errorType": "Configuration",
        "errorCode": "QUOTA_EXCEEDED",
        "message": "Quota CPUS exceeded in us-central1",
        "userActionable": False,
        "suggestions": [],
        "details": {},
        "retryAfter": None,
        "timestamp": None,
    }


def test_error_info_as_the_original_go_controllers_encode_it_is_accepted() -> None:
    # encoding/json of the original ErrorInfo: every field written, a time.Duration as
    # nanoseconds, details a map of strings, the zero time when none was set.
    sent = {
        "controllerName": "gcp-nodepool-controller",
        "errorType": "Transient",
        "errorCode": "API_UNAVAILABLE",
        "message": "compute.googleapis.com: 503 Service Unavailable",
        "userActionable": False,
        "suggestions": ["Wait for the API to recover"],
        "details": {"operation": "instances.insert", "zone": "us-central1-a"},
        "retryAfter": 30_000_000_000,
        "timestamp": "0001-01-01T00:00:00Z",
    }
    assert stored_error(sent) == {**sent, "retryAfter": "30s"}


def test_stored_object_reads_back_as_itself() -> None:
    """A stored report is read again (controller_status, recomputed aggregates): normalising
    what is already normal must change nothing."""
    report = NodePoolStatusReport.model_validate(
        {
            **body({**QUOTA, "retryAfter": "1.5h", "timestamp": "2025-10-17T10:30:00+02:00"}),
            "nodepool_id": "np",
        }
    )
    stored = {
        **report.model_dump(mode="json", exclude={"nodepool_id"}),
        "updated_at": "2025-10-17T10:31:00Z",
    }
    again = StoredControllerStatus.model_validate(stored).model_dump(mode="json")
    assert again == stored


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        pytest.param("30s", "30s", id="seconds"),
        pytest.param("90s", "1m30s", id="seconds-over-a-minute"),
        pytest.param("1m30s", "1m30s", id="minutes-and-seconds"),
        pytest.param("1.5h", "1h30m", id="fraction-of-an-hour"),
        pytest.param("2h0m0s", "2h", id="go-duration-string"),
        pytest.param("500ms", "1s", id="below-a-second-rounds-up"),
        pytest.param("1500000us", "2s", id="microseconds"),
        pytest.param("0", "0s", id="zero-without-unit"),
        pytest.param(0, "0s", id="zero-nanoseconds"),
        pytest.param(30_000_000_000, "30s", id="go-time-duration-nanoseconds"),
        pytest.param(30_000_000_001, "31s", id="nanoseconds-round-up"),
        pytest.param(MAX_RETRY_AFTER_SECONDS * 10**9, "720h", id="the-limit"),
    ],
)
def test_retry_after_is_stored_as_whole_seconds(sent: str | int, shown: str) -> None:
    assert stored_error({**QUOTA, "retryAfter": sent})["retryAfter"] == shown


# ---- refused ----------------------------------------------------------------------------------


def test_unknown_error_type_is_refused() -> None:
    assert refusal({**QUOTA, "errorType": "Permanent"}) == [
        (
            "last_error.errorType",
            "last_error.errorType: Input should be 'Transient', 'Configuration', 'Fatal' or "
            "'System'",
        )
    ]


def test_unknown_key_in_the_object_is_refused() -> None:
    assert refusal({**QUOTA, "severity": "high"}) == [
        ("last_error.severity", "last_error.severity: unknown field")
    ]


def test_object_without_error_type_and_message_is_refused() -> None:
    assert refusal({"errorCode": "X"}) == [
        ("last_error.errorType", "last_error.errorType is required"),
        ("last_error.message", "last_error.message is required"),
    ]


def test_a_bad_object_is_not_also_reported_as_a_bad_string() -> None:
    # A plain union would add "Input should be a valid string" for the same mistake.
    assert [field for field, _ in refusal({**QUOTA, "message": ""})] == ["last_error.message"]


@pytest.mark.parametrize("value", [42, True, ["a"], 1.5], ids=["number", "bool", "list", "float"])
def test_neither_string_nor_object_is_refused_once(value: Any) -> None:
    assert refusal(value) == [
        (
            "last_error",
            "last_error: must be a string, an object with errorType and message, or null",
        )
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("message", "m" * 4097, id="message-over-4096"),
        pytest.param("errorCode", "C" * 129, id="error-code-over-128"),
        pytest.param("suggestions", ["try again"] * 11, id="more-than-10-suggestions"),
        pytest.param("suggestions", ["s" * 513], id="suggestion-over-512"),
        pytest.param("suggestions", [""], id="empty-suggestion"),
        pytest.param("details", {f"k{i}": i for i in range(65)}, id="more-than-64-details"),
        pytest.param("details", {"ratio": math.nan}, id="details-not-plain-json"),
        pytest.param("controllerName", "Not A Name", id="controller-name-syntax"),
        pytest.param("userActionable", "true", id="user-actionable-not-a-boolean"),
    ],
)
def test_oversize_or_malformed_field_is_refused(field: str, value: Any) -> None:
    fields = [name for name, _ in refusal({**QUOTA, field: value})]
    assert fields and all(name.startswith(f"last_error.{field}") for name in fields)


def test_string_over_4096_characters_is_refused() -> None:
    assert refusal("e" * 4097) == [
        ("last_error", "last_error: String should have at most 4096 characters")
    ]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("-1s", id="negative"),
        pytest.param(-1, id="negative-nanoseconds"),
        pytest.param("30", id="number-as-text-without-unit"),
        pytest.param("1d", id="unit-go-does-not-know"),
        pytest.param("", id="empty"),
        pytest.param(" 30s", id="padded"),
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param((MAX_RETRY_AFTER_SECONDS + 1) * 10**9, id="over-30-days"),
        pytest.param("1" * 65 + "s", id="over-64-characters"),
    ],
)
def test_malformed_retry_after_is_refused(value: Any) -> None:
    ((field, message),) = refusal({**QUOTA, "retryAfter": value})
    assert field == "last_error.retryAfter"
    assert message.startswith("last_error.retryAfter: must be ")


def test_model_built_in_python_keeps_its_object() -> None:
    error = ControllerError(errorType="Fatal", message="disk image deleted")
    report = ControllerReport(controller_name="gcp", observed_generation=1, last_error=error)
    assert report.last_error is error
