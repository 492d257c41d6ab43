"""The didactic bandit of Tajwar et al. 2024 ("Preference Fine-Tuning of LLMs Should Leverage Suboptimal, On-Policy
Data", ICML 2024, arXiv 2404.14367, the didactic bandit; official code `Asap7772/understanding-rlhf/bandit_experiment`).

A tiny GPT answers a one-token prompt x (uniform over the vocabulary, as in the paper's `TransformerEnv`) with L
response tokens. The reference π_ref is fitted by SFT to a target in which every response token is drawn i.i.d. from
the 100-bin histogram of a squashed Cauchy, tanh(C), C ∼ Cauchy(−0.7, 0.4), on [−1, 1] (interior mode ≈ token 16;
the Cauchy tails pile into bins 0 and 99). The gold reward of a response y = (a_1..a_L) is

    r_c(y) = (1/L)·Σ_t exp(−((a_t − c)/10)²)

(the paper's `reward_6`, c = 70: a region where π_ref has ~5% mass; `reward_7`, c = 20: aligned with π_ref's mode).
The paper's reward also scores the prompt token; ours scores the response only.

Arms (`ARMS`, a literal dict read through `lossbook.registry.lookup`) spend one equal budget of gold-reward queries,
charged to one `QueryBudget` shared by every arm. Each round an arm draws `n_samples` responses for each of
`n_prompts` prompts — from π_ref (offline arms: a fixed reference dataset revealed round by round) or from the
current policy (on-policy arms) — queries their rewards, and takes `inner_steps` Adam steps on them (the paper:
10 prompts × N = 10 samples, 10 inner steps; Adam rates per method, `PAPER_LR`). So at equal queries every arm has seen the same number of
samples and taken the same number of steps; only the sampler and the loss differ. The inner steps reuse the round's
samples without an importance correction, as the paper's scripts do. Losses:

- `pref_ft` (offline), SFT on the chosen response of every pair; `filtered_bc` (offline) and `raft` (on-policy,
  Dong et al. 2023 "RAFT"), SFT on the best of the N samples of each prompt: maximum likelihood, no negative gradient;
- `dpo_offline`, `ipo_offline`, `dpo_online`, `ipo_online`: the registry's DPO/IPO on all N(N−1)/2 pairs of each
  prompt's samples ranked by gold reward (the paper's `dpo_utils.dpo_loss`), reference = π_ref;
- `rloo`, `reinforce`: `alignment.policy_gradient` with the KL-penalised reward r − β_KL·(log π − log π_ref).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lossbook import cache, registry
from lossbook.alignment import policy_gradient as pg
from lossbook.alignment.losses import sequence_logps
from lossbook.alignment.registry import get_preference_loss
from lossbook.models.gpt import GPT, GPTConfig
from lossbook.optim import make_optimizer

REWARD_CENTRES: dict[str, float] = {"reward_6": 70.0, "reward_7": 20.0}
"""The paper's two per-token Gaussian rewards: reward_6 peaks where π_ref has little mass, reward_7 near its mode."""


# ------------------------------------------------------------------------------------------------ the task
def squashed_cauchy_histogram(n_bins: int = 100, loc: float = -0.7, scale: float = 0.4) -> Tensor:
    """Exact bin masses of tanh(C), C ∼ Cauchy(loc, scale), over `n_bins` equal bins of [−1, 1]:
    P(bin k) = F(atanh e_{k+1}) − F(atanh e_k), F(z) = ½ + atan((z − loc)/scale)/π, e_0 = −1, e_n = 1.
    (The paper histograms 10 000 samples of the same law; this is its limit.)"""
    edges = torch.linspace(-1.0, 1.0, n_bins + 1, dtype=torch.float64)
    z = torch.atanh(edges[1:-1])
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), 0.5 + torch.atan((z - loc) / scale) / math.pi, torch.ones(1, dtype=torch.float64)])
    return torch.diff(cdf).float()


def token_rewards(vocab_size: int, centre: float, width: float = 10.0) -> Tensor:
    """Per-token reward exp(−((a − c)/w)²) for a = 0..V−1 (the summand of the paper's reward_6/7)."""
    a = torch.arange(vocab_size, dtype=torch.float32)
    return torch.exp(-(((a - centre) / width) ** 2))


def gold_reward(responses: Tensor, centre: float, width: float = 10.0, vocab_size: int = 100) -> Tensor:
    """r_c(y) = (1/L)·Σ_t exp(−((a_t − c)/w)²) per response; `responses` [..., L] token ids."""
    return token_rewards(vocab_size, centre, width).to(responses.device)[responses].mean(-1)


class BudgetExhausted(RuntimeError):
    """An arm asked for more gold-reward queries than its budget allows."""


class QueryBudget:
    """One counter of gold-reward queries shared by every arm: each arm may spend at most `budget` queries.
    `take(arm, n)` charges n queries or raises `BudgetExhausted` (charging nothing)."""

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        self.budget = int(budget)
        self._used: dict[str, int] = {}

    def used(self, arm: str) -> int:
        return self._used.get(arm, 0)

    def remaining(self, arm: str) -> int:
        return self.budget - self.used(arm)

    def take(self, arm: str, n: int) -> None:
        if n > self.remaining(arm):
            raise BudgetExhausted(f"arm {arm!r} asked for {n} reward queries with {self.remaining(arm)} of {self.budget} left")
        self._used[arm] = self.used(arm) + int(n)


def query_rewards(budget: QueryBudget, arm: str, responses: Tensor, centre: float) -> Tensor:
    """The gold reward of `responses` [..., L], charged to `arm` (one query per response)."""
    budget.take(arm, int(np.prod(responses.shape[:-1])))
    return gold_reward(responses, centre)


# ------------------------------------------------------------------------------------------------ the policy
@dataclass(frozen=True)
class RefConfig:
    """The reference: a GPT of this shape fitted by SFT (Adam, cross-entropy) to `n_sequences` samples of the
    i.i.d. squashed-Cauchy target, in `steps` mini-batches of `batch_size`."""

    response_len: int = 9
    vocab_size: int = 100
    n_layer: int = 1
    n_head: int = 2
    d_model: int = 32
    n_sequences: int = 8192
    steps: int = 600
    batch_size: int = 256
    lr: float = 3e-3
    seed: int = 0

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.vocab_size, block_size=self.response_len + 1, n_layer=self.n_layer,
                         n_head=self.n_head, d_model=self.d_model)


@torch.no_grad()
def sample_responses(model: GPT, prompts: Tensor, length: int, generator: torch.Generator) -> Tensor:
    """Ancestral samples y ∼ π(·|x): `prompts` [B] token ids -> responses [B, length] (temperature 1)."""
    idx = prompts.view(-1, 1)
    for _ in range(length):
        probs = torch.softmax(model(idx)[:, -1].float(), -1)
        nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(idx.device)
        idx = torch.cat([idx, nxt], 1)
    return idx[:, 1:]


def response_logits(model: GPT, prompts: Tensor, responses: Tensor) -> Tensor:
    """Logits [B, L, V] predicting each response token (teacher forcing on x ⊕ y)."""
    seq = torch.cat([prompts.view(-1, 1), responses], 1)
    return model(seq[:, :-1])


def response_logps(model: GPT, prompts: Tensor, responses: Tensor) -> Tensor:
    """Summed log π(y|x) [B] via `alignment.losses.sequence_logps`."""
    return sequence_logps(response_logits(model, prompts, responses), responses)


def random_prompts(n: int, vocab_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """n prompt tokens uniform over the vocabulary (the paper's `TransformerEnv.reset`)."""
    return torch.randint(0, vocab_size, (n,), generator=generator).to(device)


def fit_reference(cfg: RefConfig, device: torch.device | str = "cpu") -> GPT:
    """π_ref: SFT of a fresh GPT (seeded by `cfg.seed`) on i.i.d. target sequences; cached by `cfg`
    (`lossbook.cache`, kind "onpolicy_ref")."""
    def build() -> dict[str, Tensor]:
        torch.manual_seed(cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed)
        model = GPT(cfg.gpt_config()).to(device)
        target = squashed_cauchy_histogram(cfg.vocab_size)
        ys = torch.multinomial(target, cfg.n_sequences * cfg.response_len, replacement=True, generator=g).view(cfg.n_sequences, -1).to(device)
        xs = random_prompts(cfg.n_sequences, cfg.vocab_size, g, device)
        opt = make_optimizer(model, "adam", cfg.lr)
        for _ in range(cfg.steps):
            i = torch.randint(0, cfg.n_sequences, (cfg.batch_size,), generator=g).to(device)
            loss = -response_logps(model, xs[i], ys[i]).mean() / cfg.response_len
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    state = cache.cached("onpolicy_ref", asdict(cfg), build)
    model = GPT(cfg.gpt_config())
    model.load_state_dict(state)
    return model.to(device).eval()


@torch.no_grad()
def policy_marginals(model: GPT, prompts: Tensor, length: int, generator: torch.Generator) -> Tensor:
    """Per-position token distributions π(a_t = · | x, y_<t) [B, L, V] along sampled responses (Rao–Blackwellised
    statistics: averaging them over B estimates the policy's token marginals without sampling noise at step t)."""
    ys = sample_responses(model, prompts, length, generator)
    return torch.softmax(response_logits(model, prompts, ys).float(), -1)


@torch.no_grad()
def expected_reward(marginals: Tensor, centre: float) -> float:
    """E_π[r_c] = (1/L)·Σ_t E[Σ_a π(a|x, y_<t)·exp(−((a−c)/10)²)], from `policy_marginals`."""
    return float((marginals @ token_rewards(marginals.shape[-1], centre).to(marginals.device)).mean())


@torch.no_grad()
def kl_to_target(marginals: Tensor, target: Tensor) -> float:
    """Mean over sampled contexts and positions of KL(target ‖ π(·|x, y_<t)) in nats per token: 0 iff the policy
    emits i.i.d. target tokens whatever the context (the paper fits π_ref with this KL, `run_sft`)."""
    t = target.to(marginals.device)
    return float((t * (t.clamp_min(1e-30).log() - marginals.clamp_min(1e-30).log())).sum(-1).mean())


# ------------------------------------------------------------------------------------------------ arms
@dataclass(frozen=True)
class ArmConfig:
    """One arm's schedule and loss strengths (the same for every arm but the loss)."""

    n_prompts: int = 10
    n_samples: int = 10
    inner_steps: int = 10
    lr: float = 3e-3
    dpo_beta: float = 0.1
    ipo_beta: float = 0.45
    kl_coef: float = 0.01
    n_eval: int = 256


@dataclass
class RoundBatch:
    """One round's data: prompts [P], responses [P, N, L], gold rewards [P, N], π_ref log-probs [P, N]."""

    prompts: Tensor
    responses: Tensor
    rewards: Tensor
    ref_logps: Tensor

    def flat(self) -> tuple[Tensor, Tensor]:
        p, n, length = self.responses.shape
        return self.prompts.repeat_interleave(n), self.responses.reshape(p * n, length)


def ranked_pairs(rewards: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All within-prompt pairs (i < j) of `rewards` [P, N] with distinct rewards: (prompt, winner, loser) index
    tensors, winner = the higher reward (the paper's `dpo_loss` over every pair of the N samples)."""
    p, n = rewards.shape
    i, j = torch.triu_indices(n, n, 1, device=rewards.device)
    pp = torch.arange(p, device=rewards.device).repeat_interleave(i.numel())
    ii, jj = i.repeat(p), j.repeat(p)
    ri, rj = rewards[pp, ii], rewards[pp, jj]
    keep = ri != rj
    win, lose = torch.where(ri > rj, ii, jj), torch.where(ri > rj, jj, ii)
    return pp[keep], win[keep], lose[keep]


def sft_best_loss(logps: Tensor, batch: RoundBatch, cfg: ArmConfig) -> Tensor:
    """Filtered BC / RAFT: −mean_p log π(y_p*), y_p* = the highest-reward sample of prompt p."""
    best = batch.rewards.argmax(-1)
    return -logps.gather(1, best[:, None]).mean() / batch.responses.shape[-1]


def sft_chosen_loss(logps: Tensor, batch: RoundBatch, cfg: ArmConfig) -> Tensor:
    """Pref-FT: −mean over ranked pairs of log π(y+) (SFT on the chosen half of the pairs DPO sees)."""
    pp, win, _ = ranked_pairs(batch.rewards)
    return -logps[pp, win].mean() / batch.responses.shape[-1]


def pair_loss(name: str) -> Callable[[Tensor, RoundBatch, ArmConfig], Tensor]:
    """The registry's preference loss `name` (DPO: β = cfg.dpo_beta; IPO: cfg.ipo_beta, lengths L) on `ranked_pairs`."""
    fn = get_preference_loss(name)

    def loss(logps: Tensor, batch: RoundBatch, cfg: ArmConfig) -> Tensor:
        pp, win, lose = ranked_pairs(batch.rewards)
        length = torch.full((pp.numel(),), float(batch.responses.shape[-1]), device=logps.device)
        beta = cfg.ipo_beta if name == "ipo" else cfg.dpo_beta
        return fn(logps[pp, win], logps[pp, lose], batch.ref_logps[pp, win], batch.ref_logps[pp, lose],
                  beta=beta, chosen_len=length, rejected_len=length).mean()

    return loss


def rloo_arm_loss(logps: Tensor, batch: RoundBatch, cfg: ArmConfig) -> Tensor:
    """RLOO on the KL-penalised reward r − β_KL·(log π − log π_ref) (`policy_gradient`)."""
    return pg.rloo_loss(logps, pg.kl_penalised_rewards(batch.rewards, logps, batch.ref_logps, cfg.kl_coef))


def reinforce_arm_loss(logps: Tensor, batch: RoundBatch, cfg: ArmConfig) -> Tensor:
    """REINFORCE on the KL-penalised reward with the round's mean reward as baseline (`policy_gradient`)."""
    r = pg.kl_penalised_rewards(batch.rewards, logps, batch.ref_logps, cfg.kl_coef)
    return pg.reinforce_loss(logps, r, r.mean())


@dataclass(frozen=True)
class Arm:
    """An arm: who samples (`on_policy`), the loss, and its family labels for the claims."""

    on_policy: bool
    loss: Callable[[Tensor, RoundBatch, ArmConfig], Tensor]
    negative_gradient: bool
    label: str


ARMS: dict[str, Arm] = {
    "pref_ft": Arm(False, sft_chosen_loss, False, "offline Pref-FT (SFT on chosen)"),
    "filtered_bc": Arm(False, sft_best_loss, False, "offline filtered BC (best of N)"),
    "dpo_offline": Arm(False, pair_loss("dpo"), True, "offline DPO"),
    "ipo_offline": Arm(False, pair_loss("ipo"), True, "offline IPO"),
    "raft": Arm(True, sft_best_loss, False, "RAFT (on-policy best of N + SFT)"),
    "dpo_online": Arm(True, pair_loss("dpo"), True, "online DPO"),
    "ipo_online": Arm(True, pair_loss("ipo"), True, "online IPO"),
    "rloo": Arm(True, rloo_arm_loss, True, "RLOO + KL"),
    "reinforce": Arm(True, reinforce_arm_loss, True, "REINFORCE + KL (mean baseline)"),
}


PAPER_LR: dict[str, float] = {
    "ipo_online": 1e-2,  # scripts/onpolicy_transformer_ipo.sh: lr_list=(0.01)
    "ipo_offline": 1e-2,  # scripts/transformer_ipo.sh: lr_list=(0.01)
    "raft": 3e-5,  # scripts/onpolicy_transformer_best_of_n.sh (best_of_n, 100 epochs): lr_list=(0.00003)
    "filtered_bc": 1e-4,  # scripts/transformer_best_of_n.sh (best_of_n, 1 epoch): lr_list=(0.0001)
}
"""The Adam learning rates of the official transformer-bandit scripts (`Asap7772/understanding-rlhf`,
`bandit_experiment/scripts/`), by our arm name. The code ships no transformer script for DPO, REINFORCE or PPO
(`transformer_hyperparam_tuning.py` sweeps 1e-5..1e-1 when `--lr` is not given) and has no Pref-FT or RLOO arm, so
those arms have no entry. Adam is invariant to the loss's scale, so the rates transfer although the paper's SFT loss
sums log-probs over the sequence where ours averages over tokens."""


def get_arm(name: str) -> Arm:
    """The arm called `name`; KeyError naming the valid ones otherwise."""
    return registry.lookup(ARMS, name, "on-policy bandit arm")


def collect_round(sampler: GPT, ref: GPT, budget: QueryBudget, arm: str, centre: float, cfg: ArmConfig,
                  length: int, generator: torch.Generator) -> RoundBatch:
    """Sample N responses for each of P fresh prompts from `sampler`, query their gold rewards (charged to `arm`)
    and score them under π_ref."""
    dev = next(ref.parameters()).device
    prompts = random_prompts(cfg.n_prompts, ref.cfg.vocab_size, generator, dev)
    ys = sample_responses(sampler, prompts.repeat_interleave(cfg.n_samples), length, generator)
    rewards = query_rewards(budget, arm, ys.view(cfg.n_prompts, cfg.n_samples, length), centre)
    with torch.no_grad():
        ref_lp = response_logps(ref, prompts.repeat_interleave(cfg.n_samples), ys).view(cfg.n_prompts, cfg.n_samples)
    return RoundBatch(prompts, ys.view(cfg.n_prompts, cfg.n_samples, length), rewards, ref_lp)


def run_arm(name: str, ref: GPT, budget: QueryBudget, centre: float, cfg: ArmConfig, seed: int,
            eval_prompts: Tensor) -> dict[str, Any]:
    """Train a copy of π_ref with arm `name` until its share of `budget` cannot pay for another round.

    Returns the budget curve `queries` / `reward` (E_π[r_c] on `eval_prompts`, Rao–Blackwellised, after every round;
    index 0 = π_ref), `loss` per step, and the final policy's mean token marginal `final_hist` [V]."""
    arm = get_arm(name)
    length = ref.cfg.block_size - 1
    policy = copy.deepcopy(ref).train()
    opt = make_optimizer(policy, "adam", cfg.lr)
    g, g_eval = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    per_round = cfg.n_prompts * cfg.n_samples
    curve_q, curve_r, losses = [0], [expected_reward(policy_marginals(policy, eval_prompts, length, g_eval), centre)], []
    while budget.remaining(name) >= per_round:
        batch = collect_round(policy if arm.on_policy else ref, ref, budget, name, centre, cfg, length, g)
        prompts, ys = batch.flat()
        for _ in range(cfg.inner_steps):
            logps = response_logps(policy, prompts, ys).view(cfg.n_prompts, cfg.n_samples)
            loss = arm.loss(logps, batch, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curve_q.append(budget.used(name))
        curve_r.append(expected_reward(policy_marginals(policy, eval_prompts, length, g_eval), centre))
    hist = policy_marginals(policy, eval_prompts, length, g_eval).mean((0, 1)).cpu()
    return {"queries": curve_q, "reward": curve_r, "loss": losses, "final_hist": hist}
