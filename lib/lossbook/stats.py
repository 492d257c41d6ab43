"""Small statistics for multi-seed comparisons: mean ± std and the paired bootstrap CI of a difference.

Verdict rule used by the notebooks: a difference between two methods counts only if the paired bootstrap
95% CI of ``mean(a − b)`` across seeds excludes 0; otherwise the claim is inconclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapCI:
    """Mean paired difference ``mean(a − b)`` and its percentile bootstrap CI ``[low, high]``."""

    diff: float
    low: float
    high: float
    n: int
    alpha: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def sign(self) -> int:
        """+1 when the CI lies above 0, −1 below, 0 when it contains 0."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def __str__(self) -> str:
        return f"{self.diff:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def mean_std(x: Sequence[float] | np.ndarray, ddof: int = 1) -> tuple[float, float]:
    """(mean, sample std with ``ddof``); std is 0.0 for a single value."""
    a = np.asarray(x, dtype=float).ravel()
    if a.size == 0:
        raise ValueError("mean_std of an empty sequence")
    return float(a.mean()), float(a.std(ddof=ddof)) if a.size > ddof else 0.0


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap CI of ``mean(a_i − b_i)`` over paired units (seeds).

    Resample the n paired differences ``d_i = a_i − b_i`` with replacement ``n_boot`` times; the CI is the
    ``[α/2, 1 − α/2]`` quantiles of the resampled means (Efron & Tibshirani 1993, ch. 13). With n = 1 the CI
    collapses to the point (no evidence): callers should treat that as inconclusive by requiring n ≥ 2.
    """
    a_, b_ = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a_.shape != b_.shape or a_.size == 0:
        raise ValueError(f"paired samples must have the same non-zero length; got {a_.size} and {b_.size}")
    d = a_ - b_
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(float(d.mean()), float(lo), float(hi), int(d.size), alpha)


def verdict_greater(a: Sequence[float], b: Sequence[float], **kw) -> tuple[bool | None, BootstrapCI]:
    """Pre-set rule for "a > b": True if the CI of mean(a − b) lies above 0, False if below, None otherwise.

    With fewer than 2 pairs the result is None (inconclusive).
    """
    ci = paired_bootstrap_ci(a, b, **kw)
    if ci.n < 2:
        return None, ci
    return {1: True, -1: False, 0: None}[ci.sign()], ci
