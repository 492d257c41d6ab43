"""Post-hoc calibrators: temperature scaling (and friends), fitted on a held-out validation split.

Temperature scaling (Guo, Pleiss, Sun, Weinberger 2017, "On Calibration of Modern Neural Networks", ICML):
p = softmax(z / T) with one scalar T > 0 chosen to minimise the validation NLL

    T* = argmin_T  -(1/n) sum_i log softmax(z_i / T)_{y_i}.

Because T > 0 rescales every logit of a sample by the same factor, argmax_k z_k / T = argmax_k z_k:
accuracy is unchanged by construction. We minimise over log T with a bounded scalar search
(scipy `minimize_scalar(method="bounded")`), which cannot stop early the way the LBFGS loop in the
reference implementation (lr 0.01, 50 iterations) can. The NLL in T is smooth and, in 1/T, convex
(it is a log-sum-exp of linear functions of 1/T minus a linear term), so the search finds the optimum.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from lossbook.metrics.calibration import ArrayLike, as_numpy

__all__ = [
    "apply_temperature",
    "fit_temperature",
    "fit_temperature_ece_grid",
    "nll_at_temperature",
    "nll_curve",
]


def _logits_labels(logits: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    z = as_numpy(logits)
    y = as_numpy(labels, np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"logits must be (n, C) and labels (n,), got {z.shape} and {y.shape}")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or inf")
    return z, y


def nll_at_temperature(logits: ArrayLike, labels: ArrayLike, temperature: float) -> float:
    """Mean NLL of softmax(z / T) at the true labels, computed stably in float64."""
    z, y = _logits_labels(logits, labels)
    s = z / float(temperature)
    m = s.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(1))
    return float(np.mean(lse - s[np.arange(len(y)), y]))


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    bounds: tuple[float, float] = (1e-2, 1e2),
    xatol: float = 1e-6,
) -> float:
    """Temperature T* = argmin_T NLL(softmax(z / T), y) (Guo et al. 2017), by bounded search on log T.

    logits (n, C) and labels (n,) must come from a validation split, never the test split. Returns a
    python float in `bounds`; a value at a bound (e.g. perfectly separable validation data drives T -> 0)
    is returned as is, and a warning is printed so the caller can see it.
    """
    z, y = _logits_labels(logits, labels)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    res = minimize_scalar(
        lambda lt: nll_at_temperature(z, y, math.exp(lt)), bounds=(lo, hi), method="bounded", options={"xatol": xatol}
    )
    t = float(math.exp(res.x))
    if min(res.x - lo, hi - res.x) < 1e-3:
        print(f"fit_temperature: T* = {t:.4g} is at the search bound {bounds}; the validation NLL keeps falling there.")
    return t


def apply_temperature(logits: torch.Tensor | np.ndarray, temperature: float) -> torch.Tensor:
    """softmax(z / T) as a float tensor (n, C)."""
    z = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
    return torch.softmax(z.double() / float(temperature), dim=-1).float()


def nll_curve(logits: ArrayLike, labels: ArrayLike, temperatures: ArrayLike) -> np.ndarray:
    """NLL at each temperature in `temperatures` (for the NLL-vs-T figure)."""
    z, y = _logits_labels(logits, labels)
    return np.array([nll_at_temperature(z, y, float(t)) for t in as_numpy(temperatures).ravel()])


def fit_temperature_ece_grid(
    logits: ArrayLike,
    labels: ArrayLike,
    grid: ArrayLike | None = None,
    n_bins: int = 15,
) -> float:
    """T on a grid minimising validation ECE, as `focal_calibration` (Mukhoti et al. 2020) picks it.

    Default grid 0.1, 0.2, ..., 10.0. Reported next to the NLL fit; ECE is piecewise constant in T
    and noisy, which is why Guo et al. fit NLL instead.
    """
    from lossbook.metrics.calibration import ece

    z, y = _logits_labels(logits, labels)
    ts = np.round(np.arange(1, 101) * 0.1, 10) if grid is None else as_numpy(grid).ravel()
    zt = torch.as_tensor(z)
    errs = [ece(torch.softmax(zt / float(t), -1).numpy(), y, n_bins) for t in ts]
    return float(ts[int(np.argmin(errs))])
