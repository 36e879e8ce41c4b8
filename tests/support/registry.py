"""Registries of controllers for tests: the file with optional guests, and files written on the fly.

Without a setting the services use the default registry (the six simulated controllers, each
required for its own platform and kind), as the tests do. A test that reports as another
controller registers it: ``@with_extra_controllers`` (a module's ``pytestmark`` or a test's
marker) points ``settings`` at ``controllers-with-extras.yaml`` and gives its optional GCP
nodepool controller a token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CONTROLLER_TOKENS
from tests.conftest import EXTRAS_FILE as EXTRAS_FILE  # defined there for its session fixture

# A second, optional controller of GCP nodepools in EXTRAS_FILE, with a token of its own.
OPTIONAL = "gcp-autoscaler-controller"
OPTIONAL_TOKEN = "gcp-autoscaler-token"
EXTRA_TOKENS = {**CONTROLLER_TOKENS, OPTIONAL: OPTIONAL_TOKEN}


def tokens_setting(tokens: dict[str, str]) -> str:
    """``CLS_CONTROLLER_TOKENS`` for ``tokens`` (name -> token)."""
    return ",".join(f"{name}={token}" for name, token in tokens.items())


with_extra_controllers = pytest.mark.settings_update(
    controllers_file=EXTRAS_FILE, controller_tokens=tokens_setting(EXTRA_TOKENS)
)


def optional_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPTIONAL_TOKEN}"}


def entry(name: str, kinds: list[str], platforms: list[str], required: bool) -> dict[str, Any]:
    return {"name": name, "kinds": kinds, "platforms": platforms, "required": required}


def write_registry(path: Path, entries: list[dict[str, Any]]) -> Path:
    """A registry file of ``entries`` (each one as ``entry`` builds it) at ``path``."""
    path.write_text(yaml.safe_dump({"controllers": entries}))
    return path


def default_entries() -> list[dict[str, Any]]:
    """The six simulated controllers, as the default registry has them."""
    return [
        entry(f"{platform}-{kind}-controller", [kind], [platform], True)
        for platform in ("gcp", "aws", "azure")
        for kind in ("nodepool", "cluster")
    ]
