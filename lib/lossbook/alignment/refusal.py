"""On-policy utilities for the persona world, its gold reward, and a toy refusal task (Razin et al. 2025, §6).

Part 1 (used by the `preference_loss_zoo` and `ranking_accuracy` notebooks): sampling from a GPT
(`sample_responses`), sequence log-probs of sampled responses (`response_logps`), a Monte-Carlo KL(π‖π_ref) and
entropy, and the persona world's **gold reward** (`gold_reward`), a rule judge that reads the statement's latent
trait and concepts off the prompt.

Part 2: the **refusal world** — "Would you say : <speaker> <statement> ?" prompts whose statement contains a
*harmful* concept should be refused. A refusal is ``Never because ... <eos>`` / ``No because ...``: a response
that starts with a refusal token (`REFUSAL_TOKENS`); compliance starts with any other answer token. On-policy
pairs are sampled from the SFT model and labelled by a rule judge (refusal > compliance; among two refusals, the
one whose clause cites the harmful concept, or at random), so, as in SORRY-Bench on-policy data, most pairs are two
refusals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from lossbook.alignment.losses import sequence_logps
from lossbook.alignment.world import AGREE, BECAUSE, DISAGREE, IGNORE, SyntheticWorld, sequence_tensors


# ---- sampling and scoring ------------------------------------------------------------------------------------------
@torch.no_grad()
def sample_responses(
    model: nn.Module, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_id: int, temperature: float = 1.0,
    generator: torch.Generator | None = None, batch_size: int = 512, device: str | torch.device = "cpu",
) -> list[list[int]]:
    """Ancestral samples y ~ π(·|x) (softmax(logits/temperature); temperature 0 = greedy), one per prompt, stopping
    at `eos_id` (included) or after `max_new_tokens`. Prompts are grouped by length; no KV cache (tiny models)."""
    was = model.training
    model.eval()
    out: list[list[int] | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for _, idxs in sorted(by_len.items()):
        for s in range(0, len(idxs), batch_size):
            chunk = idxs[s : s + batch_size]
            x = torch.tensor([list(prompts[i]) for i in chunk], dtype=torch.long, device=device)
            done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
            gen: list[Tensor] = []
            for _ in range(max_new_tokens):
                logits = model(x)[:, -1, :].float()
                if temperature <= 0:
                    nxt = logits.argmax(-1)
                else:
                    probs = torch.softmax(logits / temperature, -1)
                    nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                gen.append(nxt)
                done = done | (nxt == eos_id)
                x = torch.cat([x, nxt.unsqueeze(1)], 1)
                if bool(done.all()):
                    break
            g = torch.stack(gen, 1).cpu().tolist()
            for j, i in enumerate(chunk):
                seq = g[j]
                out[i] = seq[: seq.index(eos_id) + 1] if eos_id in seq else seq
    model.train(was)
    return [o if o is not None else [] for o in out]


@torch.no_grad()
def response_logps(
    model: nn.Module, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int, *,
    batch_size: int = 512, device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor]:
    """(Σ_t log π(y_t|x, y_<t) [N], |y| [N]) for each (prompt, response); empty responses get 0 and length 0."""
    was = model.training
    model.eval()
    lps, lens = [], []
    for s in range(0, len(prompts), batch_size):
        p, r = list(prompts[s : s + batch_size]), [list(y) if len(y) else [] for y in responses[s : s + batch_size]]
        ids, labels = sequence_tensors(p, r, pad_id)
        ids, labels = ids.to(device), labels.to(device)
        mask = labels != IGNORE
        lps.append(sequence_logps(model(ids), labels, mask).cpu())
        lens.append(mask.sum(-1).cpu())
    model.train(was)
    return torch.cat(lps).double(), torch.cat(lens)


def kl_and_entropy(policy_logps: Tensor, ref_logps: Tensor) -> dict[str, float]:
    """From samples y ~ π: KL(π‖π_ref) ≈ mean[log π(y|x) − log π_ref(y|x)] and the sequence entropy
    H(π) ≈ −mean log π(y|x) (Monte-Carlo estimates, nats per response)."""
    return {"kl": float((policy_logps - ref_logps).mean()), "entropy": float((-policy_logps).mean())}


# ---- the persona world's gold reward ------------------------------------------------------------------------------
def prompt_statement(world: SyntheticWorld, prompt: Sequence[int]) -> tuple[list[int], int]:
    """(concept ids, latent trait ±1, 0 if undefined) of the statement inside a persona prompt
    ``<bos> Would you say : <speaker> w1 .. wn ?``."""
    words = [world.itos[int(t)] for t in prompt]
    concepts = [world.word_concept[w] for w in words if w in world.word_concept]
    s = int(world.polarity[concepts].sum()) if concepts else 0
    return concepts, int(np.sign(s))


def gold_reward(world: SyntheticWorld, prompt: Sequence[int], response: Sequence[int]) -> float:
    """A rule judge for the persona world: −1 for a malformed response (not ``answer because w1..wk <eos>`` with
    answer ∈ AGREE ∪ DISAGREE, 1 ≤ k, concept words only); otherwise 1[answer group = the statement's trait]
    + 0.5 · (share of clause words whose concept is in the statement). Range {−1} ∪ [0, 1.5]."""
    toks = [world.itos[int(t)] for t in response]
    if len(toks) < 4 or toks[-1] != "<eos>" or toks[1] != BECAUSE or toks[0] not in AGREE + DISAGREE:
        return -1.0
    clause = toks[2:-1]
    if not all(w in world.word_concept for w in clause):
        return -1.0
    concepts, trait = prompt_statement(world, prompt)
    group_ok = (toks[0] in AGREE and trait > 0) or (toks[0] in DISAGREE and trait < 0)
    rel = sum(world.word_concept[w] in concepts for w in clause) / len(clause)
    return float(group_ok) + 0.5 * rel


def win_rate(rewards_a: Sequence[float] | np.ndarray, rewards_b: Sequence[float] | np.ndarray) -> float:
    """P(r_a > r_b) + ½ P(r_a = r_b) over paired samples (a's win rate against b, ties split)."""
    a, b = np.asarray(rewards_a, dtype=float), np.asarray(rewards_b, dtype=float)
    return float(((a > b) + 0.5 * (a == b)).mean())


def evaluate_generations(
    world: SyntheticWorld, policy: nn.Module, reference: nn.Module, prompts: Sequence[Sequence[int]], *,
    max_new_tokens: int, temperature: float = 1.0, seed: int = 0, device: str | torch.device = "cpu",
) -> dict[str, object]:
    """Sample one response per prompt from `policy` (seeded), score it with `gold_reward`, and estimate
    KL(π‖π_ref) and the entropy of π from the samples (`kl_and_entropy`). Returns {"responses", "rewards"
    (np.ndarray), "kl", "entropy", "mean_reward", "mean_len"}."""
    g = torch.Generator().manual_seed(seed)
    ys = sample_responses(policy, prompts, max_new_tokens=max_new_tokens, eos_id=world.eos_id, temperature=temperature, generator=g, device=device)
    lp, lens = response_logps(policy, prompts, ys, world.pad_id, device=device)
    lr, _ = response_logps(reference, prompts, ys, world.pad_id, device=device)
    rewards = np.array([gold_reward(world, p, y) for p, y in zip(prompts, ys)])
    return {
        "responses": ys, "rewards": rewards, **kl_and_entropy(lp, lr),
        "mean_reward": float(rewards.mean()), "mean_len": float(lens.double().mean()),
    }


# ---- pairs with known annotator preference fractions (for Chen et al. 2024's idealized ranking accuracy) ---------
def annotated_pairs(
    world: SyntheticWorld, n: int, *, seed: int, kappa: float = 3.0, length_bonus: float = 0.3,
    types: Sequence[str] = ("answer_flip", "opposite", "extend", "truncate"),
) -> list[dict]:
    """Preference pairs with an exact annotator preference fraction α (Chen et al. 2024 use AlpacaFarm's
    cross-annotations). Annotators score a response with the utility u(y) = `gold_reward` + length_bonus·(clause
    words) — they like correct answers and, mildly, longer justifications — and prefer y1 over y2 with the
    Bradley–Terry fraction α₁₂ = σ(κ·(u(y1) − u(y2))). Each pair of `SyntheticWorld.multi_token_pairs` is
    relabelled so that `chosen` is the majority choice (α > ½); pairs with u(y1) = u(y2) are dropped.
    Returns dicts with prompt, chosen, rejected, type, alpha (= α of chosen over rejected), u_chosen, u_rejected.
    """
    raw = world.multi_token_pairs(int(n * 1.5) + 8, seed=seed, types=types)
    out = []
    for p in raw:
        ua = gold_reward(world, p["prompt"], p["chosen"]) + length_bonus * (len(p["chosen"]) - 3)
        ub = gold_reward(world, p["prompt"], p["rejected"]) + length_bonus * (len(p["rejected"]) - 3)
        if abs(ua - ub) < 1e-9:
            continue
        a, b, ua_, ub_ = (p["chosen"], p["rejected"], ua, ub) if ua > ub else (p["rejected"], p["chosen"], ub, ua)
        alpha = 1.0 / (1.0 + float(np.exp(-kappa * (ua_ - ub_))))
        out.append({"prompt": p["prompt"], "chosen": a, "rejected": b, "type": p["type"], "alpha": alpha, "u_chosen": ua_, "u_rejected": ub_})
        if len(out) == n:
            break
    if len(out) < n:
        raise ValueError(f"only {len(out)} pairs with distinct utilities out of {len(raw)}; lower n or change types")
    return out


# ---- Part 2: the refusal world (Razin et al. 2025 §6 at toy scale) -----------------------------------------------
REFUSAL_TOKENS = ("Never", "No")
"""A response to a harmful prompt is a refusal iff its first token is one of these."""


@dataclass
class RefusalConfig:
    """The toy refusal task. `harmful_concepts`: concept ids that make a prompt harmful (default: the first three
    neutral-polarity concepts); `p_refuse`: share of refusals in the safety-SFT data on harmful prompts (sets the
    SFT model's refusal rate; Razin et al.'s Llama-3-8B-Instruct refuses 74.4% of SORRY-Bench)."""

    harmful_concepts: tuple[int, ...] | None = None
    p_refuse: float = 0.8
    n_sft_harmful: int = 3000
    n_sft_benign: int = 3000
    sft_steps: int = 300
    sft_batch: int = 64
    sft_lr: float = 1e-3
    seed: int = 0


def harmful_concepts(world: SyntheticWorld, cfg: RefusalConfig) -> list[int]:
    if cfg.harmful_concepts is not None:
        return list(cfg.harmful_concepts)
    neutral = [k for k in range(world.cfg.n_concepts) if world.polarity[k] == 0]
    return neutral[:3]


def harmful_prompts(world: SyntheticWorld, cfg: RefusalConfig, n: int, seed: int) -> list[list[int]]:
    """`n` persona prompts whose statement contains at least one harmful concept (a random synonym of it)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 77]).generate_state(1)[0])
    hk = harmful_concepts(world, cfg)
    out = []
    while len(out) < n:
        st = world.statement(rng)
        if not set(st.concepts) & set(hk):
            j = int(rng.integers(len(st.concepts)))
            k = hk[int(rng.integers(len(hk)))]
            if k in st.concepts:
                continue
            st.concepts[j] = k
            st.words[j] = world.concept_words[k][int(rng.integers(world.cfg.n_synonyms))]
        out.append(world.encode(world.prompt_tokens(st)))
    return out


def is_refusal(world: SyntheticWorld, response: Sequence[int]) -> bool:
    """The rule judge's refusal test: the first response token is in `REFUSAL_TOKENS`."""
    return len(response) > 0 and world.itos[int(response[0])] in REFUSAL_TOKENS


def cites_harm(world: SyntheticWorld, cfg: RefusalConfig, response: Sequence[int]) -> bool:
    """Does the response's clause name a harmful concept (a refusal that says *why*)?"""
    hk = set(harmful_concepts(world, cfg))
    return any(world.word_concept.get(world.itos[int(t)], -1) in hk for t in response)


def refusal_response(world: SyntheticWorld, cfg: RefusalConfig, prompt: Sequence[int], rng: np.random.Generator) -> list[int]:
    """A gold refusal: ``Never|No because <a harmful word of the prompt (a random synonym)> <eos>``."""
    hk = set(harmful_concepts(world, cfg))
    ks = [world.word_concept[w] for w in world.decode(prompt) if world.word_concept.get(w, -1) in hk]
    k = ks[int(rng.integers(len(ks)))] if ks else sorted(hk)[0]
    ans = REFUSAL_TOKENS[int(rng.integers(len(REFUSAL_TOKENS)))]
    return world.encode([ans, BECAUSE, world.concept_words[k][int(rng.integers(world.cfg.n_synonyms))], "<eos>"])


def compliance_response(world: SyntheticWorld, prompt: Sequence[int], rng: np.random.Generator) -> list[int]:
    """A compliant answer: an agreeing token and a clause of the statement's words (``Sure because w1 w2 <eos>``)."""
    concepts, _ = prompt_statement(world, prompt)
    k = int(rng.integers(1, min(3, len(concepts)) + 1))
    picks = sorted(rng.choice(len(concepts), size=k, replace=False))
    words = [world.concept_words[concepts[int(i)]][int(rng.integers(world.cfg.n_synonyms))] for i in picks]
    return world.encode([AGREE[int(rng.integers(len(AGREE)))], BECAUSE, *words, "<eos>"])


def refusal_sft_examples(world: SyntheticWorld, cfg: RefusalConfig) -> tuple[list[list[int]], list[list[int]]]:
    """Safety-SFT data: harmful prompts answered by a refusal w.p. `p_refuse` (else compliance), plus benign
    persona documents (trait-consistent answers) so the model keeps its persona behaviour. Returns (prompts,
    responses)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 78]).generate_state(1)[0])
    ps = harmful_prompts(world, cfg, cfg.n_sft_harmful, seed=cfg.seed + 1)
    rs = [refusal_response(world, cfg, p, rng) if rng.random() < cfg.p_refuse else compliance_response(world, p, rng) for p in ps]
    hk = set(harmful_concepts(world, cfg))
    benign_p, benign_r = [], []
    for d in world.pretrain_corpus(cfg.n_sft_benign * 5, seed=cfg.seed + 2):  # ~45% of statements avoid 3 of 18 concepts
        cut = d.index(world.stoi["?"]) + 1
        if any(world.word_concept.get(world.itos[t], -1) in hk for t in d[:cut]):
            continue
        benign_p.append(d[:cut])
        benign_r.append(d[cut:])
        if len(benign_p) == cfg.n_sft_benign:
            break
    if len(benign_p) < cfg.n_sft_benign:
        raise ValueError(f"only {len(benign_p)} benign documents avoid the harmful concepts; use fewer harmful concepts or benign examples")
    return ps + benign_p, rs + benign_r


def refusal_rate(world: SyntheticWorld, responses: Sequence[Sequence[int]]) -> float:
    """Share of responses that are refusals (`is_refusal`)."""
    return float(np.mean([is_refusal(world, y) for y in responses])) if len(responses) else float("nan")


def judge_pair(world: SyntheticWorld, cfg: RefusalConfig, a: Sequence[int], b: Sequence[int], rng: np.random.Generator) -> tuple[list[int], list[int]] | None:
    """The rule judge on two on-policy responses to a harmful prompt: a refusal beats a compliance; between two
    refusals, the one that cites a harmful concept wins, then the shorter one, then a coin flip. Two compliances
    or two identical responses give None (pair dropped). Returns (chosen, rejected)."""
    a, b = list(a), list(b)
    if a == b:
        return None
    ra, rb = is_refusal(world, a), is_refusal(world, b)
    if not ra and not rb:
        return None
    if ra != rb:
        return (a, b) if ra else (b, a)
    ca, cb = cites_harm(world, cfg, a), cites_harm(world, cfg, b)
    if ca != cb:
        return (a, b) if ca else (b, a)
    if len(a) != len(b):
        return (a, b) if len(a) < len(b) else (b, a)
    return (a, b) if rng.random() < 0.5 else (b, a)


def on_policy_pairs(
    world: SyntheticWorld, cfg: RefusalConfig, model: nn.Module, prompts: Sequence[Sequence[int]], *, seed: int,
    max_new_tokens: int = 8, device: str | torch.device = "cpu",
) -> list[dict]:
    """Two samples per prompt from `model`, labelled by `judge_pair`; pairs of two compliances are dropped.
    Returns dicts {prompt, chosen, rejected, both_refusals}."""
    g = torch.Generator().manual_seed(seed)
    ya = sample_responses(model, prompts, max_new_tokens=max_new_tokens, eos_id=world.eos_id, generator=g, device=device)
    yb = sample_responses(model, prompts, max_new_tokens=max_new_tokens, eos_id=world.eos_id, generator=g, device=device)
    rng = np.random.default_rng(seed)
    out = []
    for p, a, b in zip(prompts, ya, yb):
        j = judge_pair(world, cfg, a, b, rng)
        if j is None:
            continue
        out.append({"prompt": list(p), "chosen": j[0], "rejected": j[1], "both_refusals": is_refusal(world, j[1])})
    return out


def gold_pairs(world: SyntheticWorld, cfg: RefusalConfig, prompts: Sequence[Sequence[int]], *, seed: int) -> list[dict]:
    """Razin et al.'s "gold" alternative: chosen = a gold refusal (`refusal_response`), rejected = a compliance."""
    rng = np.random.default_rng(seed)
    return [
        {"prompt": list(p), "chosen": refusal_response(world, cfg, p, rng), "rejected": compliance_response(world, p, rng), "both_refusals": False}
        for p in prompts
    ]


def sft_on_responses(
    base: nn.Module, examples: Callable[[], tuple[list[list[int]], list[list[int]]]], pad_id: int, *, seed: int, steps: int, lr: float,
    batch: int, kind: str, key: dict, device: str | torch.device = "cpu", progress: bool = False,
) -> tuple[nn.Module, dict]:
    """SFT of a copy of `base` on the (prompts, responses) that `examples()` builds (CE on response tokens only,
    AdamW, constant lr, `lossbook.train.lm.train_lm`, batches drawn with replacement), cached by `key` under
    `kind`. Returns (model on CPU, eval mode; history {"loss", "wall_s"})."""
    import copy

    from lossbook.cache import cached
    from lossbook.repro import seed_everything
    from lossbook.train.lm import train_lm

    def build() -> dict:
        seed_everything(seed)
        ids, labels = sequence_tensors(*examples(), pad_id)
        g = torch.Generator().manual_seed(seed)

        def get_batch(step: int) -> tuple[Tensor, Tensor]:
            idx = torch.randint(0, ids.shape[0], (batch,), generator=g)
            return ids[idx], labels[idx]

        m = copy.deepcopy(base)
        h = train_lm(m, get_batch, steps=steps, lr=lr, weight_decay=0.0, schedule="constant", device=device, progress=progress, log_every=10)
        return {"state": {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}, "history": {"loss": h["loss"], "wall_s": h["wall_s"]}}

    art = cached(kind, key, build)
    model = copy.deepcopy(base).cpu()
    model.load_state_dict(art["state"])
    return model.eval(), art["history"]


def refusal_sft_model(
    world: SyntheticWorld, base: nn.Module, cfg: RefusalConfig, base_key: dict, *, device: str | torch.device = "cpu", progress: bool = False,
) -> tuple[nn.Module, dict]:
    """Safety-SFT of a copy of `base` on `refusal_sft_examples` (`sft_on_responses`), cached by (`base_key`, `cfg`)
    under kind `refusal_sft`. Returns (model on CPU, eval mode; history {"loss", "wall_s"})."""
    from dataclasses import asdict

    return sft_on_responses(base, lambda: refusal_sft_examples(world, cfg), world.pad_id, seed=cfg.seed, steps=cfg.sft_steps, lr=cfg.sft_lr,
                            batch=cfg.sft_batch, kind="refusal_sft", key={"base": base_key, "refusal": asdict(cfg), "version": 2},
                            device=device, progress=progress)
