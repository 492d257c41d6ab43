"""Train-time losses studied for calibration, each per-example capable (`reduction`); by name in `calibration.registry`.

Notation: logits z (n, C), targets y (n,), p = softmax(z), p_y the probability of the true class,
L = -log p_y the cross-entropy. Every loss is `fn(logits, targets, *, reduction="mean"|"sum"|"none", **hp)`;
`calibration.registry.get_loss(name, **hp)` returns a `(logits, targets) -> scalar mean` closure for `train_classifier`.

| name | formula | paper |
|---|---|---|
| ce | -log p_y | |
| focal | -(1 - p_y)^γ log p_y | Lin et al. 2017; Mukhoti et al. 2020 |
| flsd53 | focal with γ = 5 if p_y < 0.2 else 3 (γ picked per sample, not differentiated) | Mukhoti et al. 2020 |
| label_smoothing | -(1-ε) log p_y - (ε/C) Σ_k log p_k (`train.losses`, shared) | Szegedy et al. 2016; Müller et al. 2019 |
| brier | Σ_k (p_k - 1[k=y])^2 | Brier 1950 |
| squentropy | -log p_y + (1/(C-1)) Σ_{j≠y} z_j^2 (raw logits) | Hui, Belkin, Wright 2023 |
| comp_sum | Φ_τ(u), u = Σ_{y'≠y} e^{z_y' - z_y} = (1-p_y)/p_y | Mao, Mohri, Zhong 2023 |
| gce | (1 - p_y^q)/q = comp_sum with τ = 1 + q | Zhang & Sabuncu 2018 |
| z_loss | (1/a) softplus(a (b - z̄_y)), z̄ = (z - mean z)/std z | de Brébisson & Vincent 2016 |
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lossbook.train.losses import reduce

Reduction = Literal["mean", "sum", "none"]

__all__ = [
    "brier_loss",
    "comp_sum_loss",
    "cross_entropy",
    "flsd53_loss",
    "focal_loss",
    "gce_loss",
    "squentropy_loss",
    "symmetric_label_noise",
    "z_loss",
]


def _logp_y(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Cross-entropy -log softmax(z)_y."""
    return reduce(-_logp_y(logits, targets), reduction)


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, gamma: float = 3.0, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Focal loss FL_γ = -(1 - p_y)^γ log p_y (Lin et al. 2017, "Focal Loss for Dense Object Detection";
    for calibration: Mukhoti et al. 2020, "Calibrating Deep Neural Networks using Focal Loss", NeurIPS).

    γ = 0 is cross-entropy. The factor (1 - p_y)^γ is differentiated (as in the reference code).
    """
    logp = _logp_y(logits, targets)
    return reduce(-((1 - logp.exp()).clamp_min(0) ** gamma) * logp, reduction)


def flsd53_loss(logits: torch.Tensor, targets: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """FLSD-53 (Mukhoti et al. 2020): focal loss with a sample-dependent γ = 5 if p_y < 0.2 else 3.

    The choice of γ uses p_y without gradient (it is a schedule, as in `focal_loss_adaptive_gamma.py`,
    vectorised here instead of a per-sample Python loop; note the reference's default reduction is sum).
    """
    logp = _logp_y(logits, targets)
    p = logp.exp()
    gamma = torch.where(p.detach() < 0.2, 5.0, 3.0).to(logits.dtype)
    return reduce(-((1 - p).clamp_min(0) ** gamma) * logp, reduction)


def brier_loss(logits: torch.Tensor, targets: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Multiclass Brier score as a loss: Σ_k (p_k - 1[k = y])^2 in [0, 2] (Brier 1950; used as a
    training loss for calibration by Mukhoti et al. 2020). Not divided by C."""
    p = torch.softmax(logits, dim=-1)
    onehot = F.one_hot(targets, logits.shape[-1]).to(p.dtype)
    return reduce(((p - onehot) ** 2).sum(1), reduction)


def squentropy_loss(logits: torch.Tensor, targets: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Squentropy (Hui, Belkin, Wright 2023, "Cut your Losses with Squentropy", ICML):

    ℓ = -log p_y + (1/(C-1)) Σ_{j≠y} z_j^2,

    the mean square of the **raw logits** of the wrong classes (official `svhn.py`, "sqen" branch), not of
    probabilities (squaring softmax outputs would give a Brier-like term instead).
    """
    c = logits.shape[-1]
    mask = 1.0 - F.one_hot(targets, c).to(logits.dtype)
    sq = (logits**2 * mask).sum(1) / (c - 1)
    return reduce(-_logp_y(logits, targets) + sq, reduction)


def comp_sum_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, tau: float = 1.0, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Comp-sum family (Mao, Mohri, Zhong 2023, "Cross-Entropy Loss Functions: Theoretical Analysis and
    Applications", ICML, arXiv 2304.07288): ℓ_τ = Φ_τ(u) with u = Σ_{y'≠y} exp(z_y' - z_y) = (1 - p_y)/p_y,

    Φ_τ(u) = ((1 + u)^{1-τ} - 1)/(1 - τ) for τ ≠ 1,  log(1 + u) for τ = 1.

    Since 1 + u = 1/p_y: τ = 0 is sum-exponential (u), τ = 1 cross-entropy, τ ∈ (1, 2) GCE with
    q = τ - 1, i.e. (1 - p_y^q)/q, τ = 2 MAE, 1 - p_y. Computed as expm1((1-τ) L)/(1-τ), L = -log p_y.
    """
    nll = -_logp_y(logits, targets)
    if abs(tau - 1.0) < 1e-12:
        loss = nll
    else:
        loss = torch.expm1((1.0 - tau) * nll) / (1.0 - tau)
    return reduce(loss, reduction)


def gce_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, q: float = 0.7, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Generalized cross-entropy (1 - p_y^q)/q (Zhang & Sabuncu 2018, NeurIPS) = comp_sum with τ = 1 + q."""
    return comp_sum_loss(logits, targets, tau=1.0 + q, reduction=reduction)


def z_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    a: float = 1.0,
    b: float = 2.0,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Z-loss (de Brébisson & Vincent 2016, "The Z-loss: a shift and scale invariant classification loss
    belonging to the Spherical Family", arXiv 1604.08859): with μ = mean_k z_k and σ the (population)
    standard deviation of z, z̄ = (z - μ)/σ and

    L = (1/a) · softplus(a (b - z̄_y)).

    Invariant to z -> αz + β (α > 0). Not PaLM's log-Z auxiliary loss. z̄_y ≤ sqrt(C-1), so `b` should stay
    below that; a and b are hyperparameters (our defaults a=1, b=2 are a choice, not the paper's tuned
    values). softmax(z) of a Z-loss net is not a calibrated probability (its scale is free): fit a
    temperature before measuring ECE.
    """
    mu = logits.mean(1, keepdim=True)
    sigma = logits.std(1, unbiased=False, keepdim=True).clamp_min(eps)
    zbar_y = ((logits - mu) / sigma).gather(1, targets[:, None]).squeeze(1)
    return reduce(F.softplus(a * (b - zbar_y)) / a, reduction)


def symmetric_label_noise(labels: torch.Tensor, rate: float, n_classes: int, *, seed: int = 0) -> torch.Tensor:
    """Symmetric label noise (the setting of Zhang & Sabuncu 2018): a `rate` fraction of the labels, chosen
    at random, is replaced by a uniformly drawn *different* class. Deterministic given `seed`."""
    g = torch.Generator().manual_seed(seed)
    y = labels.clone()
    flip = torch.rand(len(y), generator=g) < rate
    offset = torch.randint(1, n_classes, (len(y),), generator=g)
    y[flip] = (y[flip] + offset[flip]) % n_classes
    return y
