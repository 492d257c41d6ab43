"""Data-constrained scaling (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", arXiv:2305.16264).

Repeated data is worth less than fresh data. With U unique tokens seen for D total tokens (R_D = D/U − 1 repeats),
the effective data is
    D' = U · (1 + R_D* · (1 − exp(−R_D / R_D*))),
so each extra epoch is worth exp(−R_D/R_D*) of a fresh one and D' saturates at U·(1 + R_D*) (paper: R_D* = 15.4).
Two-stage fit as in `huggingface/datablations`: first the base law L(D) = E + B/D^β on unique-data runs
(per model size), then, with it frozen, R_D* on the repeated runs by least squares in log loss. On a source with
an exact entropy rate (`TaskLanguage`) the base law's E is known, so `fit_base_law_fixed_e` fits only (B, β).
Protocol helpers: `pool_tokens` sizes a repeated pool for an exact epoch count, `duplicate_share` checks that a
reference stream is truly single-pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
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


def fit_base_law_fixed_e(D: Sequence[float], L: Sequence[float], E: float) -> tuple[float, float, float]:
    """(E, B, β) of L(D) = E + B·D^−β with E known (the source's Bayes loss): least squares of log(L − E) on log D.

    Raises if some L <= E (a law with this E cannot pass through it)."""
    D, L = np.asarray(D, float), np.asarray(L, float)
    if np.any(L <= E):
        raise ValueError(f"fit_base_law_fixed_e: losses {L.tolist()} must all exceed E = {E}")
    slope, icpt = np.polyfit(np.log(D), np.log(L - E), 1)
    return float(E), float(np.exp(icpt)), float(-slope)


def pool_tokens(steps: int, batch_size: int, block_size: int, epochs: int) -> int:
    """`unique_tokens` for `TaskLanguage.repeat_batch_fn` such that a run of steps·batch_size windows of
    block_size + 1 tokens passes over its pool exactly `epochs` times: (steps·batch_size // epochs)·(block_size + 1)."""
    n_windows = steps * batch_size // epochs
    if n_windows < 1:
        raise ValueError(f"pool_tokens: {steps}·{batch_size} windows cannot make {epochs} epochs")
    return n_windows * (block_size + 1)


def duplicate_share(windows: torch.Tensor) -> float:
    """Share of rows of `windows` ([n, T]) that repeat an earlier row: 0 for a single pass over distinct windows,
    1 − 1/e for e full epochs over a pool of distinct windows."""
    n = windows.shape[0]
    return 1.0 - torch.unique(windows, dim=0).shape[0] / max(n, 1)


def stream_windows(get_batch, steps: int) -> torch.Tensor:
    """The [steps·batch, T + 1] training windows a `get_batch(step) -> (x, y)` serves over `steps` steps."""
    rows = []
    for s in range(steps):
        x, y = get_batch(s)
        rows.append(torch.cat([x, y[:, -1:]], dim=1))
    return torch.cat(rows)
