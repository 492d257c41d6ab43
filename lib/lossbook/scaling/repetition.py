"""Data-constrained scaling (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", arXiv:2305.16264).

Repeated data is worth less than fresh data. With U unique tokens seen for D total tokens (R_D = D/U − 1 repeats),
the effective data is
    D' = U · (1 + R_D* · (1 − exp(−R_D / R_D*))),
so each extra epoch is worth exp(−R_D/R_D*) of a fresh one and D' saturates at U·(1 + R_D*) (paper: R_D* = 15.4).
Two-stage fit as in `huggingface/datablations`: first the base law L(D) = E + B/D^β on unique-data runs
(per model size), then, with it frozen, R_D* on the repeated runs by least squares in log loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from lossbook.scaling.fit import fit_power_law


def effective_data(U: float | np.ndarray, D: float | np.ndarray, r_star: float) -> np.ndarray:
    """D' = U·(1 + R*·(1 − exp(−R/R*))), R = D/U − 1 (Muennighoff et al. 2023, eq. 5)."""
    U, D = np.asarray(U, float), np.asarray(D, float)
    R = np.maximum(D / U - 1, 0.0)
    return U * (1 + r_star * (1 - np.exp(-R / r_star)))


def fit_r_star(
    base: Sequence[tuple[float, float, float]], U: Sequence[float], D: Sequence[float], L: Sequence[float], bounds: tuple[float, float] = (0.05, 1e4)
) -> dict[str, float]:
    """R_D* minimising Σ (log L − log(E + B/D'^β))² over repeated runs, with each run's base law (E, B, β) frozen.

    `base[i]` is the frozen (E, B, β) of run i's model size. Returns {"r_star", "rmse_log", "at_bound"}.
    """
    U, D, L = (np.asarray(v, float) for v in (U, D, L))
    E, B, be = (np.array([b[j] for b in base]) for j in range(3))

    def obj(log_r: float) -> float:
        Dp = effective_data(U, D, float(np.exp(log_r)))
        return float(np.sum((np.log(L) - np.log(E + B * Dp ** (-be))) ** 2))

    res = minimize_scalar(obj, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-6})
    r = float(np.exp(res.x))
    at_bound = bool(r < bounds[0] * 1.01 or r > bounds[1] / 1.01)
    return {"r_star": r, "rmse_log": float(np.sqrt(res.fun / len(L))), "at_bound": at_bound}


def fit_base_law(D: Sequence[float], L: Sequence[float]) -> tuple[float, float, float]:
    """(E, B, β) of L(D) = E + B·D^−β on unique-data runs of one model size (Huber/log-space fit)."""
    f = fit_power_law(D, L, n_starts=16)
    return f.E, f.A, f.alpha
