"""The "3D-properties" toy: DPO on a small MLP policy over a few prompts × discrete responses.

Yan, Miao, Li, Zhang, Xie, Deng, Yan (2024/ICLR 2025), "3D-Properties: Identifying Challenges in DPO and Charting a
Path Forward" (arXiv 2406.07327): DPO shows a **D**rastic drop of the rejected likelihood, a **D**egradation into
response suppression, and a **D**ispersion of mass onto responses in no pair. Their Cor. 1: for
``ℓ = −log σ(β log(π⁺/π⁺_ref) − β log(π⁻/π⁻_ref))``

    (∂ℓ/∂π⁻) / (∂ℓ/∂π⁺) = −π⁺/π⁻,

so as π⁻ → 0 the push on the rejected probability dominates. Fixes: Flex-DPO (separate β⁺ for the chosen and β⁻
for the rejected log-ratio, ratio ``−(β⁻/β⁺)·π⁺/π⁻``) and DPO + SFT (an NLL term on the chosen response; here the
book's RPO loss, ``ℓ_DPO + η·β·NLL(y⁺)``, with ``η·β`` = the SFT weight).

The toy here (the paper: a 3-layer MLP over 4 prompts × 10 responses; that description is from summaries, the
paper's exact sizes and step sizes were not read): prompt x is one-hot, the policy is `models.mlp.MLP` (3 linear
layers) giving logits over R responses. The reference is the MLP fitted (cross-entropy) to a random per-prompt
distribution ``Dir(α)``, and the policy starts at the reference. Each prompt gets ``pairs_per_prompt`` pairs of
distinct responses, labelled by a random gold reward; *on-policy* pairs are drawn from π_ref, *off-policy* ones
uniformly among the responses π_ref ranks lowest. Responses in no pair of a prompt are its *unseen* responses.
The paper has four scenarios (chosen and rejected each on- or off-policy; as reviews describe them, definitions not
read); the two mixed ones here, ``chosen_off`` (y⁺ off-, y⁻ on-policy) and ``rejected_off`` (y⁺ on-, y⁻
off-policy), split a prompt's responses into the half π_ref ranks lowest (off-policy: drawn uniformly) and the rest
(on-policy: drawn from π_ref renormalised on it), and label each pair by its scenario, not by the reward.
`late_phase` says whether a long run reached the phase the paper reads dispersion in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from lossbook import registry
from lossbook.alignment import losses as L
from lossbook.alignment import zoo as Z
from lossbook.alignment.losses import PreferenceLoss
from lossbook.models.mlp import MLP
from lossbook.optim import make_optimizer

SCENARIOS = ("on_policy", "off_policy", "chosen_off", "rejected_off")


def flex_dpo_loss(chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, *,
                  beta: float, chosen_len: Tensor | None = None, rejected_len: Tensor | None = None, **kw: object) -> Tensor:
    """Flex-DPO (Yan et al. 2024; section not checked — reviews place it in §3.3 / §4.3): ``ℓ = −log σ(β⁺·(log π(y⁺) − log π_ref(y⁺)) − β⁻·(log π(y⁻) − log π_ref(y⁻)))``
    with β⁺ = `beta` and β⁻ = kw["beta_minus"] (default: `beta`, i.e. DPO)."""
    bm = float(kw.get("beta_minus", beta))  # type: ignore[arg-type]
    return -F.logsigmoid(beta * (chosen_logps - ref_chosen_logps) - bm * (rejected_logps - ref_rejected_logps))


TOY_LOSSES: dict[str, PreferenceLoss] = {"dpo": L.dpo_loss, "flex_dpo": flex_dpo_loss, "dpo_sft": Z.rpo_loss}
"""The toy's methods: DPO, Flex-DPO (β⁻ ≠ β⁺) and DPO + SFT (the book's RPO loss)."""


def prob_gradient_ratio(pi_plus: Tensor | float, pi_minus: Tensor | float, beta_plus: float = 1.0, beta_minus: float = 1.0) -> Tensor:
    """Yan et al.'s Cor. 1 (with Flex-DPO's two βs): ``(∂ℓ/∂π⁻)/(∂ℓ/∂π⁺) = −(β⁻/β⁺)·π⁺/π⁻``."""
    return -(beta_minus / beta_plus) * torch.as_tensor(pi_plus, dtype=torch.float64) / torch.as_tensor(pi_minus, dtype=torch.float64)


@dataclass(frozen=True)
class ToyConfig:
    """Sizes of the toy and of its reference fit; everything random follows from `seed`."""

    n_prompts: int = 4
    n_responses: int = 10
    hidden: int = 64
    pairs_per_prompt: int = 2
    scenario: str = "on_policy"
    ref_concentration: float = 0.5
    ref_steps: int = 300
    ref_lr: float = 1.0e-2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if 2 * self.pairs_per_prompt > self.n_responses:
            raise ValueError("2·pairs_per_prompt responses per prompt must fit in n_responses")


@dataclass
class Toy:
    """A toy world: the reference policy, the one-hot prompts, the pairs [N, 3] = (prompt, y⁺, y⁻), the unseen mask
    [P, R] (True for responses in no pair of the prompt), the gold reward [P, R] and the config."""

    reference: MLP
    x: Tensor
    pairs: Tensor
    unseen: Tensor
    reward: Tensor
    cfg: ToyConfig


def _policy(cfg: ToyConfig) -> MLP:
    return MLP(cfg.n_prompts, cfg.n_responses, hidden=(cfg.hidden, cfg.hidden))


def make_toy(cfg: ToyConfig) -> Toy:
    """Build the toy: fit the reference to ``Dir(α)`` targets (Adam, full batch, soft cross-entropy), draw the
    reward ``N(0, 1)`` per (prompt, response) and the pairs of `cfg.scenario`."""
    g = torch.Generator().manual_seed(int(cfg.seed))
    torch.manual_seed(int(cfg.seed))
    P, R = cfg.n_prompts, cfg.n_responses
    x = torch.eye(P)
    target = torch.distributions.Dirichlet(torch.full((R,), float(cfg.ref_concentration))).sample((P,))
    ref = _policy(cfg)
    opt = make_optimizer(ref, "adam", cfg.ref_lr)
    for _ in range(cfg.ref_steps):
        opt.zero_grad()
        loss = -(target * torch.log_softmax(ref(x), -1)).sum(-1).mean()
        loss.backward()
        opt.step()
    ref.eval()
    with torch.no_grad():
        p_ref = torch.softmax(ref(x), -1)
    reward = torch.randn(P, R, generator=g)
    k = 2 * cfg.pairs_per_prompt
    rows, unseen = [], torch.ones(P, R, dtype=torch.bool)
    for i in range(P):
        if cfg.scenario == "on_policy":
            ys = torch.multinomial(p_ref[i], k, replacement=False, generator=g)
        elif cfg.scenario == "off_policy":
            low = torch.argsort(p_ref[i])[: max(k, R // 2)]
            ys = low[torch.randperm(low.numel(), generator=g)[:k]]
        else:  # mixed: one side off-policy (the lowest half by π_ref), the other on-policy (π_ref on the rest)
            order = torch.argsort(p_ref[i])
            low, high = order[: R // 2], order[R // 2:]
            off = low[torch.randperm(low.numel(), generator=g)[: cfg.pairs_per_prompt]]
            on = high[torch.multinomial(p_ref[i][high], cfg.pairs_per_prompt, replacement=False, generator=g)]
            yp_s, ym_s = (off, on) if cfg.scenario == "chosen_off" else (on, off)
            unseen[i, yp_s] = False
            unseen[i, ym_s] = False
            rows += [(i, int(a), int(b)) for a, b in zip(yp_s, ym_s)]
            continue
        unseen[i, ys] = False
        for j in range(0, k, 2):
            a, b = int(ys[j]), int(ys[j + 1])
            yp, ym = (a, b) if reward[i, a] >= reward[i, b] else (b, a)
            rows.append((i, yp, ym))
    return Toy(ref, x, torch.tensor(rows, dtype=torch.long), unseen, reward, cfg)


def train_toy(toy: Toy, method: str, *, beta: float, steps: int, lr: float, optimizer: str = "adam", beta_minus: float | None = None,
              sft_weight: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Full-batch preference training of a copy of the reference on the toy's pairs with `method` (TOY_LOSSES).

    Flex-DPO uses β⁺ = `beta`, β⁻ = `beta_minus`; DPO + SFT adds ``sft_weight · NLL(y⁺)`` (RPO with
    η = sft_weight/β). Records after every step (and at 0) the policy's probabilities ``probs`` [T+1, P, R], the
    training loss ``loss`` [T] and the DPO loss with `beta` of the current policy ``dpo_loss`` [T+1] (the progress
    every method is read against).
    """
    loss_fn = registry.lookup(TOY_LOSSES, method, "3D toy method")
    torch.manual_seed(int(seed))
    policy = _policy(toy.cfg)
    policy.load_state_dict(toy.reference.state_dict())
    opt = make_optimizer(policy, optimizer, lr)
    i, yp, ym = toy.pairs[:, 0], toy.pairs[:, 1], toy.pairs[:, 2]
    with torch.no_grad():
        ref_lp = torch.log_softmax(toy.reference(toy.x), -1)
    rc, rr = ref_lp[i, yp], ref_lp[i, ym]
    kw: dict[str, Any] = {"beta": beta}
    if method == "flex_dpo":
        kw["beta_minus"] = beta if beta_minus is None else beta_minus
    if method == "dpo_sft":
        kw["eta"] = sft_weight / beta
    probs, losses, dpo = [], [], []

    def snap() -> None:
        with torch.no_grad():
            lp = torch.log_softmax(policy(toy.x), -1)
            probs.append(lp.exp())
            dpo.append(float(L.dpo_loss(lp[i, yp], lp[i, ym], rc, rr, beta=beta).mean()))

    snap()
    for _ in range(steps):
        lp = torch.log_softmax(policy(toy.x), -1)
        loss = loss_fn(lp[i, yp], lp[i, ym], rc, rr, **kw).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        snap()
    return {"probs": torch.stack(probs).double().numpy(), "loss": np.array(losses), "dpo_loss": np.array(dpo),
            "method": method, "config": asdict(toy.cfg)}


def read_toy(run: dict[str, Any], toy: Toy, t: int) -> dict[str, float]:
    """The 3D statistics of `run` at step `t` against step 0 (means over pairs, or over prompts for masses):
    ``d_logp_plus`` / ``d_logp_minus`` (Δ log π(y⁺), Δ log π(y⁻)), ``rejected_share`` = −mean Δlog π⁻ /
    mean(Δlog π⁺ − Δlog π⁻) (the share of the margin gained by pushing y⁻ down; > 1 when y⁺ fell),
    ``p_plus_0/t``, ``p_minus_0/t``, ``unseen_0/t`` and ``d_unseen`` (mass on a prompt's unseen responses), and
    ``share_chosen_fell`` (pairs whose π(y⁺) fell). A probability that underflowed to 0 (long runs; float32 policy)
    gives a −inf log change and a NaN share, silently; the masses stay exact."""
    P = run["probs"]
    i, yp, ym = (toy.pairs[:, k].numpy() for k in range(3))
    u = toy.unseen.numpy()
    with np.errstate(divide="ignore", invalid="ignore"):  # long runs: a float32 probability may underflow to 0
        lp0, lpt = np.log(P[0]), np.log(P[t])
        dp, dm = lpt[i, yp] - lp0[i, yp], lpt[i, ym] - lp0[i, ym]
        margin = float(np.mean(dp - dm))
        share = float(-dm.mean() / margin) if margin > 0 else float("nan")
    un0, unt = (P[0] * u).sum(-1).mean(), (P[t] * u).sum(-1).mean()
    return {
        "t": int(t), "d_logp_plus": float(dp.mean()), "d_logp_minus": float(dm.mean()),
        "rejected_share": share,
        "p_plus_0": float(P[0][i, yp].mean()), "p_plus_t": float(P[t][i, yp].mean()),
        "p_minus_0": float(P[0][i, ym].mean()), "p_minus_t": float(P[t][i, ym].mean()),
        "unseen_0": float(un0), "unseen_t": float(unt), "d_unseen": float(unt - un0),
        "share_chosen_fell": float(np.mean(dp < 0)),
    }


def mass_curves(run: dict[str, Any], toy: Toy) -> dict[str, np.ndarray]:
    """Per step: mean π(y⁺), mean π(y⁻) over pairs and mean unseen mass over prompts ([T+1] each)."""
    P = run["probs"]
    i, yp, ym = (toy.pairs[:, k].numpy() for k in range(3))
    return {"chosen": P[:, i, yp].mean(1), "rejected": P[:, i, ym].mean(1), "unseen": (P * toy.unseen.numpy()).sum(-1).mean(1)}


def toy_replicates(cfg: ToyConfig, seeds: list[int] | tuple[int, ...], *, beta: float, steps: int, lr: float, loss_target: float,
                   beta_minus: float, sft_weight: float, optimizer: str = "adam", methods: tuple[str, ...] | None = None) -> dict[str, Any]:
    """For each seed (a fresh reference, reward and pairs): DPO, Flex-DPO and DPO + SFT from the same reference,
    all read (`read_toy`) at t* = the first step where the **DPO run's** DPO loss ≤ `loss_target` (the cap
    `steps` when it never gets there; ``reached`` says which), so the three arms are compared at equal steps.
    `methods` (default: all of TOY_LOSSES; must include "dpo") restricts the arms.

    Returns {"reads": {method: [read per seed]}, "reached": [bool], "t_star": [int], "min_dpo_loss": [float],
    "curves": {method: [mass_curves per seed]}, "toys": [Toy], "runs": {method: [run]}}.
    """
    from lossbook.alignment.progress import first_step_at

    methods = tuple(TOY_LOSSES) if methods is None else tuple(methods)
    if "dpo" not in methods:
        raise ValueError("methods must include 'dpo' (every arm is read at the DPO run's t*)")
    out: dict[str, Any] = {"reads": {m: [] for m in methods}, "curves": {m: [] for m in methods}, "runs": {m: [] for m in methods},
                           "reached": [], "t_star": [], "min_dpo_loss": [], "toys": []}
    for s in seeds:
        toy = make_toy(ToyConfig(**{**asdict(cfg), "seed": int(s)}))
        runs = {m: train_toy(toy, m, beta=beta, steps=steps, lr=lr, optimizer=optimizer, beta_minus=beta_minus, sft_weight=sft_weight, seed=int(s))
                for m in methods}
        t = first_step_at(runs["dpo"]["dpo_loss"], loss_target)
        out["reached"].append(t is not None)
        out["t_star"].append(steps if t is None else t)
        out["min_dpo_loss"].append(float(runs["dpo"]["dpo_loss"].min()))
        out["toys"].append(toy)
        for m, r in runs.items():
            out["reads"][m].append(read_toy(r, toy, out["t_star"][-1]))
            out["curves"][m].append(mass_curves(r, toy))
            out["runs"][m].append(r)
    return out


def cor1_check(toy: Toy, run: dict[str, Any], t: int, beta: float, beta_minus: float | None = None) -> float:
    """Max relative error, over the toy's pairs at step `t` of `run`, between autograd's
    (∂ℓ/∂π⁻)/(∂ℓ/∂π⁺) of the (Flex-)DPO loss taken in the probabilities and `prob_gradient_ratio`."""
    P = torch.as_tensor(run["probs"][t])
    P0 = torch.as_tensor(run["probs"][0])
    i, yp, ym = toy.pairs[:, 0], toy.pairs[:, 1], toy.pairs[:, 2]
    pp, pm = P[i, yp].clone().requires_grad_(True), P[i, ym].clone().requires_grad_(True)
    bm = beta if beta_minus is None else beta_minus
    flex_dpo_loss(pp.log(), pm.log(), P0[i, yp].log(), P0[i, ym].log(), beta=beta, beta_minus=bm).sum().backward()
    closed = prob_gradient_ratio(pp.detach(), pm.detach(), beta, bm)
    return float(((pm.grad / pp.grad - closed).abs() / closed.abs()).max())


def dispersion_split(run: dict[str, Any], toy: Toy, t: int) -> dict[str, np.ndarray]:
    """Per prompt: the change of its unseen mass at step `t` (``d_unseen``), its largest rise over steps 0..t
    (``peak``), and whether the reference preferred the rejected side (``ref_prefers_rejected``: mean π_ref over the
    prompt's rejected responses > over its chosen ones).

    Why it matters (a free softmax, where DPO moves z⁺ up and z⁻ down by the same g and leaves other logits alone):
    the unseen mass changes by a factor Z/Z', and ``Z'/Z − 1 = π⁺(e^g − 1) − π⁻(1 − e^{−g})`` — the unseen mass
    rises only while the mass the rejected loses exceeds what the chosen gains, i.e. early on iff π⁻ > π⁺.
    """
    P = run["probs"]
    u = toy.unseen.numpy()
    un = (P[: t + 1] * u).sum(-1)  # [t+1, P]
    i, yp, ym = (toy.pairs[:, k].numpy() for k in range(3))
    n = toy.cfg.n_prompts
    pc = np.bincount(i, weights=P[0][i, yp], minlength=n) / np.bincount(i, minlength=n)
    pr = np.bincount(i, weights=P[0][i, ym], minlength=n) / np.bincount(i, minlength=n)
    return {"d_unseen": un[-1] - un[0], "peak": (un - un[0]).max(0), "ref_prefers_rejected": pr > pc}


def dispersion_table(splits: dict[str, list[dict[str, np.ndarray]]]) -> pd.DataFrame:
    """Pool `dispersion_split` outputs over seeds, per setting and per ``ref_prefers_rejected`` flag: the number of
    prompts, their mean Δ unseen mass at t* and their mean peak rise before t* (NaN for an empty group)."""
    rows = {}
    for name, ds in splits.items():
        for flag in (True, False):
            d_un = np.concatenate([d["d_unseen"][d["ref_prefers_rejected"] == flag] for d in ds])
            peak = np.concatenate([d["peak"][d["ref_prefers_rejected"] == flag] for d in ds])
            rows[(name, flag)] = {"prompts": int(d_un.size), "mean Δ unseen at t*": float(d_un.mean()) if d_un.size else float("nan"),
                                  "mean peak rise before t*": float(peak.mean()) if peak.size else float("nan")}
    return pd.DataFrame(rows).T.rename_axis(["setting", "π_ref(y−) > π_ref(y+)"])


def late_phase(run: dict[str, Any], toy: Toy, *, window: float = 0.1, tol: float = 0.01) -> dict[str, Any]:
    """Whether `run` reached the late phase Yan et al.'s toy reads dispersion in (a reviewer: "the unseen
    probability at 500 epochs approaches 1", after the chosen and rejected probabilities fall), at its last step T.

    With c(t), r(t) the mean π(y⁺), π(y⁻) over pairs (`mass_curves`): ``both_fell`` when
    ``c(T) < max_t c(t) − tol`` and ``r(T) < max_t r(t) − tol``; ``plateau`` when no probability of any prompt moved
    by more than `tol` over the last `window` share of the run, ``max |π_T − π_{T−w}| ≤ tol`` with
    ``w = max(1, ⌊window·T⌋)``; ``late = both_fell or plateau``. Also returns ``max_move`` (that max) and the step of
    the chosen peak ``chosen_peak_step``.
    """
    c = mass_curves(run, toy)
    P = run["probs"]
    T = P.shape[0] - 1
    w = max(1, int(window * T))
    move = float(np.abs(P[T] - P[T - w]).max())
    both = bool(c["chosen"][-1] < c["chosen"].max() - tol and c["rejected"][-1] < c["rejected"].max() - tol)
    return {"both_fell": both, "plateau": move <= tol, "late": both or move <= tol, "max_move": move,
            "chosen_peak_step": int(c["chosen"].argmax())}
