"""Scaling-law fits done the way the Epoch replication showed is needed (Besiroglu et al. 2024, arXiv 2404.10102).

Laws, all written as sums of exponentials so the prediction is a logsumexp in log space:
- power law (Kaplan et al. 2020): L(x) = E + A·x^−α  ⇒  log L̂ = LSE(e, a − α·log x), E = eᵉ, A = eᵃ.
- Chinchilla (Hoffmann et al. 2022, Approach 3): L(N, D) = E + A/N^α + B/D^β
  ⇒ log L̂ = LSE(e, a − α·log N, b − β·log D).
Objective: Σᵢ Huber_δ(log L̂ᵢ − log Lᵢ) with δ = 1e-3, **summed** (a mean makes the objective so small that
scipy's stopping rules fire at once). Gradient: analytic (softmax weights of the LSE terms times the clipped
residual). Optimizer: L-BFGS-B with tight tolerances (ftol 1e-15, gtol 1e-12) from a multi-start grid (Epoch's
grid: α, β ∈ {0, .5, …, 2}, e ∈ {−1, −.5, …, 1}, a, b ∈ {0, 5, …, 25}); only a minority of starts reach the
optimum, so every fit keeps the best of many. To stay fast, the whole grid is scored and the `n_starts` best
points are optimized. Bootstrap CIs resample whole runs (`groups`), never checkpoints of a run independently.

Objectives (`objective=`): "huber" (the summed Huber above, Hoffmann et al.'s loss) or "huber_likelihood", the
negative log-likelihood of log residuals under a Huber density with a fitted scale σ = e^s,
    −log p(r) = Huber_δ(r/σ) + log σ + log Z_δ,   Z_δ = √(2π)·(1 − 2Φ̄(δ)) + 2e^{−δ²/2}/δ,
which is the estimator behind the replication's headline numbers (Besiroglu et al. 2024; `objective` in
epoch-research/analyzing-chinchilla `data_analysis.ipynb`: A = 482.0, B = 2085, E = 1.817, α = 0.348, β = 0.366;
the plain summed Huber gives A = 478, B = 2144, α = 0.347, β = 0.367). With δ = 1e-3 the fitted σ is far below
the residuals, so the likelihood is close to a Laplace (least-absolute-deviation) fit.

Fits say when they fail: every start grid also holds e-values derived from the data (E from 5% to 99% of the
smallest observed loss: the published grid caps E at e¹ = 2.72), and `boundary_flags` names a fit whose E is
near 0 or near the smallest loss, or whose exponents leave (0.01, 3); `fit_guards` turns them into replication
guards. Shape tests: `residual_trend` (a linear or quadratic trend of the log residuals in log x) and
`holdout_largest` (the largest size predicted from a fit to the others).

Also: IsoFLOP parabola fits (Approach 2), the lower-envelope estimate (Approach 1), the compute-optimal
allocation N_opt = G·(C/6)^a, D_opt = (C/6)^b / G with G = (αA/(βB))^(1/(α+β)), a = β/(α+β), b = α/(α+β).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax
from threadpoolctl import threadpool_limits

from lossbook import stats
from lossbook.stats import percentile_ci

TIGHT = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2_000, "maxfun": 4_000}
SCIPY_DEFAULT: dict[str, float] = {}


# --------------------------------------------------------------------------------------------- objective
def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber_δ(r) = ½r² for |r| ≤ δ, δ·(|r| − ½δ) otherwise."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def lse_objective(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float = 1e-3) -> tuple[float, np.ndarray]:
    """Summed Huber loss of log-space residuals and its analytic gradient.

    θ = [e, a₁..a_k, α₁..α_k]; `logx` [n, k]; prediction log ŷ = LSE(e, a_j − α_j·logx_j).
    ∂/∂e = Σ h'(r)·w₀, ∂/∂a_j = Σ h'(r)·w_j, ∂/∂α_j = −Σ h'(r)·w_j·logx_j, with w = softmax of the terms and
    h'(r) = clip(r, −δ, δ).
    """
    k = logx.shape[1]
    e, a, al = theta[0], theta[1 : 1 + k], theta[1 + k :]
    terms = np.concatenate([np.full((logx.shape[0], 1), e), a[None, :] - al[None, :] * logx], axis=1)
    pred = logsumexp(terms, axis=1)
    r = pred - logy
    w = softmax(terms, axis=1)
    g = np.clip(r, -delta, delta)[:, None] * w
    grad = np.concatenate([[g[:, 0].sum()], g[:, 1:].sum(0), -(g[:, 1:] * logx).sum(0)])
    return float(huber(r, delta).sum()), grad


def huber_log_norm(delta: float) -> float:
    """log Z_δ, Z_δ = ∫ exp(−Huber_δ(u)) du = √(2π)·(1 − 2Φ̄(δ)) + 2·exp(−δ²/2)/δ (the Huber density's normaliser)."""
    from scipy.stats import norm

    return float(np.log(np.sqrt(2 * np.pi) * (1 - 2 * norm.sf(delta)) + 2 * np.exp(-0.5 * delta**2) / delta))


def huber_nll_objective(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float = 1e-3) -> tuple[float, np.ndarray]:
    """Huber negative log-likelihood with a scale (Besiroglu et al. 2024) and its analytic gradient.

    θ = [e, a₁..a_k, α₁..α_k, s], σ = eˢ, r = log ŷ − log y, u = r/σ:
    NLL = Σ Huber_δ(u) + n·(s + log Z_δ);  ∂/∂(law params) as in `lse_objective` with h'(r) replaced by
    clip(u, −δ, δ)/σ;  ∂/∂s = n − Σ clip(u, −δ, δ)·u.
    """
    k = logx.shape[1]
    e, a, al, sc = theta[0], theta[1 : 1 + k], theta[1 + k : 1 + 2 * k], theta[1 + 2 * k]
    terms = np.concatenate([np.full((logx.shape[0], 1), e), a[None, :] - al[None, :] * logx], axis=1)
    r = logsumexp(terms, axis=1) - logy
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # line-search excursions to extreme s
        sigma = np.exp(sc)
        u = r / sigma
        cu = np.clip(u, -delta, delta)
        w = softmax(terms, axis=1)
        g = (cu / sigma)[:, None] * w
        n = len(r)
        val = float(huber(u, delta).sum() + n * (sc + huber_log_norm(delta)))
    grad = np.concatenate([[g[:, 0].sum()], g[:, 1:].sum(0), -(g[:, 1:] * logx).sum(0), [n - float((cu * u).sum())]])
    return val, grad


OBJECTIVES = ("huber", "huber_likelihood")


def _scale_start(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float) -> float:
    """log σ minimising the Huber NLL at fixed law params when every |r|/σ > δ: σ = δ·mean|r| (floored)."""
    k = logx.shape[1]
    terms = np.concatenate([np.full((logx.shape[0], 1), theta[0]), theta[1 : 1 + k][None, :] - theta[1 + k : 1 + 2 * k][None, :] * logx], axis=1)
    r = np.abs(logsumexp(terms, axis=1) - logy)
    return float(np.log(max(delta * r.mean(), 1e-12)))


def data_e_values(logy: np.ndarray) -> np.ndarray:
    """Start values of e = log E derived from the data: E = q · min L for q ∈ {0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99}."""
    return np.log(np.exp(np.min(logy)) * np.array([0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99]))


def data_grid(logy: np.ndarray, k: int, a_values: Sequence[float] = (0, 5, 10, 15, 20, 25), exponents: Sequence[float] = (0.1, 0.3, 0.5, 1.0, 1.5, 2.0)) -> np.ndarray:
    """A start grid whose e-values come from the data (`data_e_values`) × a_j × α_j values."""
    return np.array([(e, *a, *al) for e in data_e_values(logy) for a in itertools.product(a_values, repeat=k)
                     for al in itertools.product(exponents, repeat=k)], dtype=float)


def _grid_objective(thetas: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float) -> np.ndarray:
    """Objective for many θ at once ([m, 1+2k] -> [m]), to rank grid starts."""
    k = logx.shape[1]
    e, a, al = thetas[:, :1], thetas[:, 1 : 1 + k], thetas[:, 1 + k :]
    out = np.empty(len(thetas))
    for s in range(0, len(thetas), 2048):
        sl = slice(s, s + 2048)
        terms = a[sl, None, :] - al[sl, None, :] * logx[None, :, :]  # [m, n, k]
        terms = np.concatenate([np.broadcast_to(e[sl, None, :], terms.shape[:2] + (1,)), terms], axis=2)
        r = logsumexp(terms, axis=2) - logy[None, :]
        out[sl] = huber(r, delta).sum(1)
    return out


def default_grid(k: int) -> np.ndarray:
    """Epoch's init grid: e ∈ {−1..1 step .5}, a_j ∈ {0, 5, …, 25}, α_j ∈ {0, .5, …, 2} (4,500 points for k=2)."""
    es = np.arange(-1, 1.01, 0.5)
    As = np.arange(0, 26, 5.0)
    als = np.arange(0, 2.01, 0.5)
    return np.array([(e, *a, *al) for e in es for a in itertools.product(As, repeat=k) for al in itertools.product(als, repeat=k)])


@dataclass
class LawFit:
    """Result of a logsumexp-law fit: θ = [e, a..., α...], objective, convergence and start statistics."""

    theta: np.ndarray
    objective: float
    converged: bool
    n_starts: int
    frac_at_optimum: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    boot: dict[str, np.ndarray] = field(default_factory=dict)
    objective_name: str = "huber"
    scale: float | None = None  # σ of the Huber likelihood (objective "huber_likelihood")

    @property
    def k(self) -> int:
        return (len(self.theta) - 1) // 2

    @property
    def E(self) -> float:
        return float(np.exp(self.theta[0]))

    def predict(self, *xs: np.ndarray) -> np.ndarray:
        logx = np.log(np.column_stack([np.asarray(x, float) for x in xs]))
        k = self.k
        terms = np.concatenate([np.full((logx.shape[0], 1), self.theta[0]), self.theta[1 : 1 + k] - self.theta[1 + k :] * logx], axis=1)
        return np.exp(logsumexp(terms, axis=1))


def fit_lse_law(
    logx: np.ndarray,
    logy: np.ndarray,
    *,
    delta: float = 1e-3,
    grid: np.ndarray | None = None,
    n_starts: int = 64,
    options: dict[str, float] | None = None,
    method: str = "L-BFGS-B",
    extra_starts: Sequence[np.ndarray] = (),
    starts: Sequence[np.ndarray] | None = None,
    objective: str = "huber",
) -> LawFit:
    """Fit log y ≈ LSE(e, a_j − α_j·logx_j) by summed Huber from the `n_starts` best grid points (+ extra starts).

    `options` are scipy's (default TIGHT); `frac_at_optimum` is the fraction of optimized starts ending within
    1e-6 (relative) of the best objective — Epoch found ~34% on Chinchilla's data. `starts` skips the grid.
    `objective="huber_likelihood"` minimises `huber_nll_objective` instead (starts are ranked by summed Huber and
    each gets the scale that fits it, `_scale_start`); the law part of θ and the fitted σ are returned.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    logx = np.atleast_2d(np.asarray(logx, float))
    if logx.shape[0] != len(logy):
        logx = logx.T
    logy = np.asarray(logy, float)
    k = logx.shape[1]
    if starts is None:
        grid = default_grid(k) if grid is None else np.asarray(grid, float)
        scores = _grid_objective(grid, logx, logy, delta)
        order = np.argsort(scores)[: max(1, min(n_starts, len(grid)))]
        starts = [grid[i] for i in order]
    starts = [np.asarray(s, float) for s in starts] + [np.asarray(s, float) for s in extra_starts]
    opts = TIGHT if options is None else options
    n_law = 1 + 2 * k
    if objective == "huber_likelihood":
        fun = huber_nll_objective
        starts = [np.append(s[:n_law], _scale_start(s, logx, logy, delta)) for s in starts]
    else:
        fun = lse_objective
        starts = [s[:n_law] for s in starts]
    results = []
    with threadpool_limits(1):  # tiny BLAS calls inside L-BFGS-B: threads only add overhead (20x under load)
        for s in starts:
            results.append(minimize(fun, s, args=(logx, logy, delta), jac=True, method=method, options=dict(opts)))
    funs = np.array([r.fun for r in results])
    best = results[int(np.argmin(funs))]
    tol = abs(best.fun) * 1e-6 + 1e-15
    at_opt = float(np.mean(funs <= best.fun + tol))
    x = np.asarray(best.x, float)
    scale = float(np.exp(x[n_law])) if objective == "huber_likelihood" else None
    return LawFit(x[:n_law], float(best.fun), bool(best.success), len(starts), at_opt, objective_name=objective, scale=scale)


def _top_starts(grid: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float, n: int) -> list[np.ndarray]:
    scores = _grid_objective(grid, logx, logy, delta)
    return [grid[i] for i in np.argsort(scores)[:n]]


def bootstrap(
    fit_one: Callable[[np.ndarray], dict[str, float]], n_rows: int, groups: Sequence[Any] | None, n_boot: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Run `fit_one(row_indices) -> {name: value}` on `n_boot` resamples of whole groups (runs); rows if no groups
    (`lossbook.stats.bootstrap_samples`)."""
    out: dict[str, list[float]] = {}
    for res in stats.bootstrap_samples(fit_one, n_rows, n_boot, seed, groups=groups):
        for k, v in res.items():
            out.setdefault(k, []).append(v)
    return {k: np.asarray(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------- power law
@dataclass
class PowerLawFit:
    """L(x) = E + A·x^−α fitted by `fit_power_law`; `r2` is R² of L (not log L) on the fitted points; `flags`
    lists what `boundary_flags` found (empty: the fit is interior)."""

    E: float
    A: float
    alpha: float
    r2: float
    objective: float
    law: LawFit
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    min_loss: float = float("nan")

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.E + self.A * np.asarray(x, float) ** (-self.alpha)

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "r2": self.r2}


def r_squared(y: np.ndarray, yhat: np.ndarray) -> float:
    """1 − Σ(y − ŷ)² / Σ(y − ȳ)²."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    return float(1 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2))


EXPONENT_RANGE = (0.01, 3.0)


def boundary_flags(E: float, exponents: dict[str, float], min_loss: float, *, e_rtol: float = 0.01,
                   exponent_range: tuple[float, float] = EXPONENT_RANGE) -> list[str]:
    """What makes a fitted law a boundary solution rather than a measurement (empty list: none).

    "E near 0": E < e_rtol·min L (the irreducible term vanished: the curve was fitted as a pure power law, e.g.
    a saturating curve); "E near min L": E > (1 − e_rtol)·min L (the power-law term is fitted to the last few
    points only); an exponent outside `exponent_range` (default (0.01, 3)): flat or step-like.
    """
    out = []
    if E < e_rtol * min_loss:
        out.append(f"E near 0 (E = {E:.3g} < {e_rtol:g}·min L = {e_rtol * min_loss:.3g})")
    if E > (1 - e_rtol) * min_loss:
        out.append(f"E near min L (E = {E:.4g} > {1 - e_rtol:g}·min L = {(1 - e_rtol) * min_loss:.4g})")
    lo, hi = exponent_range
    for name, v in exponents.items():
        if not lo < v < hi:
            out.append(f"{name} = {v:.3g} outside ({lo:g}, {hi:g})")
    return out


def fit_guards(fit: PowerLawFit | ChinchillaFit, *, e_rtol: float = 0.01) -> list[Any]:
    """`replicate.not_at_boundary` guards for a fitted law: E inside (e_rtol·min L, (1 − e_rtol)·min L) and each
    exponent inside (0.01, 3), the same rules as `boundary_flags`."""
    from lossbook import replicate

    m = fit.min_loss
    gs = [replicate.not_at_boundary(fit.E, e_rtol * m, (1 - e_rtol) * m, what="fitted E", rtol=0.0, name="E_not_at_boundary")]
    exps = {"alpha": fit.alpha} if isinstance(fit, PowerLawFit) else {"alpha": fit.alpha, "beta": fit.beta}
    for k, v in exps.items():
        gs.append(replicate.not_at_boundary(v, *EXPONENT_RANGE, what=f"fitted {k}", rtol=0.0, name=f"{k}_not_at_boundary"))
    return gs


def _pl_grid() -> np.ndarray:
    es = np.linspace(-2, 2, 9)
    As = np.arange(-5, 31, 2.5)
    als = np.concatenate([[0.02, 0.05], np.arange(0.1, 2.01, 0.1)])
    return np.array([(e, a, al) for e in es for a in As for al in als])


def _pl_data_grid(logy: np.ndarray) -> np.ndarray:
    als = np.concatenate([[0.02, 0.05], np.arange(0.1, 2.01, 0.1)])
    return np.array([(e, a, al) for e in data_e_values(logy) for a in np.arange(-5, 31, 2.5) for al in als])


def fit_power_law(
    x: Sequence[float], y: Sequence[float], *, delta: float = 1e-3, groups: Sequence[Any] | None = None,
    n_boot: int = 0, seed: int = 0, n_starts: int = 32, objective: str = "huber", n_data_starts: int = 8,
) -> PowerLawFit:
    """Fit L = E + A·x^−α (Kaplan et al. 2020, with an irreducible term) on log residuals (`objective`: summed
    Huber, or the Huber likelihood with a scale; module docstring).

    Starts: the `n_starts` best points of the fixed grid plus the `n_data_starts` best of a grid whose E values
    come from the data (`data_e_values`). `n_boot` > 0 adds percentile 95% CIs for E, A, α (resampling `groups`
    — whole runs — when given). `flags` holds `boundary_flags` of the fit.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_power_law needs positive x and y (it fits in log space).")
    grid = _pl_grid()
    lx, ly = np.log(x)[:, None], np.log(y)
    extra = _top_starts(_pl_data_grid(ly), lx, ly, delta, n_data_starts) if n_data_starts > 0 else []
    lf = fit_lse_law(lx, ly, delta=delta, grid=grid, n_starts=n_starts, extra_starts=extra, objective=objective)
    E, A, al = float(np.exp(lf.theta[0])), float(np.exp(lf.theta[1])), float(lf.theta[2])
    fit = PowerLawFit(E, A, al, r_squared(y, E + A * x ** (-al)), lf.objective, lf, min_loss=float(y.min()))
    fit.flags = boundary_flags(E, {"alpha": al}, fit.min_loss)
    if n_boot > 0:
        boot_starts = [lf.theta, *_top_starts(grid, lx, ly, delta, 3), *extra[:2]]

        def one(idx: np.ndarray) -> dict[str, float]:
            b = fit_lse_law(lx[idx], ly[idx], delta=delta, starts=boot_starts, objective=objective)
            return {"E": float(np.exp(b.theta[0])), "A": float(np.exp(b.theta[1])), "alpha": float(b.theta[2])}

        samples = bootstrap(one, len(x), groups, n_boot, seed)
        fit.ci = percentile_ci(samples)
        lf.boot = samples
    return fit


def residual_trend(x: Sequence[float], y: Sequence[float], predict: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """Shape test of a fitted law: OLS of the log residuals r = log y − log ŷ on [1, u, u²], u = log x centred.

    A law of the right shape leaves no trend: returns the slope and curvature, their two-sided t-test p-values
    (n − 3 degrees of freedom) and the RMS residual. A saturating curve forced into E + A·x^−α leaves a
    curvature (residuals of one sign at both ends).
    """
    from scipy import stats as sps

    x, y = np.asarray(x, float), np.asarray(y, float)
    r = np.log(y) - np.log(predict(x))
    u = np.log(x) - np.log(x).mean()
    X = np.column_stack([np.ones_like(u), u, u**2])
    coef, *_ = np.linalg.lstsq(X, r, rcond=None)
    dof = max(len(r) - 3, 1)
    s2 = float(np.sum((r - X @ coef) ** 2) / dof)
    se = np.sqrt(np.maximum(np.diag(np.linalg.pinv(X.T @ X)) * s2, 1e-300))
    p = 2 * sps.t.sf(np.abs(coef / se), dof)
    return {"slope": float(coef[1]), "curvature": float(coef[2]), "p_slope": float(p[1]), "p_curvature": float(p[2]),
            "rms": float(np.sqrt(np.mean(r**2)))}


def holdout_largest(x: Sequence[float], y: Sequence[float], **fit_kw: Any) -> dict[str, Any]:
    """Fit `fit_power_law` to every point but those at the largest x and predict them (Kaplan-style extrapolation).

    Returns {"fit", "x", "observed", "predicted", "rel_err"} (rel_err = mean |ŷ − y|/y over the held-out points).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = x < x.max()
    f = fit_power_law(x[keep], y[keep], **fit_kw)
    obs, pred = y[~keep], f.predict(x[~keep])
    return {"fit": f, "x": float(x.max()), "observed": float(obs.mean()), "predicted": float(pred.mean()),
            "rel_err": float(np.mean(np.abs(pred - obs) / obs))}


# --------------------------------------------------------------------------------------------- Chinchilla
def optimal_allocation(C: float | np.ndarray, A: float, B: float, alpha: float, beta: float, flops_per_param_token: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal (N, D) for L = E + A/N^α + B/D^β under C = 6·N·D (Hoffmann et al. 2022, eq. 4):
    N_opt = G·(C/6)^a, D_opt = (C/6)^b / G, G = (αA/(βB))^(1/(α+β)), a = β/(α+β), b = α/(α+β)."""
    C = np.asarray(C, float) / flops_per_param_token
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    return G * C**a, C**b / G


@dataclass
class ChinchillaFit:
    """L(N, D) = E + A/N^α + B/D^β with a = β/(α+β) (N_opt ∝ C^a), b = α/(α+β); CIs from a run bootstrap."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    law: LawFit
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    min_loss: float = float("nan")

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def predict(self, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        return self.E + self.A * np.asarray(N, float) ** (-self.alpha) + self.B * np.asarray(D, float) ** (-self.beta)

    def optimal(self, C: float | np.ndarray, flops_per_param_token: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        return optimal_allocation(C, self.A, self.B, self.alpha, self.beta, flops_per_param_token)

    def optimal_loss(self, C: float | np.ndarray, flops_per_param_token: float = 6.0) -> np.ndarray:
        N, D = self.optimal(C, flops_per_param_token)
        return self.predict(N, D)

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta, "a": self.a, "b": self.b}


def _chin_from_theta(theta: np.ndarray) -> dict[str, float]:
    e, a, b, al, be = theta
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": float(al), "beta": float(be),
            "a": float(be / (al + be)) if al + be != 0 else float("nan")}


def fit_chinchilla(
    N: Sequence[float], D: Sequence[float], L: Sequence[float], *, delta: float = 1e-3, groups: Sequence[Any] | None = None,
    n_boot: int = 0, seed: int = 0, n_starts: int = 64, grid: np.ndarray | None = None, options: dict[str, float] | None = None,
    method: str = "L-BFGS-B",
    objective: str = "huber",
    n_data_starts: int = 8,
) -> ChinchillaFit:
    """Fit L = E + A/N^α + B/D^β (Hoffmann et al. 2022 Approach 3) as Epoch's replication does (module docstring).

    Starts: the `n_starts` best points of `grid` (default Epoch's) plus the `n_data_starts` best of `data_grid`
    (E from the data; extra starts can only lower the objective reached). `objective`: "huber" (summed) or
    "huber_likelihood" (with scale: the replication's headline estimator). `groups` labels each row with its
    run, so the bootstrap (`n_boot` resamples, warm-started from the full fit plus the 3 best grid points of the
    full data) resamples whole runs. `options=SCIPY_DEFAULT` reproduces the early stop. `flags`: `boundary_flags`.
    """
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    logx = np.column_stack([np.log(N), np.log(D)])
    logy = np.log(L)
    extra = _top_starts(data_grid(logy, 2), logx, logy, delta, n_data_starts) if n_data_starts > 0 else []
    lf = fit_lse_law(logx, logy, delta=delta, grid=grid, n_starts=n_starts, options=options, method=method, extra_starts=extra,
                     objective=objective)
    d = _chin_from_theta(lf.theta)
    fit = ChinchillaFit(d["E"], d["A"], d["B"], d["alpha"], d["beta"], lf.objective, lf, min_loss=float(L.min()))
    fit.flags = boundary_flags(fit.E, {"alpha": fit.alpha, "beta": fit.beta}, fit.min_loss)
    if n_boot > 0:
        boot_starts = [lf.theta, *_top_starts(default_grid(2) if grid is None else grid, logx, logy, delta, 3)]

        def one(idx: np.ndarray) -> dict[str, float]:
            b = fit_lse_law(logx[idx], logy[idx], delta=delta, starts=boot_starts, options=options, method=method, objective=objective)
            return _chin_from_theta(b.theta)

        samples = bootstrap(one, len(N), groups, n_boot, seed)
        fit.ci = percentile_ci(samples)
        lf.boot = samples
    return fit


# --------------------------------------------------------------------------------------------- Approaches 1 and 2
@dataclass
class Parabola:
    """L ≈ c₀ + c₁·u + c₂·u² in u = log x; minimum at x* = exp(−c₁/(2c₂)), L* = L(x*)."""

    coef: tuple[float, float, float]
    x_opt: float
    y_opt: float
    r2: float


def fit_parabola(x: Sequence[float], y: Sequence[float]) -> Parabola:
    """Least-squares parabola of y in log x (Hoffmann et al. 2022 Approach 2: one IsoFLOP profile).

    Raises ValueError when the fitted curvature is not positive (no minimum: widen the grid of sizes).
    """
    u, y = np.log(np.asarray(x, float)), np.asarray(y, float)
    if len(u) < 3:
        raise ValueError("an IsoFLOP parabola needs at least 3 points")
    c2, c1, c0 = np.polyfit(u, y, 2)
    if c2 <= 0:
        raise ValueError(f"IsoFLOP profile has no minimum (curvature {c2:.3g} ≤ 0); the sizes do not bracket the optimum.")
    u_opt = -c1 / (2 * c2)
    return Parabola((float(c0), float(c1), float(c2)), float(np.exp(u_opt)), float(c0 + c1 * u_opt + c2 * u_opt**2), r_squared(y, np.polyval([c2, c1, c0], u)))


def fit_loglog(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """OLS of log y = slope·log x + intercept; returns (slope, intercept) — e.g. N_opt ∝ C^a."""
    s, i = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)
    return float(s), float(i)


def isoflop_approach(budgets: Sequence[float], N: Sequence[float], L: Sequence[float]) -> dict[str, Any]:
    """Approach 2: a parabola per budget (rows grouped by equal `budgets`), then N_opt ∝ C^a by OLS in log–log.

    A profile without a minimum (sizes not bracketing the optimum) falls back to its lowest point and is listed in
    "unbracketed". Returns {"budgets", "N_opt", "L_opt", "parabolas", "a", "intercept", "unbracketed"}.
    """
    budgets, N, L = (np.asarray(v, float) for v in (budgets, N, L))
    Cs = np.unique(budgets)
    paras, unbracketed = [], []
    for c in Cs:
        n, l = N[budgets == c], L[budgets == c]
        try:
            paras.append(fit_parabola(n, l))
        except ValueError:
            i = int(np.argmin(l))
            paras.append(Parabola((float(l[i]), 0.0, 0.0), float(n[i]), float(l[i]), float("nan")))
            unbracketed.append(float(c))
    n_opt = np.array([p.x_opt for p in paras])
    a, icpt = fit_loglog(Cs, n_opt)
    return {"budgets": Cs, "N_opt": n_opt, "L_opt": np.array([p.y_opt for p in paras]), "parabolas": paras, "a": a, "intercept": icpt,
            "unbracketed": unbracketed}


def envelope_approach(curves: Sequence[tuple[float, np.ndarray, np.ndarray]], n_points: int = 20) -> dict[str, Any]:
    """Approach 1: the lower envelope of loss-vs-FLOPs curves. `curves` = [(N, flops[t], loss[t]), ...].

    At `n_points` log-spaced compute values inside the range every envelope point is reachable, each run's loss is
    interpolated (in log C) where the run reached C; the run with the lowest loss gives N_opt(C). Then N_opt ∝ C^a.
    """
    lo = max(float(np.min(f)) for _, f, _ in curves)
    hi = max(float(np.max(f)) for _, f, _ in curves)
    Cs = np.geomspace(lo, hi, n_points)
    n_opt, l_opt = [], []
    for c in Cs:
        best = (np.inf, np.nan)
        for n, f, loss in curves:
            f, loss = np.asarray(f, float), np.asarray(loss, float)
            if f.min() <= c <= f.max():
                v = float(np.interp(np.log(c), np.log(f), loss))
                if v < best[0]:
                    best = (v, n)
        l_opt.append(best[0])
        n_opt.append(best[1])
    n_opt, l_opt = np.array(n_opt), np.array(l_opt)
    ok = np.isfinite(l_opt)
    a, icpt = fit_loglog(Cs[ok], n_opt[ok])
    return {"C": Cs[ok], "N_opt": n_opt[ok], "L_opt": l_opt[ok], "a": a, "intercept": icpt}
