"""Single-token displacement read at matched training progress, over replicate worlds; CHES decile windows.

Razin et al. (2025), "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization",
ICLR 2025 (arXiv 2410.08847), §3 / Table 1 train 100 full-batch steps at RMSprop lr 1e-7 on 1–8B models. A
step count does not transfer across scales; *training progress* does. For one prompt with one-token responses
the DPO loss is a function of the two probabilities alone,

    L_t = −log σ(β [ (ln π_t(y+) − ln π_0(y+)) − (ln π_t(y−) − ln π_0(y−)) ]),     π_0 = π_ref,

so any run (DPO, IPO, from SFT or not) can be read at the first step t* where L_t ≤ a pre-registered target
(`dpo_loss_curve`, `first_step_at`). At t* we read the paper's drop max_{t<t'≤t*} π_t(y+) − π_{t'}(y+), the
mass by kind (same meaning group, opposite group, non-answer tokens) and the top gainers over the vocabulary
and over the answer tokens only (`read_at_target`). Two stability filters over steps 0..t*: the paper's
strict one (the loss never rose: L_{t+1} <= L_t exactly) and a substantive one stated before the run (no
single-step rise above `rel_tol` = 1% of the loss) (`stable_until`). `world_table` gives one row per
(world, pair); `share_vs_target` the share of kept runs with drop ≥ a threshold at each loss target.

The geometry the argument needs — same-meaning tokens close in unembedding space — is measured per world by
`unembedding_geometry`. `ches_window_changes` runs Razin et al. §5's protocol (one DPO epoch on windows of a
similarity score's order, mean change of ln π(y+|x)) for one replicate.

Multi-token runs of any registered loss are read the same way (`preference_loss_zoo`, `ranking_accuracy`):
`train_to_targets` trains full batch up to a step cap, records the per-pair log-probs after every step, and keeps
the weights at the first step where the training pairs' `mean_dpo_loss` reaches each pre-registered target
(`policy_at`, `read_step`); the DPO loss depends on the log-probs only, so it is a progress measure for every loss.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from scipy.stats import spearmanr

from lossbook import repro
from lossbook.alignment.displacement import Runs, meaning_groups
from lossbook.alignment.metrics import max_drop
from lossbook.alignment.preference import PreferenceConfig, clone_policy, train_preference
from lossbook.alignment.world import PreferenceData, SyntheticWorld

KINDS = ("y_plus", "y_minus", "same_group", "opposite_group", "non_answer")
"""Where the mass at the answer position sits: y+, y−, the rest of y+'s meaning group, the other group
(y− excluded from both), and every non-answer token (template words, specials, concepts, speakers)."""


def dpo_loss_curve(p_plus: Sequence[float] | np.ndarray, p_minus: Sequence[float] | np.ndarray, beta: float) -> np.ndarray:
    """L_t = −log σ(β[(ln p⁺_t − ln p⁺_0) − (ln p⁻_t − ln p⁻_0)]) [T+1] for a single-token run starting at the
    reference (Rafailov et al. 2023's DPO loss; Razin et al. §3's setting). Equals the DPO training loss."""
    lp, lm = np.log(np.asarray(p_plus, dtype=float)), np.log(np.asarray(p_minus, dtype=float))
    margin = beta * ((lp - lp[0]) - (lm - lm[0]))
    return np.logaddexp(0.0, -margin)


def first_step_at(loss: Sequence[float] | np.ndarray, target: float) -> int | None:
    """The first step t with loss_t ≤ `target` (None if the run never gets there)."""
    hit = np.flatnonzero(np.asarray(loss, dtype=float) <= target)
    return int(hit[0]) if hit.size else None


def stable_until(loss: Sequence[float] | np.ndarray, t_end: int, rel_tol: float = 0.0) -> bool:
    """No step in 0..t_end raised the loss by more than `rel_tol` × the loss before it.

    `rel_tol=0` is the paper's strict filter (L_{t+1} <= L_t exactly, Razin et al. §3 drop runs whose loss
    ever rose); `rel_tol=0.01` the book's substantive one (no single-step rise above 1% of the loss).
    """
    a = np.asarray(loss, dtype=float)[: t_end + 1]
    return bool(a.size < 2 or (np.diff(a) <= rel_tol * a[:-1]).all())


def mass_by_kind(P: np.ndarray, y_plus: int, y_minus: int, same: Sequence[int], opposite: Sequence[int]) -> dict[str, np.ndarray]:
    """Σ π(z) over each of `KINDS` at every step; P [T+1, V] probabilities. The five masses sum to 1."""
    P = np.asarray(P, dtype=float)
    sg = [z for z in same if z not in (y_plus, y_minus)]
    og = [z for z in opposite if z not in (y_plus, y_minus)]
    answers = set(same) | set(opposite) | {y_plus, y_minus}
    na = [z for z in range(P.shape[1]) if z not in answers]
    return {"y_plus": P[:, y_plus], "y_minus": P[:, y_minus], "same_group": P[:, sg].sum(1),
            "opposite_group": P[:, og].sum(1), "non_answer": P[:, na].sum(1)}


def gainers(P: np.ndarray, t: int, among: Sequence[int], exclude: Sequence[int] = (), k: int = 3) -> list[int]:
    """The `k` tokens of `among` (minus `exclude`) whose probability rose most from step 0 to step t, largest first."""
    P = np.asarray(P, dtype=float)
    cand = [z for z in among if z not in set(exclude)]
    gain = P[t, cand] - P[0, cand]
    return [cand[i] for i in np.argsort(-gain, kind="stable")[:k]]


def read_at_target(run: Mapping[str, Any], world: SyntheticWorld, y_plus: str, y_minus: str, target: float, beta: float,
                   rel_tol: float = 0.01) -> dict[str, Any]:
    """One run of `displacement_runs` read at the first step t* where its DPO loss (`dpo_loss_curve`) ≤ `target`.

    Returns `reached`, `t_star` (None when not reached: the other fields are then read at the last step), `t_read`,
    `drop` = max_{t<t'≤t*} π_t(y+) − π_{t'}(y+) (Razin et al. §3), `p_plus_0`, `p_plus_t`, the masses of `KINDS`
    at 0 and t* (`mass0`, `mass_t`, `dmass`), `strict` / `substantive` (`stable_until` with 0 and `rel_tol` on
    the run's own training loss), `top_vocab` / `top_answers` (top-3 gainers over the vocabulary and over the
    answer tokens, y± excluded) and `rho` (Thm 2's early Spearman, from the run).
    """
    yp, ym = world.stoi[y_plus], world.stoi[y_minus]
    same, opp = meaning_groups(world, y_plus)
    L = dpo_loss_curve(run["p_plus"], run["p_minus"], beta)
    ts = first_step_at(L, target)
    t = ts if ts is not None else len(L) - 1
    P = run["token_probs"]
    m = mass_by_kind(P, yp, ym, same, opp)
    return {
        "reached": ts is not None, "t_star": ts, "t_read": t, "loss_t": float(L[t]), "drop": max_drop(run["p_plus"][: t + 1]),
        "p_plus_0": float(run["p_plus"][0]), "p_plus_t": float(run["p_plus"][t]),
        "mass0": {k: float(v[0]) for k, v in m.items()}, "mass_t": {k: float(v[t]) for k, v in m.items()},
        "dmass": {k: float(v[t] - v[0]) for k, v in m.items()},
        "strict": stable_until(run["loss"], t, 0.0), "substantive": stable_until(run["loss"], t, rel_tol),
        "top_vocab": gainers(P, t, range(P.shape[1]), (yp, ym)), "top_answers": gainers(P, t, world.agree_ids + world.disagree_ids, (yp, ym)),
        "rho": float(run["rho"]), "thm1": float(run["thm1"]),
    }


def kept(reads: Sequence[Mapping[str, Any]], stability: str = "substantive", require_reached: bool = True) -> list[Mapping[str, Any]]:
    """The runs a claim reads: reached the loss target (unless `require_reached` is False: rows read at the
    cap) and passed the `stability` filter ("strict", "substantive" or "none")."""
    return [r for r in reads if (r["reached"] or not require_reached) and (stability == "none" or r[stability])]


def read_worlds(runs_by_world: Mapping[int, Runs], worlds: Mapping[int, SyntheticWorld], target: float, beta: float,
                rel_tol: float = 0.01) -> dict[int, dict[tuple[str, str], list[dict[str, Any]]]]:
    """`read_at_target` for every world, pair and run: {world seed: {(y+, y−): [read, ...]}}."""
    return {ws: {(yp, ym): [read_at_target(r, worlds[ws], yp, ym, target, beta, rel_tol) for r in runs] for (yp, ym), runs in res.items()}
            for ws, res in runs_by_world.items()}


def _names(world: SyntheticWorld, reads: Sequence[Mapping[str, Any]], key: str) -> str:
    c = Counter(world.itos[z] for r in reads for z in r[key])
    return ", ".join(f"{t}({n})" for t, n in c.most_common(3))


def world_table(reads: Mapping[int, Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]], worlds: Mapping[int, SyntheticWorld],
                drop_threshold: float, stability: str = "substantive", require_reached: bool = True) -> pd.DataFrame:
    """One row per (world, pair) over the `kept` runs (`require_reached=False`: also those read at the cap): counts under each filter, the share with drop ≥
    `drop_threshold`, mean drop, π(y+) 0 → t*, the change of each mass kind (mean), the mean step t*, the top
    gainers over the vocabulary and over the answer tokens (counts over runs) and the median Thm 2 ρ."""
    rows = []
    for ws, by_pair in reads.items():
        w = worlds[ws]
        for (yp, ym), rs in by_pair.items():
            k = kept(rs, stability, require_reached)
            row = {"world": ws, "pair": f"{yp}/{ym}", "similar": w.answer_group(yp) == w.answer_group(ym), "runs": len(rs),
                   "reached": sum(r["reached"] for r in rs), "strict kept": len(kept(rs, "strict")),
                   "substantive kept": len(kept(rs, "substantive")), "kept": len(k)}
            row.update({c: float("nan") for c in ("share drop≥thr", "mean drop", "mean t*", *(f"Δ {kind}" for kind in KINDS), "median ρ (Thm 2)")})
            row.update({"π(y+) 0→t*": "—", "top gainers (vocab)": "—", "top gainers (answers)": "—"})
            if k:
                d = np.array([r["drop"] for r in k])
                row.update({"share drop≥thr": float(np.mean(d >= drop_threshold)), "mean drop": float(d.mean()),
                            "π(y+) 0→t*": f"{np.mean([r['p_plus_0'] for r in k]):.2f}→{np.mean([r['p_plus_t'] for r in k]):.2f}",
                            "mean t*": float(np.mean([r["t_read"] for r in k])),
                            **{f"Δ {kind}": float(np.mean([r["dmass"][kind] for r in k])) for kind in KINDS},
                            "top gainers (vocab)": _names(w, k, "top_vocab"), "top gainers (answers)": _names(w, k, "top_answers"),
                            "median ρ (Thm 2)": float(np.median([r["rho"] for r in k]))})
            rows.append(row)
    return pd.DataFrame(rows)


def share_vs_target(runs: Sequence[Mapping[str, Any]], world: SyntheticWorld, y_plus: str, y_minus: str, targets: Sequence[float],
                    beta: float, drop_threshold: float, rel_tol: float = 0.01) -> np.ndarray:
    """[len(targets)] share of runs that reach each loss target, pass the substantive filter there and have
    drop ≥ `drop_threshold` at it, among those that reach it and pass (NaN where none does)."""
    out = []
    for tg in targets:
        k = kept([read_at_target(r, world, y_plus, y_minus, tg, beta, rel_tol) for r in runs])
        out.append(float(np.mean([r["drop"] >= drop_threshold for r in k])) if k else float("nan"))
    return np.asarray(out)


def unembedding_geometry(W: torch.Tensor, world: SyntheticWorld) -> dict[str, float]:
    """Cosine geometry of the unembeddings W [V, d]: the mean cosine of answer tokens within a meaning group and
    across the two groups, and of concept words within a concept (synonyms) and across concepts.

    Razin et al.'s Thm 1–2 make displacement follow ⟨W_z, W_{y+} − W_{y−}⟩, and their Table 1 reads benign vs
    catastrophic by meaning; the synthetic world is built so that same-meaning tokens share contexts, and
    `answer_gap` = within − across > 0 says the model's unembeddings picked that up.
    """
    Wn = torch.nn.functional.normalize(W.detach().double().cpu(), dim=1)

    def mean_cos(a: Sequence[int], b: Sequence[int], same: bool) -> float:
        c = (Wn[list(a)] @ Wn[list(b)].T).numpy()
        return float(c[np.triu_indices(len(a), 1)].mean()) if same else float(c.mean())

    ag, dg = world.agree_ids, world.disagree_ids
    within = (mean_cos(ag, ag, True) * len(ag) * (len(ag) - 1) + mean_cos(dg, dg, True) * len(dg) * (len(dg) - 1)) / (
        len(ag) * (len(ag) - 1) + len(dg) * (len(dg) - 1))
    across = mean_cos(ag, dg, False)
    syn = [[world.stoi[x] for x in ws] for ws in world.concept_words]
    syn_within = float(np.mean([mean_cos(s, s, True) for s in syn]))
    cw = [z for s in syn for z in s]
    allc = (Wn[cw] @ Wn[cw].T).numpy()
    same_c = np.equal.outer(np.repeat(np.arange(len(syn)), [len(s) for s in syn]), np.repeat(np.arange(len(syn)), [len(s) for s in syn]))
    syn_across = float(allc[~same_c].mean())
    return {"answer_within": within, "answer_across": across, "answer_gap": within - across,
            "synonym_within": syn_within, "synonym_across": syn_across, "synonym_gap": syn_within - syn_across}


def ches_window_changes(reference: nn.Module, data: PreferenceData, scores: Mapping[str, np.ndarray], n_windows: int,
                        cfg: PreferenceConfig, *, seed: int, device: str | torch.device = "cpu") -> dict[str, dict[str, Any]]:
    """Razin et al. §5 (Fig. 2) for one replicate: for each score (oriented: higher = more similar), split the
    pairs into `n_windows` consecutive equal windows of its order (deciles for 10; ties in input order; the
    last len % n_windows pairs of the order are left out), train one `cfg` run (from `reference`, `repro.seed_everything(seed)`) per window and record the mean change
    of ln π(y+|x) on it. Returns {score: {"means" [n_windows], "rho" = Spearman(window index, mean change),
    "top" = the top window's mean change}}. The paper: the change falls with CHES percentile (ρ → −1)."""
    size = len(data) // n_windows
    out: dict[str, dict[str, Any]] = {}
    for name, sc in scores.items():
        means = []
        order = np.argsort(np.asarray(sc, dtype=float), kind="stable")
        for idx in (order[i * size : (i + 1) * size] for i in range(n_windows)):
            repro.seed_everything(seed)
            h = train_preference(clone_policy(reference), reference, data.subset(idx), replace(cfg, seed=seed), device=device)
            means.append(float((h["final"]["chosen_logps"] - h["ref"]["chosen_logps"]).mean()))
        out[name] = {"means": np.asarray(means), "rho": float(spearmanr(np.arange(n_windows), means)[0]), "top": means[-1]}
    return out


def runs_over_worlds(models: Mapping[int, Mapping[str, Any]], start: str, cfg: PreferenceConfig, pairs: Sequence[tuple[str, str]],
                     n_seeds: int, *, early_steps: int, device: str | torch.device = "cpu", name: str = "",
                     log_curves: bool = False) -> dict[int, Runs]:
    """`displacement_runs` in every world ({world seed: models of `recipes.base_models`}), starting from
    `models[ws][start]` ("sft" or "base"); prompts are drawn with the world seed (each world its own prompts).
    Only the first world logs its seed-0 curves, and only with `log_curves`."""
    from lossbook.alignment.displacement import displacement_runs

    return {ws: displacement_runs(m["world"], m[start], cfg, pairs, n_seeds, seed=ws, early_steps=early_steps, device=device,
                                  name=f"{name}/w{ws}", log_curves=log_curves and i == 0) for i, (ws, m) in enumerate(models.items())}


def world_stats(reads: Mapping[int, Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]], worlds: Mapping[int, SyntheticWorld],
                drop_threshold: float, rise_threshold: float, stability: str = "substantive") -> pd.DataFrame:
    """The per-world statistics the claims read (one row per world seed), over `kept` runs:

    `min_share_similar` (the smallest, over same-group pairs, share of runs with drop ≥ `drop_threshold`;
    Razin et al. Table 1), `n_displaced_similar` and `share_catastrophic` (among those displaced same-group runs,
    the share whose opposite-group mass rose by ≥ `rise_threshold`; 0 when none displaced), `median_rho` (Thm 2,
    all pairs), `drop_similar` / `drop_dissimilar` (mean drops), `min_kept` (fewest kept runs of a pair) and
    `min_reached` (smallest share of a pair's runs that reached the loss target).
    """
    rows = []
    for ws, by_pair in reads.items():
        w = worlds[ws]
        sim = [p for p in by_pair if w.answer_group(p[0]) == w.answer_group(p[1])]
        k = {p: kept(rs, stability) for p, rs in by_pair.items()}
        shares = [np.mean([r["drop"] >= drop_threshold for r in k[p]]) if k[p] else 0.0 for p in sim]
        disp = [r for p in sim for r in k[p] if r["drop"] >= drop_threshold]
        d_sim = [r["drop"] for p in sim for r in k[p]]
        d_dis = [r["drop"] for p in by_pair if p not in sim for r in k[p]]
        rows.append({"world": ws, "min_share_similar": float(min(shares)) if shares else 0.0, "n_displaced_similar": len(disp),
                     "share_catastrophic": float(np.mean([r["dmass"]["opposite_group"] >= rise_threshold for r in disp])) if disp else 0.0,
                     "median_rho": float(np.median([r["rho"] for rs in k.values() for r in rs] or [np.nan])),
                     "drop_similar": float(np.mean(d_sim)) if d_sim else float("nan"),
                     "drop_dissimilar": float(np.mean(d_dis)) if d_dis else float("nan"),
                     "min_kept": min(len(v) for v in k.values()), "min_reached": min(np.mean([r["reached"] for r in rs]) for rs in by_pair.values())})
    return pd.DataFrame(rows).set_index("world")


def curves_vs_loss(runs: Sequence[Mapping[str, Any]], world: SyntheticWorld, y_plus: str, y_minus: str, beta: float,
                   grid: np.ndarray) -> dict[str, np.ndarray]:
    """Mean over runs of π(y+), π(y−) and the three other masses (`KINDS`) as functions of the DPO loss (each
    run interpolated on the decreasing loss `grid`, NaN beyond the loss the run reached; runs are monotone in
    loss up to noise, so the curve is read on the running minimum of L). Returns {kind: [len(grid)]}."""
    yp, ym = world.stoi[y_plus], world.stoi[y_minus]
    same, opp = meaning_groups(world, y_plus)
    out: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    for r in runs:
        L = np.minimum.accumulate(dpo_loss_curve(r["p_plus"], r["p_minus"], beta))
        m = mass_by_kind(r["token_probs"], yp, ym, same, opp)
        for k in KINDS:
            v = np.interp(-grid, -L, m[k], left=np.nan, right=np.nan)
            out[k].append(v)
    with warnings.catch_warnings():  # a grid point no run reached is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: np.nanmean(np.stack(v), 0) if v else np.full(len(grid), np.nan) for k, v in out.items()}


# ---- multi-token runs read at a DPO-loss target (preference_loss_zoo, ranking_accuracy) ------------------------------
class _TargetsReached(Exception):
    """Raised by the `train_to_targets` callback to end a run at its deepest target (control flow, not an error)."""


def mean_dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
                  ref_rejected_logps: torch.Tensor, beta: float) -> float:
    """L = mean_i −log σ(β[(ln π(y⁺_i) − ln π_ref(y⁺_i)) − (ln π(y⁻_i) − ln π_ref(y⁻_i))]) (Rafailov et al. 2023):
    the progress measure every loss of the zoo is read at, whatever loss it trains (it depends on the log-probs only)."""
    d = (chosen_logps.double() - ref_chosen_logps.double()) - (rejected_logps.double() - ref_rejected_logps.double())
    return float(torch.nn.functional.softplus(-beta * d).mean())


def train_to_targets(policy: nn.Module, reference: nn.Module, data: PreferenceData, cfg: PreferenceConfig, targets: Sequence[float], *,
                     dpo_beta: float, eval_data: PreferenceData | None = None, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Full-batch `train_preference` of `policy` with `cfg` (any registered loss; `cfg.steps` is the step cap), read
    against pre-registered DPO-loss targets: after every step the per-pair log-probs of `data` (and of `eval_data`)
    are recorded and the training pairs' `mean_dpo_loss` (with `dpo_beta`) is computed; at the first step t*(L*)
    with loss ≤ L* the policy's weights are kept for each target L*, and the run stops once the deepest target is
    reached (or at the cap). `policy` is left at the last step.

    Returns `dpo_loss` [T+1], `chosen` / `rejected` [T+1, N] (and `eval_chosen` / `eval_rejected` with `eval_data`),
    `ref` / `eval_ref` (reference `evaluate_logps`), `t_star` {L*: step or None}, `states` {L*: state_dict at t*, or
    at the last step when not reached} and `n_steps`. Read the policy at a target with `policy_at`.
    """
    from lossbook.alignment.preference import evaluate_logps

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    d_tr = data.to(dev)
    d_ev = eval_data.to(dev) if eval_data is not None else None
    ref = {k: v.detach().cpu() for k, v in evaluate_logps(reference.to(dev), d_tr).items()}
    ev_ref = {k: v.detach().cpu() for k, v in evaluate_logps(reference, d_ev).items()} if d_ev is not None else None
    rec: dict[str, list[torch.Tensor]] = {"chosen": [], "rejected": [], "eval_chosen": [], "eval_rejected": []}
    losses: list[float] = []
    t_star: dict[float, int | None] = {float(t): None for t in targets}
    states: dict[float, dict[str, torch.Tensor]] = {}

    def callback(step: int, _metrics: dict[str, Any]) -> None:
        e = evaluate_logps(policy, d_tr)
        rec["chosen"].append(e["chosen_logps"].detach().cpu().double())
        rec["rejected"].append(e["rejected_logps"].detach().cpu().double())
        if d_ev is not None:
            ee = evaluate_logps(policy, d_ev)
            rec["eval_chosen"].append(ee["chosen_logps"].detach().cpu().double())
            rec["eval_rejected"].append(ee["rejected_logps"].detach().cpu().double())
        L = mean_dpo_loss(rec["chosen"][-1], rec["rejected"][-1], ref["chosen_logps"], ref["rejected_logps"], dpo_beta)
        losses.append(L)
        for tg in t_star:
            if t_star[tg] is None and L <= tg:
                t_star[tg], states[tg] = step, copy.deepcopy({k: v.detach().cpu() for k, v in policy.state_dict().items()})
        if all(v is not None for v in t_star.values()):
            raise _TargetsReached

    try:
        train_preference(policy, reference, data, replace(cfg, batch_size=None), device=dev, callback=callback)
    except _TargetsReached:
        pass
    last = copy.deepcopy({k: v.detach().cpu() for k, v in policy.state_dict().items()})
    out: dict[str, Any] = {"dpo_loss": np.asarray(losses), "ref": ref, "eval_ref": ev_ref, "t_star": t_star, "n_steps": len(losses) - 1,
                           "states": {tg: states.get(tg, last) for tg in t_star}}
    out.update({k: torch.stack(v) for k, v in rec.items() if v})
    return out


def policy_at(run: Mapping[str, Any], target: float, template: nn.Module) -> nn.Module:
    """A copy of `template` (the reference) carrying the weights `train_to_targets` kept at `target`."""
    m = copy.deepcopy(template)
    m.load_state_dict(run["states"][float(target)])
    return m.eval()


def read_step(run: Mapping[str, Any], target: float) -> int:
    """The step a run is read at for `target`: t*(target), or its last step when it never got there."""
    t = run["t_star"][float(target)]
    return int(t) if t is not None else int(run["n_steps"])
