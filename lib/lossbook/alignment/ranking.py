"""Ranking accuracy of preference-tuned models (Chen, Malladi, Zhang, Chen, Zhang, Cho, Lin 2024, "Preference
Learning Algorithms Do Not Learn Preference Rankings", NeurIPS 2024, arXiv 2405.19534; code:
github.com/angie-chen55/pref-learning-ranking-acc).

* **Ranking accuracy** R(π) = E 1[π(y_w|x) > π(y_l|x)], raw (summed log-probs) or length-normalised (mean
  token log-prob, i.e. 1/perplexity). Unlike TRL's `rewards/accuracies` it does not involve π_ref.
* **Idealized ranking accuracy.** The exact RLHF/DPO optimum is π* ∝ π_ref·exp(r*/β); under Bradley–Terry with
  annotator fractions α (α₁₂ = share preferring y1 over y2) r*(y1) − r*(y2) = log(α₁₂/α₂₁), so
  π*(y1)/π*(y2) = [π_ref(y1)/π_ref(y2)]·(α₁₂/α₂₁)^{1/β}. Both that ratio and the annotators' α₁₂/α₂₁ are turned
  into a ranking with the paper's tie band |ratio − 1| < 0.05 (`rlhf_minimizer_client.py::_get_ranking_from_ratio`)
  and compared.
* **Theorem 4.1.** With c = log π_ref(y_l) − log π_ref(y_w) (the reference's misranking margin), a model π ranks
  the pair correctly (π(y_w) > π(y_l)) iff L_DPO(π; pair) < −log σ(β·c). An identity: π(y_w) > π(y_l) ⇔
  Δ = s_w − s_l > c ⇔ −log σ(βΔ) < −log σ(βc).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

TIE_BAND = 0.05
"""Chen et al.'s tie band on a likelihood ratio: |ratio − 1| < 0.05 is a tie."""


def _t(x: Tensor | np.ndarray | Sequence[float]) -> Tensor:
    return x.detach().double() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=float), dtype=torch.float64)


def ranking_correct(
    chosen_logps: Tensor, rejected_logps: Tensor, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None,
    *, normalized: bool = False,
) -> Tensor:
    """Per pair: 1[log π(y_w|x) > log π(y_l|x)] (raw), or with `normalized` 1[log π(y_w)/|y_w| > log π(y_l)/|y_l|]
    (geometric-mean token probability, Chen et al. 2024 §3). Strict: ties count as wrong. Returns bool [B]."""
    c, r = _t(chosen_logps), _t(rejected_logps)
    if normalized:
        if chosen_len is None or rejected_len is None:
            raise ValueError("length-normalised ranking accuracy needs chosen_len and rejected_len (tokens per response)")
        c, r = c / _t(chosen_len), r / _t(rejected_len)
    return c > r


def ranking_accuracy(
    chosen_logps: Tensor, rejected_logps: Tensor, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None,
    *, normalized: bool = False,
) -> float:
    """R(π) = mean of `ranking_correct` (Chen et al. 2024, Def. 3.1): the share of pairs where the model itself
    gives the chosen response the higher likelihood (raw, or length-normalised with `normalized`)."""
    return float(ranking_correct(chosen_logps, rejected_logps, chosen_len, rejected_len, normalized=normalized).double().mean())


def _rank_from_log_ratio(log_ratio: Tensor, tie_band: float) -> Tensor:
    """+1 (first preferred), 0 (tie: |ratio − 1| < tie_band), −1, from log(ratio)."""
    ratio = torch.exp(log_ratio.clamp(-700, 700))
    out = torch.where(ratio >= 1 + tie_band, 1, -1)
    return torch.where((ratio - 1).abs() < tie_band, 0, out)


DEFINITIONS = ("likelihood_ratio", "logprob_quotient")
"""How the reference enters the idealized ratio: the likelihood ratio π_ref(y1)/π_ref(y2) (the paper's Eq. 3, the
book's default), or the quotient of the two summed log-probs log π_ref(y1) / log π_ref(y2) that the official code
uses in its raw (non-length-normalised) branch (`rlhf_minimizer_client.py::_compute_likelihood_ratios_helper`:
``norm_prob_ratio = norm_prob1 / norm_prob2`` with ``norm_prob = −num_tokens·log(ppl)`` = the summed log-prob; its
length-normalised branch uses ppl_2/ppl_1, a true likelihood ratio of geometric means)."""


def idealized_log_ratio(ref_logp_1: Tensor, ref_logp_2: Tensor, alpha_12: Tensor, beta: float, eps: float = 1e-3,
                        definition: str = "likelihood_ratio") -> Tensor:
    """log π*(y1)/π*(y2) = [log π_ref(y1) − log π_ref(y2)] + (1/β)·log(α₁₂/α₂₁), α₂₁ = 1 − α₁₂ (Chen et al. 2024,
    §4.1, Eq. 3 with Bradley–Terry); α is clipped to [eps, 1 − eps] (the code's `eps` = 0.001).

    `definition="logprob_quotient"` replaces the reference term by log[log π_ref(y1) / log π_ref(y2)] (see
    `DEFINITIONS`; both summed log-probs are negative, so the quotient is positive and is < 1 when y1 is the *more*
    likely response: the reference's vote is inverted and shrunk to the log of a ratio of lengths-ish)."""
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
    a = _t(alpha_12).clamp(eps, 1 - eps)
    l1, l2 = _t(ref_logp_1), _t(ref_logp_2)
    ref_term = (l1 - l2) if definition == "likelihood_ratio" else torch.log(-l1) - torch.log(-l2)
    return ref_term + (torch.log(a) - torch.log1p(-a)) / beta


def idealized_ranking_correct(
    ref_logp_1: Tensor, ref_logp_2: Tensor, alpha_12: Tensor, beta: float, *, tie_band: float = TIE_BAND,
    definition: str = "likelihood_ratio",
) -> Tensor:
    """Per pair: does the exact RLHF/DPO optimum π* rank (y1, y2) as the annotators do? Both rankings come from
    a ratio with the tie band (π*(y1)/π*(y2) and α₁₂/α₂₁), and a tie must match a tie, as in Chen et al.'s code.
    Pass length-normalised reference log-probs for the length-normalised variant; `definition` as in
    `idealized_log_ratio`. Returns bool [B]."""
    a = _t(alpha_12)
    human = _rank_from_log_ratio(torch.log(a.clamp(1e-12)) - torch.log((1 - a).clamp(1e-12)), tie_band)
    model = _rank_from_log_ratio(idealized_log_ratio(ref_logp_1, ref_logp_2, a, beta, definition=definition), tie_band)
    return human == model


def idealized_ranking_accuracy(
    ref_logp_1: Tensor, ref_logp_2: Tensor, alpha_12: Tensor, betas: Sequence[float] = (0.01, 0.1, 1.0, 5.0, 10.0),
    *, tie_band: float = TIE_BAND, definition: str = "likelihood_ratio",
) -> dict[float, float]:
    """Idealized ranking accuracy R(π*) for each β (Chen et al. 2024, Thm 3.1 / Table 1): {β: accuracy}
    (`definition`: see `idealized_log_ratio`)."""
    return {float(b): float(idealized_ranking_correct(ref_logp_1, ref_logp_2, alpha_12, b, tie_band=tie_band, definition=definition).double().mean())
            for b in betas}


def misranking_margin(ref_chosen_logps: Tensor, ref_rejected_logps: Tensor) -> Tensor:
    """c = log π_ref(y_l) − log π_ref(y_w) (Chen et al. 2024 Thm 4.1): > 0 when the reference misranks the pair."""
    return _t(ref_rejected_logps) - _t(ref_chosen_logps)


def thm41_check(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, beta: float
) -> dict[str, Tensor]:
    """Chen et al. 2024 Theorem 4.1 on every pair: correctly ranked ⇔ L_DPO < −log σ(β·c).

    Returns float64/bool tensors [B]: `dpo_loss`, `bound` = −log σ(βc), `c`, `ranked` (π(y_w) > π(y_l)),
    `predicted` (L_DPO < bound) and `agree` (ranked == predicted). Pairs whose two sides are equal to within
    1e-9 (a numerical tie) are flagged in `tie` and count as agreeing.
    """
    c_ = _t(chosen_logps)
    r_ = _t(rejected_logps)
    rc, rr = _t(ref_chosen_logps), _t(ref_rejected_logps)
    delta = (c_ - rc) - (r_ - rr)
    c = misranking_margin(rc, rr)
    loss = -F.logsigmoid(beta * delta)
    bound = -F.logsigmoid(beta * c)
    ranked = c_ > r_
    predicted = loss < bound
    tie = (c_ - r_).abs() < 1e-9
    return {"dpo_loss": loss, "bound": bound, "c": c, "ranked": ranked, "predicted": predicted, "tie": tie, "agree": (ranked == predicted) | tie}


def flip_rates_by_margin(
    ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, chosen_logps: Tensor, rejected_logps: Tensor, edges: Sequence[float]
) -> list[dict[str, float]]:
    """Among pairs the reference misranks (c > 0), the share the trained model ranks correctly, per bin of c
    (`edges` ascending, c in [edges[i], edges[i+1])). Chen et al. 2024 §4: DPO rarely flips them, fewer as c
    grows. Returns [{lo, hi, n, flipped}] (flipped = NaN for an empty bin)."""
    c = misranking_margin(ref_chosen_logps, ref_rejected_logps)
    ok = _t(chosen_logps) > _t(rejected_logps)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (c > 0) & (c >= lo) & (c < hi)
        n = int(sel.sum())
        out.append({"lo": float(lo), "hi": float(hi), "n": n, "flipped": float(ok[sel].double().mean()) if n else float("nan")})
    return out


def ranking_summary(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor,
                    chosen_len: Tensor, rejected_len: Tensor, beta: float) -> dict[str, float]:
    """Everything Chen et al. 2024 read off one model on one set of pairs: `raw` and `length_norm` ranking accuracy,
    `n_misranked` (pairs the reference misranks, c > 0), `flip_rate` (the share of those the model ranks correctly),
    `flip_bottom` / `flip_top` (the same in the lowest and highest tercile of c; NaN with < 3 misranked pairs),
    `thm41_agree` (share of pairs where `thm41_check` agrees) and `dpo_loss` (mean over pairs)."""
    t = thm41_check(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    c = t["c"]
    mis = c > 0
    n_mis = int(mis.sum())
    flip = float(t["ranked"][mis].double().mean()) if n_mis else float("nan")
    bot = top = float("nan")
    if n_mis >= 3:
        cm = c[mis].numpy()
        q1, q2 = np.quantile(cm, [1 / 3, 2 / 3])
        bins = flip_rates_by_margin(ref_chosen_logps, ref_rejected_logps, chosen_logps, rejected_logps, [0.0, float(q1), float(q2), float(cm.max()) + 1e-6])
        bot, top = bins[0]["flipped"], bins[-1]["flipped"]
    return {"raw": ranking_accuracy(chosen_logps, rejected_logps), "length_norm": ranking_accuracy(chosen_logps, rejected_logps, chosen_len, rejected_len, normalized=True),
            "n_misranked": float(n_mis), "flip_rate": flip, "flip_bottom": bot, "flip_top": top,
            "thm41_agree": float(t["agree"].double().mean()), "dpo_loss": float(t["dpo_loss"].mean())}
