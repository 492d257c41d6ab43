"""Loss-curve laws across learning-rate schedules: the multi-power law, its baselines, their fit, and the runs.

**Multi-power law** (Luo, Wen, Hu, Lyu et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across
Learning Rate Schedules", arXiv 2503.12811, eq. (5); official code `thu-yao-01-luo/MultiPowerLaw`, `src/models.py`):

    L(t) = L0 + A·(S1(t) + S_W)^(−α) − LD(t),
    LD(t) = B · Σ_{k=1}^{t} (η_{k−1} − η_k) · G(η_k^(−γ) · S_k(t)),   G(x) = 1 − (C·x + 1)^(−β),
    S_k(t) = Σ_{τ=k}^{t} η_τ,

with η_τ the learning rate of update τ (0-indexed) and t the index of the last update applied. As in the
official code, S1(t) + S_W is the cumulative sum of *every* LR from step 0 (warmup included, so S_W is the
warmup's area) and the sum in LD runs over every k ≥ 1, warmup included (there η rises, the terms are
negative and, long after warmup, G ≈ 1: a constant absorbed by L0). For a constant schedule after warmup LD is
that constant and the law is a power law in S1.

**Baselines.** The S1-only power law L0 + A·S1^(−α) (the MPL with B = 0), and the momentum law of Tissue,
Wang, Yan, Chen, Yu (2024), "Scaling Law with Learning Rate Annealing", arXiv 2408.11029:
L(t) = L0 + A·S1(t)^(−α) − C·S2(t), S2(t) = Σ_{i=1}^{t} m_i, m_i = λ·m_{i−1} + (η_{i−1} − η_i) (λ = 0.999 there).

**Fit** (the official `src/fitting.py` protocol): the summed Huber loss (δ = 1e-3) of the log residual
r = log L_obs − log L_pred over every point of the fitting curves (constant, cosine and two-stage runs). Starts:
an OLS of log(L − min L + 0.01) on log S1 gives A and α, then a grid L0 ∈ min L ± 0.2 (5), A ± 0.1 (3), α ± 0.1
(3), B·η_max ∈ {0.03, 0.165, 0.3} (the paper's B ∈ [100, 1000] at η_max = 3e-4) for the simplified law
L0 + A·S1^(−α) − B·(η_max − η_t), each refined by L-BFGS-B; the best one with C = 1, β = γ = 0.5 (theirs) and a
small grid around it starts the full fit. Where the paper refines with 200 AdamW steps we run L-BFGS-B to
convergence on the same objective with its autograd gradient, in log-parameters (positivity) and with the
objective scaled by 1/δ² (the optimum is unchanged; scipy's default tolerances stop early on a tiny objective).
`profile_objective` holds one parameter on a grid and refits the rest: the identifiability check behind a fit
that lands on a bound.

**Runs** (`train_curves`): K replicate GPTs trained as one `StackedGPT` under one schedule, each replicate with its
own `TaskLanguage` world, training stream, validation set and initialisation; the validation loss every
`eval_every` updates is the curve a law fits or predicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.signal import lfilter
from scipy.special import huber as sp_huber
from torch import Tensor

from lossbook.optim.schedules import lr_curve, lr_multiplier
from lossbook.registry import lookup

HUBER_DELTA = 1e-3
"""Huber δ on the log residual (the official code's `HUBER_DELTA`)."""


@dataclass(frozen=True)
class Curve:
    """One loss curve: `lrs` [total] the LR of every update, `t` the index of the last update applied at each
    measurement (after s updates, t = s − 1), `loss` the measured loss there."""

    name: str
    lrs: np.ndarray
    t: np.ndarray
    loss: np.ndarray


def window(c: Curve, lo: int = 0, hi: int | None = None) -> Curve:
    """The points of `c` with lo <= t < hi (the LR array is kept whole: the law needs the full history)."""
    keep = (c.t >= lo) & (c.t < (hi if hi is not None else np.iinfo(np.int64).max))
    return Curve(c.name, c.lrs, c.t[keep], c.loss[keep])


def schedule_lrs(schedule: str, total: int, peak_lr: float, warmup: int = 0, **kw: Any) -> np.ndarray:
    """η_t = peak_lr · `optim.schedules.lr_multiplier(schedule, t, total, warmup, **kw)` for t = 0..total−1 (what
    `train_lm` / `train_lm_stacked` apply)."""
    return peak_lr * np.asarray(lr_curve(schedule, total, warmup, **kw), dtype=float)


# ------------------------------------------------------------------------------------------------ the laws
def _t64(x: np.ndarray | Tensor) -> Tensor:
    return x.to(torch.float64) if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _s1(lrs: Tensor, t: Tensor) -> Tensor:
    return torch.cumsum(lrs, 0)[t]


def mpl_loss_drop(lrs: np.ndarray | Tensor, t: np.ndarray | Tensor, B: Tensor | float, C: Tensor | float, beta: Tensor | float,
                  gamma: Tensor | float) -> Tensor:
    """LD(t) = B·Σ_{k=1}^{t} (η_{k−1} − η_k)·(1 − (C·η_k^(−γ)·S_k(t) + 1)^(−β)), S_k(t) = Σ_{τ=k}^{t} η_τ, for every
    t in `t` at once (only steps with η_{k−1} ≠ η_k contribute). Differentiable in B, C, β, γ."""
    eta = _t64(lrs)
    tt = torch.as_tensor(np.asarray(t), dtype=torch.long)
    cum = torch.cumsum(eta, 0)
    gap = eta[:-1] - eta[1:]  # gap[k−1] = η_{k−1} − η_k, k = 1..total−1
    k = torch.nonzero(gap != 0).flatten() + 1
    if k.numel() == 0:
        return torch.zeros(tt.shape, dtype=torch.float64) * B
    s_k = cum[tt][:, None] - cum[k - 1][None, :]  # Σ_{τ=k}^{t} η_τ
    live = k[None, :] <= tt[:, None]
    x = eta[k][None, :] ** (-gamma) * s_k.clamp(min=0)
    g = 1 - (C * x + 1) ** (-beta)
    return B * (gap[k - 1][None, :] * torch.where(live, g, torch.zeros_like(g))).sum(1)


def mpl_predict(p: dict[str, Any], lrs: np.ndarray | Tensor, t: np.ndarray | Tensor) -> Tensor:
    """The multi-power law L(t) = L0 + A·S1(t)^(−α) − LD(t) (module docstring) with parameters `p`
    {L0, A, alpha, B, C, beta, gamma} (floats or 0-d tensors)."""
    eta = _t64(lrs)
    tt = torch.as_tensor(np.asarray(t), dtype=torch.long)
    return p["L0"] + p["A"] * _s1(eta, tt) ** (-p["alpha"]) - mpl_loss_drop(eta, tt, p["B"], p["C"], p["beta"], p["gamma"])


def power_predict(p: dict[str, Any], lrs: np.ndarray | Tensor, t: np.ndarray | Tensor) -> Tensor:
    """The S1-only power law L0 + A·S1(t)^(−α) (the MPL with B = 0)."""
    tt = torch.as_tensor(np.asarray(t), dtype=torch.long)
    return p["L0"] + p["A"] * _s1(_t64(lrs), tt) ** (-p["alpha"])


def momentum_area(lrs: np.ndarray | Tensor, t: np.ndarray | Tensor, lam: float) -> Tensor:
    """Tissue et al.'s annealing area S2(t) = Σ_{i=1}^{t} m_i, m_i = λ·m_{i−1} + (η_{i−1} − η_i), m_0 = 0."""
    eta = _t64(lrs).numpy()
    d = np.concatenate([[0.0], eta[:-1] - eta[1:]])
    m = lfilter([1.0], [1.0, -lam], d)  # m_i = λ·m_{i−1} + d_i
    return torch.from_numpy(np.cumsum(m))[torch.as_tensor(np.asarray(t), dtype=torch.long)]


def momentum_predict(p: dict[str, Any], lrs: np.ndarray | Tensor, t: np.ndarray | Tensor) -> Tensor:
    """Tissue et al. (2024): L0 + A·S1(t)^(−α) − C·S2(t) with λ = p["lam"] fixed (not fitted)."""
    tt = torch.as_tensor(np.asarray(t), dtype=torch.long)
    return p["L0"] + p["A"] * _s1(_t64(lrs), tt) ** (-p["alpha"]) - p["C"] * momentum_area(lrs, tt, float(p["lam"]))


LAWS: dict[str, tuple[Callable[..., Tensor], tuple[str, ...]]] = {
    "mpl": (mpl_predict, ("L0", "A", "alpha", "B", "C", "beta", "gamma")),
    "power": (power_predict, ("L0", "A", "alpha")),
    "momentum": (momentum_predict, ("L0", "A", "alpha", "C")),
}
"""law name -> (predict(p, lrs, t), its fitted parameters)."""


# ------------------------------------------------------------------------------------------------ the fit
def huber(r: Tensor, delta: float = HUBER_DELTA) -> Tensor:
    """Huber loss ½r² for |r| < δ, δ·(|r| − ½δ) otherwise (elementwise; `scipy.special.huber(δ, r)`)."""
    a = r.abs()
    return torch.where(a < delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def fit_objective(law: str, p: dict[str, Any], curves: Sequence[Curve], delta: float = HUBER_DELTA) -> Tensor:
    """Σ_curves Σ_points huber_δ(log L_obs − log L_pred): the official code's objective (prediction clamped at 1e-10)."""
    predict, _ = lookup(LAWS, law, "schedule law")
    tot = torch.zeros((), dtype=torch.float64)
    for c in curves:
        pred = predict(p, c.lrs, c.t)
        tot = tot + huber(torch.log(_t64(c.loss)) - torch.log(pred.clamp(min=1e-10)), delta).sum()
    return tot


# Fitted in u-space: L0 as is, every other parameter as its log (all are positive in the paper's fits).
def _to_params(names: tuple[str, ...], u: Tensor, fixed: dict[str, float]) -> dict[str, Any]:
    return {**fixed, **{n: (u[i] if n == "L0" else torch.exp(u[i])) for i, n in enumerate(names)}}


def _to_u(names: tuple[str, ...], p: dict[str, float]) -> np.ndarray:
    return np.array([p[n] if n == "L0" else math.log(max(p[n], 1e-12)) for n in names])


def objective_and_grad(law: str, u: np.ndarray, curves: Sequence[Curve], fixed: dict[str, float] | None = None,
                       scale: float = 1.0) -> tuple[float, np.ndarray]:
    """(scale · objective, its gradient) at u-space parameters `u` (L0, then log of the others; the law's parameters
    in order, less those in `fixed`), by autograd."""
    names = _free(law, dict(fixed or {}))
    ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
    f = fit_objective(law, _to_params(names, ut, dict(fixed or {})), curves) * scale
    if not torch.isfinite(f):
        return 1e30, np.zeros_like(u)
    (g,) = torch.autograd.grad(f, ut)
    return float(f.detach()), g.numpy().copy()


@dataclass
class LawFit:
    """A fitted law: `params` (fitted and fixed), `objective` (summed Huber at the optimum), `converged`
    (scipy's success at the best start), `n_starts`, and `flags` (exponents outside (0.01, 3), L0 or a
    coefficient at its bound)."""

    law: str
    params: dict[str, float]
    objective: float
    converged: bool
    n_starts: int
    flags: list[str] = field(default_factory=list)

    def predict(self, lrs: np.ndarray, t: np.ndarray) -> np.ndarray:
        predict, _ = lookup(LAWS, self.law, "schedule law")
        with torch.no_grad():
            return predict(self.params, lrs, t).numpy()


LOG_BOUNDS = {"A": (1e-6, 1e3), "alpha": (1e-3, 3.0), "B": (1e-8, 1e8), "C": (1e-6, 1e6), "beta": (1e-3, 10.0), "gamma": (1e-3, 3.0)}
"""Box of the positive parameters (fitted as logs); L0 is boxed in [0, min L]. A fit on a bound is flagged."""


def _bounds(names: tuple[str, ...], lmin: float) -> list[tuple[float, float]]:
    return [(0.0, lmin) if n == "L0" else tuple(math.log(b) for b in LOG_BOUNDS[n]) for n in names]


def _free(law: str, fixed: dict[str, float]) -> tuple[str, ...]:
    """The law's parameters that are fitted: all but those held in `fixed`."""
    _, names = lookup(LAWS, law, "schedule law")
    return tuple(n for n in names if n not in fixed)


def _refine(law: str, u0: np.ndarray, curves: Sequence[Curve], fixed: dict[str, float], maxiter: int) -> Any:
    names = _free(law, fixed)
    bounds = _bounds(names, min(float(c.loss.min()) for c in curves))
    u0 = np.clip(u0, [b[0] for b in bounds], [b[1] for b in bounds])
    return minimize(_wrap, u0, args=(law, curves, fixed, 1.0 / HUBER_DELTA**2), jac=True, method="L-BFGS-B", bounds=bounds,
                    options={"maxiter": maxiter, "ftol": 1e-14, "gtol": 1e-10})


def _wrap(u: np.ndarray, law: str, curves: Sequence[Curve], fixed: dict[str, float], scale: float) -> tuple[float, np.ndarray]:
    return objective_and_grad(law, u, curves, fixed, scale)


def initial_guess(curves: Sequence[Curve]) -> dict[str, float]:
    """The official code's start (`initialize_params`): OLS of log(L − min L + 0.01) on log S1 for A and α, then the
    5·3·3·3 grid over the simplified law L0 + A·S1^(−α) − B·(η_max − η_t) (module docstring), each refined by
    L-BFGS-B; the best, with C = 1, β = γ = 0.5."""
    lmin = min(float(c.loss.min()) for c in curves)
    eta_max = max(float(c.lrs.max()) for c in curves)
    lx = np.concatenate([np.log(np.cumsum(c.lrs)[c.t]) for c in curves])
    ly = np.concatenate([np.log(c.loss - lmin + 0.01) for c in curves])
    slope, intercept = np.polyfit(lx, ly, 1)
    data = [(np.cumsum(c.lrs)[c.t], eta_max - c.lrs[c.t], c.loss) for c in curves]

    def simple(q: np.ndarray) -> float:
        L0, A, a, B = q
        tot = 0.0
        for s1, drop, y in data:
            pred = np.maximum(L0 + A * s1 ** (-a) - B * drop, 1e-10)
            tot += float(sp_huber(HUBER_DELTA, np.log(y) - np.log(pred)).sum())
        return tot / HUBER_DELTA**2

    best, best_f = None, math.inf
    A0 = math.exp(intercept)
    grid = product(np.linspace(lmin - 0.2, lmin + 0.2, 5), [max(A0 - 0.1, 1e-3), A0, A0 + 0.1],
                   [max(-slope - 0.1, 1e-3), max(-slope, 2e-3), -slope + 0.1], np.linspace(0.03, 0.3, 3) / eta_max)
    with np.errstate(all="ignore"):  # far-off trial points overflow to inf; L-BFGS-B backs off from them
        for q0 in grid:
            r = minimize(simple, np.array(q0), method="L-BFGS-B", bounds=[(0, None)] * 4, options={"maxiter": 2000, "ftol": 1e-12})
            if r.fun < best_f:
                best, best_f = r.x, r.fun
    L0, A, a, B = (float(v) for v in best)
    return {"L0": L0, "A": max(A, 1e-6), "alpha": max(a, 1e-3), "B": max(B, 1e-6), "C": 1.0, "beta": 0.5, "gamma": 0.5}


def fit_law(law: str, curves: Sequence[Curve], *, fixed: dict[str, float] | None = None, start: dict[str, float] | None = None,
            maxiter: int = 1000) -> LawFit:
    """Fit `law` ("mpl", "power", "momentum") to `curves` by the summed Huber objective (module docstring).

    Starts: `start` (default `initial_guess(curves)`) and, for the MPL, four more (C, β, γ) ∈ {(0.5, 0.3, 0.3),
    (2, 0.6, 0.6), (1, 0.3, 0.6), (1, 0.6, 0.3)}; for the momentum law C·(η_max) ∈ {0.01, 0.1, 1}. The best refined start wins.
    `fixed` holds parameters that are not fitted (the momentum law's λ, or one of the law's own parameters held at a
    value, as `profile_objective` does); a fixed parameter is not flagged."""
    fixed = dict(fixed or {})
    names = _free(law, fixed)
    s0 = dict(start or initial_guess(curves))
    eta_max = max(float(c.lrs.max()) for c in curves)
    if law == "mpl":
        starts = [s0] + [{**s0, "C": C, "beta": b, "gamma": g} for C, b, g in [(0.5, 0.3, 0.3), (2.0, 0.6, 0.6), (1.0, 0.3, 0.6), (1.0, 0.6, 0.3)]]
        starts = [{k: v for k, v in st.items() if k not in fixed} for st in starts]
    elif law == "momentum":
        starts = [{**s0, "C": c / eta_max} for c in (0.01, 0.1, 1.0)]
    else:
        starts = [s0]
    best = None
    for s in starts:
        r = _refine(law, _to_u(names, s), curves, fixed, maxiter)
        if best is None or r.fun < best.fun:
            best = r
    with torch.no_grad():
        p = {k: float(v) for k, v in _to_params(names, torch.tensor(best.x), fixed).items()}
    lmin = min(float(c.loss.min()) for c in curves)
    flags = [f"{k} = {p[k]:.3g} outside (0.01, 3)" for k in ("alpha", "beta", "gamma") if k in names and not 0.01 < p[k] < 3]
    flags += [f"L0 = {p['L0']:.4g} at its bound [0, {lmin:.4g}]" for _ in [0] if "L0" in names and not 1e-3 * lmin < p["L0"] < (1 - 1e-4) * lmin]
    flags += [f"{k} = {p[k]:.3g} at its bound" for k in ("A", "B", "C") if k in names and not 1.01 * LOG_BOUNDS[k][0] < p[k] < 0.99 * LOG_BOUNDS[k][1]]
    return LawFit(law, p, float(best.fun) * HUBER_DELTA**2, bool(best.success), len(starts), flags)


def profile_objective(law: str, curves: Sequence[Curve], name: str, values: Sequence[float], *, start: dict[str, float] | None = None,
                      maxiter: int = 1000) -> list[LawFit]:
    """The profile of the fit objective over one parameter: for each v in `values`, `fit_law` with `name` held at v
    and every other parameter refitted, min_{θ: θ_name = v} Σ huber_δ(log L_obs − log L_pred). A profile that is flat
    (or falls monotonically to a bound) says the curves do not pin `name` down (profile likelihood, e.g. Raue et al.
    2009, "Structural and practical identifiability analysis ... exploiting the profile likelihood", Bioinformatics)."""
    return [fit_law(law, curves, fixed={name: float(v)}, start=start, maxiter=maxiter) for v in values]


def relative_error(fit: LawFit, curve: Curve, from_t: int = -1) -> dict[str, float]:
    """Mean and max |L_pred − L_obs|/L_obs over the points of `curve` with t > `from_t` (the official
    `evaluation.py`'s PredE and WorstE), and the error at the last point."""
    keep = curve.t > from_t
    pred = fit.predict(curve.lrs, curve.t[keep])
    e = np.abs(pred - curve.loss[keep]) / curve.loss[keep]
    return {"mean": float(e.mean()), "max": float(e.max()), "final": float(e[-1]), "n": int(keep.sum())}


# ------------------------------------------------------------------------------------------------ the runs
def train_curves(worlds: Sequence[Any], seeds: Sequence[int], model_cfg: Any, *, schedule: str, steps: int, lr: float, warmup: int,
                 batch_size: int, eval_every: int, eval_tokens: int, schedule_kwargs: dict[str, Any] | None = None,
                 device: str = "cpu", fast: bool = False) -> list[dict[str, Any]]:
    """Train one GPT per replicate (world k = `worlds[k]`, a `TaskLanguage`; init seed and stream seed `seeds[k]`)
    under one LR schedule, the K models as one `StackedGPT` (`train.lm.train_lm_stacked`, exact per model), and
    return per replicate {"t", "loss", "lrs", "train_loss", "wall_s"}: the validation loss (a fixed set of
    `eval_tokens` targets from the replicate's own world) at every `eval_every` updates (t = updates − 1), the LR
    of every update, and the per-update training loss."""
    from lossbook import repro
    from lossbook.models.gpt import GPT, StackedGPT
    from lossbook.train.lm import evaluate_lm_stacked, fast_options, stack_batches, train_lm_stacked

    opts = fast_options(model_cfg.d_model, device) if fast else {"model": {}, "train": {}}
    models = []
    for s in seeds:
        repro.seed_everything(int(s))
        models.append(GPT(model_cfg, **opts["model"]))
    stack = StackedGPT.from_models(models)
    T = model_cfg.block_size
    get_batch = stack_batches([w.batch_fn(batch_size, T, seed=int(s)) for w, s in zip(worlds, seeds, strict=True)])
    vals = [w.eval_set(T, eval_tokens, seed=int(s)) for w, s in zip(worlds, seeds, strict=True)]
    val = [(torch.stack([v[i][0] for v in vals]), torch.stack([v[i][1] for v in vals])) for i in range(len(vals[0]))]
    dtype = opts["train"].get("dtype", "float32")
    hists = train_lm_stacked(stack, get_batch, steps=steps, lr=lr, schedule=schedule, warmup=warmup, device=device, progress=False,
                             eval_fn=lambda step: [{"val": v} for v in evaluate_lm_stacked(stack, val, device, dtype)], eval_every=eval_every,
                             schedule_kwargs=schedule_kwargs, fused=bool(opts["train"].get("fused", False)), dtype=dtype)
    lrs = schedule_lrs(schedule, steps, lr, warmup, **dict(schedule_kwargs or {}))
    return [{"t": [e["step"] - 1 for e in h["eval"]], "loss": [e["val"] for e in h["eval"]], "lrs": lrs.tolist(), "train_loss": h["loss"],
             "wall_s": h["wall_s"]} for h in hists]


# ------------------------------------------------------------------------------------------------ the river-valley toy
def river_valley_bigram(schedule: str, *, steps: int, lr: float, vocab: int = 64, det_frac: float = 0.5, batch_size: int = 32,
                        warmup: int = 0, seed: int = 0, init_std: float = 1.0, log_every: int = 10, schedule_kwargs: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """A bigram language with heterogeneous next-token uncertainty, trained by minibatch SGD on a logit table.

    After Wen, Li, Wang, Hall, Liang, Ma (2024), "Understanding Warmup-Stable-Decay Learning Rates: A River Valley
    Loss Landscape Perspective", arXiv 2410.05192, whose bigram toy shows a river valley arising from tokens of
    different uncertainty. The current token i is uniform over `vocab`; for the first ⌊det_frac·V⌋ tokens the next
    token is a fixed π(i) (deterministic), for the others it is uniform over V (stochastic). The model is a logit
    table W [V, V] (init N(0, `init_std`²)), p(·|i) = softmax(W_i); SGD on the mean CE of `batch_size` sampled pairs, LR
    `lr · lr_multiplier(schedule, t, steps, warmup, **schedule_kwargs)`.

    The population loss splits exactly into a *river* part, the deterministic rows' −log p(π(i)|i), which only
    falls as their margins grow (a flat direction: the Hessian vanishes as the loss does), and a *hill* part, the
    stochastic rows' excess KL(U ‖ p(·|i)) = CE − log V, which has a finite optimum (W_i constant) where SGD
    noise keeps the iterate oscillating at a height ∝ LR. Both are weighted by their share of tokens, so
    loss = river + hill + (1 − det_frac)·log V. Returns {"step", "lr", "loss", "river", "hill"} every
    `log_every` updates (after the update).
    """
    g = torch.Generator().manual_seed(seed)
    V = vocab
    n_det = int(det_frac * V)
    perm = torch.randperm(V, generator=g)
    W = init_std * torch.randn(V, V, generator=g, dtype=torch.float64)
    det = torch.arange(V) < n_det
    skw = dict(schedule_kwargs or {})
    out: dict[str, list[float]] = {k: [] for k in ("step", "lr", "loss", "river", "hill")}
    rows = torch.arange(V)
    for step in range(steps):
        eta = lr * lr_multiplier(schedule, step, steps, warmup, **skw)
        i = torch.randint(0, V, (batch_size,), generator=g)
        nxt = torch.where(det[i], perm[i], torch.randint(0, V, (batch_size,), generator=g))
        p = torch.softmax(W[i], dim=1)
        p[torch.arange(batch_size), nxt] -= 1.0
        W.index_add_(0, i, p, alpha=-eta / batch_size)
        if (step + 1) % log_every == 0 or step == steps - 1:
            logp = torch.log_softmax(W, dim=1)
            river = float(-logp[rows[det], perm[det]].sum()) / V
            hill = float((-logp[~det].mean(1) - math.log(V)).sum()) / V
            for k, v in (("step", step + 1), ("lr", eta), ("river", river), ("hill", hill), ("loss", river + hill + (1 - n_det / V) * math.log(V))):
                out[k].append(v)
    return {k: np.asarray(v) for k, v in out.items()}

