"""The one strict JSON parser for every body the services accept: HTTP requests and queue messages.

On top of orjson's RFC 8259 parsing (no NaN or Infinity, no invalid UTF-8 or lone surrogates),
it refuses what a lenient parser silently accepts:

- duplicate keys in one object: ``json`` and pydantic keep the last one, so ``{"nodeCount": 3,
  "nodeCount": 300}`` would mean something other than what an auditor reading the body sees;
- nesting deeper than ``MAX_DEPTH``: no valid document comes close, and a deep one makes
  recursive code (``json.loads``, validators) fail with a RecursionError;
- more than ``MAX_KEYS`` keys or ``MAX_ITEMS`` array items in all, or an object of more than
  ``MAX_OBJECT_KEYS`` keys: far more than any valid document has. Parsing and validating cost
  CPU per key and item (each unknown or bad one is a pydantic error to convert): a body of
  70,000 unknown keys cost as much as 300 creates. The totals are counted on the bytes, before
  parsing.

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
from collections.abc import Iterable
from typing import Any

import orjson

# Deeper than any valid document (a nodepool body is ~6 levels, a status report ~20).
MAX_DEPTH = 32

# The largest valid objects (a nodepool's labels, a report's metadata) have 64 keys, the largest
# valid bodies about 300 (a nodepool with every label and taint); these bounds leave room for
# free-form metadata, and keep the errors a body can cause to a few milliseconds of CPU.
MAX_OBJECT_KEYS = 512
MAX_KEYS = 2048
# The longest valid arrays hold 64 items (taints); free-form metadata may hold more.
MAX_ITEMS = 10_000

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


class TooMany(StrictJsonError):
    """Valid JSON, but far larger in keys or items than any document the services accept."""


class TooManyItems(TooMany):
    pass


class TooManyKeys(TooMany):
    """Too many keys in all, or in one object: the message says which one."""

    def __init__(self, problem: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(f"{_dotted(path) if path else 'the body'} {problem}")
        self.problem = problem
        self.path = path

    def inside(self, step: str | int) -> TooManyKeys:
        """The same problem, one level further from the top (filled in on the way up)."""
        return TooManyKeys(self.problem, (step, *self.path))


def loads(raw: bytes) -> Any:
    _count_before_parsing(raw)
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


def _count_before_parsing(raw: bytes) -> None:
    """Refuse a body of too many keys or array items before parsing it: parsing 70,000 keys
    costs several times what a whole valid request does, and so do 200,000 items.

    Every key is followed by a colon and every item but the last of an array by a comma, outside
    any string: only a body with more colons or commas than the bounds allow (none valid) is
    looked at more closely.
    """
    if raw.count(b":") <= MAX_KEYS and raw.count(b",") < MAX_ITEMS:
        return
    structure = _outside_strings(raw)
    keys = structure.count(b":")
    # Each comma separates two keys or two items: there are more items than this difference.
    too_many_items = structure.count(b",") - keys >= MAX_ITEMS
    if keys <= MAX_KEYS and not too_many_items:
        return
    if _OPENED_TOO_DEEP.search(structure.translate(None, b":,")):
        raise _too_deep()  # {"a":{"a":... has as many keys as levels: the depth is the news
    if keys > MAX_KEYS:
        raise TooManyKeys(f"has {keys} keys in all, more than the {MAX_KEYS} allowed")
    raise TooManyItems(f"the body has more than the {MAX_ITEMS} array items allowed")


def _outside_strings(raw: bytes) -> bytes:
    """The brackets, colons and commas of a JSON text that are outside its strings, in C.

    Escaped backslashes and quotes are dropped first, so that each quote left opens or closes a
    string; then every byte but quotes, brackets, colons and commas; then pairs of adjacent
    quotes (an empty string, or the end of one and the start of the next): each quote left still
    opens or closes a string, and what is still between two of them is inside strings.
    """
    text = raw
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = text.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in text:  # some strings hold colons or commas: keep what is outside them
        text = b"".join(text.split(b'"')[0::2])
    return text


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'":,[]{}')
# More levels opened one after the other than MAX_DEPTH allows (brackets outside strings only).
_OPENED_TOO_DEEP = re.compile(rb"[\[{]{%d}" % (MAX_DEPTH + 1))


def _too_deep() -> TooDeep:
    return TooDeep(f"nested deeper than {MAX_DEPTH} levels")


def _keys(value: dict[str, Any] | list[Any], depth: int) -> int:
    """The keys of every object in ``value``; raises when it is nested deeper than MAX_DEPTH or
    an object has more than MAX_OBJECT_KEYS keys (the total was bounded before parsing).

    Recursive, but never deeper than MAX_DEPTH frames.
    """
    if depth > MAX_DEPTH:
        raise _too_deep()
    if type(value) is dict:
        count = len(value)
        if count > MAX_OBJECT_KEYS:
            raise TooManyKeys(
                f"has {count} keys, more than the {MAX_OBJECT_KEYS} allowed in one object"
            )
        children: Any = value.values()
    else:
        count = 0
        children = value
    for child in children:
        if type(child) is dict or type(child) is list:
            try:
                count += _keys(child, depth + 1)
            except TooManyKeys as exc:
                raise exc.inside(_step(value, child)) from None
    return count


def _step(parent: dict[str, Any] | list[Any], child: Any) -> str | int:
    """The key or index of ``child`` in ``parent`` (looked up only on the way to an error)."""
    items: Iterable[tuple[str | int, Any]] = (
        parent.items() if type(parent) is dict else enumerate(parent)
    )
    return next(step for step, value in items if value is child)


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step[:64]}" if text else step[:64]  # a client's key: cut short
    return text


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
