"""Pass@N coverage: the direct coverage objective and pass@k estimators.

Chen, Raventós, Cheng, Ganguli, Druckmann (2025), "Rethinking Fine-Tuning when Scaling Test-Time Compute:
Limiting Confidence Improves Mathematical Reasoning" (arXiv 2502.07154, NeurIPS 2025). A model that samples
its answer from p solves an item in N independent draws with probability

    pass@N(p̂) = 1 − (1 − p̂)^N,        p̂ = p(correct answer | x),

and the *direct coverage optimisation* (DCO) loss is its negative log, L_N = −log(1 − (1 − p̂)^N). N = 1 is
cross-entropy. Its gradient is the CE gradient times F_N(p̂) = N p̂ (1 − p̂)^{N−1} / (1 − (1 − p̂)^N), which
tends to 1 as p̂ → 0 and to 0 as p̂ → 1: once an item is solved with high probability over N draws, the
loss stops pushing its confidence up (``coverage_weight``).

Numerics: in log space, log(1 − (1 − p̂)^N) = log1mexp(N · log1mexp(log p̂)), with
log1mexp(a) = log(1 − e^a) for a ≤ 0 computed as log(−expm1(a)) when a > −log 2 and log1p(−e^a) otherwise
(Mächler 2012, "Accurately Computing log(1 − exp(−|a|))"), which is accurate at p̂ → 0 and p̂ → 1.

Pass@k estimators: ``expected_pass_at_k`` (the exact pass@k of a classifier sampling its label from p,
averaged over items) and ``pass_at_k_unbiased`` (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code", from n samples with c correct: 1 − C(n−c, k)/C(n, k) = 1 − Π_{i=n−c+1}^{n} (1 − k/i)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbook.data.classification import Split
from lossbook.train.losses import reduce

__all__ = [
    "coverage_batch_loss",
    "coverage_loss",
    "coverage_weight",
    "expected_pass_at_k",
    "log1mexp",
    "log_pass_at_n",
    "pass_at_k_callback",
    "pass_at_n_at_matched_pass_at_1",
    "pass_at_k_curves",
    "pass_at_k_unbiased",
    "temperature_frontier",
]

_LOG2 = math.log(2.0)


def log1mexp(a: Tensor) -> Tensor:
    """log(1 − e^a) for a ≤ 0, accurate at both ends (Mächler 2012): log(−expm1(a)) for a > −log 2,
    log1p(−e^a) otherwise. a = 0 gives −inf, a = −inf gives 0."""
    near = a > -_LOG2
    # each branch sees only inputs where it is accurate, so the unselected one cannot put inf/NaN in the gradient
    a_near, a_far = torch.where(near, a, -_LOG2), torch.where(near, -_LOG2, a)
    return torch.where(near, torch.log(-torch.expm1(a_near)), torch.log1p(-torch.exp(a_far)))


def log_pass_at_n(log_p: Tensor, n: float) -> Tensor:
    """log pass@N = log(1 − (1 − p)^N) from log p (elementwise), as log1mexp(N · log1mexp(log p)).

    log p is clamped to ≤ −1e-30 first (p = 1 to float precision), where the exact value is 0 to machine
    precision; this keeps the gradient finite (and ≈ 0, its true limit) when a logit margin is huge. Below
    log p = −500, log(N) + log p is used (exact there to double precision; log(1 − p) would round to 0).
    """
    lp = log_p.clamp(max=-1e-30)
    tiny = lp < -500.0  # p < e^-500: 1 − (1 − p)^N = N p to double precision, and log(1 − p) would underflow to 0
    exact = log1mexp(n * log1mexp(torch.where(tiny, -1.0, lp)))
    return torch.where(tiny, math.log(n) + torch.where(tiny, lp, -1.0), exact)


def coverage_loss(logits: Tensor, targets: Tensor, n: float = 16, reduction: str = "mean") -> Tensor:
    """Direct coverage loss of Chen, Raventós et al. (2025): L_N = −log(1 − (1 − p̂)^N), p̂ = softmax(z)_y.

    Computed in float64 in log space (``log_pass_at_n``); N = 1 is cross-entropy. ``reduction`` as in
    ``train.losses.reduce``.
    """
    logp = F.log_softmax(logits.double(), dim=-1).gather(1, targets[:, None]).squeeze(1)
    return reduce(-log_pass_at_n(logp, n), reduction).to(logits.dtype)


def coverage_weight(p: Tensor | np.ndarray, n: float) -> Tensor:
    """F_N(p) = N p (1 − p)^{N−1} / (1 − (1 − p)^N): ∂L_N/∂z = F_N(p̂) · ∂CE/∂z (Chen, Raventós et al. 2025).
    Computed as exp(log N + log p + (N−1) log(1−p) − log pass@N); F_N → 1 as p → 0, → 0 as p → 1."""
    p = torch.as_tensor(p, dtype=torch.float64)
    lp = torch.log(p)
    return torch.exp(math.log(n) + lp + (n - 1) * torch.log1p(-p) - log_pass_at_n(lp, n))


def expected_pass_at_k(p_correct: Tensor | np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """{k: mean_i [1 − (1 − p_i)^k]}: the pass@k of a classifier that draws its label from p, averaged over
    items i with correct-label probability p_i; each term computed as −expm1(k · log1p(−p_i))."""
    p = torch.as_tensor(np.asarray(p_correct, dtype=np.float64))
    return {int(k): float((-torch.expm1(k * torch.log1p(-p))).mean()) for k in ks}


def pass_at_k_unbiased(n: int, c: int | np.ndarray, k: int) -> np.ndarray | float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, Codex paper):
    1 − C(n − c, k) / C(n, k) = 1 − Π_{i=n−c+1}^{n} (1 − k/i), summed in log space; 1 when n − c < k.
    ``c`` may be an array (one count per item); requires 1 ≤ k ≤ n and 0 ≤ c ≤ n."""
    cs = np.asarray(c, dtype=np.int64)
    if not 1 <= k <= n or (cs < 0).any() or (cs > n).any():
        raise ValueError(f"need 1 <= k <= n and 0 <= c <= n, got n={n}, k={k}, c={cs.tolist()}")
    i = np.arange(1, n + 1, dtype=np.float64)
    terms = np.log1p(-k / np.maximum(i, k + 0.5))  # only i > n − c >= k enter (masked below), i > k there
    csum = np.concatenate([[0.0], np.cumsum(terms[::-1])])  # csum[m] = Σ over the m largest i
    out = np.where(n - cs < k, 1.0, -np.expm1(csum[cs]))
    return float(out) if out.ndim == 0 else out


def pass_at_k_curves(logits: Tensor, labels: Tensor, ks: Sequence[int], temperature: float = 1.0) -> dict[int, float]:
    """``expected_pass_at_k`` of softmax(logits / T) at the true labels."""
    logp = F.log_softmax(logits.double() / temperature, dim=-1).gather(1, labels[:, None]).squeeze(1)
    return expected_pass_at_k(logp.exp(), ks)


BatchLoss = Callable[[nn.Module, Tensor, Tensor, Tensor, int], tuple[dict[str, Tensor], Tensor]]


def coverage_batch_loss(kind: str, n: float = 1, eps: float = 0.1) -> BatchLoss:
    """A ``train.loop.fit`` batch loss: ``kind`` "ce" (cross-entropy), "coverage" (``coverage_loss`` at N = n)
    or "label_smoothing" (``train.losses.label_smoothing_loss`` at ε = eps)."""
    from lossbook.train.losses import label_smoothing_loss

    losses = {"ce": lambda z, y: F.cross_entropy(z, y), "coverage": lambda z, y: coverage_loss(z, y, n),
              "label_smoothing": lambda z, y: label_smoothing_loss(z, y, eps)}
    if kind not in losses:
        raise ValueError(f"kind must be one of {sorted(losses)}, got {kind!r}")

    def batch_loss(model: nn.Module, x: Tensor, y: Tensor, idx: Tensor, epoch: int) -> tuple[dict[str, Tensor], Tensor]:
        z = model(x)
        return {kind: losses[kind](z, y)}, z

    return batch_loss


def pass_at_k_callback(split: Split, ks: Sequence[int], *, temperature_scaled: bool = False,
                       device: str | torch.device = "cpu") -> Callable[[int, nn.Module], dict[str, float]]:
    """A ``train.loop.fit`` ``epoch_callback`` recording ``{val,test}_pass_at_k`` (``pass_at_k_curves``) per epoch.

    With ``temperature_scaled`` it also fits T on the validation NLL (``posthoc.fit_temperature``, Guo et
    al. 2017) after every epoch and records ``T`` and ``ts_{val,test}_pass_at_k`` of softmax(z / T): the
    CE + temperature-scaling control, read off the same run.
    """
    from lossbook.calibration.posthoc import fit_temperature
    from lossbook.train.loop import predict_logits

    def callback(epoch: int, model: nn.Module) -> dict[str, float]:
        z = {"val": predict_logits(model, split.x_val, device=device), "test": predict_logits(model, split.x_test, device=device)}
        y = {"val": split.y_val, "test": split.y_test}
        out = {f"{s}_pass_at_{k}": v for s in z for k, v in pass_at_k_curves(z[s], y[s], ks).items()}
        if temperature_scaled:
            out["T"] = t = fit_temperature(z["val"], y["val"])
            out.update({f"ts_{s}_pass_at_{k}": v for s in z for k, v in pass_at_k_curves(z[s], y[s], ks, t).items()})
        return out

    return callback


def temperature_frontier(logits: Tensor, labels: Tensor, ks: Sequence[int], temperatures: Sequence[float]) -> dict[int, np.ndarray]:
    """{k: pass@k of softmax(z / T) for each T in ``temperatures``}: the pass@1-vs-pass@N trade-off that a
    single post-hoc temperature traces on one trained model."""
    rows = [pass_at_k_curves(logits, labels, ks, float(t)) for t in temperatures]
    return {int(k): np.array([r[k] for r in rows]) for k in ks}


def pass_at_n_at_matched_pass_at_1(frontier_p1: np.ndarray, frontier_pn: np.ndarray, target_p1: float) -> float:
    """pass@N on a temperature frontier where its pass@1 equals ``target_p1`` (linear interpolation along the
    frontier sorted by pass@1; clipped to the frontier's ends)."""
    order = np.argsort(frontier_p1)
    return float(np.interp(target_p1, np.asarray(frontier_p1)[order], np.asarray(frontier_pn)[order]))
