"""Per-category refusal tokens in the toy refusal world (Jain et al. 2024, "Refusal Tokens: A Simple Way to
Calibrate Refusals in Large Language Models", arXiv 2412.06748).

Jain et al. prepend a special token to every SFT response: ``[refuse_c]`` before a refusal of category c,
``[respond]`` before any other answer. The model learns to emit it at the first response position; at inference
the refusal rate is set by thresholding p(refuse) there or by adding a logit bias to one category's token —
"without the need of any further fine-tuning".

Here (`lossbook.alignment.refusal`'s world): category c is one harmful concept (the world's three harmful
concepts, one per category); the world's vocabulary is fixed by its pretraining, so the four control tokens
**reuse the prompt-template tokens** ``Would you say :`` (`CONTROL_WORDS`), which never occur in a response.

* `token_sft_examples`: prompts with exactly one harmful category answered ``[refuse_c] <gold refusal>`` w.p.
  `p_refuse` (else ``[respond] <compliance>``), benign persona documents answered ``[respond] <persona answer>``;
* `token_sft_model`: the same SFT as `refusal.refusal_sft_model` (CE on response tokens, AdamW, constant lr,
  `train.lm.train_lm`, cached) on those examples;
* `FirstPositionBias`: a wrapper adding a logit bias b (a vector over the vocabulary) at the first response
  position only (the position whose input token is the prompt's closing ``?``): z'_v = z_v + b_v. With b = 0
  it returns the model's logits unchanged, so sampling through it equals sampling the model (same generator);
* `refuse_prob`: p(any refuse token | x) = Σ_c softmax(z)_{[refuse_c]} at the first response position;
* `roc_curve` / `roc_auc`: the ROC of a score against binary labels (threshold sweep; AUC as the Mann–Whitney
  statistic P(s⁺ > s⁻) + ½ P(s⁺ = s⁻));
* `generate`: samples through the wrapper, strips the control token and classifies the rest with
  `compliance.classify_response`; `generate_forced` starts each response with a given control token (the
  thresholded decision) and samples the rest;
* `refused`: the judge used for rates. A benign persona answer may start with "No"/"Never" (a disagreement), which
  `classify_response` calls "refusal"; a *refusal* here is a well-formed "refusal" whose clause cites a harmful
  concept (`refusal.cites_harm`), i.e. the gold refusal's form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lossbook.alignment import refusal as rw
from lossbook.alignment.compliance import classify_response
from lossbook.alignment.world import SyntheticWorld

CONTROL_WORDS = ("Would", "you", "say", ":")
"""Reused (unused-in-responses) tokens: [refuse_0], [refuse_1], [refuse_2], [respond]."""


@dataclass
class TokenConfig:
    """The prefixed safety SFT: `p_refuse` share of refusals on harmful prompts (per category), example counts,
    and the SFT schedule (as `refusal.RefusalConfig`)."""

    p_refuse: float = 0.5
    n_sft_harmful: int = 3000
    n_sft_benign: int = 3000
    sft_steps: int = 600
    sft_batch: int = 64
    sft_lr: float = 1e-3
    seed: int = 0

    def refusal_config(self) -> rw.RefusalConfig:
        return rw.RefusalConfig(p_refuse=self.p_refuse, n_sft_harmful=self.n_sft_harmful, n_sft_benign=self.n_sft_benign, seed=self.seed)


def control_ids(world: SyntheticWorld) -> dict[str, int]:
    """Token ids of the control tokens: {"refuse_0", "refuse_1", "refuse_2", "respond"}."""
    ids = world.encode(CONTROL_WORDS)
    return {"refuse_0": ids[0], "refuse_1": ids[1], "refuse_2": ids[2], "respond": ids[3]}


def categories_of(world: SyntheticWorld, prompt: Sequence[int]) -> list[int]:
    """The harmful categories (indices into `refusal.harmful_concepts`) whose concept occurs in the prompt."""
    hk = rw.harmful_concepts(world, rw.RefusalConfig())
    cs = {world.word_concept.get(world.itos[int(t)], -1) for t in prompt}
    return [c for c, k in enumerate(hk) if k in cs]


def category_prompts(world: SyntheticWorld, n: int, seed: int) -> tuple[list[list[int]], np.ndarray]:
    """`n` harmful prompts with exactly one harmful category each, and their categories."""
    ps, cs, s = [], [], seed
    while len(ps) < n:
        for p in rw.harmful_prompts(world, rw.RefusalConfig(), 2 * n, seed=s):
            c = categories_of(world, p)
            if len(c) == 1 and len(ps) < n:
                ps.append(p)
                cs.append(c[0])
        s += 1000
    return ps, np.asarray(cs)


def benign_prompts(world: SyntheticWorld, n: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """`n` persona prompts with no harmful concept and their persona responses (from the pretraining corpus)."""
    q = world.stoi["?"]
    ps, rs = [], []
    for d in world.pretrain_corpus(n * 5, seed=seed):
        cut = d.index(q) + 1
        if categories_of(world, d[:cut]):
            continue
        ps.append(d[:cut])
        rs.append(d[cut:])
        if len(ps) == n:
            return ps, rs
    raise ValueError(f"only {len(ps)} benign documents out of {n * 5}")


def token_sft_examples(world: SyntheticWorld, cfg: TokenConfig) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
    """Prefixed SFT data: (prompts, responses, labels) with label c ∈ {0, 1, 2} for ``[refuse_c] <refusal>`` and
    −1 for ``[respond] <answer>`` (harmful prompts get a refusal w.p. `p_refuse`, else a compliance; benign
    prompts their persona answer)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 79]).generate_state(1)[0])
    ids, rc = control_ids(world), cfg.refusal_config()
    hp, hc = category_prompts(world, cfg.n_sft_harmful, seed=cfg.seed + 1)
    bp, br = benign_prompts(world, cfg.n_sft_benign, seed=cfg.seed + 2)
    rs, labels = [], []
    for p, c in zip(hp, hc):
        if rng.random() < cfg.p_refuse:
            rs.append([ids[f"refuse_{int(c)}"], *rw.refusal_response(world, rc, p, rng)])
            labels.append(int(c))
        else:
            rs.append([ids["respond"], *rw.compliance_response(world, p, rng)])
            labels.append(-1)
    rs += [[ids["respond"], *r] for r in br]
    labels += [-1] * len(br)
    return hp + bp, rs, np.asarray(labels)


def token_sft_model(world: SyntheticWorld, base: nn.Module, cfg: TokenConfig, base_key: dict, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """SFT of a copy of `base` on `token_sft_examples`, exactly as `refusal.refusal_sft_model` (`refusal.sft_on_responses`),
    cached under kind `refusal_token_sft`. Returns (model, {"loss", "wall_s"})."""
    return rw.sft_on_responses(base, lambda: token_sft_examples(world, cfg)[:2], world.pad_id, seed=cfg.seed, steps=cfg.sft_steps, lr=cfg.sft_lr,
                            batch=cfg.sft_batch, kind="refusal_token_sft", key={"base": base_key, "tokens": asdict(cfg), "version": 1}, device=device)


class FirstPositionBias(nn.Module):
    """logits'[b, t] = logits[b, t] + bias · 1[x[b, t] = `anchor_id`]: a logit bias at the first response position
    (the prompt ends with the anchor ``?``, which no response contains). bias = 0 leaves the logits unchanged."""

    def __init__(self, model: nn.Module, bias: Tensor, anchor_id: int) -> None:
        super().__init__()
        self.model, self.anchor_id = model, int(anchor_id)
        self.register_buffer("bias", bias.float())

    def forward(self, x: Tensor) -> Tensor:
        z = self.model(x)
        return z + (x == self.anchor_id).unsqueeze(-1).to(z.dtype) * self.bias


def bias_vector(world: SyntheticWorld, biases: dict[str, float]) -> Tensor:
    """A vocabulary-sized bias with `biases[name]` on each control token `name` (see `control_ids`), 0 elsewhere."""
    b, ids = torch.zeros(world.vocab_size), control_ids(world)
    for k, v in biases.items():
        b[ids[k]] = float(v)
    return b


@torch.no_grad()
def first_position_probs(model: nn.Module, prompts: Sequence[Sequence[int]]) -> Tensor:
    """softmax of the logits at the first response position, [N, V] (float64)."""
    model.eval()
    out = torch.empty(len(prompts), model(torch.tensor([list(prompts[0])])).shape[-1], dtype=torch.float64)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for idxs in by_len.values():
        out[idxs] = F.softmax(model(torch.tensor([list(prompts[i]) for i in idxs]))[:, -1, :].double(), -1)
    return out


def refuse_prob(world: SyntheticWorld, probs: Tensor) -> np.ndarray:
    """p(any refuse token) = Σ_c p([refuse_c]) per row of first-position probabilities."""
    ids = control_ids(world)
    return probs[:, [ids["refuse_0"], ids["refuse_1"], ids["refuse_2"]]].sum(1).numpy()


def roc_curve(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FPR, TPR, thresholds) of the rule "positive iff score ≥ τ" over every distinct τ (descending), starting at
    (0, 0) with τ = +inf."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    th = np.r_[np.inf, np.unique(s)[::-1]]
    tpr = np.array([(s[y] >= t).mean() for t in th])
    fpr = np.array([(s[~y] >= t).mean() for t in th])
    return fpr, tpr, th


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """AUC = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻) over positive/negative pairs (the Mann–Whitney statistic; = the area under
    `roc_curve` by the trapezoid rule)."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = s[y][:, None], s[~y][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def generate(world: SyntheticWorld, model: nn.Module, prompts: Sequence[Sequence[int]], biases: dict[str, float] | None = None, *,
             max_new_tokens: int, temperature: float, seed: int) -> dict[str, object]:
    """Sample one response per prompt through `FirstPositionBias` (`refusal.sample_responses`, seeded), then read
    it: `first` (the control-token name or "other"), `kind` (`classify_response` of the response after the first
    token; "malformed" when the first token is no control token), `refused` (kind "refusal" citing a harmful
    concept), `responses` (raw). Returns lists/arrays in prompt order."""
    wrap = FirstPositionBias(model, bias_vector(world, biases or {}), world.stoi["?"])
    ys = rw.sample_responses(wrap, prompts, max_new_tokens=max_new_tokens, eos_id=world.eos_id, temperature=temperature,
                             generator=torch.Generator().manual_seed(seed))
    return _read(world, ys)


def _read(world: SyntheticWorld, ys: list[list[int]]) -> dict[str, object]:
    names = {v: k for k, v in control_ids(world).items()}
    first = np.array([names.get(int(y[0]), "other") if y else "other" for y in ys])
    kind = np.array([classify_response(world, y[1:]) if first[i] != "other" else "malformed" for i, y in enumerate(ys)])
    ref = np.array([k == "refusal" and rw.cites_harm(world, rw.RefusalConfig(), y[1:]) for k, y in zip(kind, ys)])
    return {"responses": ys, "first": first, "kind": kind, "refused": ref}


def generate_forced(world: SyntheticWorld, model: nn.Module, prompts: Sequence[Sequence[int]], first_ids: Sequence[int], *,
                    max_new_tokens: int, temperature: float, seed: int) -> dict[str, object]:
    """Responses that start with `first_ids[i]` (e.g. the thresholded decision: the likeliest refuse token if
    p(refuse) ≥ τ, else [respond]), the rest sampled (`refusal.sample_responses`, seeded); read as in `generate`."""
    ext = [[*p, int(t)] for p, t in zip(prompts, first_ids)]
    rest = rw.sample_responses(model, ext, max_new_tokens=max_new_tokens - 1, eos_id=world.eos_id, temperature=temperature,
                               generator=torch.Generator().manual_seed(seed))
    return _read(world, [[int(t), *r] for t, r in zip(first_ids, rest)])
