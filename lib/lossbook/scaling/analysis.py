"""Small analyses shared by the scaling notebooks: residual spread across groups, decades, sweep tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lossbook.scaling.fit import PowerLawFit, fit_power_law


def decades(x: Sequence[float]) -> float:
    """log10(max x / min x)."""
    x = np.asarray(x, float)
    return float(np.log10(x.max() / x.min()))


def group_residual_spread(x: Sequence[float], y: Sequence[float], groups: Sequence[object], fit: PowerLawFit | None = None) -> dict[str, object]:
    """Fit one power law L = E + A·x^−α to all points, then measure how far apart the groups (e.g. depths) sit.

    Residuals are r = log L − log L̂ (relative errors). Spread = RMS over groups of each group's mean residual
    (the systematic offset of a depth from the common curve; Kaplan et al. 2020 Fig. 6 argue non-embedding N
    collapses depths and total N does not). Returns {"fit", "spread", "group_means", "rms_residual"}.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    g = np.asarray(groups)
    fit = fit or fit_power_law(x, y, n_starts=16)
    r = np.log(y) - np.log(fit.predict(x))
    means = {str(k): float(r[g == k].mean()) for k in np.unique(g)}
    spread = float(np.sqrt(np.mean(np.square(list(means.values())))))
    return {"fit": fit, "spread": spread, "group_means": means, "rms_residual": float(np.sqrt(np.mean(r**2)))}
