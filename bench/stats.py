"""Medians over rounds, and rounds interleaved between the API and its baseline."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def interleaved(
    rounds: int, subject: Callable[[int], T], baseline: Callable[[int], T]
) -> tuple[list[T], list[T]]:
    """Alternate subject and baseline rounds (ABBA...) so slow drift of the machine hits both."""
    subjects: list[T] = []
    baselines: list[T] = []
    for i in range(rounds):
        if i % 2 == 0:
            subjects.append(subject(i))
            baselines.append(baseline(i))
        else:
            baselines.append(baseline(i))
            subjects.append(subject(i))
    return subjects, baselines


def paired_ratio(subjects: Sequence[float], baselines: Sequence[float]) -> float:
    """Median of the per-round ratios (each pair ran back to back under the same load)."""
    ratios = [s / b for s, b in zip(subjects, baselines, strict=True) if b > 0]
    return median(ratios)
