"""Knowledge-distillation losses: Hinton KD, DKD, DIST, DHKD's BinaryKL / BinaryKL-Norm, label smoothing as KD.

Every loss takes student logits ``z_s`` (B, C) and teacher logits ``z_t`` (B, C) and a ``reduction``:
``"mean"`` (batch mean, the papers' ``batchmean``), ``"sum"`` or ``"none"`` (one value per example).
Teacher logits are treated as constants (detached) everywhere.

By name: ``distillation.registry.KD_LOSSES``. Label smoothing (KD from the uniform teacher) is the engine's
``train.losses.label_smoothing_loss``, shared with the calibration family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbook.train.losses import reduce

__all__ = [
    "binary_kl",
    "binary_kl_norm",
    "dist_loss",
    "dkd_loss",
    "dkd_parts",
    "flat_grads",
    "kd_gradient",
    "kd_loss",
    "project_conflicting",
    "uniform_teacher_logits",
]


def _check(z_s: Tensor, z_t: Tensor) -> None:
    if z_s.shape != z_t.shape or z_s.dim() != 2:
        raise ValueError(f"student and teacher logits must both be (batch, classes); got {tuple(z_s.shape)} and {tuple(z_t.shape)}")


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, T: float = 4.0, reduction: str = "mean") -> Tensor:
    """Hinton KD: ``T² · KL(p_t^T ‖ p_s^T)`` with ``p^T = softmax(z / T)``.

    Per example ``T² Σ_c p_t,c^T (log p_t,c^T − log p_s,c^T)``; ``reduction="mean"`` is torch's ``batchmean``.
    Its gradient in the student logits is ``T (p_s^T − p_t^T)`` (see :func:`kd_gradient`), which stays O(1)
    as T grows and tends to ``(z̄_s − z̄_t) / C`` (centred-logit matching).

    Hinton, Vinyals, Dean (2015), "Distilling the Knowledge in a Neural Network".
    """
    _check(student_logits, teacher_logits)
    log_ps = F.log_softmax(student_logits / T, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / T, dim=1)
    per = (log_pt.exp() * (log_pt - log_ps)).sum(1) * T**2
    return reduce(per, reduction)


def kd_gradient(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """Closed-form gradient of the per-example KD loss in the student logits: ``T · (p_s^T − p_t^T)``.

    As ``T → ∞``: ``T (p_s^T − p_t^T) → (z̄_s − z̄_t) / C`` with ``z̄ = z − mean_c z`` (Hinton et al. 2015, §2.1).
    """
    return T * (F.softmax(student_logits / T, 1) - F.softmax(teacher_logits / T, 1))


def _non_target(z: Tensor, target: Tensor) -> Tensor:
    """Drop the target column: (B, C) -> (B, C − 1)."""
    keep = torch.ones_like(z, dtype=torch.bool).scatter_(1, target.view(-1, 1), False)
    return z[keep].view(z.shape[0], z.shape[1] - 1)


def dkd_parts(student_logits: Tensor, teacher_logits: Tensor, target: Tensor, T: float = 4.0) -> tuple[Tensor, Tensor, Tensor]:
    """Per-example (TCKD, NCKD, p_t,target^T of the teacher), both KL terms scaled by T².

    TCKD = T²·KL([p_t, 1 − p_t]_teacher ‖ [p_t, 1 − p_t]_student) on the target/non-target binary split;
    NCKD = T²·KL(p̂_teacher ‖ p̂_student) over the C − 1 non-target classes renormalised (the softmax of the
    non-target logits). Identity: KD = TCKD + (1 − p_t,target^teacher) · NCKD.

    Zhao, Cui, Song, Qiu, Liang (2022), "Decoupled Knowledge Distillation", CVPR (mdistiller ``DKD.py``).
    """
    _check(student_logits, teacher_logits)
    zs, zt = student_logits / T, teacher_logits.detach() / T
    ls, lt = F.log_softmax(zs, 1), F.log_softmax(zt, 1)
    idx = target.view(-1, 1)
    lps_t, lpt_t = ls.gather(1, idx).squeeze(1), lt.gather(1, idx).squeeze(1)
    # log(1 - p) computed stably as logsumexp over the non-target log-probabilities
    lps_o = torch.logsumexp(_non_target(ls, target), 1)
    lpt_o = torch.logsumexp(_non_target(lt, target), 1)
    tckd = lpt_t.exp() * (lpt_t - lps_t) + lpt_o.exp() * (lpt_o - lps_o)
    ls_nt = F.log_softmax(_non_target(zs, target), 1)
    lt_nt = F.log_softmax(_non_target(zt, target), 1)
    nckd = (lt_nt.exp() * (lt_nt - ls_nt)).sum(1)
    return tckd * T**2, nckd * T**2, lpt_t.exp()


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    T: float = 4.0,
    reduction: str = "mean",
) -> Tensor:
    """Decoupled KD: ``α · TCKD + β · NCKD`` (see :func:`dkd_parts`); add CE and the warm-up in the trainer.

    Defaults of mdistiller on CIFAR-100: α = 1, β = 8, T = 4, with ``min(epoch / 20, 1)`` warm-up.
    Zhao et al. (2022), "Decoupled Knowledge Distillation", CVPR.
    """
    tckd, nckd, _ = dkd_parts(student_logits, teacher_logits, target, T)
    return reduce(alpha * tckd + beta * nckd, reduction)


def _pearson_rows(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    tau: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """DIST: ``β τ² (1 − mean_i ρ(p_s[i,:], p_t[i,:])) + γ τ² (1 − mean_c ρ(p_s[:,c], p_t[:,c]))``.

    ρ is the Pearson correlation, ``p = softmax(z / τ)``; the first (inter-class) term runs over the rows, the
    second (intra-class) over the columns of the batch. Only the inter-class term is per example; with
    ``reduction="none"`` each example gets its own inter-class term plus the (shared) intra-class term, so the
    mean of the per-example values equals the batch loss. Official defaults τ = 1, β = γ = 1.

    Huang, You, Wang, Qian, Xu (2022), "Knowledge Distillation from A Stronger Teacher", NeurIPS.
    """
    _check(student_logits, teacher_logits)
    ps = F.softmax(student_logits / tau, 1)
    pt = F.softmax(teacher_logits.detach() / tau, 1)
    inter = 1.0 - _pearson_rows(ps, pt)
    intra = 1.0 - _pearson_rows(ps.t(), pt.t()).mean()
    per = tau**2 * (beta * inter + gamma * intra)
    return reduce(per, reduction)


def binary_kl(student_logits: Tensor, teacher_logits: Tensor, T: float = 2.0, reduction: str = "mean") -> Tensor:
    """DHKD's BinaryKL: per-class Bernoulli KL between ``σ(z_t / T)`` and ``σ(z_s / T)``, summed over classes, × T².

    Per example ``T² Σ_k [q_k log(q_k / p_k) + (1 − q_k) log((1 − q_k) / (1 − p_k))]``, ``q = σ(z_t/T)``,
    ``p = σ(z_s/T)`` (computed with log-sigmoids, no clamping). Default T = 2.

    Yang, Zhang, Zhang, et al. (2024), "Dual-Head Knowledge Distillation", arXiv 2411.08937
    (``penghui-yang/DHKD: distiller_zoo/BinaryKL.py``).
    """
    _check(student_logits, teacher_logits)
    us, ut = student_logits / T, teacher_logits.detach() / T
    q = torch.sigmoid(ut)
    lq, lq1 = F.logsigmoid(ut), F.logsigmoid(-ut)
    lp, lp1 = F.logsigmoid(us), F.logsigmoid(-us)
    per = (q * (lq - lp) + (1 - q) * (lq1 - lp1)).sum(1) * T**2
    return reduce(per, reduction)


def binary_kl_norm(student_logits: Tensor, teacher_logits: Tensor, T: float = 2.0, reduction: str = "mean") -> Tensor:
    """DHKD's BinaryKL-Norm: ``T² Σ_k KL(Bernoulli(½) ‖ Bernoulli(σ((z_s − z_t)_k / T)))``.

    With ``u = (z_s − z_t)/T``: ``KL = −log 2 − ½[log σ(u) + log σ(−u)] = log cosh(u / 2)`` exactly (the additive
    constant is 0), so the loss is ``T² Σ_k log cosh((z_s − z_t)_k / (2T))``: a logit-matching loss whose gradient
    ``(T/2) tanh(u/2)`` is bounded by T/2. Default T = 2.

    Yang et al. (2024), "Dual-Head Knowledge Distillation", arXiv 2411.08937 (``distiller_zoo/BinaryKLNorm.py``).
    """
    _check(student_logits, teacher_logits)
    u = (student_logits - teacher_logits.detach()) / T
    per = (-math.log(2.0) - 0.5 * (F.logsigmoid(u) + F.logsigmoid(-u))).sum(1) * T**2
    return reduce(per, reduction)


def uniform_teacher_logits(like: Tensor) -> Tensor:
    """Logits of the uniform "virtual teacher" (all zeros): ``softmax = 1/C`` at any temperature."""
    return torch.zeros_like(like)


def flat_grads(loss: Tensor, params: Sequence[Tensor], retain_graph: bool = True) -> Tensor:
    """Gradient of ``loss`` in ``params`` flattened to one vector (zeros for parameters it does not reach)."""
    gs = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(gs, params, strict=True)])


def project_conflicting(grads: Sequence[Tensor], ref: Tensor | None = None) -> Tensor:
    """DHKD's gradient alignment (PCGrad-style, ``--ga``): project conflicting task gradients, then sum.

    ``ref`` is the CE gradient (default ``grads[0]``). Each ``g_i`` with ``g_i · ref < 0`` becomes
    ``g_i − (g_i · ref / ‖ref‖²) ref`` (orthogonal to ``ref``); the result is ``Σ_i g_i``. Gradients are flat.

    Yang et al. (2024), arXiv 2411.08937 (``helper/optimizer.py``); Yu et al. (2020), "Gradient Surgery for
    Multi-Task Learning" (PCGrad).
    """
    ref = grads[0] if ref is None else ref
    nrm2 = ref.dot(ref)
    out = torch.zeros_like(ref)
    for g in grads:
        d = g.dot(ref)
        if d < 0 and nrm2 > 0:
            g = g - d / nrm2 * ref
        out = out + g
    return out
