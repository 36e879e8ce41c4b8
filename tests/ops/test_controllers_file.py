"""A process does not start with a bad registry of controllers (CLS_CONTROLLERS_FILE) or a token
for a controller it does not list: exit code 2 and one line on stderr naming the file or the
setting and the problem, before anything is served or consumed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cls_runtime.process import EXIT_BAD_CONFIGURATION
from tests.support.redis_server import free_port
from tests.support.registry import entry, write_registry

pytestmark = [pytest.mark.e2e]

PROCESSES = ["api_service", "status_ingester", "event_jobs", "reconciler_stub"]


def start(package: str, namespace: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m package`` with ``env`` over this one's; it is expected to exit at once (a
    process that starts anyway times out, in a namespace and on a port of its own)."""
    own = {"CLS_NAMESPACE": namespace, "CLS_HOST": "127.0.0.1", "CLS_PORT": str(free_port())}
    return subprocess.run(
        [sys.executable, "-m", package],
        env={**os.environ, **own, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("package", PROCESSES)
def test_a_bad_controllers_file_stops_the_process_with_one_line(
    package: str, namespace: str, tmp_path: Path
) -> None:
    path = write_registry(tmp_path / "controllers.yaml", [entry("a", ["pods"], ["gcp"], True)])

    done = start(package, namespace, CLS_CONTROLLERS_FILE=str(path))

    assert done.returncode == EXIT_BAD_CONFIGURATION, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{package}: cannot start: CLS_CONTROLLERS_FILE={path}: "), line
    assert "controllers[0] (a).kinds[0]: Input should be 'cluster' or 'nodepool'" in line


def test_a_token_for_an_unregistered_controller_stops_the_api(namespace: str) -> None:
    done = start("api_service", namespace, CLS_CONTROLLER_TOKENS="evil-controller=evil-token")

    assert done.returncode == EXIT_BAD_CONFIGURATION, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("api_service: cannot start: CLS_CONTROLLER_TOKENS: evil-controller")
    assert "evil-token" not in line
