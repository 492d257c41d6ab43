"""Reward models on frozen tiny-GPT features: Bradley–Terry heads, ensembles, gold rewards, the LSC transform.

Built for Eisenstein et al. (2023), "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate
Reward Hacking" (arXiv 2312.09244), Gao, Schulman, Hilton (2022), "Scaling Laws for Reward Model
Overoptimization" (arXiv 2210.10760) and Wang et al. (2024), "Transforming and Combining Rewards for Aligning
Large Language Models" (arXiv 2402.00742).

* **Features.** φ_s(x, y) = the final-LayerNorm hidden state of pretrained GPT s at the last token of x ⊕ y
  (`response_features`): a frozen "pretrained encoder"; another s = another pretraining seed.
* **Bradley–Terry heads.** r(x, y) = MLP(φ(x, y)) (one hidden GELU layer; a linear head is convex, so two seeds
  on the same features would coincide), fit by minimising the BT negative log-likelihood
  L = −Σ_pairs c_j log σ(r(y_w) − r(y_l)) / Σ c_j + ½λ‖W‖² where c_j are bootstrap counts of the labelled pairs.
  `train_bt_heads` fits K heads at once as one stacked model (one `bmm` per layer, full batch, Adam through
  `optim.make_optimizer`): each head k has its own features (a pretraining seed) and its own init and bootstrap
  draw (a fine-tuning seed).
* **Ensembles.** `ensemble_reward`: mean, min or median over members (Eisenstein et al. §3.2).
* **Gold rewards** on the persona world (`persona_properties`, `gold_reward`): what the labels come from.
* **LSC transform.** u = log σ(r − r_ref(x)) (`lsc_transform`, Wang et al. Eq. 3.2); Σ_i u_i is the log of the
  probability that y is "good" on every property i under independent Bradley–Terry models, i.e. a logical AND.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lossbook import registry, stats
from lossbook.alignment.world import AGREE, BECAUSE, DISAGREE, SyntheticWorld
from lossbook.optim import make_optimizer


# ---- features ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def response_features(model: nn.Module, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int, *,
                      pool: str = "last", batch_size: int = 2048, device: str | torch.device = "cpu") -> Tensor:
    """φ(x, y) = the final-LayerNorm output of `model` at the last token of x ⊕ y (right-padded; causal, so padding
    never leaks in) -> [N, d_model] float32 on CPU; `pool="last+mean"` appends the mean of that output over the
    response's positions -> [N, 2·d_model]."""
    if pool not in ("last", "last+mean"):
        raise ValueError(f"pool must be 'last' or 'last+mean', got {pool!r}")
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(prompts), batch_size):
        seqs = [list(p) + list(r) for p, r in zip(prompts[s : s + batch_size], responses[s : s + batch_size])]
        T = max(len(q) for q in seqs)
        ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
        for i, q in enumerate(seqs):
            ids[i, : len(q)] = torch.tensor(q)
        last = torch.tensor([len(q) - 1 for q in seqs])
        _, h = model(ids.to(device), return_hidden=True)
        h = h.float().cpu()
        f = h[torch.arange(len(seqs)), last]
        if pool == "last+mean":
            pos = torch.arange(T).unsqueeze(0)
            first = torch.tensor([len(p) for p in prompts[s : s + batch_size]]).unsqueeze(1)
            m = ((pos >= first) & (pos <= last.unsqueeze(1))).float().unsqueeze(-1)
            f = torch.cat([f, (h * m).sum(1) / m.sum(1).clamp(min=1)], -1)
        out.append(f)
    model.train(was)
    return torch.cat(out)


# ---- Bradley–Terry heads ----------------------------------------------------------------------------------------
@dataclass
class BTHeads:
    """K stacked MLP heads r_k(φ) = w2_k · gelu(W1_k φ + b1_k): W1 [K, d, h], b1 [K, 1, h], w2 [K, h, 1];
    `history` [steps][K]: each head's (bootstrap-weighted) BT training loss at every step, before the update;
    `heldout_history` [steps][K]: the same for the held-out pairs given to `train_bt_heads` (empty without them)."""

    W1: Tensor
    b1: Tensor
    w2: Tensor
    history: list[list[float]]
    heldout_history: list[list[float]] = field(default_factory=list)

    def __call__(self, feats: Tensor) -> Tensor:
        """feats [K, N, d] (or [N, d], shared by every head) -> rewards [K, N]."""
        if feats.dim() == 2:
            feats = feats.unsqueeze(0).expand(self.W1.shape[0], -1, -1)
        return head_forward(feats, self.W1, self.b1, self.w2)


def head_forward(feats: Tensor, W1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
    """r = gelu(φ W1 + b1) w2 per head: feats [K, N, d] -> [K, N]."""
    return torch.bmm(F.gelu(torch.bmm(feats, W1) + b1), w2).squeeze(-1)


def bt_loss(r_w: Tensor, r_l: Tensor, weights: Tensor | None = None) -> Tensor:
    """Bradley–Terry NLL per head: −Σ_j c_j log σ(r_w,j − r_l,j) / Σ_j c_j (c = 1 without weights) -> [K]."""
    nll = F.softplus(-(r_w - r_l))
    if weights is None:
        return nll.mean(-1)
    return (weights * nll).sum(-1) / weights.sum(-1)


def soft_bt_loss(r_a: Tensor, r_b: Tensor, p: Tensor) -> Tensor:
    """Expected BT NLL under soft labels p = P(a ≻ b): −mean_j [p_j log σ(r_a − r_b) + (1 − p_j) log σ(r_b − r_a)] -> [K]."""
    diff = r_a - r_b
    return (p * F.softplus(-diff) + (1 - p) * F.softplus(diff)).mean(-1)


def train_bt_heads(feats_w: Tensor, feats_l: Tensor, *, seeds: Sequence[int], hidden: int = 16, steps: int = 400,
                   lr: float = 1.0e-2, weight_decay: float = 1.0e-3, bootstrap: bool = True,
                   heldout: tuple[Tensor, Tensor, Tensor] | None = None) -> BTHeads:
    """Fit K Bradley–Terry MLP heads, one per row of feats_w / feats_l [K, N, d] (chosen / rejected features of the
    same N labelled pairs, through head k's encoder), full batch, Adam (`make_optimizer`, decoupled weight decay on
    the matrices). Head k is initialised from `seeds[k]` and, with `bootstrap`, weights the pairs by a bootstrap draw
    of seed `seeds[k]` (`stats.resample_indices`) — a "fine-tuning seed". The features are standardised per head
    (mean/std of its labelled features) inside W1/b1, so the returned heads take raw features. `heldout` = (raw
    features of a [K, M, d], of b [K, M, d], P(a ≻ b) [K, M]) records each head's `soft_bt_loss` on held-out pairs at
    every step (the convergence curve a guard reads); it does not change the fit."""
    K, N, d = feats_w.shape
    if len(seeds) != K:
        raise ValueError(f"need one seed per head: {len(seeds)} seeds for {K} heads")
    allf = torch.cat([feats_w, feats_l], 1)
    mu, sd = allf.mean(1, keepdim=True), allf.std(1, keepdim=True).clamp(min=1e-6)
    zw, zl = (feats_w - mu) / sd, (feats_l - mu) / sd
    W1 = torch.empty(K, d, hidden)
    w2 = torch.empty(K, hidden, 1)
    counts = torch.ones(K, N)
    for k, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        W1[k] = torch.randn(d, hidden, generator=g) / d**0.5
        w2[k] = torch.randn(hidden, 1, generator=g) / hidden**0.5
        if bootstrap:
            idx = stats.resample_indices(N, 1, seed=int(s))[0]
            counts[k] = torch.from_numpy(np.bincount(idx, minlength=N).astype(np.float32))
    b1 = torch.zeros(K, 1, hidden)
    params = [nn.Parameter(W1), nn.Parameter(b1), nn.Parameter(w2)]
    opt = make_optimizer(params, "adamw", lr, weight_decay=weight_decay, decay_matrices_only=True)
    hist, ho_hist = [], []
    if heldout is not None:
        ha, hb, hp = (heldout[0] - mu) / sd, (heldout[1] - mu) / sd, heldout[2]
    for _ in range(steps):
        if heldout is not None:
            with torch.no_grad():
                ho_hist.append(soft_bt_loss(head_forward(ha, *params), head_forward(hb, *params), hp).tolist())
        opt.zero_grad()
        per_head = bt_loss(head_forward(zw, *params), head_forward(zl, *params), counts)
        per_head.sum().backward()
        opt.step()
        hist.append(per_head.detach().tolist())
    W1f, b1f, w2f = (p.detach() for p in params)
    # fold the standardisation into the first layer: (φ − μ)/σ · W1 + b1 = φ · (W1/σᵀ) + (b1 − (μ/σ) W1)
    W1_raw = W1f / sd.transpose(1, 2)
    b1_raw = b1f - torch.bmm(mu / sd, W1f)
    return BTHeads(W1_raw, b1_raw, w2f, hist, ho_hist)


def pair_accuracy(r_w: Tensor, r_l: Tensor) -> Tensor:
    """Share of pairs ranked as labelled, ties counted ½, per head: r [K, N] -> [K]."""
    return ((r_w > r_l).float() + 0.5 * (r_w == r_l).float()).mean(-1)


def pairwise_agreement(r_a: Tensor, r_b: Tensor) -> Tensor:
    """How often two reward models order pairs alike: r [K, N, 2] (two responses per pair) -> [K, K] share of pairs
    on which sign(r_k(y1) − r_k(y2)) agrees between heads k and k'."""
    s = torch.sign(r_a - r_b)  # [K, N]
    return ((s.unsqueeze(1) == s.unsqueeze(0)).float()).mean(-1)


# ---- ensembles ----------------------------------------------------------------------------------------------------
def _mean(r: Tensor) -> Tensor:
    return r.mean(0)


def _min(r: Tensor) -> Tensor:
    return r.min(0).values


def _median(r: Tensor) -> Tensor:
    return r.median(0).values


AGGREGATORS = {"mean": _mean, "min": _min, "median": _median}
"""Ensemble aggregation over members (axis 0), Eisenstein et al. §3.2 (mean, median) and Coste et al. 2024 (min)."""


def ensemble_reward(member_rewards: Tensor, how: str) -> Tensor:
    """Aggregate member rewards [M, ...] by `how` ∈ AGGREGATORS. Members are standardised first by the caller
    when their scales differ (`standardise`)."""
    return registry.lookup(AGGREGATORS, how, "ensemble aggregation")(member_rewards)


def standardise(r: Tensor, ref: Tensor) -> Tensor:
    """(r − mean(ref)) / std(ref) per member (last axis): puts members on one scale before min/median (BT rewards
    are defined up to a shift, and their scale follows each head's fit)."""
    return (r - ref.mean(-1, keepdim=True)) / ref.std(-1, keepdim=True).clamp(min=1e-8)


# ---- gold rewards on the persona world ------------------------------------------------------------------------------
def persona_properties(world: SyntheticWorld, prompt: Sequence[int], response: Sequence[int]) -> dict[str, float]:
    """Readable properties of a response ``answer because w1 .. wk <eos>`` to a persona prompt:
    well_formed (0/1), correct (answer group = the statement's trait), k (clause words), on_topic (distinct clause
    concepts that are in the statement), off_topic (clause words whose concept is not in the statement, plus
    repeats of a concept already cited)."""
    toks = [world.itos[int(t)] for t in response]
    ok = len(toks) >= 4 and toks[-1] == "<eos>" and toks[1] == BECAUSE and toks[0] in AGREE + DISAGREE \
        and all(w in world.word_concept for w in toks[2:-1])
    if not ok:
        return {"well_formed": 0.0, "correct": 0.0, "k": 0.0, "on_topic": 0.0, "off_topic": 0.0}
    words = [world.itos[int(t)] for t in prompt]
    stmt = {world.word_concept[w] for w in words if w in world.word_concept}
    s = int(world.polarity[sorted(stmt)].sum()) if stmt else 0
    trait = int(np.sign(s))
    correct = (toks[0] in AGREE and trait > 0) or (toks[0] in DISAGREE and trait < 0)
    seen: set[int] = set()
    on, off = 0, 0
    for w in toks[2:-1]:
        c = world.word_concept[w]
        if c in stmt and c not in seen:
            on += 1
        else:
            off += 1
        seen.add(c)
    return {"well_formed": 1.0, "correct": float(correct), "k": float(len(toks) - 3), "on_topic": float(on), "off_topic": float(off)}


@dataclass(frozen=True)
class GoldSpec:
    """g = correct_w·correct + on_w·on_topic − off_w·off_topic for a well-formed response, `malformed` otherwise.
    Each cited statement concept is worth `on_w`, each off-topic or repeated word costs `off_w`. Whether a clause word
    is on topic is relational (it depends on the prompt's statement), which a head on frozen features only
    approximates, while the answer token and the length are easy surface features: the tails of π₀ that best-of-n
    reaches are where a proxy built on those surface features and the gold part ways."""

    correct_w: float = 1.0
    on_w: float = 0.25
    off_w: float = 0.75
    malformed: float = -1.0


def gold_reward(props: dict[str, float], spec: GoldSpec) -> float:
    """The gold reward of one response from its `persona_properties` (see `GoldSpec`)."""
    if props["well_formed"] < 0.5:
        return spec.malformed
    return spec.correct_w * props["correct"] + spec.on_w * props["on_topic"] - spec.off_w * props["off_topic"]


def bt_labels(g_a: np.ndarray, g_b: np.ndarray, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """Annotator labels from a gold reward: P(a ≻ b) = σ(κ (g_a − g_b)) (Bradley–Terry; κ = ∞ is the gold's own
    ranking, ties at random). Returns True where a is chosen."""
    d = np.asarray(g_a, dtype=float) - np.asarray(g_b, dtype=float)
    p = 0.5 * np.ones_like(d) if kappa == 0 else 1.0 / (1.0 + np.exp(-np.clip(kappa * d, -50, 50)))
    return rng.random(d.shape) < p


# ---- the LSC transform (Wang et al. 2024) ----------------------------------------------------------------------------
def lsc_transform(r: Tensor | np.ndarray, r_ref: Tensor | np.ndarray) -> Tensor:
    """u = log σ(r − r_ref(x)) (Wang et al. 2024, Eq. 3.2): the log-probability, under a Bradley–Terry model, that y
    is preferred to the reference response whose reward is r_ref(x). Concave and increasing; → 0 as r − r_ref → ∞
    (diminishing returns on already-good responses), ≈ r − r_ref as r − r_ref → −∞."""
    r_, ref = torch.as_tensor(r, dtype=torch.float64), torch.as_tensor(r_ref, dtype=torch.float64)
    return F.logsigmoid(r_ - ref)


def reference_reward(r_base: Tensor | np.ndarray, quantile: float) -> Tensor:
    """r_ref(x): the `quantile` of the rewards of π₀'s samples of each prompt (r_base [P, m] -> [P, 1]). Wang et
    al. centre each reward at a per-prompt reference reward computed from base-policy samples; the quantile is a
    parameter here (see the notebook for the value used and where it comes from)."""
    r_ = torch.as_tensor(r_base, dtype=torch.float64)
    return torch.quantile(r_, quantile, dim=-1, keepdim=True)


def combine_rewards(rewards: Sequence[Tensor], refs: Sequence[Tensor] | None) -> Tensor:
    """Σ_i r_i (raw sum, `refs=None`) or Σ_i log σ(r_i − r_ref,i(x)) (LSC sum): the latter is log Π_i P(y ≻ ref_i),
    the log-probability of being good on every property when the properties' BT models are independent."""
    if refs is None:
        return torch.stack([torch.as_tensor(r, dtype=torch.float64) for r in rewards]).sum(0)
    return torch.stack([lsc_transform(r, ref) for r, ref in zip(rewards, refs)]).sum(0)


# ---- one replicate of the over-optimisation experiment ---------------------------------------------------------------
@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes of one replicate (a fresh draw of prompts, π₀ samples, labels and fine-tuning seeds).

    `n_pairs` labelled pairs (two π₀ samples of one prompt, BT labels of temperature `kappa` from the gold),
    `n_heldout` held-out pairs for accuracy and agreement, `n_eval_prompts` × `m_samples` π₀ samples for
    best-of-n (n ≤ m), `n_finetune` fine-tuning seeds per pretraining seed; heads as in `train_bt_heads`."""

    n_pairs: int = 2000
    n_heldout: int = 500
    n_eval_prompts: int = 64
    m_samples: int = 256
    n_finetune: int = 3
    kappa: float = 4.0
    hidden: int = 16
    steps: int = 400
    lr: float = 1.0e-2
    weight_decay: float = 1.0e-3
    pool: str = "last+mean"
    max_new_tokens: int = 7
    temperature: float = 1.0
    gold: GoldSpec = GoldSpec()


def property_golds(props: dict[str, float]) -> tuple[float, float, bool, bool]:
    """The two properties combined in the LSC part: (g_A, g_B, good_A, good_B). A = correctness
    (g_A = correct, −1 if malformed; good: well-formed and correct); B = topicality (g_B = on_topic − off_topic,
    −2 if malformed; good: well-formed with no off-topic or repeated clause word)."""
    wf = props["well_formed"] > 0.5
    ga = props["correct"] if wf else -1.0
    gb = props["on_topic"] - props["off_topic"] if wf else -2.0
    return ga, gb, bool(wf and props["correct"] > 0.5), bool(wf and props["off_topic"] == 0)


def _sample(world: SyntheticWorld, policy: nn.Module, prompts: list[list[int]], k: int, cfg: ExperimentConfig,
            g: torch.Generator, device: str | torch.device) -> tuple[list[list[int]], list[list[int]]]:
    from lossbook.alignment.refusal import sample_responses

    rep = [p for p in prompts for _ in range(k)]
    ys = sample_responses(policy, rep, max_new_tokens=cfg.max_new_tokens, eos_id=world.eos_id, temperature=cfg.temperature,
                          generator=g, batch_size=4096, device=device)
    return rep, ys


def overoptimisation_replicate(world: SyntheticWorld, policy: nn.Module, encoders: dict[int, nn.Module], cfg: ExperimentConfig,
                               ns: Sequence[int], *, data_seed: int, lsc_quantiles: Sequence[float] = (0.85,),
                               device: str | torch.device = "cpu") -> dict[str, object]:
    """One replicate: sample prompts and π₀ = `policy` responses (seed `data_seed`), label pairs with the gold, fit
    Bradley–Terry heads on each encoder's frozen features (pretraining seed s) × `cfg.n_finetune` fine-tuning seeds,
    and read best-of-n curves with the unbiased estimator (`best_of_n.expected_best_of_n`) at each n in `ns`.

    Returns numpy arrays: `heads` [(s, f)], `gold` / `proxy` [K, len(ns)] (proxy standardised over the eval pool),
    `ens` {name: {"gold", "proxy"}} for "pretrain_mean", "pretrain_min" (members (s_i, f=i)) and
    "finetune_mean_s<s>", "finetune_min_s<s>" (members (s, f), f < n_finetune), `disagreement` [len(ns)] (mean over
    the pretrain members k of the best-of-n-by-k expectation of the std of the members' standardised rewards),
    `cross` [len(ns)] (mean over k of the other pretrain members' standardised reward at best-of-n by k), `oracle`
    [len(ns)] (best-of-n by the gold itself), `heldout_acc` [K] (vs the gold's ranking, ties dropped), `agreement`
    [K, K], `train_loss` [steps, J] (every fitted head's BT training loss: the K gold heads, then the
    property heads A and B per encoder), `heldout_loss` [steps, J]
    (their expected BT loss on the held-out pairs, soft labels σ(κ Δgold)), `lsc` {f"raw", f"lsc_q{q}"}: good-on-both rate [len(ns)], `lsc_oracle`,
    `kl_empirical` [len(ns)] (exact KL on each prompt's empirical sample distribution, best-of-n by head 0),
    `base` (π₀ means of the properties and gold)."""
    from lossbook.alignment import best_of_n as bon

    ns = [int(n) for n in ns]
    if max(ns) > cfg.m_samples:
        raise ValueError(f"max n = {max(ns)} > m_samples = {cfg.m_samples}: the estimator needs m >= n")
    rng = np.random.default_rng(np.random.SeedSequence([data_seed, 17]).generate_state(1)[0])
    g = torch.Generator().manual_seed(int(data_seed) + 12345)
    draw = lambda n: [world.encode(world.prompt_tokens(world.statement(rng))) for _ in range(n)]  # noqa: E731
    lab_rep, lab_y = _sample(world, policy, draw(cfg.n_pairs), 2, cfg, g, device)
    ho_rep, ho_y = _sample(world, policy, draw(cfg.n_heldout), 2, cfg, g, device)
    P, m = cfg.n_eval_prompts, cfg.m_samples
    ev_rep, ev_y = _sample(world, policy, draw(P), m, cfg, g, device)
    props = {k: [persona_properties(world, p, y) for p, y in zip(r, ys)] for k, r, ys in
             (("lab", lab_rep, lab_y), ("ho", ho_rep, ho_y), ("ev", ev_rep, ev_y))}
    gold = {k: np.array([gold_reward(q, cfg.gold) for q in v]) for k, v in props.items()}
    pg = {k: np.array([property_golds(q) for q in v], dtype=float) for k, v in props.items()}
    S = sorted(encoders)
    feats = {s: {k: response_features(encoders[s], r, ys, world.pad_id, pool=cfg.pool, device=device)
                 for k, r, ys in (("lab", lab_rep, lab_y), ("ho", ho_rep, ho_y), ("ev", ev_rep, ev_y))} for s in S}
    # labels: the gold (over-optimisation heads) and the two properties (LSC heads), one BT draw each
    labels = {"gold": bt_labels(gold["lab"][0::2], gold["lab"][1::2], cfg.kappa, rng),
              "A": bt_labels(pg["lab"][0::2, 0], pg["lab"][1::2, 0], cfg.kappa, rng),
              "B": bt_labels(pg["lab"][0::2, 1], pg["lab"][1::2, 1], cfg.kappa, rng)}
    heads = [(s, f) for s in S for f in range(cfg.n_finetune)]
    jobs = [("gold", s, f) for s, f in heads] + [(q, s, 0) for q in ("A", "B") for s in S]
    fw, fl = [], []
    for lab, s, _ in jobs:
        a, b = feats[s]["lab"][0::2], feats[s]["lab"][1::2]
        c = torch.from_numpy(labels[lab]).unsqueeze(1)
        fw.append(torch.where(c, a, b))
        fl.append(torch.where(c, b, a))
    seeds = [int(np.random.SeedSequence([data_seed, s, f, i >= len(heads)]).generate_state(1)[0] % 2**31) for i, (_, s, f) in enumerate(jobs)]
    sig = lambda x: 1.0 / (1.0 + np.exp(-np.clip(cfg.kappa * x, -50, 50)))  # noqa: E731
    ho_p = {"gold": sig(gold["ho"][0::2] - gold["ho"][1::2]), "A": sig(pg["ho"][0::2, 0] - pg["ho"][1::2, 0]),
            "B": sig(pg["ho"][0::2, 1] - pg["ho"][1::2, 1])}
    heldout = (torch.stack([feats[s]["ho"][0::2] for _, s, _ in jobs]), torch.stack([feats[s]["ho"][1::2] for _, s, _ in jobs]),
               torch.stack([torch.from_numpy(ho_p[lab]).float() for lab, _, _ in jobs]))
    H = train_bt_heads(torch.stack(fw), torch.stack(fl), seeds=seeds, hidden=cfg.hidden, steps=cfg.steps, lr=cfg.lr,
                       weight_decay=cfg.weight_decay, heldout=heldout)
    R_ev = H(torch.stack([feats[s]["ev"] for _, s, _ in jobs]))  # [J, P*m]
    R_ho = H(torch.stack([feats[s]["ho"] for _, s, _ in jobs]))  # [J, 2*n_heldout]
    K = len(heads)
    Z = standardise(R_ev[:K], R_ev[:K]).view(K, P, m).numpy()
    G = gold["ev"].reshape(P, m)
    est = lambda proxy, values: bon.expected_best_of_n(proxy, values, ns).mean(0)  # noqa: E731
    out: dict[str, object] = {"heads": heads, "ns": np.array(ns)}
    out["gold"] = np.stack([est(Z[k], G) for k in range(K)])
    out["proxy"] = np.stack([est(Z[k], Z[k]) for k in range(K)])
    out["oracle"] = est(G + 1e-6 * rng.random(G.shape), G)
    pre = [heads.index((s, i % cfg.n_finetune)) for i, s in enumerate(S)]
    groups = {"pretrain": pre, **{f"finetune_s{s}": [heads.index((s, f)) for f in range(cfg.n_finetune)] for s in S}}
    ens: dict[str, dict[str, np.ndarray]] = {}
    for name, idx in groups.items():
        for how in ("mean", "min"):
            e = ensemble_reward(torch.from_numpy(Z[idx]), how).numpy()
            ens[f"{name}_{how}"] = {"gold": est(e, G), "proxy": est(e, e), "members": np.array(idx)}
    out["ens"] = ens
    spread = Z[pre].std(0, ddof=1) if len(pre) > 1 else np.zeros((P, m))
    out["disagreement"] = np.mean([est(Z[k], spread) for k in pre], 0)
    out["cross"] = np.mean([est(Z[k], np.mean([Z[j] for j in pre if j != k], 0)) for k in pre], 0) if len(pre) > 1 else np.zeros(len(ns))
    # in-distribution checks on held-out pairs, against the gold's own ranking
    ga, gb = gold["ho"][0::2], gold["ho"][1::2]
    keep = torch.from_numpy(ga != gb)
    win = torch.from_numpy(ga > gb)
    r1, r2 = R_ho[:K, 0::2], R_ho[:K, 1::2]
    out["heldout_acc"] = pair_accuracy(torch.where(win, r1, r2)[:, keep], torch.where(win, r2, r1)[:, keep]).numpy()
    out["agreement"] = pairwise_agreement(r1, r2).numpy()
    out["train_loss"] = np.array(H.history)
    out["heldout_loss"] = np.array(H.heldout_history)
    # LSC: property heads A, B on each encoder, combined by a raw sum or an LSC sum; good-on-both rate under best-of-n
    good = (pg["ev"][:, 2] * pg["ev"][:, 3]).reshape(P, m)
    lsc: dict[str, np.ndarray] = {"raw": np.zeros(len(ns))}
    for i in range(len(S)):
        rA, rB = R_ev[K + i].view(P, m).double(), R_ev[K + len(S) + i].view(P, m).double()
        lsc["raw"] = lsc["raw"] + est(combine_rewards([rA, rB], None).numpy(), good) / len(S)
        for q in lsc_quantiles:
            refs = [reference_reward(rA, q), reference_reward(rB, q)]
            key = f"lsc_q{q:g}"
            lsc[key] = lsc.get(key, np.zeros(len(ns))) + est(combine_rewards([rA, rB], refs).numpy(), good) / len(S)
    out["lsc"] = lsc
    out["lsc_oracle"] = est(good + 1e-6 * rng.random(good.shape), good)
    keys = [[tuple(ev_y[r * m + j]) for j in range(m)] for r in range(P)]
    out["kl_empirical"] = np.array([bon.empirical_kl_best_of_n(Z[0], keys, n) for n in ns])
    ev = props["ev"]
    out["base"] = {k: float(np.mean([q[k] for q in ev])) for k in ev[0]} | {"gold": float(G.mean()), "good_both": float(good.mean())}
    return out
