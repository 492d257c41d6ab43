"""Calibration metrics: ECE (equal-width and equal-mass), classwise ECE, debiased L2, Brier, NLL, balance score.

Notation: n examples, C classes, predicted probabilities p (n, C), labels y, top-label confidence
c_i = max_k p_ik, correctness a_i = 1[argmax_k p_ik = y_i]. Every binned estimator is built on one
1-D primitive, `calibration_error(conf, outcome)`, which bins (confidence, 0/1 outcome) pairs and returns

    CE_p = ( sum_b (n_b / n) |mean(outcome)_b - mean(conf)_b|^p )^(1/p)     (p = 1: ECE; "max": MCE).

Binning (the boundary cases users hit in torchmetrics #3510/#1646/#1744 and focal_calibration's
ceil(B c - 1)):

* ``strategy="uniform"`` (equal width, Guo et al. 2017): bin b = [b/B, (b+1)/B) for b < B-1, and the
  last bin is closed, [(B-1)/B, 1]. The index is ``min(floor(B c), B - 1)``, so c = 0 lands in bin 0 and
  c = 1 in bin B-1 (never in a phantom bin B or in bin -1). Empty bins get weight 0.
* ``strategy="quantile"`` (equal mass, "AdaECE", Nguyen & O'Connor 2015; Mukhoti et al. 2020): sort the
  confidences and cut them into B groups of sizes given by ``np.array_split`` (the first n mod B groups one
  larger), as in ``calibration.get_equal_bins`` (Kumar et al. 2019). Tied confidences are kept in one bin
  (the bin of the tie's first member), so saturated confidences (many c = 1.0) form one bin instead of
  being split arbitrarily; such bins may then hold more than n/B samples and some bins may be empty.

Inputs may be numpy arrays or torch tensors; results are python floats (or numpy arrays for diagrams).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor | list
Strategy = Literal["uniform", "quantile"]

__all__ = [
    "BinStats",
    "ReliabilityData",
    "SyntheticBinary",
    "as_numpy",
    "balance_score",
    "bin_stats",
    "binned_estimates",
    "brier",
    "calibration_error",
    "classwise_ece",
    "confidence_and_correct",
    "debiased_l2_ce",
    "ece",
    "mce",
    "nll",
    "offsetting_model",
    "oscillating_model",
    "reliability_diagram",
    "summary_metrics",
    "temperature_model",
    "top_label_debiased_l2",
]


def as_numpy(x: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """A float64 (or `dtype`) numpy copy of a tensor, array or list."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_probs(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = as_numpy(probs)
    y = as_numpy(labels, np.int64)
    if p.ndim != 2:
        raise ValueError(
            f"probs must be (n, C) class probabilities, got shape {p.shape}. For a binary score P(y=1) of shape "
            "(n,), pass np.stack([1 - p, p], 1); for (confidence, outcome) pairs use calibration_error(conf, outcome)."
        )
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"labels must be (n,) integers matching probs' n={p.shape[0]}, got shape {y.shape}.")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1] - 1}] (C = probs.shape[1]), got [{y.min()}, {y.max()}].")
    if p.size and (np.nanmin(p) < -1e-6 or np.nanmax(p) > 1 + 1e-6 or np.isnan(p).any()):
        raise ValueError("probs must be probabilities in [0, 1] (did you pass logits? apply softmax first).")
    return np.clip(p, 0.0, 1.0), y


def confidence_and_correct(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence c_i = max_k p_ik and correctness a_i = 1[argmax_k p_ik = y_i] (ties: lowest index)."""
    p, y = _check_probs(probs, labels)
    return p.max(1), (p.argmax(1) == y).astype(np.float64)


def _bin_index(conf: np.ndarray, n_bins: int, strategy: Strategy) -> np.ndarray:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        return np.minimum(np.floor(conf * n_bins), n_bins - 1).astype(np.int64).clip(0)
    if strategy == "quantile":
        n = conf.size
        order = np.argsort(conf, kind="stable")
        pos_bin = np.empty(n, dtype=np.int64)
        for b, chunk in enumerate(np.array_split(np.arange(n), min(n_bins, max(n, 1)))):
            pos_bin[chunk] = b
        s = conf[order]
        # ties: every member of a group of equal confidences takes the bin of the group's first member
        first = np.r_[True, s[1:] != s[:-1]] if n else np.zeros(0, bool)
        group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, np.int64)
        idx = np.empty(n, dtype=np.int64)
        idx[order] = pos_bin[group_start]
        return idx
    raise ValueError(f"strategy must be 'uniform' (equal width) or 'quantile' (equal mass), got {strategy!r}")


@dataclass(frozen=True)
class BinStats:
    """Per-bin counts, mean confidence and mean outcome (NaN where a bin is empty), and bin edges.

    For `quantile` bins the edges are the min/max confidence inside each bin (NaN when empty).
    """

    count: np.ndarray
    conf: np.ndarray
    outcome: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @property
    def weight(self) -> np.ndarray:
        n = self.count.sum()
        return self.count / n if n else np.zeros_like(self.count, dtype=float)


def bin_stats(conf: ArrayLike, outcome: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform") -> BinStats:
    """Bin (confidence, outcome) pairs; see the module docstring for the binning rules."""
    c = as_numpy(conf).ravel()
    o = as_numpy(outcome).ravel()
    if c.shape != o.shape:
        raise ValueError(f"conf and outcome must have the same length, got {c.shape} and {o.shape}")
    if c.size and (c.min() < -1e-9 or c.max() > 1 + 1e-9 or np.isnan(c).any()):
        raise ValueError("confidences must lie in [0, 1]")
    c = c.clip(0.0, 1.0)
    idx = _bin_index(c, n_bins, strategy)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mconf = np.bincount(idx, weights=c, minlength=n_bins) / count
        mout = np.bincount(idx, weights=o, minlength=n_bins) / count
    if strategy == "uniform":
        lower = np.arange(n_bins) / n_bins
        upper = (np.arange(n_bins) + 1) / n_bins
    else:
        lower = np.full(n_bins, np.nan)
        upper = np.full(n_bins, np.nan)
        if c.size:
            np.fmin.at(lower, idx, c)
            np.fmax.at(upper, idx, c)
    return BinStats(count, mconf, mout, lower, upper)


def calibration_error(
    conf: ArrayLike,
    outcome: ArrayLike,
    n_bins: int = 15,
    strategy: Strategy = "uniform",
    norm: Literal["l1", "l2", "max"] = "l1",
) -> float:
    """Binned calibration error of 1-D confidences against 0/1 outcomes.

    l1: sum_b (n_b/n) |ō_b - c̄_b| (ECE); l2: sqrt(sum_b (n_b/n)(ō_b - c̄_b)^2) (plug-in RMSCE);
    max: max over non-empty bins of |ō_b - c̄_b| (MCE). Guo et al. 2017, "On Calibration of Modern
    Neural Networks", eq. 3 and 5; Naeini et al. 2015. Returns 0.0 for empty input.
    """
    s = bin_stats(conf, outcome, n_bins, strategy)
    nz = s.count > 0
    if not nz.any():
        return 0.0
    gap = np.abs(s.outcome[nz] - s.conf[nz])
    w = s.weight[nz]
    if norm == "l1":
        return float(np.sum(w * gap))
    if norm == "l2":
        return float(np.sqrt(np.sum(w * gap**2)))
    if norm == "max":
        return float(gap.max())
    raise ValueError(f"norm must be 'l1', 'l2' or 'max', got {norm!r}")


def ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform") -> float:
    """Top-label expected calibration error (Guo et al. 2017, ICML, eq. 3).

    ECE = sum_b (|B_b| / n) |acc(B_b) - conf(B_b)|, with conf = max_k p_k and acc the fraction of correct
    top-1 predictions in the bin. `strategy="uniform"`: 15 equal-width bins (Guo's ECE);
    `strategy="quantile"`: equal-mass bins (AdaECE, Mukhoti et al. 2020). probs: (n, C); labels: (n,).
    """
    c, a = confidence_and_correct(probs, labels)
    return calibration_error(c, a, n_bins, strategy, "l1")


def mce(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform") -> float:
    """Maximum calibration error max_b |acc(B_b) - conf(B_b)| over non-empty bins (Guo et al. 2017, eq. 5)."""
    c, a = confidence_and_correct(probs, labels)
    return calibration_error(c, a, n_bins, strategy, "max")


def classwise_ece(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    strategy: Strategy = "uniform",
    classes: Literal["all", "present"] = "all",
) -> float:
    """Classwise ECE (static calibration error, SCE; Nixon et al. 2019; Kull et al. 2019):

    cwECE = (1/K) sum_k sum_b (n_bk / n) |mean_{i in b}(1[y_i = k]) - mean_{i in b}(p_ik)|.

    C is taken from probs.shape[1], never from max(label)+1 (focal_calibration's bug). A class absent
    from `labels` still counts under `classes="all"` (its outcome is always 0, so any mass predicted for it
    is miscalibration); `classes="present"` averages over classes that occur in `labels` only.
    """
    p, y = _check_probs(probs, labels)
    ks = range(p.shape[1]) if classes == "all" else np.unique(y)
    if classes not in ("all", "present"):
        raise ValueError(f"classes must be 'all' or 'present', got {classes!r}")
    vals = [calibration_error(p[:, k], (y == k).astype(float), n_bins, strategy, "l1") for k in ks]
    return float(np.mean(vals)) if vals else 0.0


def debiased_l2_ce(conf: ArrayLike, outcome: ArrayLike, n_bins: int = 15, strategy: Strategy = "quantile") -> float:
    """Debiased L2 calibration error (Kumar, Liang, Ma 2019, "Verified Uncertainty Calibration", NeurIPS).

    Squared error per bin minus the sampling variance of the bin's outcome mean:
        CE^2 = sum_b (n_b/n) [ (c̄_b - ō_b)^2 - ō_b (1 - ō_b) / (n_b - 1) ],
    bins with n_b < 2 contribute 0; the sum is clamped at 0 (it can be negative) and its square root
    returned. Default equal-mass bins as in the paper's code (`calibration.get_calibration_error`).
    """
    s = bin_stats(conf, outcome, n_bins, strategy)
    ok = s.count >= 2
    if not ok.any():
        return 0.0
    terms = (s.conf[ok] - s.outcome[ok]) ** 2 - s.outcome[ok] * (1 - s.outcome[ok]) / (s.count[ok] - 1)
    sq = float(np.sum(s.weight[ok] * terms))
    return float(np.sqrt(max(sq, 0.0)))


def binned_estimates(conf: ArrayLike, outcome: ArrayLike, n_bins: int = 15) -> dict[str, float]:
    """The four binned estimators the `calibration_metrics` notebook compares, on (confidence, 0/1 outcome) pairs.

    ``ece``: plug-in L1 error, equal-width bins (Guo et al. 2017's ECE); ``ece_q``: the same, equal-mass bins
    (AdaECE); ``l2_plugin``: plug-in L2 error sqrt(sum_b (n_b/n)(ō_b - c̄_b)^2), equal-mass bins;
    ``l2_debiased``: Kumar, Liang, Ma 2019's debiased L2 (`debiased_l2_ce`), equal-mass bins.
    """
    return {
        "ece": calibration_error(conf, outcome, n_bins, "uniform"),
        "ece_q": calibration_error(conf, outcome, n_bins, "quantile"),
        "l2_plugin": calibration_error(conf, outcome, n_bins, "quantile", norm="l2"),
        "l2_debiased": debiased_l2_ce(conf, outcome, n_bins, "quantile"),
    }


def top_label_debiased_l2(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "quantile") -> float:
    """`debiased_l2_ce` on top-label confidence and correctness (Kumar et al. 2019, top-label mode)."""
    c, a = confidence_and_correct(probs, labels)
    return debiased_l2_ce(c, a, n_bins, strategy)


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multiclass Brier score (Brier 1950): (1/n) sum_i sum_k (p_ik - 1[y_i = k])^2, in [0, 2].

    Not divided by C (some papers do); sklearn's `brier_score_loss` is the binary special case / 2 per class.
    """
    p, y = _check_probs(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1))) if len(y) else 0.0


def nll(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood -(1/n) sum_i log p_{i, y_i}.

    With `from_logits`, the first argument is logits and log p is computed by a stable log-softmax;
    otherwise probabilities are clipped at `eps` so a confident mistake gives a large finite value.
    """
    if from_logits:
        z = as_numpy(probs)
        y = as_numpy(labels, np.int64)
        zmax = z.max(1, keepdims=True)
        logp = z - zmax - np.log(np.exp(z - zmax).sum(1, keepdims=True))
        return float(-np.mean(logp[np.arange(len(y)), y]))
    p, y = _check_probs(probs, labels)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))


def balance_score(probs: ArrayLike, labels: ArrayLike) -> float:
    """Balance score (Choi, Kim, Lee 2023, "Rethinking Evaluation Metric for Probability Estimation Models
    Using Esports Data", arXiv 2309.06248): mean over samples of (a_i - c_i) = accuracy - mean confidence.

    A signed one-bin ECE: 0 is "balanced", negative means over-confident. Regional over- and
    under-confidence cancel, so |balance| <= ECE and a badly calibrated model can score 0.
    For a binary score P(y=1) pass probs = [1 - p, p]: the paper's four cases reduce to this.
    """
    c, a = confidence_and_correct(probs, labels)
    return float(np.mean(a - c)) if len(c) else 0.0


@dataclass(frozen=True)
class ReliabilityData:
    """Data for a reliability diagram: per-bin accuracy vs confidence, counts, edges and the ECE."""

    lower: np.ndarray
    upper: np.ndarray
    conf: np.ndarray
    acc: np.ndarray
    count: np.ndarray
    ece: float
    strategy: str

    @property
    def gap(self) -> np.ndarray:
        """acc - conf per bin (negative: over-confident); NaN for empty bins."""
        return self.acc - self.conf


def reliability_diagram(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform"
) -> ReliabilityData:
    """Per-bin top-label accuracy and mean confidence (Guo et al. 2017, Fig. 1; DeGroot & Fienberg 1983)."""
    c, a = confidence_and_correct(probs, labels)
    s = bin_stats(c, a, n_bins, strategy)
    return ReliabilityData(s.lower, s.upper, s.conf, s.outcome, s.count, calibration_error(c, a, n_bins, strategy), strategy)


# ---------------------------------------------------------------------------------------------------
# Synthetic predictions with known calibration (so the true calibration error is exact, not estimated)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticBinary:
    """Binary predictions with a known conditional: u ~ Beta(a, b), prediction s = pred(u) = P̂(y=1),
    true probability q = truth(u) = P(y=1 | s), label y ~ Bernoulli(q).

    `pred` must be injective in u (so conditioning on s is conditioning on u). The true L_p calibration
    error of s is (∫ |truth(u) - pred(u)|^p Beta(u; a, b) du)^(1/p), integrated numerically; for binary
    predictions it is also the top-label calibration error of [1 - s, s].
    """

    name: str
    pred: Callable[[np.ndarray], np.ndarray]
    truth: Callable[[np.ndarray], np.ndarray]
    a: float = 1.0
    b: float = 1.0

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, y, q): predictions P̂(y=1), 0/1 labels, true P(y=1)."""
        u = rng.beta(self.a, self.b, n)
        s, q = np.clip(self.pred(u), 0.0, 1.0), np.clip(self.truth(u), 0.0, 1.0)
        return s, (rng.random(n) < q).astype(np.int64), q

    def true_ce(self, p: float = 1.0) -> float:
        """Exact L_p calibration error (numerical quadrature over u)."""
        from scipy import integrate, stats

        def f(u: float) -> float:
            uu = np.array([u])
            gap = abs(float(np.clip(self.truth(uu), 0, 1)[0] - np.clip(self.pred(uu), 0, 1)[0]))
            return gap**p * float(stats.beta.pdf(u, self.a, self.b))

        val, _ = integrate.quad(f, 1e-12, 1 - 1e-12, limit=400)
        return float(val ** (1.0 / p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 1e-12, 1 - 1e-12)
    return np.log(u) - np.log1p(-u)


def temperature_model(t: float, a: float = 1.0, b: float = 1.0) -> SyntheticBinary:
    """True probability u; prediction σ(logit(u)/t): t < 1 over-confident, t > 1 under-confident, t = 1 calibrated."""
    return SyntheticBinary(f"temperature {t:g}", lambda u: _sigmoid(_logit(u) / t), lambda u: u, a, b)


def oscillating_model(amplitude: float = 0.1, periods: int = 5) -> SyntheticBinary:
    """Prediction u ~ U(0, 1); truth u + amplitude·sin(2π·periods·u): miscalibrated at fine resolution
    but exactly calibrated on average over any bin [k/periods, (k+1)/periods)."""
    return SyntheticBinary(
        f"oscillating ±{amplitude:g}", lambda u: u, lambda u: u + amplitude * np.sin(2 * np.pi * periods * u)
    )


def offsetting_model(delta: float = 0.1, split: float = 0.75) -> SyntheticBinary:
    """Top-label confidence c = max(s, 1 - s) uniform on [0.5, 1]; P(correct | c) = c + delta below `split`
    (under-confident) and c - delta above it (over-confident). With split = 0.75 the two regions have
    equal mass, so accuracy = mean confidence (Balance score 0) while the true ECE is delta."""

    def truth(s: np.ndarray) -> np.ndarray:
        c = np.maximum(s, 1 - s)
        pc = np.where(c < split, c + delta, c - delta)
        return np.where(s >= 0.5, pc, 1 - pc)

    return SyntheticBinary(f"offsetting ±{delta:g}", lambda u: u, truth)


def ece_floor(probs: ArrayLike, n_bins: int = 15, strategy: Strategy = "uniform", n_draws: int = 20, seed: int = 0) -> float:
    """The plug-in ECE these predictions would score if they were perfectly calibrated: the mean, over
    `n_draws` label sets y* ~ Categorical(p_i), of ECE(p, y*). The estimator's floor at this test-set size
    and confidence distribution (its upward bias, Kumar et al. 2019): an ECE near it is indistinguishable
    from perfect calibration."""
    p = as_numpy(probs)
    rng = np.random.default_rng(seed)
    c, pred = p.max(1), p.argmax(1)
    draws = []
    for _ in range(n_draws):
        u = rng.random(len(p))[:, None]
        y = (u > np.cumsum(p, 1)).sum(1).clip(max=p.shape[1] - 1)
        draws.append(calibration_error(c, (pred == y).astype(np.float64), n_bins, strategy))
    return float(np.mean(draws))


def summary_metrics(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> dict[str, float]:
    """The book's standard row: accuracy, mean confidence, ECE (equal-width and equal-mass), classwise ECE,
    NLL, Brier and the Balance score (accuracy - mean confidence) of probs (n, C) against labels."""
    p, y = _check_probs(probs, labels)
    c, a = p.max(1), (p.argmax(1) == y).astype(np.float64)
    return {
        "acc": float(a.mean()),
        "conf": float(c.mean()),
        "ece": calibration_error(c, a, n_bins, "uniform"),
        "ece_q": calibration_error(c, a, n_bins, "quantile"),
        "cw_ece": classwise_ece(p, y, n_bins),
        "nll": nll(p, y),
        "brier": brier(p, y),
        "balance": float(np.mean(a - c)),
    }


def balance_rule_pass_rates(
    model: SyntheticBinary, n_samples: int, n_replicates: int, n_sets: int, margin: float, seed: int = 0
) -> dict[str, float]:
    """How often two rules for "the Balance score of `model` is 0" pass when its true Balance is exactly 0,
    over `n_sets` simulated replicate sets of `n_replicates` draws of `n_samples` predictions each.

    * ``per_draw_cut``: v0.1's rule, in every replicate |Balance| < 0.01 and its 95% CI contains 0 (the CI
      here by the normal approximation b ± 1.96·sd(a − c)/√n, which the percentile bootstrap tracks closely);
    * ``t_ci_within_margin``: the protocol's rule, the 95% t-CI of the mean Balance over replicates lies in
      ``[−margin, margin]`` (`replicate.mean_within_rule` logic).
    A rule that passes far less than ~95% of the time when its claim is true is a knife edge.
    """
    from scipy import stats as sps

    rng = np.random.default_rng(seed)
    old = new = 0
    for _ in range(n_sets):
        b, se = np.empty(n_replicates), np.empty(n_replicates)
        for r in range(n_replicates):
            s, y, _ = model.sample(n_samples, rng)
            d = (((s >= 0.5).astype(np.int64) == y).astype(np.float64)) - np.maximum(s, 1 - s)
            b[r], se[r] = d.mean(), d.std(ddof=1) / np.sqrt(n_samples)
        old += bool(np.all((np.abs(b) < 0.01) & (np.abs(b) <= 1.96 * se)))
        half = sps.t.ppf(0.975, n_replicates - 1) * b.std(ddof=1) / np.sqrt(n_replicates)
        new += bool(-margin <= b.mean() - half and b.mean() + half <= margin)
    return {"per_draw_cut": old / n_sets, "t_ci_within_margin": new / n_sets}
