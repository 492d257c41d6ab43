"""Preference-optimisation losses on sequence log-probabilities, in one registry.

Every per-pair loss has ONE signature::

    loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *, beta,
         chosen_len=None, rejected_len=None, **kw) -> Tensor[batch]

where the four log-probs are *summed* sequence log-probs log π(y|x) [batch] (as TRL's DPOTrainer), `beta` is the
loss's strength/temperature, `chosen_len`/`rejected_len` are response lengths in tokens [batch] (needed by
length-normalised losses such as IPO), and `**kw` carries loss-specific options (a new loss reads what it needs and
ignores the rest — so a trainer can pass the same keyword set to every loss). Losses are returned per pair; reduce
with `.mean()`.

The name -> loss table is `lossbook.alignment.registry.PREFERENCE_LOSSES` (a literal dict; add an entry by
assignment to try a new loss in a trainer).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class PreferenceLoss(Protocol):
    def __call__(
        self,
        chosen_logps: Tensor,
        rejected_logps: Tensor,
        ref_chosen_logps: Tensor,
        ref_rejected_logps: Tensor,
        *,
        beta: float,
        chosen_len: Tensor | None = None,
        rejected_len: Tensor | None = None,
        **kw: object,
    ) -> Tensor: ...


# ---- log-probabilities ---------------------------------------------------------------------------------------
def sequence_logps(logits: Tensor, labels: Tensor, mask: Tensor | None = None, average: bool = False) -> Tensor:
    """Σ_t mask_t · log softmax(logits_t)[labels_t] per sequence (÷ Σ_t mask_t with `average`).

    logits [B, T, V]; labels [B, T] *pre-shifted* (labels[t] is the token predicted at position t); mask [B, T]
    (bool or 0/1); `None` means `labels != -100`. Labels at masked-out positions may be anything (e.g. −100).
    Computed in float32. Returns [B]. `average=True` gives the length-normalised log-prob (IPO, SimPO, LN-DPO).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must agree on [B, T]")
    m = (labels != -100) if mask is None else mask.bool()
    safe = torch.where(m, labels, torch.zeros_like(labels))
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    total = (logp * m).sum(-1)
    if average:
        return total / m.sum(-1).clamp(min=1)
    return total


def dpo_margin(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor) -> Tensor:
    """Δ = [log π(y+) − log π_ref(y+)] − [log π(y−) − log π_ref(y−)] (the implicit-reward margin ÷ β)."""
    return (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)


def _lengths(chosen_len: Tensor | None, rejected_len: Tensor | None, name: str, like: Tensor) -> tuple[Tensor, Tensor]:
    if chosen_len is None or rejected_len is None:
        raise ValueError(f"{name} normalises by response length: pass chosen_len= and rejected_len= (tokens per response; 1 for single tokens)")
    return torch.as_tensor(chosen_len, dtype=like.dtype, device=like.device), torch.as_tensor(rejected_len, dtype=like.dtype, device=like.device)


def dpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    chosen_len: Tensor | None = None,
    rejected_len: Tensor | None = None,
    **kw: object,
) -> Tensor:
    """DPO (Rafailov et al. 2023, Eq. 7): ℓ = −log σ(β·Δ), Δ = `dpo_margin(...)`; TRL `loss_type="sigmoid"`.

    ∂ℓ/∂ log π(y+) = −β·σ(−βΔ) and ∂ℓ/∂ log π(y−) = +β·σ(−βΔ): both gradients have the same size, so DPO
    only sees the margin (the root of likelihood displacement, Razin et al. 2025 §4). Lengths are unused.
    """
    return -F.logsigmoid(beta * dpo_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps))


def ipo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float,
    chosen_len: Tensor | None = None,
    rejected_len: Tensor | None = None,
    **kw: object,
) -> Tensor:
    """IPO (Azar et al. 2024, Eq. 17) on length-averaged log-ratios, as TRL `loss_type="ipo"`:

        ℓ = ( (log π(y+) − log π_ref(y+))/|y+| − (log π(y−) − log π_ref(y−))/|y−| − 1/(2β) )²

    with β = τ, the regularisation strength (Razin et al. use τ = 0.01). Needs `chosen_len`, `rejected_len`.
    """
    lc, lr = _lengths(chosen_len, rejected_len, "ipo", chosen_logps)
    h = (chosen_logps - ref_chosen_logps) / lc - (rejected_logps - ref_rejected_logps) / lr
    return (h - 1.0 / (2.0 * beta)) ** 2
