"""Side-by-side timing shared by the ratio benchmarks: alternating rounds, per-pass ratios.

Each round times both sides, alternating which goes first, so a change in machine load during
the run hits both; the ratio is taken per round (peer seconds / ours), and the median and range
of those ratios are reported, never a ratio of medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(
    rounds: int, a: Callable[[], object], b: Callable[[], object]
) -> tuple[list[float], list[float]]:
    """Per-round seconds of ``a`` and ``b``, alternating which goes first."""
    ta, tb = [], []
    for r in range(rounds):
        for side in "ab" if r % 2 == 0 else "ba":
            (ta if side == "a" else tb).append(timed(a if side == "a" else b))
    return ta, tb


def ratio_range(numerators: list[float], denominators: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-round ratios ``numerators[i] / denominators[i]``."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)
