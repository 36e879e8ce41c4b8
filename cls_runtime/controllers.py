"""Reading the registry of controllers from the file ``CLS_CONTROLLERS_FILE`` names.

The file is YAML::

    controllers:
      - {name: gcp-nodepool-controller, kinds: [nodepool], platforms: [gcp], required: true}
      - {name: gcp-autoscaler, kinds: [nodepool], platforms: [gcp], required: false}

Without the setting the registry is ``shared_models.controllers.DEFAULT_REGISTRY``. A file that
cannot be read or is not a valid registry raises ``RegistryError``, one line naming the file and
what is wrong, so that a process refuses to start with it rather than trusting a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared_models.controllers import DEFAULT_REGISTRY, ControllerRegistry

# Errors listed in the one line: a file with many mistakes is fixed a few at a time anyway.
_MAX_ERRORS = 3


class RegistryError(ValueError):
    """``CLS_CONTROLLERS_FILE`` names a file that is not a valid registry (one line)."""


def load_registry(path: Path | None) -> ControllerRegistry:
    """The registry in ``path``, or the default registry when there is no file."""
    if path is None:
        return DEFAULT_REGISTRY
    where = f"CLS_CONTROLLERS_FILE={path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{where}: cannot be read ({_one_line(str(exc))})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{where}: not valid YAML ({_one_line(str(exc))})") from None
    if not isinstance(data, dict):
        raise RegistryError(
            f"{where}: must be a mapping with a 'controllers' list, not "
            f"{'nothing' if data is None else type(data).__name__}"
        )
    try:
        return ControllerRegistry.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(f"{where}: {_errors(exc, data)}") from None


def _errors(exc: ValidationError, data: dict[str, Any]) -> str:
    listed = [_error(error, data) for error in exc.errors()[:_MAX_ERRORS]]
    more = exc.error_count() - len(listed)
    return "; ".join(listed) + (f" (and {more} more)" if more > 0 else "")


def _error(error: Any, data: dict[str, Any]) -> str:
    """``controllers[2] (gcp-x).kinds[0]: Input should be 'cluster' or 'nodepool' (got 'pods')``"""
    path = ""
    for position, part in enumerate(error["loc"]):
        path += f"[{part}]" if isinstance(part, int) else ("." if path else "") + str(part)
        if position == 1 and error["loc"][0] == "controllers":
            path += _entry_name(data, part)
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] not in ("missing", "value_error") and "input" in error:
        message += f" (got {error['input']!r:.60})"
    return f"{path}: {message}" if path else message


def _entry_name(data: dict[str, Any], index: Any) -> str:
    """`` (name)`` for an entry that has one: "controllers[4]" alone is hard to find."""
    entries = data.get("controllers")
    if isinstance(entries, list) and isinstance(index, int) and index < len(entries):
        entry = entries[index]
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            return f" ({entry['name'][:63]})"
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())
