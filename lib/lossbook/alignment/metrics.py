"""Likelihood-displacement metrics: CHES / lnCHES, max-drop, mass by token group, Thm 1–2 quantities, baselines.

From Razin, Malladi, Bhaskar, Chen, Arora, Hanin, "Unintentional Unalignment: Likelihood Displacement in Direct
Preference Optimization", ICLR 2025 (arXiv 2410.08847).

**Position convention (fixed for the whole book).** h_{x,y<k} is the final hidden state (the vector multiplied by
the unembedding W) at the position that *predicts* y_k: the last prompt token for k = 1, token y_{k−1} for k > 1.
That is the paper's Definition 2, with exactly |y| positions per response. The paper's batch script
(`compute_preference_similarity_per_example.py`, `hidden_states[-1][0][query_len-1:]`) also keeps the position
after the last response token — one extra position. With the book's pre-shifted labels (labels[t] = ids[t+1],
−100 outside the response) the Def. 2 positions are exactly those where `labels != -100`, so pass that as the mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor


def _masked_sum(h: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(Σ_t mask_t h_t  [B, d], Σ_t mask_t  [B]) for h [B, T, d] (or [T, d] -> B = 1)."""
    if h.dim() == 2:
        h = h.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    m = torch.ones(h.shape[:2], dtype=h.dtype, device=h.device) if mask is None else mask.to(h.dtype)
    return (h * m.unsqueeze(-1)).sum(1), m.sum(1)


def ches(h_chosen: Tensor, h_rejected: Tensor, mask_chosen: Tensor | None = None, mask_rejected: Tensor | None = None) -> Tensor:
    """CHES (Razin et al. 2025, Def. 2): ⟨Σ_k h⁺_k, Σ_k' h⁻_k'⟩ − ‖Σ_k h⁺_k‖²  per pair [B].

    h_chosen [B, T, d] (or [T, d]): final hidden states of the sequence x ⊕ y+; mask_chosen [B, T] selects the |y+|
    positions that predict y+ tokens (see the module docstring); likewise for y−. Higher = more similar = more
    likely displaced. Computed in float64 for stability (sums of many states).
    """
    sc, _ = _masked_sum(h_chosen.double(), mask_chosen)
    sr, _ = _masked_sum(h_rejected.double(), mask_rejected)
    return (sc * sr).sum(-1) - (sc * sc).sum(-1)


def ln_ches(h_chosen: Tensor, h_rejected: Tensor, mask_chosen: Tensor | None = None, mask_rejected: Tensor | None = None) -> Tensor:
    """Length-normalised CHES (Razin et al. 2025, App. A, Def. 3): ⟨mean h⁺, mean h⁻⟩ − ‖mean h⁺‖²  [B]."""
    sc, nc = _masked_sum(h_chosen.double(), mask_chosen)
    sr, nr = _masked_sum(h_rejected.double(), mask_rejected)
    mc, mr = sc / nc.clamp(min=1).unsqueeze(-1), sr / nr.clamp(min=1).unsqueeze(-1)
    return (mc * mr).sum(-1) - (mc * mc).sum(-1)


def last_hidden_inner_product(h_chosen: Tensor, h_rejected: Tensor, mask_chosen: Tensor, mask_rejected: Tensor) -> Tensor:
    """Baseline of Razin et al. §5: ⟨h⁺_last, h⁻_last⟩ of the two responses' last hidden states [B].

    "Last" = the last Def. 2 position of each response (the state that predicts its final token, <eos> here). The
    paper's `last_hidden_embedding_inner_prods` takes the state one position later (after the final token); with
    pre-shifted inputs that position is not computed, and both read the end of the response.
    """
    def last(h: Tensor, m: Tensor) -> Tensor:
        T = m.shape[1]
        pos = (T - 1) - m.long().flip(1).argmax(1)  # index of the last masked position
        return h[torch.arange(h.shape[0]), pos]

    return (last(h_chosen.double(), mask_chosen) * last(h_rejected.double(), mask_rejected)).sum(-1)


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between token sequences (insert/delete/substitute cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def normalized_edit_distance(a: Sequence[int], b: Sequence[int]) -> float:
    """Levenshtein distance ÷ max(|a|, |b|) ∈ [0, 1] (Razin et al. §5 baseline; 0 = identical)."""
    n = max(len(a), len(b))
    return edit_distance(a, b) / n if n else 0.0


# ---- single-token displacement ---------------------------------------------------------------------------------
def max_drop(p: Sequence[float] | Tensor | np.ndarray) -> float:
    """Largest decrease over the trajectory: max_{t < t'} (p_t − p_{t'}), 0 if p never decreases (Razin et al. §3).

    p: 1-D sequence of π_t(y+|x) over steps t = 0..T.
    """
    a = np.asarray(p.detach().cpu() if isinstance(p, Tensor) else p, dtype=float).ravel()
    if a.size < 2:
        return 0.0
    run_max = np.maximum.accumulate(a)[:-1]
    return float(max(0.0, (run_max - a[1:]).max()))


def drop_endpoints(p: Sequence[float] | Tensor | np.ndarray) -> tuple[float, float]:
    """(p_t, p_t') achieving `max_drop` (the paper's "0.85 → 0.01"); (p_0, p_0) when p never falls."""
    a = np.asarray(p.detach().cpu() if isinstance(p, Tensor) else p, dtype=float).ravel()
    best, hi, arg = 0.0, (a[0], a[0]), 0
    for t in range(1, a.size):
        if a[arg] - a[t] > best:
            best, hi = a[arg] - a[t], (a[arg], a[t])
        if a[t] > a[arg]:
            arg = t
    return float(hi[0]), float(hi[1])


def loss_ever_rose(losses: Sequence[float] | np.ndarray, tol: float = 1e-7) -> bool:
    """True when some step increased the loss by more than `tol` (Razin et al. drop such unstable runs)."""
    a = np.asarray(losses, dtype=float)
    return bool(a.size > 1 and (np.diff(a) > tol).any())


def group_mass(probs: Tensor, groups: Mapping[str, Sequence[int]]) -> dict[str, Tensor]:
    """Σ_{z ∈ group} π(z) for each named group; probs [..., V] -> {name: [...]}."""
    return {k: probs[..., list(v)].sum(-1) for k, v in groups.items()}


def benign_catastrophic_mass(
    probs: Tensor, y_plus: int, y_minus: int, same_meaning: Sequence[int], opposite_meaning: Sequence[int]
) -> dict[str, Tensor]:
    """Mass on y+, y−, *benign* tokens (same meaning as y+, excluding y+ and y−) and *catastrophic* tokens
    (opposite meaning, excluding y−), as in Razin et al. Def. 1 / Table 1. probs [..., V]."""
    benign = [z for z in same_meaning if z not in (y_plus, y_minus)]
    cat = [z for z in opposite_meaning if z not in (y_plus, y_minus)]
    return {
        "y_plus": probs[..., y_plus],
        "y_minus": probs[..., y_minus],
        "benign": probs[..., benign].sum(-1) if benign else torch.zeros_like(probs[..., 0]),
        "catastrophic": probs[..., cat].sum(-1) if cat else torch.zeros_like(probs[..., 0]),
    }


def token_alignment(W: Tensor, y_plus: int, y_minus: int) -> Tensor:
    """⟨W_z, W_{y+} − W_{y−}⟩ for every token z [V] (Razin et al. Thm 2: the z-dependent part of d/dt ln π(z))."""
    W = W.detach().double()
    return W @ (W[y_plus] - W[y_minus])


def thm1_score(W: Tensor, probs: Tensor, y_plus: int, y_minus: int) -> float:
    """⟨W_{y+}, W_{y−}⟩ + Σ_{z∉{y+,y−}} π(z)·⟨W_z, W_{y+} − W_{y−}⟩ (Razin et al. Thm 1; larger → more displacement)."""
    W = W.detach().double()
    a = token_alignment(W, y_plus, y_minus)
    p = probs.detach().double().clone()
    p[[y_plus, y_minus]] = 0.0
    return float(W[y_plus] @ W[y_minus] + (p * a).sum())


def top_gainers(logp_before: Tensor, logp_after: Tensor, k: int = 3, exclude: Sequence[int] = (), by: str = "prob") -> list[int]:
    """Ids of the `k` tokens whose probability (`by="prob"`) or log-probability (`"logp"`) rose most."""
    d = (logp_after.exp() - logp_before.exp()) if by == "prob" else (logp_after - logp_before)
    d = d.detach().clone().double()
    if exclude:
        d[list(exclude)] = -float("inf")
    return [int(i) for i in torch.topk(d, k).indices]


def displacement_metrics(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor
) -> dict[str, float]:
    """Batch displacement summary: mean change of log π(y+) and log π(y−) from the reference, share of pairs whose
    preferred log-prob fell (Razin et al. Def. 1 per sample), logged as `ld/*`."""
    dc = (chosen_logps - ref_chosen_logps).detach()
    dr = (rejected_logps - ref_rejected_logps).detach()
    return {
        "ld/pref_logp_change": float(dc.mean()),
        "ld/rej_logp_change": float(dr.mean()),
        "ld/frac_pref_logp_decreased": float((dc < 0).float().mean()),
    }


def percentile_windows(scores: Sequence[float] | Tensor | np.ndarray, percentiles: Sequence[float], size: int) -> list[np.ndarray]:
    """Indices of `size` consecutive samples in score order, centred on each percentile (clipped at the ends).

    Razin et al. §5 train on 512-sample subsets "centred" on the 0/25/50/75/100th CHES percentile; the 0th and
    100th windows are the `size` lowest and highest scores. Ties keep input order (stable sort).
    """
    s = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=float)
    n = s.size
    if size > n:
        raise ValueError(f"window size {size} > number of samples {n}")
    order = np.argsort(s, kind="stable")
    out = []
    for q in percentiles:
        centre = int(round(q / 100 * (n - 1)))
        lo = min(max(0, centre - size // 2), n - size)
        out.append(order[lo : lo + size])
    return out


# ---- diversity of samples --------------------------------------------------------------------------------------
def sample_diversity(samples: Sequence[Sequence[Sequence[int]]], well_formed: Sequence[Sequence[bool]], min_samples: int = 2) -> dict[str, float]:
    """Diversity of several samples per prompt, on the well-formed ones only (malformed text is "diverse" for the
    wrong reason). `samples[p]` are the responses (token ids) drawn for prompt p, `well_formed[p]` their flags.

    Over the prompts with ≥ `min_samples` well-formed samples: `distinct` = mean share of distinct responses among
    them (1 = all different), `pairwise_edit` = mean over prompts of the mean `normalized_edit_distance` between
    two of them (a token-level self-similarity, as self-BLEU but for token ids; 0 = all identical); `n_prompts`
    = how many prompts entered, `well_formed` = the share of well-formed samples overall. NaN when no prompt enters.
    """
    distinct, pairwise, n_wf, n_all = [], [], 0, 0
    for ys, ok in zip(samples, well_formed):
        good = [tuple(int(t) for t in y) for y, f in zip(ys, ok) if f]
        n_wf, n_all = n_wf + len(good), n_all + len(ys)
        if len(good) < max(2, min_samples):
            continue
        distinct.append(len(set(good)) / len(good))
        d = [normalized_edit_distance(a, b) for i, a in enumerate(good) for b in good[i + 1 :]]
        pairwise.append(float(np.mean(d)))
    nan = float("nan")
    return {"distinct": float(np.mean(distinct)) if distinct else nan, "pairwise_edit": float(np.mean(pairwise)) if pairwise else nan,
            "n_prompts": float(len(distinct)), "well_formed": n_wf / n_all if n_all else nan}
