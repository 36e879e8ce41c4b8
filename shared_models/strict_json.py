"""The one strict JSON parser for every body the services accept: HTTP requests and queue messages.

On top of orjson's RFC 8259 parsing (no NaN or Infinity, no invalid UTF-8 or lone surrogates),
it refuses what a lenient parser silently accepts:

- duplicate keys in one object: ``json`` and pydantic keep the last one, so ``{"nodeCount": 3,
  "nodeCount": 300}`` would mean something other than what an auditor reading the body sees;
- nesting deeper than ``MAX_DEPTH``: no valid document comes close, and a deep one makes
  recursive code (``json.loads``, validators) fail with a RecursionError.

Finding a repeated key costs a re-serialisation and two colon counts, all in C. Every key is
followed by one colon and every other colon is inside a string. Parsing keeps one of each
repeated key, and drops the other occurrences with their values, so the document re-serialised
has fewer colons than the body if and only if a key was repeated; unless a string of the body
writes a colon as ``\\u003a``: those bodies (rare) have their keys counted by a regular
expression instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# Deeper than any valid document (a nodepool body is ~6 levels, a status report ~20).
MAX_DEPTH = 32

# A JSON string, and the colon after it when it is an object key. In valid JSON, matching strings
# from left to right finds each string from its opening quote: nothing outside a string contains
# a quote, and a quote inside one is escaped.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"\s*(:?)', re.DOTALL)


class StrictJsonError(ValueError):
    """The body is not a JSON document this service accepts; the message says why."""


class Malformed(StrictJsonError):
    """Not RFC 8259 JSON (or not UTF-8, or a number out of range)."""


class TooDeep(StrictJsonError):
    pass


class DuplicateKey(StrictJsonError):
    pass


def loads(raw: bytes) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise _too_deep() from None
        raise Malformed(str(exc)) from None
    if type(data) is dict or type(data) is list:
        keys = _keys(data, 1)
        if _has_repeated_key(raw, data, keys):
            raise DuplicateKey(_duplicate_message(raw))
    return data


def _too_deep() -> TooDeep:
    return TooDeep(f"nested deeper than {MAX_DEPTH} levels")


def _keys(value: dict[str, Any] | list[Any], depth: int) -> int:
    """The keys of every object in ``value``; raises when it is nested deeper than MAX_DEPTH.

    Recursive, but never deeper than MAX_DEPTH frames.
    """
    if depth > MAX_DEPTH:
        raise _too_deep()
    if type(value) is dict:
        count = len(value)
        children: Any = value.values()
    else:
        count = 0
        children = value
    for child in children:
        if type(child) is dict or type(child) is list:
            count += _keys(child, depth + 1)
    return count


def lenient_parsers_accept(raw: bytes) -> bool:
    """Whether Python's ``json`` (what FastAPI parses bodies with) takes a body this module
    refuses: NaN, Infinity, lone surrogates, a byte order mark..."""
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def _has_repeated_key(raw: bytes, data: Any, keys: int) -> bool:
    colons = raw.count(b":")
    if colons <= keys:
        return False  # each key as written has its colon: there are no more keys than these
    if b"\\u" not in raw:
        return colons > orjson.dumps(data).count(b":")
    return sum(1 for match in _STRING.finditer(raw) if match.group(1)) > keys


def _duplicate_message(raw: bytes) -> str:
    """Name the repeated key (slow path: only for a body that is refused anyway)."""

    def first_duplicate(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"duplicate key {key[:80]!r} in one object")
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=first_duplicate)
    except DuplicateKey as exc:
        return str(exc)
    except ValueError:
        pass
    return "duplicate key in one object"
