"""Losses shared by several families (a shared need lives in the engine, not in one family).

Every loss is per-example capable: ``reduction`` ∈ {"mean", "sum", "none"} ("batchmean" = "mean").
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def reduce(per_example: Tensor, reduction: str) -> Tensor:
    """``per_example`` reduced by ``reduction``: "mean" (or the papers' "batchmean"), "sum" or "none"."""
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return per_example.sum()
    if reduction in ("mean", "batchmean"):
        return per_example.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def label_smoothing_loss(logits: Tensor, targets: Tensor, eps: float = 0.1, reduction: str = "mean") -> Tensor:
    """Cross-entropy against the smoothed target (1 − ε)·onehot(y) + ε/C:

        ℓ = −(1 − ε) log p_y − (ε/C) Σ_k log p_k

    (Szegedy et al. 2016; Müller, Kornblith, Hinton 2019, "When Does Label Smoothing Help?"). Equals
    PyTorch's ``cross_entropy(..., label_smoothing=ε)`` (ε spread over all C classes, the true one included)
    and, read as distillation, ``(1 − ε) CE + ε [KL(u ‖ p) + log C]``: KD at T = 1 from the uniform teacher
    u (Yuan et al. 2020, "Revisiting Knowledge Distillation via Label Smoothing Regularization").
    """
    logp = F.log_softmax(logits, dim=-1)
    loss = -(1 - eps) * logp.gather(1, targets[:, None]).squeeze(1) - eps * logp.mean(1)
    return reduce(loss, reduction)


__all__ = ["label_smoothing_loss", "reduce"]
