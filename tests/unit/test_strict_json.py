"""The strict JSON parser: its fast duplicate-key check agrees with a plain reading of every
object's keys, whatever the document (property-based), and it refuses what it must."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_models.strict_json import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_KEYS,
    MAX_OBJECT_KEYS,
    DuplicateKey,
    Malformed,
    TooDeep,
    TooManyItems,
    TooManyKeys,
    _outside_strings,
    loads,
)

# Keys and strings rich in what the fast path counts: colons, quotes, backslashes, escapes.
TEXT = st.text(alphabet=st.sampled_from(["a", "b", ":", '"', "\\", " ", "é", "\u2028"]), max_size=4)
SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.lists(st.tuples(TEXT, children), max_size=4)
    ),  # object: pairs, repeats allowed
    max_leaves=20,
)


def render(value: Any, escape_colons: bool) -> str:
    """JSON text of a document whose objects are lists of pairs (so keys may repeat)."""
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        return (
            "{"
            + ",".join(f"{text(k, escape_colons)}:{render(v, escape_colons)}" for k, v in value)
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(render(v, escape_colons) for v in value) + "]"
    if isinstance(value, str):
        return text(value, escape_colons)
    return json.dumps(value)


def text(value: str, escape_colons: bool) -> str:
    encoded = json.dumps(value, ensure_ascii=False)
    return encoded.replace(":", "\\u003a") if escape_colons else encoded


def has_repeat(value: Any) -> bool:
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        keys = [k for k, _ in value]
        return len(set(keys)) < len(keys) or any(has_repeat(v) for _, v in value)
    if isinstance(value, list):
        return any(has_repeat(v) for v in value)
    return False


@settings(max_examples=400, deadline=None)
@given(document=DOCUMENTS, escape_colons=st.booleans())
def test_a_repeated_key_is_found_exactly_when_there_is_one(
    document: Any, escape_colons: bool
) -> None:
    raw = render(document, escape_colons).encode()
    if has_repeat(document):
        with pytest.raises(DuplicateKey):
            loads(raw)
    else:
        assert loads(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"a":1,"a":2}', "a"),
        (b'{"x":{"b":1, "b" :2}}', "b"),
        (b'[{"a":1},{"k":1,"k":1}]', "k"),
        (b'{"t":"10:30","a":1,"a":2}', "a"),
        (b'{"a:b":1,"a:b":2}', "a:b"),
        (b'{"a":1,"a":2,"x":"\\u003a"}', "a"),
        (b'{"a\\\\":1,"a\\\\":2}', "a\\"),
    ],
)
def test_the_repeated_key_is_named(raw: bytes, key: str) -> None:
    with pytest.raises(DuplicateKey, match=re.escape(f"duplicate key {key!r}")):
        loads(raw)


@pytest.mark.parametrize(
    "raw",
    [b'[{"a":1},{"a":1}]', b'{"x":"\\":","y":1}', b'{"x":"\\u003a\\u003a","y":1}', b'"x:y"'],
)
def test_keys_repeated_only_across_objects_or_inside_strings_are_fine(raw: bytes) -> None:
    assert loads(raw) == json.loads(raw)


def test_nesting_up_to_the_limit_is_accepted_and_one_more_level_is_not() -> None:
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(TooDeep):
        loads(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))


def test_nesting_beyond_what_the_parser_itself_allows_is_too_deep_not_malformed() -> None:
    with pytest.raises(TooDeep):
        loads(b'{"a":' * 100_000)


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e400}', b'{"a": "\\ud800"}', b"\xff"],
)
def test_what_is_not_strict_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(Malformed):
        loads(raw)


def test_a_large_document_parses_like_orjson() -> None:
    # As large as MAX_ITEMS allows.
    document = {"zones": [f"us-central1-{i}:x" for i in range(9_000)], "n": list(range(999))}
    raw = orjson.dumps(document)
    assert loads(raw) == document


def separators(value: Any) -> tuple[int, int]:
    """(keys, commas) outside the strings of a document rendered by ``render``."""
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        counts = [separators(v) for _, v in value]
        return len(value) + sum(k for k, _ in counts), len(value) - 1 + sum(c for _, c in counts)
    if isinstance(value, list):
        counts = [separators(v) for v in value]
        commas = max(len(value) - 1, 0)
        return sum(k for k, _ in counts), commas + sum(c for _, c in counts)
    return 0, 0


@settings(max_examples=400, deadline=None)
@given(document=DOCUMENTS, escape_colons=st.booleans())
def test_keys_and_commas_outside_strings_are_counted_exactly_on_the_bytes(
    document: Any, escape_colons: bool
) -> None:
    # Strings full of colons, commas, quotes and backslashes must not count.
    raw = render(document, escape_colons).replace(" ", ",").encode()
    keys, commas = separators(document)
    outside = _outside_strings(raw)
    assert (outside.count(b":"), outside.count(b",")) == (keys, commas)


def object_of(count: int, value: Any = 0) -> dict[str, Any]:
    return {f"k{i}": value for i in range(count)}


def test_an_object_of_the_most_keys_is_accepted_and_one_more_key_is_not() -> None:
    assert loads(orjson.dumps(object_of(MAX_OBJECT_KEYS)))
    with pytest.raises(TooManyKeys, match=f"the body has {MAX_OBJECT_KEYS + 1} keys"):
        loads(orjson.dumps(object_of(MAX_OBJECT_KEYS + 1)))


def test_the_object_of_too_many_keys_is_named_by_its_path() -> None:
    body = {"spec": {"platform": {"gcp": {"labels": object_of(600), "taints": [{}, {}]}}}}
    with pytest.raises(TooManyKeys) as refused:
        loads(orjson.dumps(body))
    assert str(refused.value) == (
        f"spec.platform.gcp.labels has 600 keys, more than the {MAX_OBJECT_KEYS} allowed in one "
        "object"
    )
    in_a_list = {"items": [1, {"deep": object_of(600)}]}
    with pytest.raises(TooManyKeys, match=r"^items\[1\]\.deep has 600 keys"):
        loads(orjson.dumps(in_a_list))


# Values rich in what the byte count must skip: colons, commas, quotes, backslashes.
TRICKY = ':, \\"q\\": [1,2]'


def test_the_most_keys_in_all_are_accepted_and_one_more_key_is_not() -> None:
    per_object = MAX_KEYS // 8
    most = {f"o{i}": object_of(per_object - 1, TRICKY) for i in range(8)}
    assert sum(len(o) for o in most.values()) + len(most) == MAX_KEYS
    assert loads(orjson.dumps(most)) == most
    most["o0"]["one-more"] = TRICKY
    with pytest.raises(TooManyKeys, match=f"the body has {MAX_KEYS + 1} keys in all"):
        loads(orjson.dumps(most))


def test_the_most_array_items_are_accepted_and_one_more_item_is_not() -> None:
    assert loads(orjson.dumps([TRICKY] * MAX_ITEMS))
    with pytest.raises(TooManyItems, match=f"more than the {MAX_ITEMS} array items"):
        loads(orjson.dumps([TRICKY] * (MAX_ITEMS + 1)))


def test_the_largest_valid_documents_are_well_within_the_bounds() -> None:
    # A status report of every condition, 64 metadata keys with nested values, and a last_error
    # object as the original system sent it (about ten keys and a details object).
    condition = {
        "type": "Ready",
        "status": "False",
        "lastTransitionTime": "2025-10-17T10:30:00Z",
        "reason": "r" * 128,
        "message": "a: b, c" * 500,
    }
    last_error = {
        "errorType": "QuotaExceeded",
        "errorCode": "GCP-403",
        "message": "quota 'CPUS' exceeded: limit 24, requested 32",
        "userActionable": True,
        "suggestions": ["request more quota", "use a smaller machine type"],
        "retryable": False,
        "occurredAt": "2025-10-17T10:30:00Z",
        "operation": "scale",
        "resource": "projects/p/zones/us-central1-a/instanceGroups/g",
        "details": {f"d{i}": {"at": "10:30", "values": [1, 2, 3]} for i in range(16)},
    }
    report = {
        "controller_name": "gcp-nodepool-controller",
        "observed_generation": 3,
        "conditions": [condition] * 16,
        "metadata": {f"m{i}": {"a": [1, {"b": "x:y"}], "c": "d,e"} for i in range(64)},
        "last_error": last_error,
        "nodepool_id": "550e8400-e29b-41d4-a716-446655440000",
    }
    raw = orjson.dumps(report)
    assert loads(raw) == report
    keys = _outside_strings(raw).count(b":")
    assert keys * 4 < MAX_KEYS, keys  # room for a much larger report
