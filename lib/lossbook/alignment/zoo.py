"""The preference-loss zoo: every other per-pair preference loss, listed by name in `lossbook.alignment.registry`.

All losses share one signature (`lossbook.alignment.losses.PreferenceLoss`)::

    loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *, beta,
         chosen_len=None, rejected_len=None, **kw) -> Tensor[batch]

with *summed* sequence log-probs (as TRL). Notation used in the docstrings:

    s_w = log π(y_w|x) − log π_ref(y_w|x),  s_l = log π(y_l|x) − log π_ref(y_l|x)   (log-ratios)
    Δ = s_w − s_l (`dpo_margin`),  r = β·s (the DPO implicit reward),  σ the logistic function.

Registered names: ``hinge``, ``cdpo``, ``robust_dpo``, ``ln_dpo``, ``simpo``, ``nca``, ``apo_zero``, ``apo_down``,
``sppo_hard``, ``fdpo_reverse_kl``, ``fdpo_forward_kl``, ``fdpo_js``, ``fdpo_alpha``, ``rpo``, ``bco_pair``,
``kto_pair`` (``dpo`` and ``ipo`` live in `lossbook.alignment.losses`). Unpaired BCO with the prompt density-ratio
weights (UDM) is `bco_unpaired_loss` + `udm_weights` (it does not fit the paired signature).

Stateful losses (BCO's running reward shift δ) keep their state in an explicit object passed as a keyword
(`bco_pair(..., delta_state=RunningMean())`), so `PreferenceConfig(loss_kwargs={"delta_state": RunningMean()})`
carries it across the steps of `lossbook.alignment.preference.train_preference`.

`loss_setup(name, ...)` gives the (β, keywords) of a loss in a same-budget comparison of the zoo (one β and one set
of options for every loss, SimPO's own β and γ, a fresh BCO δ per run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lossbook.alignment.losses import PreferenceLoss, _lengths, dpo_margin


def _kwf(kw: dict, name: str, default: float) -> float:
    v = kw.get(name, default)
    return float(default if v is None else v)  # type: ignore[arg-type]


# ---- margin losses ---------------------------------------------------------------------------------------------
def hinge_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """SLiC-HF hinge / calibration loss (Zhao et al. 2023, "SLiC-HF", arXiv 2305.10425), in TRL's form:

        ℓ = max(0, 1 − β·Δ)

    (SLiC's margin δ = 1/β on the log-ratio margin; TRL `loss_type="hinge"`). Zero gradient once βΔ ≥ 1.
    """
    return torch.relu(1.0 - beta * dpo_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps))


def cdpo_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): labels flipped w.p. ε,

        ℓ = −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ),   ε = kw["label_smoothing"] (default 0.1)

    (TRL ≤ 0.28 `sigmoid` with `label_smoothing`). Its minimiser is finite: βΔ* = log((1−ε)/ε).
    """
    eps = _kwf(kw, "label_smoothing", 0.1)
    z = beta * dpo_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)


def robust_dpo_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """Robust DPO (Chowdhury, Kini, Natarajan 2024, "Provably Robust DPO", arXiv 2403.00409, Eq. 8):

        ℓ = [ −(1−ε)·log σ(βΔ) + ε·log σ(−βΔ) ] / (1 − 2ε),   ε = kw["label_smoothing"] ∈ [0, ½) (default 0.1)

    an unbiased estimate of the clean-label DPO loss under flip rate ε (TRL `loss_type="robust"`). ε = 0 is DPO.
    """
    eps = _kwf(kw, "label_smoothing", 0.1)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"robust_dpo needs 0 <= label_smoothing < 0.5, got {eps}")
    z = beta * dpo_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


def ln_dpo_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """Length-normalised DPO (Ahrabian et al. 2024, "A Practical Analysis of Human Alignment with *PO",
    arXiv 2407.15229; TRL `sigmoid_norm`, Tülu 3):

        ℓ = −log σ( β·s_w/|y_w| − β·s_l/|y_l| )

    Needs `chosen_len`, `rejected_len` (response tokens).
    """
    lc, lr = _lengths(chosen_len, rejected_len, "ln_dpo", chosen_logps)
    h = (chosen_logps - ref_chosen_logps) / lc - (rejected_logps - ref_rejected_logps) / lr
    return -F.logsigmoid(beta * h)


def simpo_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """SimPO (Meng, Xia, Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
    arXiv 2405.14734, Eq. 6): length-normalised, *no reference*, target margin γ:

        ℓ = −log σ( β·log π(y_w)/|y_w| − β·log π(y_l)/|y_l| − γ ),   γ = kw["gamma"] (default 0.5)

    The reference log-probs are accepted for the common signature and ignored. The paper's β is ~2–2.5 with
    γ/β ≈ 0.5; with a DPO-sized β (0.1) pass a larger β.
    """
    gamma = _kwf(kw, "gamma", 0.5)
    lc, lr = _lengths(chosen_len, rejected_len, "simpo", chosen_logps)
    return -F.logsigmoid(beta * (chosen_logps / lc - rejected_logps / lr) - gamma)


# ---- losses on the two rewards separately ------------------------------------------------------------------------
def nca_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """NCA, pairwise (Chen, Yang, Lin, Yi, Zhu 2024, "Noise Contrastive Alignment of Language Models with
    Explicit Rewards", arXiv 2402.05369; TRL `nca_pair`):

        ℓ = −log σ(r_w) − ½·log σ(−r_w) − ½·log σ(−r_l),   r = β·s

    Unlike DPO it is not a function of the margin only: it optimises the absolute reward r_w, which is the
    paper's argument that NCA keeps the chosen likelihood from falling.
    """
    rw = beta * (chosen_logps - ref_chosen_logps)
    rl = beta * (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(rw) - 0.5 * F.logsigmoid(-rw) - 0.5 * F.logsigmoid(-rl)


def apo_zero_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """APO-zero (D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions",
    arXiv 2408.06266; TRL `apo_zero`): push the chosen likelihood up and the rejected one down, each anchored
    at the reference:

        ℓ = (1 − σ(β·s_w)) + σ(β·s_l)

    For when the chosen responses are better than the model's own outputs.
    """
    return (1 - torch.sigmoid(beta * (chosen_logps - ref_chosen_logps))) + torch.sigmoid(beta * (rejected_logps - ref_rejected_logps))


def apo_down_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """APO-down (D'Oosterlinck et al. 2024, arXiv 2408.06266; TRL `apo_down`): both likelihoods go down, the
    rejected one more:  ℓ = σ(β·s_w) + (1 − σ(β·Δ)).  For when the chosen responses are worse than the model's.
    """
    s_w = chosen_logps - ref_chosen_logps
    z = beta * dpo_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return torch.sigmoid(beta * s_w) + (1 - torch.sigmoid(z))


def sppo_hard_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """SPPO with hard labels (Wu et al. 2024, "Self-Play Preference Optimization for Language Model
    Alignment", arXiv 2405.00675, Eq. 4.8 with P(y_w ≻ y_l) ∈ {1, 0}; TRL `sppo_hard`):

        ℓ = (s_w − 1/(2β))² + (s_l + 1/(2β))²

    Square losses pulling each log-ratio to a target (±1/(2β)) rather than a margin, as in IPO.
    """
    a = chosen_logps - ref_chosen_logps
    b = rejected_logps - ref_rejected_logps
    return (a - 0.5 / beta) ** 2 + (b + 0.5 / beta) ** 2


# ---- f-DPO ------------------------------------------------------------------------------------------------------
def f_prime(s: Tensor, divergence: str, alpha: float = 0.5) -> Tensor:
    """f′(u) at u = π/π_ref = exp(s), for the f-divergences of Wang et al. 2023 (arXiv 2309.16240, Table 1):

    reverse_kl: log u = s;   forward_kl: −1/u = −e^{−s};   js: log(2u/(1+u)) = log 2 + log σ(s);
    alpha: (1 − u^{−α})/α = (1 − e^{−α s})/α   (α ∈ (0, 1); α→0 is reverse KL, α→1 is forward KL up to a constant).
    TRL's `alpha_divergence` coefficient a relates as a = 1 − α.
    """
    if divergence == "reverse_kl":
        return s
    if divergence == "forward_kl":
        return -torch.exp(-s)
    if divergence == "js":
        return math.log(2.0) + F.logsigmoid(s)
    if divergence == "alpha":
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha-divergence needs 0 < alpha < 1, got {alpha}")
        return (1.0 - torch.exp(-alpha * s)) / alpha
    raise ValueError(f"unknown divergence {divergence!r}; valid: reverse_kl, forward_kl, js, alpha")


def fdpo_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, divergence: str = "reverse_kl", alpha: float = 0.5, **kw: object,
) -> Tensor:
    """f-DPO (Wang, Jiang, Yang, Liu, Chen 2023, "Beyond Reverse KL: Generalizing DPO with Diverse Divergence
    Constraints", arXiv 2309.16240, Eq. 8):

        ℓ = −log σ( β·f′(π(y_w)/π_ref(y_w)) − β·f′(π(y_l)/π_ref(y_l)) ),   f′ from `f_prime`

    Reverse KL (f′ = log u) is exactly DPO.
    """
    fw = f_prime(chosen_logps - ref_chosen_logps, divergence, alpha)
    fl = f_prime(rejected_logps - ref_rejected_logps, divergence, alpha)
    return -F.logsigmoid(beta * (fw - fl))


def _fdpo_named(divergence: str) -> PreferenceLoss:
    """`fdpo_loss` with `divergence` bound, in the shared signature (kw: `alpha`, for the α-divergence only)."""

    def loss(
        chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
        beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
    ) -> Tensor:
        return fdpo_loss(
            chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=beta, divergence=divergence, alpha=_kwf(kw, "alpha", 0.5)
        )

    loss.__name__ = f"fdpo_{divergence}_loss"
    loss.__doc__ = f"f-DPO with f′ for {divergence} (see `fdpo_loss`, `f_prime`; Wang et al. 2023). kw: alpha (α-divergence only)."
    return loss


fdpo_reverse_kl_loss = _fdpo_named("reverse_kl")
fdpo_forward_kl_loss = _fdpo_named("forward_kl")
fdpo_js_loss = _fdpo_named("js")
fdpo_alpha_loss = _fdpo_named("alpha")


# ---- RPO = DPO + SFT ---------------------------------------------------------------------------------------------
def rpo_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """RPO (Liu, Liu, Gao, Shen, Wang 2024, "Provably Mitigating Overoptimization in RLHF: Your SFT Loss is
    Implicitly an Adversarial Regularizer", arXiv 2405.16436, Eq. 4.8):

        ℓ = −log σ(βΔ) + η·β·NLL(y_w),   η = kw["eta"] (default 0.005, the paper's value)

    NLL(y_w) is the **sequence-level** negative log-likelihood −log π(y_w|x) (summed over tokens, as the paper's
    E[−log π_θ(a0|x)]) by default; kw["nll"]="token_mean" divides by |y_w| instead (TRL's `"sft"` term is a token
    mean, and Iterative RPO (arXiv 2404.19733) length-normalises), which needs `chosen_len`. With summed NLL the
    gradient on log π(y_w) is −β·(σ(−βΔ) + η), so the chosen log-prob keeps a push up even when the DPO part
    saturates (the paper's Fig. 1: no continual decrease of the chosen log-prob).
    """
    eta = _kwf(kw, "eta", 0.005)
    mode = kw.get("nll", "sum")
    nll = -chosen_logps
    if mode == "token_mean":
        lc, _ = _lengths(chosen_len, chosen_len if rejected_len is None else rejected_len, "rpo (nll='token_mean')", chosen_logps)
        nll = nll / lc
    elif mode != "sum":
        raise ValueError(f"rpo nll must be 'sum' (paper) or 'token_mean' (TRL 'sft'), got {mode!r}")
    z = beta * dpo_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return -F.logsigmoid(z) + eta * beta * nll


# ---- BCO --------------------------------------------------------------------------------------------------------
@dataclass
class RunningMean:
    """The BCO reward shift δ: a running mean of batch rewards, never differentiated.

    `mode="cumulative"` (default) is TRL ≤ 0.28's `RunningMoments` mean: δ_n = mean of all batch means seen so
    far, weighted by their sizes. `mode="ema"`: δ ← (1−m)·δ + m·batch mean (the paper describes a moving
    average; `momentum` m). `update(rewards)` folds in a batch (detached) and returns the new δ.
    """

    mode: str = "cumulative"
    momentum: float = 0.1
    mean: float = 0.0
    count: int = 0

    def update(self, rewards: Tensor) -> float:
        r = rewards.detach().double()
        n, m = int(r.numel()), float(r.mean())
        if self.mode == "cumulative":
            tot = self.count + n
            self.mean = self.mean + (m - self.mean) * n / tot
            self.count = tot
        elif self.mode == "ema":
            self.mean = m if self.count == 0 else (1 - self.momentum) * self.mean + self.momentum * m
            self.count += n
        else:
            raise ValueError(f"RunningMean mode must be 'cumulative' or 'ema', got {self.mode!r}")
        return self.mean


def bco_binary_loss(r_w: Tensor, r_l: Tensor, delta: float | Tensor) -> Tensor:
    """The shifted binary-classifier loss of BCO (Jung et al. 2024, arXiv 2404.04656, Eq. 8, Thm 1/3):

        ℓ_δ = −log σ(r_w − δ) − log σ(−(r_l − δ))

    Thm 3: ℓ_δ > −log σ(r_w − r_l) (the DPO loss) for every δ; Thm 4: the gap is smallest at δ = (r_w + r_l)/2.
    """
    return -F.logsigmoid(r_w - delta) - F.logsigmoid(-(r_l - delta))


def bco_pair_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """BCO on paired data (Jung, Han, Lee, Lee, Kim 2024, "Binary Classifier Optimization for Large Language
    Model Alignment", arXiv 2404.04656):

        ℓ = −log σ(r_w − δ) − w·log σ(−(r_l − δ)),   r = β·s,  δ = running mean of the rewards (no gradient)

    kw: `delta_state` (a `RunningMean`, updated with the batch's mean reward ½(mean r_w + mean r_l) *before* use,
    as TRL ≤ 0.28 `bco_pair`), or a fixed `delta` (float), or neither (δ = 0: TRL ≥ 0.29's `bco_pair`, which
    dropped the shift). `udm_weight` (tensor [batch] or float, default 1): the density-ratio weight w on the
    rejected term (see `udm_weights`; on paired data both terms share the prompt, so w ≈ 1).
    """
    rw = beta * (chosen_logps - ref_chosen_logps)
    rl = beta * (rejected_logps - ref_rejected_logps)
    state = kw.get("delta_state")
    if state is not None:
        if not isinstance(state, RunningMean):
            raise TypeError(f"delta_state must be a RunningMean, got {type(state).__name__}")
        delta: float = state.update(torch.cat([rw, rl]).detach())
    else:
        delta = _kwf(kw, "delta", 0.0)
    w = kw.get("udm_weight", 1.0)
    w_t = torch.as_tensor(w, dtype=rw.dtype, device=rw.device)
    return -F.logsigmoid(rw - delta) - w_t * F.logsigmoid(-(rl - delta))


def bco_unpaired_loss(
    logps: Tensor, ref_logps: Tensor, desirable: Tensor, *, beta: float, delta_state: RunningMean | None = None,
    delta: float = 0.0, udm_weight: Tensor | float = 1.0,
) -> Tensor:
    """Unpaired BCO (Jung et al. 2024, arXiv 2404.04656, Eq. 7 with UDM, §4.2; TRL `experimental.bco`):

        ℓ_i = −log σ(r_i − δ)             if y_i is desirable (D⁺)
        ℓ_i = −w_i·log σ(−(r_i − δ))      if undesirable (D⁻),    r_i = β·(log π(y_i|x_i) − log π_ref(y_i|x_i))

    δ = ½(E_{D⁺} r + E_{D⁻} r): with `delta_state` the running mean is updated with ½(mean r over D⁺ + mean r over
    D⁻) of this batch (detached; the plain batch mean when one side is empty), else the fixed `delta`. w_i =
    `udm_weight` (per example or scalar), from `udm_weights`. Returns [batch].
    """
    r = beta * (logps - ref_logps)
    des = desirable.bool()
    if delta_state is not None:
        rd = r.detach()
        if des.any() and (~des).any():
            mid = 0.5 * (rd[des].mean() + rd[~des].mean())
        else:
            mid = rd.mean()
        d: float = delta_state.update(mid.reshape(1))
    else:
        d = float(delta)
    w = torch.as_tensor(udm_weight, dtype=r.dtype, device=r.device)
    return torch.where(des, -F.logsigmoid(r - d), -w * F.logsigmoid(-(r - d)))


def udm_weights(
    desirable_prompt_emb: Tensor | np.ndarray, undesirable_prompt_emb: Tensor | np.ndarray, query: Tensor | np.ndarray,
    *, min_ratio: float = 0.5, max_ratio: float = 10.0, seed: int = 0,
) -> Tensor:
    """Underlying-distribution matching (Jung et al. 2024 §4.2; TRL `_get_udm_weight`): a class-balanced logistic
    regression on prompt embeddings, D⁺ (label 1) vs D⁻ (label 0); each undesirable example's weight is the
    density ratio p_{D⁺}(x)/p_{D⁻}(x) ≈ p(1|x)/(1 − p(1|x)), clipped to [min_ratio, max_ratio] (TRL's
    `min_density_ratio`, `max_density_ratio`). Returns weights for the `query` prompts [n] (float32).
    """
    from sklearn.linear_model import LogisticRegression

    def arr(a: Tensor | np.ndarray) -> np.ndarray:
        return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)

    xp, xn, xq = arr(desirable_prompt_emb), arr(undesirable_prompt_emb), arr(query)
    X = np.concatenate([xp, xn])
    y = np.concatenate([np.ones(len(xp)), np.zeros(len(xn))])
    clf = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed).fit(X, y)
    p = clf.predict_proba(xq)[:, 1]
    ratio = np.clip(p / np.clip(1 - p, 1e-12, None), min_ratio, max_ratio)
    return torch.as_tensor(ratio, dtype=torch.float32)


# ---- KTO --------------------------------------------------------------------------------------------------------
def kto_pair_loss(
    chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
    beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object,
) -> Tensor:
    """KTO on pairs (Ethayarajh, Xu, Muennighoff, Jurafsky, Kiela 2024, "KTO: Model Alignment as Prospect
    Theoretic Optimization", arXiv 2402.01306, Eq. 8), each pair = one desirable + one undesirable example:

        ℓ = λ_D·(1 − σ(β(s_w − z₀))) + λ_U·(1 − σ(β(z₀ − s_l)))

    z₀ is the reference point, KL(π‖π_ref), detached and clamped at 0. The paper estimates it from mismatched
    (x, y′) pairs; pass it as kw["kl"] if you have it. Otherwise the batch estimate of TRL ≤ 0.8's `kto_pair` is
    used, with one z₀ per term: the desirable term uses max(0, mean s_l) and the undesirable term max(0, mean s_w)
    (a biased estimate; fine for comparing losses). λ_D = kw["desirable_weight"], λ_U = kw["undesirable_weight"]
    (default 1).
    """
    sw = chosen_logps - ref_chosen_logps
    sl = rejected_logps - ref_rejected_logps
    lam_d, lam_u = _kwf(kw, "desirable_weight", 1.0), _kwf(kw, "undesirable_weight", 1.0)
    if kw.get("kl") is not None:
        z_d = z_u = torch.as_tensor(float(kw["kl"]), dtype=sw.dtype).clamp(min=0)  # type: ignore[arg-type]
    else:
        z_d = sl.detach().mean().clamp(min=0)
        z_u = sw.detach().mean().clamp(min=0)
    return lam_d * (1 - torch.sigmoid(beta * (sw - z_d))) + lam_u * (1 - torch.sigmoid(beta * (z_u - sl)))


# ---- one setup for a same-budget comparison ------------------------------------------------------------------------
def loss_setup(
    name: str, extra: dict[str, object] | None = None, *, beta: float, label_smoothing: float, fdpo_alpha: float,
    simpo_beta: float, simpo_gamma: float,
) -> tuple[float, dict[str, object]]:
    """(β, loss keywords) for the registered loss `name` when every loss runs with one β and one set of options.

    Every loss gets `label_smoothing` (ε of `cdpo_loss` and `robust_dpo_loss`) and `alpha` = `fdpo_alpha` (of
    `fdpo_alpha`), overridden by `extra` (e.g. RPO's ``{"eta": η}``); losses that do not read a keyword ignore it.
    SimPO has no reference and its own scale, so it gets `simpo_beta` and γ = `simpo_gamma` (Meng et al. 2024:
    β ≈ 2–2.5, γ/β ≈ 0.5). BCO gets a fresh `RunningMean` δ (Jung et al. 2024), so no state leaks between runs.
    """
    kw: dict[str, object] = {"label_smoothing": label_smoothing, "alpha": fdpo_alpha, **(extra or {})}
    b = beta
    if name == "simpo":
        b, kw["gamma"] = simpo_beta, simpo_gamma
    if name == "bco_pair":
        kw["delta_state"] = RunningMean()
    return b, kw


# ---- reading a zoo run: RPO's relative push, and samples ---------------------------------------------------------
def rpo_push_ratio(margin: Tensor, beta: float, eta: float) -> Tensor:
    """How much RPO's SFT term adds to DPO's push on log π(y_w), per pair: the gradient of `rpo_loss` on log π(y_w)
    is −β·(σ(−βΔ) + η), DPO's is −β·σ(−βΔ), so the extra push relative to DPO's is η / σ(−βΔ) (Liu et al. 2024,
    Eq. 4.8 with summed NLL). With the paper's η = 0.005 and a DPO loss near log 2 (σ(−βΔ) ≈ ½) it is ~1%."""
    return eta / torch.sigmoid(-beta * margin.double())


def generation_eval(world: object, policy: torch.nn.Module, reference: torch.nn.Module, prompts: list[list[int]], *, n_samples: int,
                    max_new_tokens: int, temperature: float = 1.0, seed: int = 0, device: str | torch.device = "cpu") -> dict[str, object]:
    """`n_samples` ancestral samples per prompt from `policy` (seeded; `lossbook.alignment.refusal.sample_responses`),
    scored by the persona world's rule judge (`refusal.gold_reward`; −1 = malformed). Returns `rewards` [P, n_samples],
    `malformed` (share), `kl` = mean[log π(y) − log π_ref(y)] and `entropy` = −mean log π(y) over all samples (nats per
    response; Monte-Carlo), `mean_reward`, `mean_len`, and the `metrics.sample_diversity` of the well-formed samples
    (`distinct`, `pairwise_edit`, `n_prompts`, `well_formed`)."""
    from lossbook.alignment import refusal as rw
    from lossbook.alignment.metrics import sample_diversity

    rep = [p for p in prompts for _ in range(n_samples)]
    g = torch.Generator().manual_seed(seed)
    ys = rw.sample_responses(policy, rep, max_new_tokens=max_new_tokens, eos_id=world.eos_id, temperature=temperature, generator=g, device=device)  # type: ignore[attr-defined]
    lp, lens = rw.response_logps(policy, rep, ys, world.pad_id, device=device)  # type: ignore[attr-defined]
    lr, _ = rw.response_logps(reference, rep, ys, world.pad_id, device=device)  # type: ignore[attr-defined]
    rewards = np.array([rw.gold_reward(world, p, y) for p, y in zip(rep, ys)]).reshape(len(prompts), n_samples)  # type: ignore[arg-type]
    ok = rewards > -1.0
    by_prompt = [ys[i * n_samples : (i + 1) * n_samples] for i in range(len(prompts))]
    div = sample_diversity(by_prompt, ok.tolist())
    return {"rewards": rewards, "malformed": float(1 - ok.mean()), **rw.kl_and_entropy(lp, lr), "mean_reward": float(rewards.mean()),
            "mean_len": float(lens.double().mean()), **div}
