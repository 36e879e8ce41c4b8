#!/usr/bin/env python3
"""Mutation check: every protection has a test that fails when the protection is removed.

Each ``tests/mutations/*.patch`` removes one protection from the code. Its header (``#`` lines
before the diff) names the protection and the tests that must catch it, one file or test id a
line::

    # protection: Relay deletes an outbox entry only after the broker confirmed it
    # tests: tests/events/test_broker_outage.py::test_an_event_the_broker_refuses_stays_...
    # tests: tests/faults/test_broker_outage.py

For each patch this script exports the committed tree (``git archive``, default ``HEAD``) to a
temporary directory, applies the patch there, checks that Python imports the packages from that
copy (not from the editable install of the original tree), and runs the named tests with the
project's venv. The mutant is *caught* when every ``# tests:`` entry (a file or a test id) has
a failing test; it *survives* (MISSED) when any entry still passes: a test named as a guard must
actually guard. Anything else (the patch no longer applies, the tests are not found, pytest
errors out, a timeout) is an ERROR. The exit code is 0 only when every mutant was caught.

With ``--baseline`` the tests named by the selected patches first run once on the unmutated
copy: a test that fails anyway would "catch" every mutant and prove nothing.

    python scripts/check_mutations.py                  # every patch (``make mutants``)
    python scripts/check_mutations.py --only relay     # patches whose file name contains "relay"
    python scripts/check_mutations.py --list           # the patches and their tests
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATCH_DIR = ROOT / "tests" / "mutations"
PACKAGES = (
    "shared_models",
    "cls_runtime",
    "cls_core",
    "api_service",
    "event_jobs",
    "status_ingester",
    "reconciler_stub",
)
DEFAULT_TIMEOUT = 1200.0


@dataclasses.dataclass(frozen=True)
class Mutant:
    path: Path
    protection: str
    tests: tuple[str, ...]
    files: tuple[str, ...]  # the files the diff changes, relative to the tree

    @property
    def name(self) -> str:
        return self.path.stem


@dataclasses.dataclass
class Result:
    mutant: Mutant
    verdict: str  # caught | MISSED | ERROR
    seconds: float
    detail: str = ""
    failed: tuple[str, ...] = ()
    # For each ``# tests:`` entry: whether one of its tests failed.
    caught_by: dict[str, bool] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == "caught"


_HEADER = re.compile(r"^#\s*(protection|tests)\s*:\s*(.*?)\s*$")
_DIFF_FILE = re.compile(r"^\+\+\+ (?:b/)?(\S+)")


def parse_patch(path: Path) -> Mutant:
    protection = ""
    tests: list[str] = []
    files: list[str] = []
    for line in path.read_text().splitlines():
        header = _HEADER.match(line)
        if header and not files:
            key, value = header.groups()
            if key == "protection":
                protection = f"{protection} {value}".strip()
            else:
                tests.append(value)  # one entry a line: test ids may contain spaces
            continue
        changed = _DIFF_FILE.match(line)
        if changed and changed.group(1) != "/dev/null":
            files.append(changed.group(1))
    problems = [
        what
        for what, missing in (
            ("a '# protection:' line", not protection),
            ("a '# tests:' line", not tests),
            ("a diff", not files),
        )
        if missing
    ]
    if problems:
        raise SystemExit(f"{path}: needs {', '.join(problems)}")
    return Mutant(path, protection, tuple(tests), tuple(files))


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def export_tree(ref: str, into: Path) -> None:
    """The committed tree at ``ref`` (not the working tree) as plain files in ``into``."""
    archive = into.parent / f"{into.name}.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), ref], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()


def apply_patch(patch: Path, tree: Path) -> str | None:
    """Apply ``patch`` in ``tree``; the reason when it does not apply cleanly."""
    for check in (True, False):
        args = ["git", "apply", "-p1", *(["--check"] if check else []), str(patch)]
        # --unsafe-paths is not needed: paths are relative, and the tree is not a repository.
        done = subprocess.run(args, cwd=tree, capture_output=True, text=True)
        if done.returncode != 0:
            return (done.stderr or done.stdout).strip() or f"git apply exited {done.returncode}"
    return None


def test_env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # before the editable install of the original tree
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


_PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    print(name, importlib.import_module(name).__file__)
"""


def check_imports(python: str, tree: Path, mutant: Mutant | None) -> str | None:
    """Python must import every package (and each patched module) from ``tree``; else why not."""
    modules = list(PACKAGES)
    if mutant is not None:
        for file in mutant.files:
            if file.endswith(".py") and file.split("/", 1)[0] in PACKAGES:
                modules.append(file.removesuffix(".py").removesuffix("/__init__").replace("/", "."))
    done = subprocess.run(
        [python, "-c", _PROBE, *modules],
        cwd=tree,
        env=test_env(tree),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"import probe failed: {done.stderr.strip()[-500:]}"
    for line in done.stdout.splitlines():
        name, _, file = line.partition(" ")
        print(f"    imports {name} from {file}")
        if not Path(file).resolve().is_relative_to(tree.resolve()):
            return f"{name} is imported from {file}, not from the mutated copy {tree}"
    return None


# "FAILED <test id> - <message>"; a parametrized id may contain spaces.
_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$")


def run_tests(
    python: str, tree: Path, tests: Sequence[str], timeout: float, log: Path
) -> tuple[int | None, tuple[str, ...]]:
    """pytest's exit code (None on timeout) and the ids of the tests that failed."""
    args = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", "--no-header"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*args, *tests],
            cwd=tree,
            env=test_env(tree),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # pytest and the services it started
            proc.wait()
            code = None
    failed = tuple(
        sorted({m.group(1) for line in log.read_text().splitlines() if (m := _FAILED.match(line))})
    )
    return code, failed


def selects(entry: str, test_id: str) -> bool:
    """Whether the ``# tests:`` entry (a file, a test, a class) selects the test ``test_id``."""
    return test_id == entry or test_id.startswith((f"{entry}::", f"{entry}["))


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_mutant(
    mutant: Mutant, ref: str, python: str, workdir: Path, timeout: float, keep: bool
) -> Result:
    started = time.monotonic()
    tree = workdir / mutant.name
    log = workdir / f"{mutant.name}.log"

    def result(verdict: str, detail: str = "", failed: tuple[str, ...] = ()) -> Result:
        return Result(mutant, verdict, time.monotonic() - started, detail, failed)

    try:
        export_tree(ref, tree)
        problem = apply_patch(mutant.path, tree)
        if problem:
            return result("ERROR", f"patch does not apply: {problem}")
        problem = check_imports(python, tree, mutant)
        if problem:
            return result("ERROR", problem)
        code, failed = run_tests(python, tree, mutant.tests, timeout, log)
    finally:
        if not keep:
            shutil.rmtree(tree, ignore_errors=True)
    if code is None:
        return result("ERROR", f"timeout after {timeout:.0f}s (log: {log})")
    if code not in (0, 1):
        return result("ERROR", f"pytest exit code {code} (log: {log}):\n{tail(log)}")
    caught_by = {entry: any(selects(entry, t) for t in failed) for entry in mutant.tests}
    survivors = [entry for entry, caught in caught_by.items() if not caught]
    verdict = "MISSED" if survivors else "caught"
    detail = f"still passing with the protection removed: {survivors} (log: {log})"
    outcome = result(verdict, detail if survivors else "", failed)
    outcome.caught_by = caught_by
    return outcome


def run_baseline(
    mutants: Sequence[Mutant], ref: str, python: str, workdir: Path, timeout: float
) -> Result | None:
    """The named tests on the unmutated tree must pass; the failure when they do not."""
    tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
    tree = workdir / "baseline"
    log = workdir / "baseline.log"
    started = time.monotonic()
    print(f"baseline: {len(tests)} test selections on the unmutated tree", flush=True)
    export_tree(ref, tree)
    try:
        problem = check_imports(python, tree, None)
        code: int | None = None
        failed: tuple[str, ...] = ()
        if not problem:
            code, failed = run_tests(python, tree, tests, timeout, log)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    seconds = time.monotonic() - started
    print(f"baseline: pytest exit code {code} in {seconds:.0f}s", flush=True)
    if problem or code != 0:
        fake = Mutant(Path("baseline"), "(no mutation)", tuple(tests), ())
        detail = problem or f"the unmutated tests fail (exit {code}, log {log}):\n{tail(log)}"
        return Result(fake, "ERROR", seconds, detail, failed)
    return None


def table(results: Sequence[Result]) -> str:
    rows = [
        "| protection | mutant | tests (✔ failed as it must, ✘ still passed) | result | seconds |",
        "|---|---|---|---|---:|",
    ]
    for r in results:
        tests = "<br>".join(
            f"{'✔' if r.caught_by.get(t) else '✘'} `{t}`" if r.caught_by else f"`{t}`"
            for t in r.mutant.tests
        )
        verdict = r.verdict if r.ok else f"**{r.verdict}**"
        rows.append(
            f"| {r.mutant.protection} | `{r.mutant.name}` | {tests} | {verdict} | {r.seconds:.0f} |"
        )
    return "\n".join(rows)


MARKDOWN_INTRO = """# Mutation check results

Written by `make mutants` (`scripts/check_mutations.py`): each patch in `tests/mutations/`
removes one protection from the committed tree, and the tests it names must then fail. A
mutant is *caught* when every test entry it names has a failing test, *MISSED* when one of
them still passes.
"""


def write_markdown(path: Path, commit: str, baseline: bool, report: str, summary: str) -> None:
    dirty = " (the working tree had uncommitted changes)" if git("status", "--porcelain") else ""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    checked = "the named tests passed on the unmutated tree first" if baseline else "no baseline"
    path.write_text(
        f"{MARKDOWN_INTRO}\nRun {when} on commit `{commit}`{dirty}; {checked}.\n\n"
        f"{report}\n\n{summary}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="patch name substrings to run")
    parser.add_argument("--list", action="store_true", help="list the patches and stop")
    parser.add_argument("--ref", default="HEAD", help="commit whose tree is mutated [HEAD]")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="per mutant, s")
    parser.add_argument("--baseline", action="store_true", help="run the tests unmutated first")
    parser.add_argument("--keep", action="store_true", help="keep the mutated trees")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)

    patches = sorted(PATCH_DIR.glob("*.patch"))
    mutants = [parse_patch(p) for p in patches]
    if args.only:
        mutants = [m for m in mutants if any(s in m.name for s in args.only)]
    if not mutants:
        print("no mutation patches selected", file=sys.stderr)
        return 2
    if args.list:
        for m in mutants:
            print(f"{m.name}: {m.protection}\n    " + "\n    ".join(m.tests))
        return 0

    commit = git("rev-parse", "--short", args.ref)
    started = time.monotonic()
    results: list[Result] = []
    workdir = Path(tempfile.mkdtemp(prefix="cls-mutants-"))
    print(f"mutating {args.ref} ({commit}); logs in {workdir}", flush=True)
    if args.baseline:
        failure = run_baseline(mutants, args.ref, args.python, workdir, args.timeout)
        if failure is not None:
            print(f"baseline ERROR: {failure.detail}", file=sys.stderr)
            return 1
    for index, mutant in enumerate(mutants, 1):
        print(f"[{index}/{len(mutants)}] {mutant.name}: {mutant.protection}", flush=True)
        r = run_mutant(mutant, args.ref, args.python, workdir, args.timeout, args.keep)
        results.append(r)
        print(f"    {r.verdict} in {r.seconds:.0f}s {r.detail}".rstrip(), flush=True)
    total = time.monotonic() - started

    report = table(results)
    survivors = [r for r in results if not r.ok]
    summary = (
        f"{len(results) - len(survivors)}/{len(results)} mutants caught, "
        f"{sum(r.verdict == 'MISSED' for r in results)} missed, "
        f"{sum(r.verdict == 'ERROR' for r in results)} errors, in {total / 60:.1f} min"
    )
    print(f"\n{report}\n\n{summary}")
    if args.markdown and args.only:
        print(f"(a partial run: {args.markdown} left as it was)")
    elif args.markdown:
        write_markdown(args.markdown, commit, args.baseline, report, summary)
    for r in survivors:
        print(f"\n{r.verdict} {r.mutant.name}: {r.detail}", file=sys.stderr)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
