"""A preference-optimisation trainer: any registered loss, a policy and a frozen reference, full- or mini-batch.

`train_preference(policy, reference, data, PreferenceConfig(...))` runs the loss named `cfg.loss` from
`lossbook.alignment.registry.PREFERENCE_LOSSES` on `PreferenceData` (chosen/rejected ids with pre-shifted labels).
Reference log-probs are computed once up front (the reference is frozen). Each step logs TRL's DPOTrainer metric
names — `loss`, `rewards/chosen` = β·(log π(y+) − log π_ref(y+)) (batch mean), `rewards/rejected`,
`rewards/margins`, `rewards/accuracies` (share of pairs with reward(y+) > reward(y−), strictly), `logps/chosen`,
`logps/rejected` (batch means of *summed* log-probs) — plus displacement metrics `ld/pref_logp_change`,
`ld/rej_logp_change`, `ld/frac_pref_logp_decreased`, `ld/pref_prob` (mean π(y+|x)) and `ld/max_pref_prob_drop`
(running max_{t<t'} of its fall), through a `tracking.MetricLogger`. Metrics at step t are measured on the batch
*before* update t; one extra record after the last update (step = n_steps) closes the trajectory.

Optimisers: "rmsprop" (Razin et al.'s choice; torch defaults α=0.99, ε=1e-8), "sgd" (closest to the theory's
gradient flow), "adam", "adamw". A NaN/inf loss raises `tracking.NonFiniteLossError` with the step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from lossbook.alignment.losses import sequence_logps
from lossbook.alignment.metrics import (
    ches,
    displacement_metrics,
    last_hidden_inner_product,
    ln_ches,
    normalized_edit_distance,
)
from lossbook.alignment.registry import get_preference_loss
from lossbook.alignment.world import PreferenceData
from lossbook.optim import OPTIMIZERS, make_optimizer
from lossbook.tracking import MetricLogger


@dataclass
class PreferenceConfig:
    """How to run preference optimisation.

    `batch_size=None` is full-batch: `steps` updates on all pairs (Razin et al. §3: 100 full-batch steps on one
    prompt). With a `batch_size`, `epochs` passes over shuffled pairs (seeded by `seed`) and `steps` is unused.
    `loss_kwargs` reach the loss as keywords (for losses with extra options).
    """

    loss: str = "dpo"
    beta: float = 0.1
    lr: float = 1e-4
    optimizer: str = "rmsprop"
    steps: int = 100
    batch_size: int | None = None
    epochs: int = 1
    grad_clip: float = 0.0
    weight_decay: float = 0.0
    momentum: float = 0.0
    seed: int = 0
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    track_first_token: bool = False
    """Record log π(·|x) over the whole vocabulary at the first response position, every step (full-batch only)."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        get_preference_loss(self.loss)  # fail early with the list of names


def concatenated_forward(model: nn.Module, data: PreferenceData, *, return_hidden: bool = False) -> dict[str, Tensor]:
    """One forward over [chosen; rejected] (TRL's concatenated forward). Returns summed log-probs, lengths, the
    log-softmax at each pair's first response position for the chosen sequence (`first_logprobs` [B, V]), and with
    `return_hidden` the final hidden states and label masks (Def. 2 positions) of both halves."""
    B = len(data)
    T = max(data.chosen_ids.shape[1], data.rejected_ids.shape[1])
    ids = torch.cat([data.chosen_ids, data.rejected_ids], 0)
    labels = torch.cat([data.chosen_labels, data.rejected_labels], 0)
    ids, labels = ids[:, :T], labels[:, :T]
    out = model(ids, return_hidden=return_hidden)
    logits, hidden = (out if return_hidden else (out, None))
    mask = labels != -100
    seq = sequence_logps(logits, labels, mask)
    lens = mask.sum(-1)
    first_pos = mask[:B].long().argmax(1)
    res = {
        "chosen_logps": seq[:B],
        "rejected_logps": seq[B:],
        "chosen_len": lens[:B],
        "rejected_len": lens[B:],
        "first_logprobs": torch.log_softmax(logits[torch.arange(B), first_pos].float(), dim=-1),
    }
    if hidden is not None:
        res.update(hidden_chosen=hidden[:B], hidden_rejected=hidden[B:], mask_chosen=mask[:B], mask_rejected=mask[B:])
    return res


@torch.no_grad()
def evaluate_logps(model: nn.Module, data: PreferenceData, batch_size: int = 512) -> dict[str, Tensor]:
    """`concatenated_forward` over `data` in chunks, without gradients (used for the frozen reference)."""
    was = model.training
    model.eval()
    parts = [concatenated_forward(model, data.subset(range(i, min(i + batch_size, len(data))))) for i in range(0, len(data), batch_size)]
    model.train(was)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def similarity_scores(model: nn.Module, data: PreferenceData, batch_size: int = 512) -> dict[str, Tensor]:
    """Per-pair CHES, lnCHES and the §5 baselines (last-hidden inner product, normalised edit distance) under
    `model` (the model *before* preference training), Def. 2 positions. Returns float64 tensors [N]."""
    was = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {"ches": [], "ln_ches": [], "last_hidden_ip": []}
    for i in range(0, len(data), batch_size):
        sub = data.subset(range(i, min(i + batch_size, len(data))))
        r = concatenated_forward(model, sub, return_hidden=True)
        args = (r["hidden_chosen"], r["hidden_rejected"], r["mask_chosen"], r["mask_rejected"])
        out["ches"].append(ches(*args))
        out["ln_ches"].append(ln_ches(*args))
        out["last_hidden_ip"].append(last_hidden_inner_product(*args))
    model.train(was)
    res = {k: torch.cat(v) for k, v in out.items()}

    def resp(labels: Tensor) -> list[int]:
        return [int(t) for t in labels if int(t) != -100]

    res["edit_distance"] = torch.tensor(
        [normalized_edit_distance(resp(data.chosen_labels[j]), resp(data.rejected_labels[j])) for j in range(len(data))], dtype=torch.float64
    )
    return res


def batch_metrics(fwd: dict[str, Tensor], ref: dict[str, Tensor], beta: float) -> dict[str, float]:
    """TRL's DPOTrainer metrics and the `ld/*` displacement metrics for one batch."""
    c, r = fwd["chosen_logps"].detach(), fwd["rejected_logps"].detach()
    rc, rr = ref["chosen_logps"], ref["rejected_logps"]
    rew_c, rew_r = beta * (c - rc), beta * (r - rr)
    m = {
        "rewards/chosen": float(rew_c.mean()),
        "rewards/rejected": float(rew_r.mean()),
        "rewards/margins": float((rew_c - rew_r).mean()),
        "rewards/accuracies": float((rew_c > rew_r).float().mean()),
        "logps/chosen": float(c.mean()),
        "logps/rejected": float(r.mean()),
        "ld/pref_prob": float(c.exp().mean()),
    }
    m.update(displacement_metrics(c, r, rc, rr))
    return m


def train_preference(
    policy: nn.Module,
    reference: nn.Module,
    data: PreferenceData,
    cfg: PreferenceConfig,
    *,
    device: str | torch.device = "cpu",
    logger: MetricLogger | None = None,
    progress: bool = False,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Optimise `policy` in place with the preference loss `cfg.loss` against the frozen `reference`.

    Returns the history: per-step lists under every metric name plus "step"; `ref` and `final` (full-data
    `evaluate_logps` of the reference and of the trained policy: per-pair chosen/rejected log-probs);
    `first_logprobs` ([n_steps + 1, B, V] tensor when `cfg.track_first_token`); `wall_s`, `pairs_per_s`
    (pairs processed per second of optimisation, reference pass excluded), `n_steps`, `config`.
    """
    from tqdm.auto import tqdm

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    loss_fn = get_preference_loss(cfg.loss)
    policy.to(dev).train()
    reference.to(dev).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    data = data.to(dev)
    N = len(data)
    ref_all = evaluate_logps(reference, data)
    guard = logger if logger is not None else MetricLogger(to_run=False)
    full = cfg.batch_size is None or cfg.batch_size >= N
    if full:
        batches: list[Tensor] = [torch.arange(N, device=dev)] * cfg.steps
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        batches = []
        for _ in range(cfg.epochs):
            perm = torch.randperm(N, generator=g).to(dev)
            batches += [perm[i : i + cfg.batch_size] for i in range(0, N, cfg.batch_size)]
    if cfg.track_first_token and not full:
        raise ValueError("track_first_token needs full-batch training (batch_size=None)")
    opt = make_optimizer(policy, cfg.optimizer, cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    hist: dict[str, Any] = {"step": [], "loss": []}
    firsts: list[Tensor] = []
    best_prob, max_drop_so_far = -math.inf, 0.0

    def record(step: int, loss_val: float, fwd: dict[str, Tensor], ref: dict[str, Tensor]) -> None:
        nonlocal best_prob, max_drop_so_far
        m = batch_metrics(fwd, ref, cfg.beta)
        best_prob = max(best_prob, m["ld/pref_prob"])
        max_drop_so_far = max(max_drop_so_far, best_prob - m["ld/pref_prob"])
        m["ld/max_pref_prob_drop"] = max_drop_so_far
        hist["step"].append(step)
        hist["loss"].append(loss_val)
        for k, v in m.items():
            hist.setdefault(k, []).append(v)
        if logger is not None:
            logger.log(step, loss=loss_val, **m)
        if cfg.track_first_token:
            firsts.append(fwd["first_logprobs"].detach().cpu())
        if callback is not None:
            callback(step, m)

    def run_loss(fwd: dict[str, Tensor], ref: dict[str, Tensor]) -> Tensor:
        return loss_fn(
            fwd["chosen_logps"],
            fwd["rejected_logps"],
            ref["chosen_logps"],
            ref["rejected_logps"],
            beta=cfg.beta,
            chosen_len=fwd["chosen_len"],
            rejected_len=fwd["rejected_len"],
            **cfg.loss_kwargs,
        ).mean()

    t0 = time.perf_counter()
    pairs = 0
    for step, idx in enumerate(tqdm(batches, disable=not progress, desc=f"{cfg.loss}", leave=False)):
        sub = data if full else data.subset(idx)
        ref = ref_all if full else {k: v[idx] for k, v in ref_all.items()}
        fwd = concatenated_forward(policy, sub)
        loss = run_loss(fwd, ref)
        loss_val = float(loss.detach())
        guard.check_finite(step, where=cfg.loss, loss=loss_val)
        record(step, loss_val, fwd, ref)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        opt.step()
        pairs += len(idx)
    wall = time.perf_counter() - t0
    final = evaluate_logps(policy, data)
    if full:
        with torch.no_grad():
            policy.eval()
            fwd = concatenated_forward(policy, data)
            policy.train()
            record(len(batches), float(run_loss(fwd, ref_all)), fwd, ref_all)
    if logger is not None:
        logger.flush()
    hist.update(
        ref={k: v.detach().cpu() for k, v in ref_all.items() if k != "first_logprobs"},
        final={k: v.detach().cpu() for k, v in final.items() if k != "first_logprobs"},
        ref_first_logprobs=ref_all["first_logprobs"].detach().cpu(),
        first_logprobs=torch.stack(firsts) if firsts else None,
        wall_s=wall,
        pairs_per_s=pairs / max(wall, 1e-9),
        n_steps=len(batches),
        config=asdict(cfg),
    )
    return hist


def clone_policy(model: nn.Module) -> nn.Module:
    """A trainable deep copy of `model` (the policy starts at the reference)."""
    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def single_token_displacement_run(
    reference: nn.Module,
    data: PreferenceData,
    y_plus: int,
    y_minus: int,
    same_meaning: list[int],
    opposite_meaning: list[int],
    cfg: PreferenceConfig,
    *,
    early_steps: int = 5,
    n_top: int = 3,
    device: str | torch.device = "cpu",
    logger: MetricLogger | None = None,
) -> dict[str, Any]:
    """One run of Razin et al.'s §3 protocol on a single prompt: full-batch preference training from `reference`,
    tracking the next-token distribution π_t(·|x) at the answer position every step.

    Returns trajectories (`p_plus`, `p_minus`, `benign`, `catastrophic`, `loss`: numpy [steps+1]; `token_probs`
    [steps+1, V]), `max_drop` of
    π(y+) with its endpoints, `stable` (the loss never rose), the `top` gainers (largest probability gain from step
    0 to the end, y± excluded) labelled benign/catastrophic/other, `thm1` (Thm 1's score at init), and for Thm 2 the
    alignment a_z = ⟨W_z, W_{y+} − W_{y−}⟩ (W of the reference) with the early change Δ_z = ln π_{early}(z) −
    ln π_0(z): `rho` = Spearman(a, Δ) over z ∉ {y+, y−}; `rho_no_prompt` also leaves out the prompt's own tokens
    (their tied embedding rows receive gradient through the input, which the theory does not model).
    """
    import numpy as np
    from scipy.stats import spearmanr

    from lossbook.alignment.metrics import (
        benign_catastrophic_mass,
        drop_endpoints,
        loss_ever_rose,
        max_drop,
        thm1_score,
        token_alignment,
    )

    if len(data) != 1:
        raise ValueError(f"single_token_displacement_run expects one prompt, got {len(data)}")
    c = replace(cfg, track_first_token=True, batch_size=None)
    policy = clone_policy(reference)
    h = train_preference(policy, reference, data, c, device=device, logger=logger)
    L = h["first_logprobs"][:, 0].double()  # [steps+1, V]
    P = L.exp()
    mass = benign_catastrophic_mass(P, y_plus, y_minus, same_meaning, opposite_meaning)
    W = reference.unembedding().detach().cpu()
    a = token_alignment(W, y_plus, y_minus)
    k = min(early_steps, L.shape[0] - 1)
    early = L[k] - L[0]
    others = [z for z in range(L.shape[1]) if z not in (y_plus, y_minus)]
    prompt_tokens = set(int(t) for t in data.chosen_ids[0].tolist())
    others_np = [z for z in others if z not in prompt_tokens]
    exclude = [y_plus, y_minus]
    top = [int(i) for i in torch.topk((P[-1] - P[0]).clone().index_fill_(0, torch.tensor(exclude), -float("inf")), n_top).indices]
    label = {**{z: "benign" for z in same_meaning}, **{z: "catastrophic" for z in opposite_meaning}}
    p_plus = mass["y_plus"].numpy()
    return {
        "p_plus": p_plus,
        "p_minus": mass["y_minus"].numpy(),
        "benign": mass["benign"].numpy(),
        "catastrophic": mass["catastrophic"].numpy(),
        "loss": np.asarray(h["loss"]),
        "token_probs": P.numpy(),
        "max_drop": max_drop(p_plus),
        "drop_from_to": drop_endpoints(p_plus),
        "stable": not loss_ever_rose(h["loss"]),
        "top": top,
        "top_kind": [label.get(z, "other") for z in top],
        "thm1": thm1_score(W, P[0], y_plus, y_minus),
        "alignment": a.numpy(),
        "early_change": early.numpy(),
        "final_change": (L[-1] - L[0]).numpy(),
        "rho": float(spearmanr(a[others], early[others])[0]),
        "rho_no_prompt": float(spearmanr(a[others_np], early[others_np])[0]),
        "history": h,
    }
