"""Structured logs for the three services: one JSON object per line (``CLS_LOG_FORMAT=json``, the
default) or ``key=value`` text for a terminal (``text``).

Every line carries, besides time, level, logger and message:

- the fields of the current context (``bind``): the API binds the request id for the whole
  request, then the resource's ids and generation once it knows them, so that every line logged
  while serving a request, its access line included, says which request and which resource;
- the fields passed with ``extra=`` (``nodepool_id``, ``cluster_id``, ``generation``...).

Nothing here reads headers: credentials never reach a log line unless code puts them in a
message or an ``extra``, and none does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

# The current request's (or job's) fields. A dict, changed in place by ``bind``, so that fields
# bound deep in a request are seen by the access line logged at its end.
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("cls_log_context", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)
# The record attribute holding the context as it was when the record was made.
_CONTEXT_ATTR = "cls_context"


def install_record_context() -> None:
    """Make every LogRecord carry the current context (idempotent).

    Taken when the record is made, not when it is formatted: a handler may format later, or
    elsewhere (pytest's caplog, a queue handler), outside the request.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_cls_context", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = _CONTEXT.get()
        if context:
            setattr(record, _CONTEXT_ATTR, dict(context))
        return record

    factory._cls_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


@contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """A fresh context for a request or a job; lines logged inside carry ``fields``."""
    token = _CONTEXT.set(dict(fields))
    try:
        yield _CONTEXT.get() or {}
    finally:
        _CONTEXT.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context (no-op outside one); None values are left out."""
    context = _CONTEXT.get()
    if context is not None:
        context.update({k: v for k, v in fields.items() if v is not None})


def resource_log_fields(view: dict[str, Any]) -> dict[str, Any]:
    """The log fields of a resource as the API shows it: its ids and generation."""
    if "cluster_id" in view:  # a nodepool
        return {
            "nodepool_id": view.get("id"),
            "cluster_id": view["cluster_id"],
            "generation": view.get("generation"),
        }
    return {"cluster_id": view.get("id"), "generation": view.get("generation")}


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get() or {})


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context and ``extra`` fields of a record (``extra`` wins on a clash)."""
    fields = dict(getattr(record, _CONTEXT_ATTR, None) or {})
    for key, value in record.__dict__.items():
        if key not in _STANDARD and key != _CONTEXT_ATTR and not key.startswith("_"):
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(record_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = record_fields(record)
        if not fields:
            return text
        head, newline, tail = text.partition("\n")  # a traceback stays below the fields
        pairs = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} {pairs}{newline}{tail}"


def without_password(url: str) -> str:
    """A connection URL fit for a log line: ``redis://:secret@host`` -> ``redis://:***@host``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def configure_logging(level: str, fmt: str) -> None:
    """The root handler for a service process (stderr); uvicorn's loggers propagate to it."""
    install_record_context()
    _skip_unused_record_attributes()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())


def _skip_unused_record_attributes() -> None:
    """Stop ``logging`` from filling record attributes no line of ours prints.

    Finding the caller's file and line walks the stack on every record; with the access line
    logged for every request, that walk alone cost more CPU than the Redis read of a GET.
    Thread and process names are looked up per record too. None of them is in our formats.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the switch logging/__init__.py documents for this
