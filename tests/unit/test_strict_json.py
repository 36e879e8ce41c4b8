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

from shared_models.strict_json import MAX_DEPTH, DuplicateKey, Malformed, TooDeep, loads

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
    document = {"zones": [f"us-central1-{i}:x" for i in range(50_000)], "n": list(range(1000))}
    raw = orjson.dumps(document)
    assert loads(raw) == document
