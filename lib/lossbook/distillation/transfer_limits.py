"""Knowledge transfer over finite domains (Zhao & Zhu, "Towards the Fundamental Limits of Knowledge Transfer
over Finite Domains", ICLR 2024, arXiv 2310.07838): the four tabular students, the paper's instances, the
Monte Carlo risk and log-log rate fits.

A teacher ``π*(·|s)`` over labels ``A`` for every input ``s ∈ S`` and an input law ``ρ`` generate
``n`` i.i.d. pairs ``(s_i, a_i) ~ ρ × π*``. Everything a student sees is summarised by the count table
``N[s, a] = #{i : (s_i, a_i) = (s, a)}`` plus, depending on the protocol, ``π*(a_i|s_i)`` (partial soft
labels) or ``π*(·|s_i)`` (soft labels). The risk is the ρ-weighted total variation (paper eq. 2.1)

    TV(π̂, π* | ρ) = Σ_s ρ(s) · ½ Σ_a |π̂(a|s) − π*(a|s)|.

Students (closed forms of the paper; unseen inputs get Uniform(A), the paper's §6 convention):

* ``ce_sgl``  hard labels, the MLE of −Σ log π(a_i|s_i) (eq. 3.2-3.3): π̂(a|s) = N[s,a] / N[s].
* ``ce_ptl``  partial soft labels, the naive −Σ π*(a_i|s_i) log π(a_i|s_i) (eq. 4.2-4.3):
  π̂(a|s) ∝ N[s,a] π*(a|s); biased, → π*² / Σ π*² (Lemma 4.2).
* ``sel_ptl`` partial soft labels, the empirical squared error logit loss
  Σ_i ½ [log π(a_i|s_i) − log π*(a_i|s_i)]² (eq. 4.6): its minimisers match π* on every seen label
  (eq. 4.7); the unseen labels of a seen input share the missing mass 1 − Σ_{seen a} π*(a|s) uniformly (§6).
* ``ce_ful``  soft labels, Σ_i KL(π*(·|s_i) ‖ π(·|s_i)) (eq. 5.2): π̂(·|s) = π*(·|s) on seen inputs.

Minimax rates (Table 1): ``√(|S||A|/n)`` for hard labels, ``|S||A|/n`` for partial soft labels (reached by
``sel_ptl``), ``|S|/n`` for soft labels, free of ``|A|``. Worst-case instances vary with ``n`` (Appendix F):
``instance1`` (hard labels), ``instance2`` (partial soft labels), ``instance3`` (soft labels); ``instance0``
is the fixed "classic regime" instance of Figure 1 on which ``ce_ptl`` stays biased.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lossbook import stats

CHUNK = 500  # Monte Carlo data sets drawn at once
ROUNDOFF = 1e-12  # a TV risk below this is an exact match up to floating-point error
LEARNERS = ("ce_sgl", "ce_ptl", "sel_ptl", "ce_ful")
LABELS = {"ce_sgl": "CE (hard labels)", "ce_ptl": "CE (partial soft labels)", "sel_ptl": "SEL (partial soft labels)",
          "ce_ful": "CE / KL (soft labels)"}


@dataclass(frozen=True)
class Instance:
    """A data-generating distribution ρ × π*: ``rho`` (S,), ``pi_star`` (S, A), rows summing to 1."""

    rho: np.ndarray
    pi_star: np.ndarray
    name: str = ""

    @property
    def S(self) -> int:
        return int(self.pi_star.shape[0])

    @property
    def A(self) -> int:
        return int(self.pi_star.shape[1])


# ------------------------------------------------------------------------------------------------ students
def _uniform_unseen(pi: np.ndarray, counts: np.ndarray) -> np.ndarray:
    seen = counts.sum(-1, keepdims=True) > 0
    return np.where(seen, pi, 1.0 / counts.shape[-1])


def ce_sgl(counts: np.ndarray) -> np.ndarray:
    """Hard-label MLE (eq. 3.3): π̂(a|s) = N[s,a] / N[s]; Uniform(A) on unseen inputs. ``counts`` (..., S, A)."""
    c = np.asarray(counts, dtype=float)
    n_s = c.sum(-1, keepdims=True)
    return _uniform_unseen(c / np.maximum(n_s, 1.0), c)


def ce_ptl(counts: np.ndarray, pi_star: np.ndarray) -> np.ndarray:
    """Naive partial-soft-label CE (eq. 4.3): π̂(a|s) ∝ N[s,a] · π*(a|s); Uniform(A) on unseen inputs."""
    c = np.asarray(counts, dtype=float)
    w = c * pi_star
    z = w.sum(-1, keepdims=True)
    return _uniform_unseen(w / np.where(z > 0, z, 1.0), c)


def sel_ptl(counts: np.ndarray, pi_star: np.ndarray) -> np.ndarray:
    """Empirical SEL minimiser (eq. 4.7 with the §6 rule): π̂(a|s) = π*(a|s) for every label seen with s; the
    missing mass 1 − Σ_{seen a} π*(a|s) spread uniformly over the unseen labels; Uniform(A) on unseen inputs."""
    c = np.asarray(counts)
    seen = c > 0
    hit = np.where(seen, pi_star, 0.0)
    missing = np.clip(1.0 - hit.sum(-1, keepdims=True), 0.0, 1.0)
    k = (~seen).sum(-1, keepdims=True)
    pi = np.where(seen, pi_star, missing / np.maximum(k, 1))
    return _uniform_unseen(pi, c)


def ce_ful(counts: np.ndarray, pi_star: np.ndarray) -> np.ndarray:
    """Soft-label CE / KL minimiser (eq. 5.2): π̂(·|s) = π*(·|s) on seen inputs, Uniform(A) elsewhere."""
    c = np.asarray(counts)
    return _uniform_unseen(np.broadcast_to(pi_star, c.shape).astype(float), c)


def estimate(learner: str, counts: np.ndarray, pi_star: np.ndarray) -> np.ndarray:
    """The student ``learner`` (one of ``LEARNERS``) fitted to ``counts``."""
    if learner == "ce_sgl":
        return ce_sgl(counts)
    fns: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"ce_ptl": ce_ptl, "sel_ptl": sel_ptl, "ce_ful": ce_ful}
    if learner not in fns:
        raise ValueError(f"unknown learner {learner!r}; choose from {LEARNERS}")
    return fns[learner](counts, pi_star)


def ce_ptl_limit(pi_star: np.ndarray) -> np.ndarray:
    """The almost-sure limit of ``ce_ptl`` on a fixed instance (Lemma 4.2): π*(·|s)² / Σ_a π*(a|s)²."""
    sq = np.asarray(pi_star, dtype=float) ** 2
    return sq / sq.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------------------------ losses
def sel_ptl_loss(pi: np.ndarray, counts: np.ndarray, pi_star: np.ndarray) -> float:
    """SEL_ptl (eq. 4.6) from counts: Σ_{s,a} N[s,a] · ½ (log π(a|s) − log π*(a|s))²."""
    c = np.asarray(counts, dtype=float)
    m = c > 0
    d = np.log(np.where(m, pi, 1.0)) - np.log(np.where(m, pi_star, 1.0))
    return float((c * 0.5 * d**2).sum())


def ce_ptl_loss(pi: np.ndarray, counts: np.ndarray, pi_star: np.ndarray) -> float:
    """CE_ptl (eq. 4.2) from counts: −Σ_{s,a} N[s,a] π*(a|s) log π(a|s)."""
    c = np.asarray(counts, dtype=float)
    m = c > 0
    return float(-(c * pi_star * np.log(np.where(m, pi, 1.0))).sum())


# ------------------------------------------------------------------------------------------------ risk
def tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation ½ Σ_a |p − q| along the last axis."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(-1)


def tv_risk(pi_hat: np.ndarray, inst: Instance) -> np.ndarray:
    """TV(π̂, π* | ρ) = Σ_s ρ(s) TV(π̂(·|s), π*(·|s)) (eq. 2.1), over any leading batch axes of ``pi_hat``.
    Values below ``ROUNDOFF`` are floating-point residue of an exact match (e.g. SEL's missing mass when every
    label of positive mass was seen) and are returned as 0."""
    r = (tv(pi_hat, inst.pi_star) * inst.rho).sum(-1)
    return np.where(r < ROUNDOFF, 0.0, r)


def expected_risk_ce_ful(inst: Instance, n: int) -> float:
    """Exact E TV of ``ce_ful``: Σ_s ρ(s) (1 − ρ(s))^n TV(Uniform(A), π*(·|s)) (the missing-mass identity, E.1)."""
    u = np.full(inst.A, 1.0 / inst.A)
    return float((inst.rho * (1 - inst.rho) ** n * tv(u, inst.pi_star)).sum())


# ------------------------------------------------------------------------------------------------ instances
def instance0(S: int, A: int, rng: np.random.Generator | None = None) -> Instance:
    """Instance 0 (Appendix F, fixed in n): π*(·|s) = ½ Uniform(A) + ½ Dirac(s mod A + 1), ρ = Uniform(S).
    With ``rng``, the labels of every input are permuted at random (one teacher draw)."""
    pi = np.full((S, A), 0.5 / A)
    pi[np.arange(S), np.arange(S) % A] += 0.5
    return Instance(np.full(S, 1.0 / S), _permute(pi, rng), "instance0")


def instance1(S: int, A: int, n: int, rng: np.random.Generator | None = None) -> Instance:
    """Instance 1 (hard labels): π*(2j−1|s) = (1 + ¼√(SA/n))/A, π*(2j|s) = (1 − ¼√(SA/n))/A, ρ = Uniform(S);
    odd A: the last label has zero mass and A − 1 replaces A. With ``rng``, a random vertex of the hypercube
    (which label of each pair gets the + sign)."""
    Ae = A - (A % 2)
    eps = 0.25 * np.sqrt(S * Ae / n)
    if eps >= 1:
        raise ValueError(f"instance1 needs n > S·A/16 (got n = {n}, S·A = {S * Ae})")
    signs = np.tile([1.0, -1.0], (S, Ae // 2))
    if rng is not None:
        flip = rng.random((S, Ae // 2)) < 0.5
        signs = np.where(np.repeat(flip, 2, axis=1), -signs, signs)
    pi = np.zeros((S, A))
    pi[:, :Ae] = (1 + eps * signs) / Ae
    return Instance(np.full(S, 1.0 / S), pi, "instance1")


def _sparse_teacher(S: int, A: int, n: int) -> np.ndarray:
    Ao = A - (1 - A % 2)
    m = (Ao - 1) // 2
    if S * m >= n + 1:
        raise ValueError(f"instance2/3 need n + 1 > S·(A − 1)/2 (got n = {n}, S = {S}, A = {Ao})")
    pi = np.zeros((S, A))
    pi[:, 0:2 * m:2] = S / (n + 1)
    pi[:, Ao - 1] = 1 - S * m / (n + 1)
    return pi


def instance2(S: int, A: int, n: int, rng: np.random.Generator | None = None) -> Instance:
    """Instance 2 (partial soft labels): π*(2j−1|s) = S/(n+1), π*(2j|s) = 0, π*(A|s) = 1 − (S/2)(A−1)/(n+1),
    ρ = Uniform(S); even A: the last label has zero mass and A − 1 replaces A. With ``rng``, the labels of
    every input are permuted at random."""
    return Instance(np.full(S, 1.0 / S), _permute(_sparse_teacher(S, A, n), rng), "instance2")


def instance3(S: int, A: int, n: int, rng: np.random.Generator | None = None) -> Instance:
    """Instance 3 (soft labels): ρ(s) = 1/(n+1) on every input but one, which holds the rest; π* as in
    Instance 2. With ``rng``, the heavy input and the label permutations are drawn at random."""
    if S - 1 >= n + 1:
        raise ValueError(f"instance3 needs n + 1 > S − 1 (got n = {n}, S = {S})")
    rho = np.full(S, 1.0 / (n + 1))
    heavy = S - 1 if rng is None else int(rng.integers(S))
    rho[heavy] = 1 - (S - 1) / (n + 1)
    return Instance(rho, _permute(_sparse_teacher(S, A, n), rng), "instance3")


def _permute(pi: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    if rng is None:
        return pi
    return np.take_along_axis(pi, rng.permuted(np.tile(np.arange(pi.shape[1]), (pi.shape[0], 1)), axis=1), axis=1)


INSTANCES: dict[str, Callable[..., Instance]] = {"instance1": instance1, "instance2": instance2, "instance3": instance3}


# ------------------------------------------------------------------------------------------------ simulation
def sample_counts(inst: Instance, n: int, n_repeats: int, rng: np.random.Generator) -> np.ndarray:
    """``n_repeats`` independent count tables of n pairs from ρ × π*: N[s] ~ Mult(n, ρ), N[s, ·] ~ Mult(N[s], π*(·|s)).
    Returns an int array (n_repeats, S, A)."""
    n_s = rng.multinomial(n, inst.rho, size=n_repeats)
    return rng.multinomial(n_s, inst.pi_star)


def mc_risks(inst: Instance, n: int, n_repeats: int, rng: np.random.Generator,
             learners: Sequence[str] = LEARNERS) -> dict[str, np.ndarray]:
    """Per learner, the risk TV(π̂, π* | ρ) on each of ``n_repeats`` independent data sets of size n (drawn in
    chunks of ``CHUNK`` data sets to bound memory; the draws depend only on ``rng``'s state and ``n_repeats``)."""
    out: dict[str, list[np.ndarray]] = {m: [] for m in learners}
    for start in range(0, n_repeats, CHUNK):
        c = sample_counts(inst, n, min(CHUNK, n_repeats - start), rng)
        for m in learners:
            out[m].append(tv_risk(estimate(m, c, inst.pi_star), inst))
    return {m: np.concatenate(v) for m, v in out.items()}


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one (seed, keys...) cell: independent streams for every replicate / grid point."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


@dataclass(frozen=True)
class Curve:
    """Risks of every learner on a grid ``x`` (n or |A|): ``risks[learner]`` is (len(x), n_repeats)."""

    x: np.ndarray
    risks: dict[str, np.ndarray]

    def mean(self, learner: str) -> np.ndarray:
        return self.risks[learner].mean(1)

    def rel_se(self, learner: str) -> np.ndarray:
        """Monte Carlo relative standard error of the mean risk at each grid point (inf where the mean is 0)."""
        r = self.risks[learner]
        m = r.mean(1)
        se = r.std(1, ddof=1) / np.sqrt(r.shape[1])
        return np.where(m > 0, se / np.where(m > 0, m, 1.0), np.inf)


def n_curve(instance: str, S: int, A: int, n_grid: Sequence[int], n_repeats: int, seed: int,
            learners: Sequence[str] = LEARNERS) -> Curve:
    """Risk vs n on an n-dependent instance; one teacher draw per ``seed`` (the instance's random vertex /
    permutation, drawn from the same stream at every n), fresh data at every grid point."""
    out: dict[str, list[np.ndarray]] = {m: [] for m in learners}
    for i, n in enumerate(n_grid):
        inst = INSTANCES[instance](S, A, int(n), rng_for(seed, 0))
        for m, r in mc_risks(inst, int(n), n_repeats, rng_for(seed, 1, i), learners).items():
            out[m].append(r)
    return Curve(np.asarray(n_grid, dtype=float), {m: np.stack(v) for m, v in out.items()})


def a_curve(instance: str, S: int, A_grid: Sequence[int], n: int, n_repeats: int, seed: int,
            learners: Sequence[str] = LEARNERS) -> Curve:
    """Risk vs |A| at a fixed n (one teacher draw per (seed, |A|), fresh data per grid point)."""
    out: dict[str, list[np.ndarray]] = {m: [] for m in learners}
    for i, A in enumerate(A_grid):
        inst = INSTANCES[instance](S, int(A), n, rng_for(seed, 2, i))
        for m, r in mc_risks(inst, n, n_repeats, rng_for(seed, 3, i), learners).items():
            out[m].append(r)
    return Curve(np.asarray(A_grid, dtype=float), {m: np.stack(v) for m, v in out.items()})


def fixed_curve(inst: Instance, n_grid: Sequence[int], n_repeats: int, seed: int,
                learners: Sequence[str] = LEARNERS) -> Curve:
    """Risk vs n on one fixed instance (the classic regime of the paper's Figure 1)."""
    out: dict[str, list[np.ndarray]] = {m: [] for m in learners}
    for i, n in enumerate(n_grid):
        for m, r in mc_risks(inst, int(n), n_repeats, rng_for(seed, 4, i), learners).items():
            out[m].append(r)
    return Curve(np.asarray(n_grid, dtype=float), {m: np.stack(v) for m, v in out.items()})


# ------------------------------------------------------------------------------------------------ fits
@dataclass(frozen=True)
class LogLogFit:
    """Least squares log y = intercept + slope · log x: the slope (the rate exponent), intercept and R²."""

    slope: float
    intercept: float
    r2: float


def fit_loglog(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> LogLogFit:
    """OLS of log y on log x (natural logs; the slope is base-free). y must be > 0."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not ((ya > 0).all() and np.isfinite(ya).all()):
        raise ValueError(f"fit_loglog needs positive y, got {ya.tolist()}")
    lx, ly = np.log(xa), np.log(ya)
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (intercept + slope * lx)
    ss = float(((ly - ly.mean()) ** 2).sum())
    return LogLogFit(float(slope), float(intercept), float(1 - (resid**2).sum() / ss) if ss > 0 else 1.0)


def bootstrap_slope(curve: Curve, learner: str, n_boot: int = 500, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the fitted log-log slope over the Monte Carlo repeats (``lossbook.stats``):
    repeat j at every grid point is resampled as one unit. Resamples whose mean risk is 0 somewhere are dropped."""
    r = curve.risks[learner]

    def slope(idx: np.ndarray) -> float:
        m = r[:, idx].mean(1)
        return fit_loglog(curve.x, m).slope if (m > 0).all() else np.nan

    s = np.asarray(stats.bootstrap_samples(slope, r.shape[1], n_boot, seed), dtype=float)
    return stats.percentile_ci({"s": s}, level)["s"]


# ------------------------------------------------------------------------------------------------ over replicates
@dataclass(frozen=True)
class RateSetup:
    """One protocol's experiment: its worst-case ``instance``, minimax ``learner``, |A| of the n-rate, theory
    exponents in n and in |A|, the |A| grid of the claim and the small-|A| ablation grid."""

    instance: str
    learner: str
    A: int
    theory_n: float
    theory_A: float
    A_grid: tuple[int, ...]
    A_grid_small: tuple[int, ...]


def replicate_fits(curves: Sequence[Curve], learner: str, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate (one ``Curve`` each): the (slopes, R²) of the log-log fit of the mean risk over the grid,
    over its last ``last`` points only when given (the asymptotic end). NaN where a mean risk is 0."""
    out = []
    for c in curves:
        x, m = c.x[-last:] if last else c.x, c.mean(learner)[-last:] if last else c.mean(learner)
        f = fit_loglog(x, m) if (m > 0).all() else LogLogFit(np.nan, np.nan, np.nan)
        out.append((f.slope, f.r2))
    a = np.asarray(out, dtype=float).reshape(-1, 2)
    return a[:, 0], a[:, 1]


def rate_guards(curves: Sequence[Curve], learner: str, *, min_decades: float, min_r2: float, max_rel_se: float,
                x_min_required: float | None, what: str, regime: str = "") -> list:
    """The guards read before a rate rule, over every replicate's curve: the grid spans ``min_decades``
    decades; every fit has R² ≥ ``min_r2``; every mean risk has Monte Carlo relative SE ≤ ``max_rel_se``
    (so none is 0); the largest mean risk is ≤ 0.5 (TV not saturated); the grid's smallest value is
    ≥ ``x_min_required`` (the theorem's regime, ``regime`` in words; None: no such guard)."""
    from lossbook import replicate

    x = curves[0].x
    _, r2 = replicate_fits(curves, learner)
    rse = max(float(c.rel_se(learner).max()) for c in curves)
    top = max(float(c.mean(learner).max()) for c in curves)
    r2_min = float(np.nanmin(r2)) if np.isfinite(r2).any() else 0.0
    guards = [
        replicate.progress_reached(float(np.log10(x.max() / x.min())), min_decades, lower_is_better=False, what=f"decades of {what}",
                                   name="span", fix=f"widen the {what} grid to {min_decades:g} decades"),
        replicate.progress_reached(r2_min, min_r2, lower_is_better=False, what="smallest R² of the log-log fits", name="fit_r2",
                                   fix="the risk is not a power law on this grid: move it into the asymptotic regime"),
        replicate.progress_reached(rse if np.isfinite(rse) else 1e9, max_rel_se, what="largest Monte Carlo relative SE", name="mc_precision",
                                   fix="more Monte Carlo repeats (n_repeats)"),
        replicate.progress_reached(top, 0.5, what="largest mean TV risk", name="not_saturated", fix=f"start the {what} grid higher"),
    ]
    if x_min_required is not None:
        guards.append(replicate.progress_reached(float(x.min()), x_min_required, lower_is_better=False, what=f"smallest {what}",
                                                 name="theorem_regime", fix=f"start the grid at {regime}"))
    return guards


def ce_ful_z(curve: Curve, instances: Sequence[Instance], n: Sequence[int]) -> np.ndarray:
    """|Monte Carlo mean − exact E risk| / MC standard error of ``ce_ful`` at every grid point (the simulator check)."""
    r = curve.risks["ce_ful"]
    exact = np.array([expected_risk_ce_ful(i, int(k)) for i, k in zip(instances, n, strict=True)])
    se = r.std(1, ddof=1) / np.sqrt(r.shape[1])
    return np.abs(r.mean(1) - exact) / np.where(se > 0, se, np.inf)


# ------------------------------------------------------------------------------------------------ figures
def plot_curves(ax, curves: Sequence[Curve], *, fit_learner: str | None = None, theory_slope: float | None = None,
                xlabel: str = "n (samples)", title: str = "") -> None:
    """Mean risk over replicates (markers, ±1 sd over replicates as bars) for every learner on log-log axes,
    the fitted power law of ``fit_learner`` (solid) and the theory slope through its first point (dashed)."""
    x = curves[0].x
    for m in curves[0].risks:
        means = np.stack([c.mean(m) for c in curves])
        mu = means.mean(0)
        ok = mu > 0
        if not ok.any():
            ax.plot([], [], "o-", label=f"{LABELS[m]}: 0 (exp. fast)")
            continue
        sd = means.std(0, ddof=1) if len(curves) > 1 else np.zeros_like(mu)
        ax.errorbar(x[ok], mu[ok], yerr=sd[ok], fmt="o-", ms=4, capsize=2, label=LABELS[m])
        if m == fit_learner and ok.all():
            f = fit_loglog(x, mu)
            ax.plot(x, np.exp(f.intercept) * x**f.slope, "k-", lw=1, label=f"fit: slope {f.slope:.3f}")
            if theory_slope is not None:
                ax.plot(x, mu[0] * (x / x[0]) ** theory_slope, "k--", lw=1, label=f"theory slope {theory_slope:g}")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="TV(π̂, π* | ρ)", title=title)
    ax.legend(fontsize=7)
