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
) -> LawFit:
    """Fit log y ≈ LSE(e, a_j − α_j·logx_j) by summed Huber from the `n_starts` best grid points (+ extra starts).

    `options` are scipy's (default TIGHT); `frac_at_optimum` is the fraction of optimized starts ending within
    1e-6 (relative) of the best objective — Epoch found ~34% on Chinchilla's data. `starts` skips the grid.
    """
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
    results = []
    with threadpool_limits(1):  # tiny BLAS calls inside L-BFGS-B: threads only add overhead (20x under load)
        for s in starts:
            results.append(minimize(lse_objective, s, args=(logx, logy, delta), jac=True, method=method, options=dict(opts)))
    funs = np.array([r.fun for r in results])
    best = results[int(np.argmin(funs))]
    at_opt = float(np.mean(funs <= best.fun * (1 + 1e-6) + 1e-15))
    return LawFit(np.asarray(best.x, float), float(best.fun), bool(best.success), len(starts), at_opt)


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
    """L(x) = E + A·x^−α fitted by `fit_power_law`; `r2` is R² of L (not log L) on the fitted points."""

    E: float
    A: float
    alpha: float
    r2: float
    objective: float
    law: LawFit
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.E + self.A * np.asarray(x, float) ** (-self.alpha)

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "r2": self.r2}


def r_squared(y: np.ndarray, yhat: np.ndarray) -> float:
    """1 − Σ(y − ŷ)² / Σ(y − ȳ)²."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    return float(1 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2))


def _pl_grid() -> np.ndarray:
    es = np.linspace(-2, 2, 9)
    As = np.arange(-5, 31, 2.5)
    als = np.concatenate([[0.02, 0.05], np.arange(0.1, 2.01, 0.1)])
    return np.array([(e, a, al) for e in es for a in As for al in als])


def fit_power_law(
    x: Sequence[float], y: Sequence[float], *, delta: float = 1e-3, groups: Sequence[Any] | None = None,
    n_boot: int = 0, seed: int = 0, n_starts: int = 32,
) -> PowerLawFit:
    """Fit L = E + A·x^−α (Kaplan et al. 2020, with an irreducible term) by summed Huber on log residuals.

    `n_boot` > 0 adds percentile 95% CIs for E, A, α (resampling `groups` — whole runs — when given).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_power_law needs positive x and y (it fits in log space).")
    grid = _pl_grid()
    lf = fit_lse_law(np.log(x)[:, None], np.log(y), delta=delta, grid=grid, n_starts=n_starts)
    E, A, al = float(np.exp(lf.theta[0])), float(np.exp(lf.theta[1])), float(lf.theta[2])
    fit = PowerLawFit(E, A, al, r_squared(y, E + A * x ** (-al)), lf.objective, lf)
    if n_boot > 0:
        boot_starts = [lf.theta, *_top_starts(grid, np.log(x)[:, None], np.log(y), delta, 3)]

        def one(idx: np.ndarray) -> dict[str, float]:
            b = fit_lse_law(np.log(x[idx])[:, None], np.log(y[idx]), delta=delta, starts=boot_starts)
            return {"E": float(np.exp(b.theta[0])), "A": float(np.exp(b.theta[1])), "alpha": float(b.theta[2])}

        samples = bootstrap(one, len(x), groups, n_boot, seed)
        fit.ci = percentile_ci(samples)
        lf.boot = samples
    return fit


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
) -> ChinchillaFit:
    """Fit L = E + A/N^α + B/D^β (Hoffmann et al. 2022 Approach 3) as Epoch's replication does (module docstring).

    `groups` labels each row with its run, so the bootstrap (`n_boot` resamples, warm-started from the full fit
    plus the 3 best grid points of the full data) resamples whole runs. `options=SCIPY_DEFAULT` reproduces the early stop.
    """
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    logx = np.column_stack([np.log(N), np.log(D)])
    lf = fit_lse_law(logx, np.log(L), delta=delta, grid=grid, n_starts=n_starts, options=options, method=method)
    d = _chin_from_theta(lf.theta)
    fit = ChinchillaFit(d["E"], d["A"], d["B"], d["alpha"], d["beta"], lf.objective, lf)
    if n_boot > 0:
        boot_starts = [lf.theta, *_top_starts(default_grid(2) if grid is None else grid, logx, np.log(L), delta, 3)]

        def one(idx: np.ndarray) -> dict[str, float]:
            b = fit_lse_law(logx[idx], np.log(L[idx]), delta=delta, starts=boot_starts, options=options, method=method)
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
