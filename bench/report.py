"""Figures, the printed table, and bench/RESULTS.md (machine, date, load, table)."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One line of the table: a measured value, its baseline and the target it is held to."""

    section: str
    name: str
    value: str
    baseline: str = "-"
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


HEADER = ("figure", "measured", "baseline", "ratio", "target", "met", "note")


def _cells(figure: Figure) -> tuple[str, ...]:
    met = {True: "yes", False: "**NO**", None: "-"}[figure.met]
    ratio = "-" if figure.ratio is None else f"{figure.ratio:.2f}x"
    return (figure.name, figure.value, figure.baseline, ratio, figure.target, met, figure.note)


def render_table(figures: Iterable[Figure]) -> str:
    """A markdown table per section: readable printed as is, and rendered in review."""
    out: list[str] = []
    section = None
    for figure in figures:
        if figure.section != section:
            section = figure.section
            out += ["", f"### {section}", "", _row(HEADER), _row(("---",) * len(HEADER))]
        out.append(_row(_cells(figure)))
    return "\n".join(out).lstrip("\n") + "\n"


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def _first_line(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def uptime() -> str:
    """`uptime` as printed (load averages included), or the load averages alone."""
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_lines(generator: str, load_at_start: str) -> list[str]:
    mem_kb = _first_line("/proc/meminfo", "MemTotal").split()[0]
    mem = f"{int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit() else "unknown"
    return [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {_git_commit()}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {_first_line('/proc/cpuinfo', 'model name')},"
        f" {mem} memory, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}",
        f"- `uptime` at the start of the run: {load_at_start}",
        f"- `uptime` at the end of the run: {uptime()}",
        f"- load generator: {generator}",
    ]


RESULTS_INTRO = """\
# Benchmark results

Written by `make bench` (`python -m bench`); `BENCH_QUICK=1` runs a smoke version that does not
touch this file. Every figure is the median over several rounds; each ratio compares the API with a
bare baseline measured in the same run on the same machine (rounds interleaved), so the ratios are
what to compare across runs, not the absolute numbers of a shared 2-core machine.
"""


def write_results(path: Path, figures: list[Figure], machine: list[str], notes: list[str]) -> None:
    body = [RESULTS_INTRO, "## Run", "", *machine, ""]
    body += ["## Figures", "", render_table(figures)]
    if notes:
        body += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    path.write_text("\n".join(body))
