"""The book's one resampling module: the bootstrap (rows or whole groups), percentile CIs, mean ± std.

Every bootstrap in the book draws its resamples here, with `np.random.default_rng(seed)` and
`integers(0, n, (n_boot, n))` (Efron & Tibshirani 1993, ch. 6 and 13). Verdict rules over replicates
live in `lossbook.replicate`, which uses these and scipy.stats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BootstrapCI:
    """A statistic (for paired data: ``mean(a − b)``) and its percentile bootstrap CI ``[low, high]``."""

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

    def astuple(self) -> tuple[float, float, float]:
        """(statistic, low, high)."""
        return self.diff, self.low, self.high

    def __str__(self) -> str:
        return f"{self.diff:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def format_ci(ci: BootstrapCI, scale: float = 100.0, unit: str = " pp") -> str:
    """``+1.23 pp [+0.45, +2.01]``: the statistic and its CI, scaled (default: fractions as points)."""
    return f"{scale * ci.diff:+.2f}{unit} [{scale * ci.low:+.2f}, {scale * ci.high:+.2f}]"


def mean_std(x: Sequence[float] | np.ndarray, ddof: int = 1) -> tuple[float, float]:
    """(mean, sample std with ``ddof``); std is 0.0 for a single value."""
    a = np.asarray(x, dtype=float).ravel()
    if a.size == 0:
        raise ValueError("mean_std of an empty sequence")
    return float(a.mean()), float(a.std(ddof=ddof)) if a.size > ddof else 0.0


def format_mean_std(x: Sequence[float] | np.ndarray, scale: float = 100.0, digits: int = 2) -> str:
    """``12.34 ± 0.56`` (sample std, ddof 1; 0 for one value), scaled (default: fractions as percent)."""
    m, s = mean_std(x)
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def resample_indices(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``n_boot`` bootstrap resamples of ``range(n)``: an (n_boot, n) array of row indices with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_samples(
    statistic: Callable[[np.ndarray], Any], n: int, n_boot: int, seed: int = 0, groups: Sequence[Any] | None = None
) -> list[Any]:
    """``statistic(row_indices)`` on ``n_boot`` resamples of ``n`` rows, or of whole ``groups`` when given
    (a cluster bootstrap: every row of a drawn group comes along, e.g. all points of one training run)."""
    if groups is None:
        return [statistic(idx) for idx in resample_indices(n, n_boot, seed)]
    g = np.asarray(groups)
    members = [np.flatnonzero(g == u) for u in np.unique(g)]
    return [statistic(np.concatenate([members[i] for i in pick])) for pick in resample_indices(len(members), n_boot, seed)]


def _as_array(a: Any) -> np.ndarray:
    x = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)
    return x.astype(np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64)


def bootstrap_ci(
    metric: Callable[..., float], *arrays: Any, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap over examples: (metric on the full data, lower, upper) at level 1 − alpha.

    ``metric(*arrays)`` is re-evaluated on ``n_boot`` resamples of the rows (the same rows for every array),
    e.g. ``bootstrap_ci(ece, probs, labels)``. Kumar et al. 2019 report such CIs for calibration errors.
    """
    arrs = [_as_array(a) for a in arrays]
    stats = np.asarray(bootstrap_samples(lambda idx: metric(*(a[idx] for a in arrs)), len(arrs[0]), n_boot, seed))
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(metric(*arrs)), float(lo), float(hi)


def paired_bootstrap_diff(
    metric: Callable[..., float], probs_a: Any, probs_b: Any, labels: Any, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Paired bootstrap over examples of metric(a) − metric(b) on the same rows: (difference, lower, upper)."""
    pa, pb, y = _as_array(probs_a), _as_array(probs_b), _as_array(labels)
    diffs = np.asarray(bootstrap_samples(lambda idx: metric(pa[idx], y[idx]) - metric(pb[idx], y[idx]), len(y), n_boot, seed))
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return float(metric(pa, y) - metric(pb, y)), float(lo), float(hi)


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = 10000, alpha: float = 0.05, seed: int = 0
) -> BootstrapCI:
    """Percentile bootstrap CI of ``mean(a_i − b_i)`` over paired units (seeds).

    Resample the n paired differences ``d_i = a_i − b_i`` with replacement ``n_boot`` times; the CI is the
    ``[α/2, 1 − α/2]`` quantiles of the resampled means. With n = 1 the CI collapses to the point (no
    evidence): callers must treat that as inconclusive by requiring n ≥ 2 (`lossbook.replicate` does).
    """
    a_, b_ = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a_.shape != b_.shape or a_.size == 0:
        raise ValueError(f"paired samples must have the same non-zero length; got {a_.size} and {b_.size}")
    d = a_ - b_
    means = d[resample_indices(d.size, n_boot, seed)].mean(1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(float(d.mean()), float(lo), float(hi), int(d.size), alpha)


def mean_ci(values: Sequence[float] | np.ndarray, n_boot: int = 10000, alpha: float = 0.05, seed: int = 0) -> BootstrapCI:
    """Percentile bootstrap CI of a mean (e.g. of per-seed differences); ``paired_bootstrap_ci(values, 0)``."""
    v = np.asarray(values, dtype=float).ravel()
    return paired_bootstrap_ci(v, np.zeros_like(v), n_boot=n_boot, alpha=alpha, seed=seed)


def percentile_ci(samples: dict[str, np.ndarray], level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Per key, the central ``level`` percentile interval of bootstrap samples (NaNs ignored)."""
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {k: (float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))) for k, v in samples.items()}


def verdict_greater(a: Sequence[float], b: Sequence[float], **kw) -> tuple[bool | None, BootstrapCI]:
    """Pre-set rule for "a > b": True if the CI of mean(a − b) lies above 0, False if below, None otherwise.

    With fewer than 2 pairs the result is None (inconclusive).
    """
    ci = paired_bootstrap_ci(a, b, **kw)
    if ci.n < 2:
        return None, ci
    return {1: True, -1: False, 0: None}[ci.sign()], ci
