"""Unpaired (thumbs-up / thumbs-down) alignment on the persona world: data with a prompt shift, one trainer, the BCO checks.

Jung, Han, Nam, On (2024/2025), "Binary Classifier Optimization for Large Language Model Alignment" (arXiv 2404.04656;
ACL 2025 Findings), and Ethayarajh et al. (2024), "KTO: Model Alignment as Prospect Theoretic Optimization" (arXiv
2402.01306). In the unpaired setting each prompt carries ONE labelled response: D⁺ = {(x, y) desirable}, D⁻ = {(x', y')
undesirable}, with the prompts of D⁺ and D⁻ disjoint and, in practice, differently distributed (the paper's example: a
model good at writing and bad at coding gets thumbs-up on writing prompts and thumbs-down on coding prompts).

**Data** (`unpaired_split`). A pool of the world's preference pairs (`SyntheticWorld.multi_token_pairs`: y_w a
trait-consistent response, y_l built by `pair_types`) is split by prompt: pair i goes to D⁺ (keeping (x_i, y_w)) with
probability P(+|x) = (1 + s·z(x))/2 and to D⁻ (keeping (x_i, y_l)) otherwise, where z(x) ∈ [−1, 1] is a prompt feature
(`prompt_feature`: the speaker, or the statement's latent trait) and s = `shift` ∈ [0, 1). Each prompt lands in one set
only, so the prompt densities are p_{D⁺}(x) ∝ p(x)(1 + s z) and p_{D⁻}(x) ∝ p(x)(1 − s z), and for a feature with
E[z] = 0 the true density ratio is p_{D⁺}(x)/p_{D⁻}(x) = (1 + s z)/(1 − s z) (`true_density_ratio`; s = 0: no shift).
`paired_split` is the paired counterpart (both responses of every prompt).

**Losses** (`UNPAIRED_LOSSES`, full-batch; r = β·(log π(y|x) − log π_ref(y|x))):

- ``dpo``: −log σ(r_w − r_l) on pairs (Rafailov et al. 2023);
- ``bco_pair``: −log σ(r_w − δ) − log σ(−(r_l − δ)) on pairs (`zoo.bco_pair_loss`);
- ``bco``: unpaired BCO, −log σ(r − δ) on D⁺ and −w(x)·log σ(−(r − δ)) on D⁻ (`zoo.bco_unpaired_loss`), δ the running
  mean of the rewards (no gradient; TRL `RunningMoments` over all rewards of the batch) or δ = 0, and w(x) the UDM
  density-ratio weight (`zoo.udm_weights` on `prompt_embeddings`, clipped to [0.5, 10] as TRL) or 1;
- ``kto``: unpaired KTO (`kto_unpaired_loss`), z₀ = max(0, mean over mismatched (x_i, y_j) of log π/π_ref), detached.

`train_binary` optimises any of them (Adam via `optim.make_optimizer`), evaluating a held-out callback every
`eval_every` steps and keeping policy snapshots at requested steps (the budget curve). `bce_dpo_gap` and
`bound_argmin_delta` are Thm 3/4 of the BCO paper on a run's own rewards.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lossbook import registry
from lossbook.alignment.losses import dpo_loss, sequence_logps
from lossbook.alignment.world import IGNORE, SyntheticWorld, sequence_tensors
from lossbook.alignment.zoo import RunningMean, bco_pair_loss, bco_unpaired_loss
from lossbook.optim import make_optimizer
from lossbook.tracking import MetricLogger

FEATURES = ("speaker", "trait")


# ---- data ---------------------------------------------------------------------------------------------------------
@dataclass
class BinaryData:
    """Labelled (prompt, response) examples as padded tensors: `ids`, pre-shifted `labels` (−100 off the response),
    `desirable` [N] bool, `z` [N] prompt feature, the raw `prompts`/`responses`, and `paired`: rows i and i + N/2
    share a prompt (desirable first), so pair losses can read them. `mismatch_*` hold (x_i, y_{π(i)}) for KTO's z₀."""

    ids: Tensor
    labels: Tensor
    desirable: Tensor
    z: Tensor
    prompts: list[list[int]]
    responses: list[list[int]]
    paired: bool = False
    mismatch_ids: Tensor | None = None
    mismatch_labels: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def prompt_feature(world: SyntheticWorld, prompt: Sequence[int], on: str) -> float:
    """z(x) ∈ [−1, 1]: ``speaker`` → 2·i/(S − 1) − 1 for the i-th of S speakers; ``trait`` → the statement's latent
    trait ±1 (sign of its concepts' polarity sum)."""
    if on == "speaker":
        S = world.cfg.n_speakers
        i = world.speakers.index(world.itos[int(prompt[5])])  # <bos> Would you say : <speaker> ...
        return 2.0 * i / max(S - 1, 1) - 1.0
    if on == "trait":
        words = [world.itos[int(t)] for t in prompt[6:-1]]
        return float(np.sign(sum(int(world.polarity[world.word_concept[w]]) for w in words)))
    raise ValueError(f"prompt feature must be one of {FEATURES}, got {on!r}")


def true_density_ratio(z: np.ndarray | Sequence[float], shift: float) -> np.ndarray:
    """p_{D⁺}(x)/p_{D⁻}(x) = (1 + s z)/(1 − s z) for the split P(+|x) = (1 + s z)/2 of a pool with E[z] = 0."""
    z = np.asarray(z, dtype=float)
    return (1 + shift * z) / (1 - shift * z)


def _binary_tensors(world: SyntheticWorld, prompts: list[list[int]], responses: list[list[int]], desirable: list[bool], on: str,
                    paired: bool, seed: int) -> BinaryData:
    ids, labels = sequence_tensors(prompts, responses, world.pad_id)
    perm = np.random.default_rng(seed).permutation(len(prompts))
    if len(prompts) > 1:  # a derangement by rotation of a random order: no example is matched with its own response
        perm = np.roll(perm, 1)[np.argsort(perm)]
    mis_ids, mis_labels = sequence_tensors(prompts, [responses[int(j)] for j in perm], world.pad_id)
    z = torch.tensor([prompt_feature(world, p, on) for p in prompts], dtype=torch.float64)
    return BinaryData(ids, labels, torch.tensor(desirable), z, prompts, responses, paired, mis_ids, mis_labels, {"feature": on})


def unpaired_split(world: SyntheticWorld, n_each: int, *, shift: float, on: str = "speaker", seed: int = 0,
                   types: Sequence[str] = ("answer_flip", "opposite", "random")) -> BinaryData:
    """`n_each` desirable and `n_each` undesirable examples on disjoint prompts, with the prompt shift
    P(+|x) = (1 + shift·z(x))/2 (see the module docstring). Pairs with a prompt already used are skipped."""
    if not 0.0 <= shift < 1.0:
        raise ValueError(f"shift must be in [0, 1), got {shift}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]).generate_state(1)[0])
    pos: list[tuple[list[int], list[int]]] = []
    neg: list[tuple[list[int], list[int]]] = []
    seen: set[tuple[int, ...]] = set()
    draw = 0
    while len(pos) < n_each or len(neg) < n_each:
        for p in world.multi_token_pairs(4 * n_each, seed=seed + 7919 * draw, types=types):
            key = tuple(p["prompt"])
            if key in seen:
                continue
            seen.add(key)
            plus = rng.random() < 0.5 * (1 + shift * prompt_feature(world, p["prompt"], on))
            if plus and len(pos) < n_each:
                pos.append((p["prompt"], p["chosen"]))
            elif not plus and len(neg) < n_each:
                neg.append((p["prompt"], p["rejected"]))
        draw += 1
        if draw > 50:
            raise RuntimeError("could not fill D+ and D-: raise the pool or lower the shift")
    rows = pos + neg
    return _binary_tensors(world, [r[0] for r in rows], [r[1] for r in rows], [True] * n_each + [False] * n_each, on, False, seed)


def paired_split(world: SyntheticWorld, pairs: Sequence[dict], *, on: str = "speaker", seed: int = 0) -> BinaryData:
    """The paired counterpart: both responses of every pair, rows [chosen_0..chosen_{n−1}, rejected_0..rejected_{n−1}]."""
    prompts = [p["prompt"] for p in pairs] * 2
    responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    return _binary_tensors(world, prompts, responses, [True] * len(pairs) + [False] * len(pairs), on, True, seed)


@torch.no_grad()
def prompt_embeddings(model: nn.Module, prompts: Sequence[Sequence[int]], pad_id: int, device: str | torch.device = "cpu") -> Tensor:
    """Mean of the final hidden states over a prompt's tokens under a frozen `model` (the UDM classifier's input;
    the paper uses a separate sentence-embedding model). Returns [N, d] float32 on the CPU."""
    was = model.training
    model.eval()
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.tensor(list(p))
        mask[i, : len(p)] = True
    _, h = model(ids.to(device), return_hidden=True)
    m = mask.to(h.device).unsqueeze(-1).float()
    model.train(was)
    return ((h.float() * m).sum(1) / m.sum(1)).cpu()


def prompt_bow(prompts: Sequence[Sequence[int]], vocab_size: int) -> Tensor:
    """Bag-of-tokens prompt embedding: token counts, [N, V] float32 (a transparent stand-in for the paper's sentence
    embeddings: a logistic regression on it can represent any per-token log density ratio; counts, not frequencies,
    so that sklearn's default L2 penalty (C = 1, as TRL) does not shrink the ratio towards 1)."""
    out = torch.zeros((len(prompts), vocab_size), dtype=torch.float32)
    for i, p in enumerate(prompts):
        out[i].index_add_(0, torch.as_tensor(list(p), dtype=torch.long), torch.ones(len(p)))
    return out


def udm_example_weights(world: SyntheticWorld, data: BinaryData, embedder: nn.Module, embedding: str = "bow", *,
                        min_ratio: float = 0.5, max_ratio: float = 10.0, seed: int = 0) -> Tensor:
    """Per-example UDM weights for `data` ([N]; 1 on D⁺ rows, the clipped density ratio p̂_{D⁺}(x)/p̂_{D⁻}(x) of
    `zoo.udm_weights` on D⁻ rows), from `embedding` = ``bow`` (`prompt_bow`) or ``hidden`` (`prompt_embeddings`
    under the frozen `embedder`)."""
    from lossbook.alignment.zoo import udm_weights

    if embedding == "bow":
        emb = prompt_bow(data.prompts, world.vocab_size)
    elif embedding == "hidden":
        emb = prompt_embeddings(embedder, data.prompts, world.pad_id)
    else:
        raise ValueError(f"UDM embedding must be 'bow' or 'hidden', got {embedding!r}")
    des = data.desirable
    w = udm_weights(emb[des], emb[~des], emb, min_ratio=min_ratio, max_ratio=max_ratio, seed=seed)
    return torch.where(des, torch.ones_like(w), w)


# ---- losses -------------------------------------------------------------------------------------------------------
def kto_unpaired_loss(logps: Tensor, ref_logps: Tensor, desirable: Tensor, *, beta: float, kl: Tensor | float,
                      desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> Tensor:
    """Unpaired KTO (Ethayarajh et al. 2024, arXiv 2402.01306, Eq. 8; TRL `KTOTrainer`), per example:

        ℓ = λ_D·(1 − σ(β(s − z₀)))  if desirable,   ℓ = λ_U·(1 − σ(β(z₀ − s)))  if undesirable,

    s = log π(y|x) − log π_ref(y|x), z₀ = `kl` (the reference point KL(π‖π_ref), detached, clamped at 0; TRL estimates it
    as the mean log-ratio of mismatched (x_i, y_j) completions in the batch). Returns [N].
    """
    s = logps - ref_logps
    z0 = torch.as_tensor(kl, dtype=s.dtype, device=s.device).detach().clamp(min=0)
    des = desirable.bool()
    return torch.where(des, desirable_weight * (1 - torch.sigmoid(beta * (s - z0))), undesirable_weight * (1 - torch.sigmoid(beta * (z0 - s))))


def _loss_dpo(lp: Tensor, ref: Tensor, data: BinaryData, ctx: dict[str, Any]) -> Tensor:
    n = len(data) // 2
    return dpo_loss(lp[:n], lp[n:], ref[:n], ref[n:], beta=ctx["beta"]).mean()


def _loss_bco_pair(lp: Tensor, ref: Tensor, data: BinaryData, ctx: dict[str, Any]) -> Tensor:
    n = len(data) // 2
    kw = {"delta_state": ctx["delta_state"]} if ctx["delta_state"] is not None else {"delta": 0.0}
    return bco_pair_loss(lp[:n], lp[n:], ref[:n], ref[n:], beta=ctx["beta"], **kw).mean() / 2


def _loss_bco(lp: Tensor, ref: Tensor, data: BinaryData, ctx: dict[str, Any]) -> Tensor:
    state: RunningMean | None = ctx["delta_state"]
    delta = 0.0
    if state is not None:  # TRL: RunningMoments over every reward of the batch, updated before use
        delta = state.update(ctx["beta"] * (lp - ref).detach())
    return bco_unpaired_loss(lp, ref, data.desirable, beta=ctx["beta"], delta=delta, udm_weight=ctx["udm_weight"]).mean()


def _loss_kto(lp: Tensor, ref: Tensor, data: BinaryData, ctx: dict[str, Any]) -> Tensor:
    return kto_unpaired_loss(lp, ref, data.desirable, beta=ctx["beta"], kl=ctx["kl"]).mean()


UNPAIRED_LOSSES: dict[str, Callable[[Tensor, Tensor, BinaryData, dict[str, Any]], Tensor]] = {
    "dpo": _loss_dpo,
    "bco_pair": _loss_bco_pair,
    "bco": _loss_bco,
    "kto": _loss_kto,
}
"""Loss name -> (policy log-probs [N], reference log-probs [N], data, context) -> scalar. ``bco_pair`` is halved so
its scale is a per-example mean like the unpaired losses' (it sums two terms per pair)."""
PAIRED_ONLY = ("dpo", "bco_pair")


def get_unpaired_loss(name: str) -> Callable[[Tensor, Tensor, BinaryData, dict[str, Any]], Tensor]:
    """The loss called `name` in `UNPAIRED_LOSSES`; KeyError naming the valid ones otherwise."""
    return registry.lookup(UNPAIRED_LOSSES, name, "binary-feedback loss")


# ---- training -----------------------------------------------------------------------------------------------------
@dataclass
class BinaryConfig:
    """One full-batch run: `loss` (a `UNPAIRED_LOSSES` name), β, `steps` of `optimizer` at `lr`; `delta`: keep BCO's
    running reward shift (False: δ = 0); `udm_weight`: per-example UDM weights for D⁻ rows ([N] tensor, 1 on D⁺) or None."""

    loss: str = "bco"
    beta: float = 0.1
    lr: float = 1e-4
    optimizer: str = "adam"
    steps: int = 150
    delta: bool = True
    udm_weight: Tensor | None = None
    eval_every: int = 25
    snapshot_steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        get_unpaired_loss(self.loss)


def example_logps(model: nn.Module, ids: Tensor, labels: Tensor) -> Tensor:
    """Summed response log-probs log π(y|x) [N] (`alignment.losses.sequence_logps`, masked to labels ≠ −100)."""
    return sequence_logps(model(ids), labels, labels != IGNORE)


def train_binary(policy: nn.Module, reference: nn.Module, data: BinaryData, cfg: BinaryConfig, *,
                 evaluate: Callable[[nn.Module], dict[str, float]] | None = None, device: str | torch.device = "cpu",
                 logger: MetricLogger | None = None, resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Optimise `policy` in place on `data` with `cfg.loss` against the frozen `reference` (full batch).

    Logs per step `loss`, `delta` (BCO's running shift; 0 otherwise), `kl_z0` (KTO's reference point),
    `rewards/chosen`, `rewards/rejected` (mean β·log-ratio on D⁺ / D⁻). `evaluate(policy)` runs at step 0, every
    `eval_every` steps and after the last (history `eval`: list of (step, metrics)). Returns the history with
    `snapshots` {step: state_dict} for `cfg.snapshot_steps` (step = updates done), `final_rewards` (β·log-ratio of
    every training example after training, [N]) and `resume` (optimiser state, δ state, updates done).

    `resume`: the `resume` entry of an earlier call on the same `policy` (and `data`, `cfg.loss`): `cfg.steps` more
    updates continue that run exactly (Adam moments and the running δ carry over; steps count on from it; no evaluation
    at the first, already evaluated, step), so a run continued from step T to 2T equals one 2T-step run.
    """
    if cfg.loss in PAIRED_ONLY and not data.paired:
        raise ValueError(f"loss {cfg.loss!r} needs paired data (paired_split)")
    loss_fn = get_unpaired_loss(cfg.loss)
    dev = torch.device(device)
    policy.to(dev).train()
    reference.to(dev).eval()
    ids, labels = data.ids.to(dev), data.labels.to(dev)
    with torch.no_grad():
        ref = example_logps(reference, ids, labels)
        ref_mis = example_logps(reference, data.mismatch_ids.to(dev), data.mismatch_labels.to(dev)) if cfg.loss == "kto" else None
    udm = torch.ones(len(data)) if cfg.udm_weight is None else torch.as_tensor(cfg.udm_weight, dtype=torch.float32)
    ctx: dict[str, Any] = {"beta": cfg.beta, "delta_state": RunningMean() if cfg.delta else None, "udm_weight": udm.to(dev), "kl": 0.0}
    opt = make_optimizer(policy, cfg.optimizer, cfg.lr)
    start = 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        ctx["delta_state"] = copy.deepcopy(resume["delta_state"]) if cfg.delta else None
        start = int(resume["step"])
    des = data.desirable.to(dev)
    hist: dict[str, Any] = {"step": [], "loss": [], "delta": [], "kl_z0": [], "rewards/chosen": [], "rewards/rejected": [], "eval": [], "snapshots": {}}
    guard = logger if logger is not None else MetricLogger(to_run=False)

    def run_eval(step: int) -> None:
        if evaluate is not None:
            m = evaluate(policy)
            hist["eval"].append((step, m))
            if logger is not None:
                logger.log(step, **{f"eval/{k}": v for k, v in m.items()})
        if step in cfg.snapshot_steps:
            hist["snapshots"][step] = copy.deepcopy(policy.state_dict())

    for step in range(start, start + cfg.steps):
        if step % cfg.eval_every == 0 and not (resume is not None and step == start):
            run_eval(step)
        lp = example_logps(policy, ids, labels)
        if cfg.loss == "kto":
            with torch.no_grad():
                ctx["kl"] = (example_logps(policy, data.mismatch_ids.to(dev), data.mismatch_labels.to(dev)) - ref_mis).mean().clamp(min=0)
        loss = loss_fn(lp, ref, data, ctx)
        val = float(loss.detach())
        guard.check_finite(step, where=cfg.loss, loss=val)
        r = (cfg.beta * (lp - ref)).detach()
        st = ctx["delta_state"]
        rec = {"loss": val, "delta": st.mean if st is not None else 0.0, "kl_z0": float(ctx["kl"]),
               "rewards/chosen": float(r[des].mean()), "rewards/rejected": float(r[~des].mean())}
        for k, v in rec.items():
            hist[k].append(v)
        hist["step"].append(step)
        if logger is not None:
            logger.log(step, **rec)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    run_eval(start + cfg.steps)
    with torch.no_grad():
        hist["final_rewards"] = (cfg.beta * (example_logps(policy, ids, labels) - ref)).cpu().double()
    hist["resume"] = {"optimizer": copy.deepcopy(opt.state_dict()), "delta_state": copy.deepcopy(ctx["delta_state"]), "step": start + cfg.steps}
    if logger is not None:
        logger.flush()
    return hist


# ---- evaluation ---------------------------------------------------------------------------------------------------
def auc(scores_pos: np.ndarray | Sequence[float], scores_neg: np.ndarray | Sequence[float]) -> float:
    """ROC AUC = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) over all (positive, negative) pairs (Mann-Whitney)."""
    a, b = np.asarray(scores_pos, dtype=float)[:, None], np.asarray(scores_neg, dtype=float)[None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


def correct_answer_mask(world: SyntheticWorld, prompts: Sequence[Sequence[int]]) -> Tensor:
    """[N, V] bool: the answer tokens of the group the gold judge rewards on each prompt (agree for trait +1,
    disagree for trait −1; `refusal.gold_reward`'s first criterion)."""
    m = torch.zeros((len(prompts), world.vocab_size), dtype=torch.bool)
    for i, p in enumerate(prompts):
        m[i, world.agree_ids if prompt_feature(world, p, "trait") > 0 else world.disagree_ids] = True
    return m


@torch.no_grad()
def heldout_metrics(policy: nn.Module, data: BinaryData, ref_logps: Tensor, beta: float, correct_mask: Tensor | None = None,
                    device: str | torch.device = "cpu") -> dict[str, float]:
    """On held-out *paired* `data` (`paired_split`) with the reference's log-probs `ref_logps` [N]: `reward_acc` =
    share of pairs with r(x, y_w) > r(x, y_l); `auc` = ROC AUC of the implicit reward r = β·log π/π_ref separating
    all desirable from all undesirable examples (across prompts: sensitive to per-prompt reward offsets);
    `chosen_dlogp`, `rejected_dlogp` = mean change of log π(y_w), log π(y_l) from the reference. With
    `correct_mask` (`correct_answer_mask` of the pairs' prompts): `p_correct` = mean over prompts of
    Σ_{a ∈ correct group} π(a|x) at the first response position (the exact share of desirable first answers), and
    `p_correct_pos` / `p_correct_neg` over the prompts with feature z > 0 / z < 0."""
    was = policy.training
    policy.eval()
    ids, labels = data.ids.to(device), data.labels.to(device)
    logits = policy(ids)
    lp = sequence_logps(logits, labels, labels != IGNORE).cpu().double()
    policy.train(was)
    n = len(data) // 2
    d = lp - ref_logps.double()
    r = beta * d
    out = {"reward_acc": float((r[:n] > r[n:]).double().mean()), "auc": auc(r[:n].numpy(), r[n:].numpy()),
           "chosen_dlogp": float(d[:n].mean()), "rejected_dlogp": float(d[n:].mean())}
    if correct_mask is not None:
        first = (labels[:n] != IGNORE).long().argmax(1)
        probs = torch.softmax(logits[:n][torch.arange(n, device=logits.device), first].float(), -1).cpu()
        pc = (probs * correct_mask.float()).sum(-1).double()
        z = data.z[:n]
        out.update(p_correct=float(pc.mean()), p_correct_pos=float(pc[z > 0].mean()) if bool((z > 0).any()) else math.nan,
                   p_correct_neg=float(pc[z < 0].mean()) if bool((z < 0).any()) else math.nan)
    return out


def make_evaluator(world: SyntheticWorld, reference: nn.Module, heldout: BinaryData, prompt_sets: dict[str, list[list[int]]], *,
                   beta: float, n_samples: int, max_new_tokens: int, temperature: float = 1.0, seed: int = 0,
                   val: BinaryData | None = None, device: str | torch.device = "cpu") -> Callable[[nn.Module], dict[str, float]]:
    """A `train_binary` callback: `heldout_metrics` on the held-out pairs (with `p_correct`), the same on the
    validation pairs `val` (keys prefixed ``val/``; the early-stopping signal of `read_best`), plus, per named prompt set (e.g. ``val``,
    ``test``), the gold win rate of `n_samples` samples per prompt against the reference's samples
    (`zoo.generation_eval`, `refusal.win_rate`; same sampling seed for both), the malformed share and KL(π‖π_ref)
    as ``<set>/win``, ``<set>/malformed``, ``<set>/kl``; ``<set>/win_pos`` / ``win_neg`` split by the prompt
    feature's sign (`half_win_rates`)."""
    from lossbook.alignment.refusal import win_rate
    from lossbook.alignment.zoo import generation_eval

    ref_logps = example_logps(reference.to(device).eval(), heldout.ids.to(device), heldout.labels.to(device)).detach().cpu()
    mask = correct_answer_mask(world, heldout.prompts[: len(heldout) // 2])
    if val is not None:
        val_ref = example_logps(reference, val.ids.to(device), val.labels.to(device)).detach().cpu()
        val_mask = correct_answer_mask(world, val.prompts[: len(val) // 2])
    on = heldout.meta.get("feature", "speaker")
    gen_kw = {"n_samples": n_samples, "max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed, "device": device}
    ref_gen = {k: generation_eval(world, reference, reference, ps, **gen_kw)["rewards"] for k, ps in prompt_sets.items()}
    zs = {k: np.array([prompt_feature(world, p, on) for p in ps]) for k, ps in prompt_sets.items()}

    def evaluate(policy: nn.Module) -> dict[str, float]:
        out = heldout_metrics(policy, heldout, ref_logps, beta, mask, device)
        if val is not None:
            out.update({f"val/{k}": v for k, v in heldout_metrics(policy, val, val_ref, beta, val_mask, device).items()})
        for k, ps in prompt_sets.items():
            g = generation_eval(world, policy, reference, ps, **gen_kw)
            hw = half_win_rates(g["rewards"], ref_gen[k], zs[k])
            out.update({f"{k}/win": win_rate(g["rewards"].ravel(), ref_gen[k].ravel()), f"{k}/malformed": g["malformed"], f"{k}/kl": g["kl"],
                        f"{k}/win_pos": hw["pos"], f"{k}/win_neg": hw["neg"], f"{k}/gold": g["mean_reward"]})
        return out

    return evaluate


def read_best(hist: dict[str, Any], key: str = "val/p_correct") -> dict[str, Any]:
    """The evaluation of `train_binary`'s history at the checkpoint with the largest `key` (first on ties): early
    stopping on a validation set. Returns that checkpoint's metrics plus ``step``, ``best_index`` and the ``curve``."""
    curve = [m[key] for _, m in hist["eval"]]
    i = int(np.argmax(curve))
    return {**hist["eval"][i][1], "step": hist["eval"][i][0], "best_index": i, "curve": curve}


def plateau_gain(curve: Sequence[float], *, last_frac: float = 0.1) -> dict[str, float]:
    """How much the last `last_frac` of a checkpoint curve (to maximise) adds, in units of its step-to-step noise.

    With n checkpoints and the window of `replicate.converged` (the last k = max(1, ⌈last_frac·n⌉) checkpoints, where
    a best checkpoint fails that guard): ``gain`` = max(window) − max(before it); ``noise`` σ̂ = RMS of the second
    differences c_{i+1} − 2c_i + c_{i−1} centred in the curve's second half (i ≥ ⌊n/2⌋), divided by √6 (for a locally linear curve plus iid
    noise of sd σ, E[(Δ²c)²] = 6σ², so trend does not count as noise); ``z`` = gain/σ̂ (a plateau: z small; ±inf or nan
    when σ̂ = 0). An exploratory plateau check, next to (never instead of) `converged`."""
    c = np.asarray(curve, dtype=float)
    n = c.size
    cut = n - max(1, math.ceil(last_frac * n))
    if cut < 1:
        raise ValueError(f"a curve of {n} checkpoints has no checkpoint before its last {100 * last_frac:.0f}%")
    gain = float(c[cut:].max() - c[:cut].max())
    d2 = np.diff(c[n // 2 - 1 :] if n >= 4 else c, 2)
    noise = float(np.sqrt(np.mean(d2**2) / 6)) if d2.size else math.nan
    z = gain / noise if noise > 0 else (math.copysign(math.inf, gain) if gain != 0 else math.nan)
    return {"gain": gain, "noise": noise, "z": float(z), "window_start": int(cut)}


def udm_quality(weights: np.ndarray | Tensor, z: np.ndarray | Tensor, shift: float, min_ratio: float = 0.5, max_ratio: float = 10.0) -> dict[str, float]:
    """How well UDM weights w(x) match the true, equally clipped density ratio (`true_density_ratio`): Spearman ρ and
    the mean |log w − log ratio|."""
    from scipy.stats import spearmanr

    w = np.asarray(weights, dtype=float)
    t = np.clip(true_density_ratio(np.asarray(z, dtype=float), shift), min_ratio, max_ratio)
    rho = float(spearmanr(w, t)[0]) if np.ptp(t) > 0 and np.ptp(w) > 0 else float("nan")
    return {"rho": rho, "mean_abs_log_err": float(np.abs(np.log(w) - np.log(t)).mean())}


# ---- BCO Thm 3 / Thm 4 --------------------------------------------------------------------------------------------
def bce_dpo_gap(r_w: Tensor | np.ndarray, r_l: Tensor | np.ndarray, deltas: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per δ, the per-pair gap between the shifted BCE loss and the DPO loss (Jung et al. 2024, Thm 1/3):

        g_i(δ) = [−log σ(r_{w,i} − δ) − log σ(−(r_{l,i} − δ))] − [−log σ(r_{w,i} − r_{l,i})]  > 0  for every δ.

    Returns [len(deltas), n_pairs] (float64)."""
    rw, rl = torch.as_tensor(np.asarray(r_w), dtype=torch.float64), torch.as_tensor(np.asarray(r_l), dtype=torch.float64)
    d = torch.as_tensor(np.asarray(deltas, dtype=float), dtype=torch.float64)[:, None]
    bce = -F.logsigmoid(rw - d) - F.logsigmoid(-(rl - d))
    return (bce + F.logsigmoid(rw - rl)).numpy()


def bound_argmin_delta(r_w: Tensor | np.ndarray, r_l: Tensor | np.ndarray) -> float:
    """The δ minimising the summed Thm 4 bound Σ_i [e^{−(r_{w,i} − δ)} + e^{r_{l,i} − δ}] in closed form:
    δ* = ½·(log Σ e^{r_l} − log Σ e^{−r_w}); for one pair it is (r_w + r_l)/2 (Jung et al. 2024, Thm 4)."""
    rw, rl = np.asarray(r_w, dtype=float), np.asarray(r_l, dtype=float)
    lse = lambda v: float(np.max(v) + np.log(np.exp(v - np.max(v)).sum()))  # noqa: E731
    return 0.5 * (lse(rl) - lse(-rw))


def excess_gap_at(r_w: Tensor | np.ndarray, r_l: Tensor | np.ndarray, delta: float, grid: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean gap (`bce_dpo_gap`) at `delta` against its minimum over `grid` ∪ {delta}: `gap`, `gap_min`, `delta_min`
    (the grid argmin), `gap_zero` (at δ = 0) and `rel_excess` = (gap − gap_min)/gap_min."""
    g = np.append(np.asarray(grid, dtype=float), [delta, 0.0])
    m = bce_dpo_gap(r_w, r_l, g).mean(1)
    i = int(np.argmin(m))
    return {"gap": float(m[-2]), "gap_min": float(m[i]), "delta_min": float(g[i]), "gap_zero": float(m[-1]),
            "rel_excess": float((m[-2] - m[i]) / max(m[i], 1e-12))}


def half_win_rates(rewards: np.ndarray, ref_rewards: np.ndarray, z: np.ndarray | Sequence[float]) -> dict[str, float]:
    """Win rate against the reference (`refusal.win_rate`) on the prompts with z > 0 (D⁺-heavy side under a shift)
    and z < 0 (D⁻-heavy side); `rewards`, `ref_rewards` [P, n_samples], `z` [P]."""
    from lossbook.alignment.refusal import win_rate

    z = np.asarray(z, dtype=float)
    out = {}
    for name, m in (("pos", z > 0), ("neg", z < 0)):
        out[name] = win_rate(rewards[m].ravel(), ref_rewards[m].ravel()) if m.any() else math.nan
    return out
