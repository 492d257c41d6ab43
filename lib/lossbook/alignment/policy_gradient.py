"""Score-function (policy-gradient) losses for sequence policies: REINFORCE and RLOO, with a KL(π‖π_ref) term.

Every loss takes *summed* sequence log-probs log π(y|x) (with grad) and scalar rewards per sample, and returns a
scalar whose gradient is an unbiased (REINFORCE, RLOO) estimate of −∇_θ J, J(θ) = E_{y∼π_θ}[r(y)]:

    ∇J = E_{y∼π}[(r(y) − b)·∇log π(y)]            (Williams 1992, "Simple statistical gradient-following
                                                     algorithms for connectionist reinforcement learning")

for any baseline b that does not depend on y. RLOO (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics:
Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs", Eq. 6) draws k samples per
prompt and uses the mean reward of the *other* k − 1 as each sample's baseline, which keeps it unbiased.

The KL term follows Ahmadian et al. (and InstructGPT): the sequence-level estimate k1 = log π(y) − log π_ref(y)
is subtracted from the reward, r̃ = r − β·k1 (treated as a constant). Then E[(r̃ − b)∇log π] = ∇(J − β·KL(π‖π_ref))
exactly, because ∇KL(π‖π_ref) = E_π[(log π − log π_ref)·∇log π] (the score has mean zero).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

KLKind = Literal["k1", "k3"]


def kl_estimate(logps: Tensor, ref_logps: Tensor, kind: KLKind = "k1") -> Tensor:
    """Per-sample estimators of KL(π‖π_ref) from y ∼ π (Schulman 2020, "Approximating KL divergence").

    k1 = log π(y) − log π_ref(y) (unbiased, can be negative); k3 = ρ − 1 − log ρ with ρ = π_ref(y)/π(y)
    (unbiased, ≥ 0, lower variance when π ≈ π_ref). Both satisfy E_{y∼π}[k] = KL(π‖π_ref).
    """
    log_ratio = logps - ref_logps
    if kind == "k1":
        return log_ratio
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl kind must be 'k1' or 'k3', got {kind!r}")


def kl_penalised_rewards(rewards: Tensor, logps: Tensor, ref_logps: Tensor, kl_coef: float) -> Tensor:
    """r̃ = r − β·(log π(y) − log π_ref(y)), detached: the reward a score-function estimator of
    ∇(E_π[r] − β·KL(π‖π_ref)) multiplies ∇log π(y) by (Ahmadian et al. 2024, §3; Ziegler et al. 2019)."""
    return (rewards - kl_coef * (logps - ref_logps)).detach()


def reinforce_loss(logps: Tensor, rewards: Tensor, baseline: Tensor | float = 0.0) -> Tensor:
    """REINFORCE (Williams 1992): ℓ = −mean_i (r_i − b)·log π(y_i), y_i ∼ π, so E[∇ℓ] = −∇E_π[r].

    `rewards` are constants (detached here); `baseline` b must not depend on the sample it multiplies for the
    estimate to stay unbiased (a constant, a running mean of past rounds; a batch mean including y_i is biased by
    O(1/n)).
    """
    adv = (rewards - baseline).detach()
    return -(adv * logps).mean()


def rloo_advantages(rewards: Tensor) -> Tensor:
    """Leave-one-out advantages over the last axis (k ≥ 2 samples per prompt):
    A_i = r_i − (1/(k−1))·Σ_{j≠i} r_j = k/(k−1)·(r_i − mean_j r_j)."""
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError(f"RLOO needs k >= 2 samples per prompt, got {k}")
    return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)


def rloo_loss(logps: Tensor, rewards: Tensor) -> Tensor:
    """RLOO (Ahmadian et al. 2024, Eq. 6): ℓ = −mean_{p,i} A_{p,i}·log π(y_{p,i}) with the leave-one-out
    advantages of `rloo_advantages` over the k samples of each prompt; `logps`, `rewards` are [prompts, k].
    E[∇ℓ] = −∇E_π[r] exactly (the baseline of sample i uses only the other, independent, samples)."""
    return -(rloo_advantages(rewards.detach()) * logps).mean()
