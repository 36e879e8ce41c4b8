"""Property-based fuzzing of every operation of the OpenAPI document (schemathesis).

The API runs as a real uvicorn server over the real Redis, in a namespace of its own
(``fuzz_target``). Schemathesis generates requests from the document the app publishes,
valid and invalid (positive and negative modes), and every response must:

- never be a 5xx;
- have a status code the operation documents explicitly ("default" does not count: it is there
  only to describe the envelope of an unexpected error);
- conform to the documented schema, content type and headers for that status;
- for every 4xx, be exactly the error envelope of ``shared_models.errors``;
- for a request the schema says is invalid, be a 4xx (schemathesis' negative_data_rejection).

User operations are called as the fuzzing user (a valid ``X-User-Email``), the status writes
with a controller token. In valid requests, path ids are now and then replaced by the fuzzing
user's cluster and nodepool, or another user's, so that examples reach past the 404 into the
real handlers; nodepool bodies are now and then moved onto the fuzzing user's cluster; status
reports now and then name the token's own controller and generation 1, so they reach the apply
path instead of stopping at the 403.

Bounded for CI: a fixed number of examples per operation, derandomized (the same examples on
every run), no deadline (a loaded 2-core machine), the whole file in well under a minute.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api_service.app import create_app
from shared_models.errors import ErrorCode, ErrorEnvelope
from tests.conftest import controller_headers
from tests.hostile.conftest import FUZZ_CONTROLLERS, FUZZ_USER, FuzzTarget

# Examples per operation in the fuzzing phase (the examples and coverage phases add their own).
MAX_EXAMPLES = 30

schema = schemathesis.openapi.from_dict(create_app().openapi())
schema.config.generation.update(modes=list(GenerationMode))
# The coverage phase (every boundary value and type of every parameter, undocumented methods)
# is deterministic and runs in both modes; its negative half is most of the run's requests,
# so it is trimmed to what stays well inside the time budget: positive boundaries there,
# invalid data from the fuzzing phase.
schema.config.phases.coverage.generation.update(modes=[GenerationMode.POSITIVE])

# A nodepool platform the fuzzing user's (GCP, us-central1) cluster takes.
GCP_POOL_PLATFORM = {"type": "gcp", "gcp": {"machineType": "n1-standard-4"}}


def _status_kind(case_or_path: str) -> str | None:
    """'nodepool' / 'cluster' for the status routes, None for the others."""
    if not case_or_path.endswith("/status"):
        return None
    return "cluster" if case_or_path.startswith("/api/v1/clusters") else "nodepool"


def _coin(value: Any, sides: int) -> int:
    """A deterministic choice from a generated value: the same example always chooses the same."""
    return zlib.crc32(json.dumps(value, sort_keys=True, default=str).encode()) % sides


def aim_at_seeded_resources(case: Case[Any], target: FuzzTarget) -> None:
    """Valid requests only (rewriting an invalid one might make it valid): path ids are kept,
    or replaced by the fuzzing user's resource (twice as often), or by another user's; status
    reports sometimes name the token's own controller and generation 1, so that they reach the
    apply path instead of stopping at the 403."""
    if case.meta is None or case.meta.generation.mode.is_negative:
        return
    ids = case.path_parameters
    if ids:
        choice = ("generated", "own", "own", "foreign")[_coin(ids, 4)]
        if choice != "generated":
            own = choice == "own"
            if "clusterId" in ids:
                ids["clusterId"] = target.own_cluster if own else target.foreign_cluster
            if "id" in ids and case.operation.path.startswith("/api/v1/clusters"):
                ids["id"] = target.own_cluster if own else target.foreign_cluster
            elif "id" in ids:
                ids["id"] = target.own_nodepool if own else target.foreign_nodepool
    kind = _status_kind(case.operation.path)
    body: Any = case.body
    if kind is not None and case.method.upper() == "PUT" and isinstance(body, dict):
        coin = _coin(body, 4)
        report = dict(body)
        if coin & 1:
            report["controller_name"] = FUZZ_CONTROLLERS[kind]
        if coin & 2:
            report["observed_generation"] = 1
        case.body = report


# ---- checks beyond schemathesis' defaults ---------------------------------------------------


def explicitly_documented_status(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """The operation documents this status code itself. Schemathesis' own status check accepts
    anything once "default" is documented, and every /api/v1 operation documents one.

    A request with another method than the operation's (the coverage phase sends those) is
    left to schemathesis' unsupported_method check: it must be a 405 with an Allow header."""
    if case.method.upper() != case.operation.method.upper():
        return None
    documented = {str(code) for code in case.operation.responses.status_codes} - {"default"}
    assert str(response.status_code) in documented, (
        f"undocumented status {response.status_code}; documented: {sorted(documented)}"
    )
    return True


def error_envelope(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every 4xx is ``{"error": {"code", "message", "details"[, "fields"]}}`` and nothing else,
    with the code that goes with its status."""
    if not 400 <= response.status_code < 500:
        return None
    expected = {
        400: ErrorCode.VALIDATION_ERROR,
        401: ErrorCode.UNAUTHORIZED,
        403: ErrorCode.FORBIDDEN,
        404: ErrorCode.NOT_FOUND,
        405: ErrorCode.METHOD_NOT_ALLOWED,
        409: ErrorCode.CONFLICT,
        413: ErrorCode.PAYLOAD_TOO_LARGE,
    }
    problem = None
    content_type = response.headers.get("content-type", [""])[0]
    if not content_type.startswith("application/json"):
        problem = f"Content-Type {content_type!r}, not application/json"
    else:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or set(body) != {"error"}:
            problem = f"not the envelope: {response.text[:300]}"
        else:
            envelope = ErrorEnvelope.model_validate(body)
            codes = {expected.get(response.status_code)}
            if response.status_code == 409:  # a protected resource; one being deleted
                codes |= {
                    ErrorCode.DELETION_PROTECTED,
                    ErrorCode.RESOURCE_DELETING,
                    ErrorCode.CLUSTER_DELETING,
                }
            if envelope.error.code not in codes:
                problem = f"code {envelope.error.code} with status {response.status_code}"
            elif not envelope.error.message:
                problem = "empty message"
    assert problem is None, f"{response.status_code} is not the error envelope: {problem}"
    return True


def move_into_own_cluster(case: Case[Any], target: FuzzTarget) -> None:
    """About half of the valid nodepool bodies (a deterministic half: by their hash) are moved
        onto the fuzzing user's cluster and its platform, so that their other fields (name,
        nodeCount, autoscaling...) reach the write path instead of stopping at "no such cluster" or
        "not the cluster's platform". Invalid requests are left alone: moving might make them valid,
    or hide what is invalid about them behind a body that now passes."""
    body: Any = case.body
    if (
        case.method.upper() not in ("POST", "PUT")
        or not case.operation.path.endswith(("/nodepools", "/nodepools/{id}"))
        or case.meta is None
        or case.meta.generation.mode.is_negative
        or not isinstance(body, dict)
        or not isinstance(body.get("spec"), dict)
        or _coin(body, 2)
    ):
        return
    moved: dict[str, Any] = dict(body)
    moved["spec"] = {**body["spec"], "platform": GCP_POOL_PLATFORM}
    moved["cluster_id"] = target.own_cluster
    case.body = moved


def no_streams(case: Case[Any]) -> None:
    """Watches and waits are left out (tests/api/test_watch.py has them): a watch never ends,
    and a wait lasts up to its timeout, beyond the time a fuzzed call may take."""
    if case.query:
        for name in ("watch", "waitFor", "resource_version"):
            case.query.pop(name, None)


def identity_for(case: Case[Any]) -> dict[str, str]:
    """Who calls: the status writes are controllers, everything else the fuzzing user."""
    kind = _status_kind(case.operation.path)
    if kind is not None and case.method.upper() == "PUT":
        return controller_headers(FUZZ_CONTROLLERS[kind])
    return FUZZ_USER


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_every_operation_answers_as_documented(case: Case[Any], fuzz_target: FuzzTarget) -> None:
    case.headers.update(identity_for(case))
    aim_at_seeded_resources(case, fuzz_target)
    move_into_own_cluster(case, fuzz_target)
    no_streams(case)
    response = case.call(base_url=fuzz_target.base_url, timeout=10)
    # positive_data_acceptance (every schema-valid request is a 2xx) is left out: some rules
    # cannot be said in JSON Schema (nodeCount within the autoscaling bounds, the cluster's
    # platform and region, non-overlapping CIDRs, cluster_id in the body equal to the path's),
    # so such requests rightly get a 400. Running with it found the document's real gaps.
    case.validate_response(
        response,
        additional_checks=[explicitly_documented_status, error_envelope],
        excluded_checks=[positive_data_acceptance],
    )
    if case.method.upper() == "DELETE" and response.status_code in (202, 204):
        fuzz_target.reseed()


def test_the_fuzzer_covers_every_operation_of_the_document() -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, operations in create_app().openapi()["paths"].items()
        for method in operations
    }
    fuzzed = {op.label for op in (r.ok() for r in schema.get_all_operations() if isinstance(r, Ok))}
    assert fuzzed == documented
    assert len(fuzzed) == 37
