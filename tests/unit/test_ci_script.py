""".ci/run: valid bash that runs `make test` and fails when pytest collects nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CI_RUN = ROOT / ".ci" / "run"
ENSURE_SERVICES = ROOT / "scripts" / "ensure_services.sh"


def code_lines(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_ci_run_calls_make_test() -> None:
    assert any(re.search(r"\bmake\s+test\b", line) for line in code_lines(CI_RUN))


def test_ci_run_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(CI_RUN)], check=True)


def test_ci_run_uses_strict_mode() -> None:
    assert "set -euo pipefail" in code_lines(CI_RUN)


def test_ensure_services_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(ENSURE_SERVICES)], check=True)


def run_ci_with_fake_make(
    tmp_path: Path, make_exit: int, pytest_rc: int | None
) -> subprocess.CompletedProcess[str]:
    """Run a copy of .ci/run whose `make` is a stub writing ``pytest_rc`` to PYTEST_RC_FILE."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(CI_RUN, repo / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_rc = "" if pytest_rc is None else f'echo {pytest_rc} > "${{arg#PYTEST_RC_FILE=}}"'
    fake_make = bin_dir / "make"
    fake_make.write_text(
        "#!/usr/bin/env bash\n"
        'echo "fake make $*"\n'
        'for arg in "$@"; do\n'
        f'  case "$arg" in PYTEST_RC_FILE=*) {write_rc} ;; esac\n'
        "done\n"
        f"exit {make_exit}\n"
    )
    fake_make.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(repo / ".ci" / "run")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_ci_run_fails_when_pytest_collects_no_tests(tmp_path: Path) -> None:
    result = run_ci_with_fake_make(tmp_path, make_exit=2, pytest_rc=5)
    assert result.returncode != 0
    assert "no tests" in result.stderr


def test_ci_run_passes_when_make_test_passes(tmp_path: Path) -> None:
    result = run_ci_with_fake_make(tmp_path, make_exit=0, pytest_rc=0)
    assert result.returncode == 0, result.stderr
    assert "fake make test" in result.stdout


@pytest.mark.parametrize(("make_exit", "pytest_rc"), [(2, 1), (2, None)])
def test_ci_run_fails_when_make_test_fails(
    tmp_path: Path, make_exit: int, pytest_rc: int | None
) -> None:
    result = run_ci_with_fake_make(tmp_path, make_exit=make_exit, pytest_rc=pytest_rc)
    assert result.returncode != 0
    assert "CI FAILED" in result.stderr
