# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: lossbook
#     language: python
#     name: lossbook
# ---

# %% [markdown]
# # Unpaired thumbs-up / thumbs-down: BCO's reward shift δ and underlying-distribution matching
# **Paper:** Jung, Han, Nam, On (2024), "Binary Classifier Optimization for Large Language Model Alignment", arXiv 2404.04656 (v1, Apr 2024; v2 = ACL 2025 Findings); KTO: Ethayarajh et al. (2024), arXiv 2402.01306.
# **Claim:** a binary classifier on the implicit reward r = β log π/π_ref minimises an upper bound of the DPO loss (Thm 1/3), the bound is tightest when the logits are shifted by δ = mean reward (Thm 4); BCO performs on par with DPO on paired data, and with the shift δ and underlying-distribution matching (UDM) aligns from unpaired binary feedback whose thumbs-up and thumbs-down prompts are differently distributed.
#
# **The paper.** Abstract of v1 (arXiv 2404.04656v1): optimising a binary classifier whose logit is the reward
# "implicitly induces minimizing the Direct Preference Optimization (DPO) loss"; two techniques follow, "reward shift and
# underlying distribution matching"; on a paired preference dataset BCO "performs on par with DPO and KTO", and on
# "binary signal datasets simulating real-world conditions with divergent underlying distributions between thumbs-up and
# thumbs-down data" it "consistently demonstrates effective and robust alignment across two base LLMs and three
# different binary signal datasets". v2 (ACL 2025) keeps the bound and the shift, compares with DPO on paired data ("on par
# with DPO") and on Likert-5 data, and drops UDM from the method; UDM lives on in TRL's `trl.experimental.bco`
# (`match_underlying_distribution`). The loss (Eq. 7/8): E_{D⁺}[−log σ(r − δ)] + E_{D⁻}[−log σ(−(r − δ))], with
# δ = ½(E_{D⁺} r + E_{D⁻} r) kept as a running average without gradient (TRL: `RunningMoments` over every reward of the
# batch). Thm 3: −log σ(r_w − r_l) < −log σ(r_w − δ) − log σ(−(r_l − δ)) for every δ; Thm 4: the gap's bound
# e^{−(r_w − δ)} + e^{r_l − δ} is smallest at δ = (r_w + r_l)/2. UDM (v1 §4.2; TRL `_get_udm_weight`): a class-balanced
# logistic regression on prompt embeddings, D⁺ vs D⁻, weights each thumbs-down loss by p(+|x)/(1 − p(+|x)) ≈
# p_{D⁺}(x)/p_{D⁻}(x), clipped to [0.5, 10]. *The per-benchmark table numbers of the paper (MT-Bench / AlpacaEval scores)
# were not retrievable in this session, so only the abstract's qualitative claims are quoted.*
#
# **Here, at CPU scale.** The book's persona world and tiny GPT (`lossbook.alignment.recipes.base_models`, the
# pretrained model of `base_recipe` is π_ref, as in `preference_loss_zoo`). A preference pair is a prompt with a
# trait-consistent response y_w and a y_l from `pair_types` (answer flipped, opposite response, random response). The
# **unpaired** data (`lossbook.alignment.unpaired.unpaired_split`) keeps *one* response per prompt: the prompt goes to D⁺
# (thumbs-up on y_w) with probability (1 + s·z(x))/2 and to D⁻ (thumbs-down on y_l) otherwise, where z(x) ∈ [−1, 1] is a
# prompt feature (`shift_feature`: the speaker) and s = `shift`. No prompt is in both sets, and the true density ratio is
# p_{D⁺}(x)/p_{D⁻}(x) = (1 + s z)/(1 − s z) (known, so the UDM classifier can be checked against it). The **paired**
# counterpart is `n_pairs` pairs with both responses. **A world seed is one replicate** (its own world, pretraining,
# data, runs); every claim is read over `world_seeds` with a t-interval (`lossbook.replicate`).
#
# **Arms** (each full batch, Adam, one lr and one β, `steps` updates; `lossbook.alignment.unpaired.train_binary`): DPO
# and BCO on paired data; on the shifted unpaired data BCO with the running δ, BCO with δ = 0, BCO with δ + UDM, and
# unpaired KTO (z₀ from mismatched pairs, as TRL); on unshifted unpaired data (s = 0) BCO with δ, with and without UDM.
#
# **Measurements** every `eval_every` steps: on `n_heldout_pairs` held-out pairs (uniform prompts) the exact share of
# desirable first answers `p_correct` = Σ_{a ∈ right answer group} π(a|x) (the gold judge's main criterion), the implicit
# reward's pairwise accuracy `reward_acc` and its pooled AUC over all held-out desirable vs undesirable examples; and on
# sampled responses the gold reward (`refusal.gold_reward`: +1 right group, +0.5·clause relevance, −1 malformed) and the
# malformed share. **Read point (pre-registered):** each run is read at its checkpoint with the best `p_correct` on
# `n_val_pairs` validation pairs (early stopping on data no claim reads); the end of the budget is the ablation.
#
# **β and lr were fixed before the claims by a pilot of DPO on paired data, world 0** (rule: the setting whose DPO run
# raises held-out p_correct inside the budget and then peaks, with the smallest malformed share at the peak), over
# (β, lr) ∈ {(0.1, 1e-5), (0.5, 3e-5), (1.0, 3e-5)} with 120 steps: at (0.1, 1e-5) the rewards stayed near 0 (mean
# β·log-ratio ≈ −0.07, p_correct +0.02 over 120 steps while 17% of samples became malformed); at (0.5, 3e-5) and
# (1.0, 3e-5) p_correct rose by ~0.03 and peaked near step 60, with 11% vs 8% malformed at the peak: (1.0, 3e-5).
# An earlier version read each run at its best *sampled gold reward*: every run was then read at step 0, because
# every loss here lowers the gold reward by moving mass to malformed text (see the budget curves), so that read
# compared π_ref with itself. (The pilot also printed two BCO arms; the rule read DPO only.) A run with 120 steps then failed
# the `converged` guard (world 1's validation p_correct still rose at step 120 for most arms), so the budget is 200 steps.
#
# **Claims, thresholds fixed before running** (Δ = per-world difference of `p_correct` at the read point unless said):
# 1. `bco_paired_matches_dpo`: BCO − DPO on paired data, Δ p_correct inside ±`equiv_margin` and Δ reward_acc inside ±`acc_margin`.
# 2. `bco_not_worse_than_kto_unpaired`: BCO(δ) − KTO on the shifted unpaired data, t-CI of Δ p_correct above −`noninf_margin`.
# 3. `reward_shift_helps`: BCO(δ) − BCO(δ = 0), shifted unpaired data, t-CI of Δ p_correct above 0.
# 4. `udm_helps_under_shift`: BCO(δ + UDM) − BCO(δ) at s = `shift`, t-CI of Δ p_correct above 0; and
#    `udm_neutral_without_shift`: the same difference at s = 0 inside ±`equiv_margin`.
# 5. `bce_upper_bounds_dpo` (demonstration, Thm 3): on the paired BCO run's own final rewards, the BCE − DPO gap is > 0
#    for every pair and every δ of a grid, in every world; `gap_smallest_near_mean` (Thm 4): the mean gap at
#    δ = ½(mean r_w + mean r_l) exceeds its grid minimum by less than `gap_tol` (relative; t-CI below).
# Guards: every run a claim reads learned the preference (held-out reward_acc ≥ `min_reward_acc` at its read point) and
# its validation curve peaked before the last 10% of the budget (`replicate.converged`).
#
# **After the pre-registered read (added later, never judged).** In world 1 that guard failed for most arms while a
# 400-step check outside the notebook found BCO(δ)'s validation curve flat from step ~180 (p_correct 0.711 at 180 and 400):
# the budget-curve figure shows each run's validation curve with the guard's window and the read checkpoint; an
# exploratory plateau row per claim (`<claim>_plateau`) measures what the last 10% adds in units of the curve's noise;
# and the guard's remedy, `extend_factor` × the budget for every arm of a world that failed it, is an ablation
# (`full` profile; too slow for the default's 10-minute budget) that reads the same statistics again.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seed = 0  # data, training and sampling seed (added to each world's seed)
world_seeds = [0, 1, 2]  # replicate worlds: each its own world, pretraining, data and runs (≥ 3 outside smoke)
n_pairs = 128  # paired arms: pairs; unpaired arms: this many thumbs-up AND this many thumbs-down examples; in [2, inf)
n_heldout_pairs = 256  # held-out pairs (uniform prompts) for p_correct, reward accuracy and AUC; in [2, inf)
n_val_pairs = 64  # validation pairs whose p_correct picks each run's read checkpoint (early stopping); in [2, inf)
n_test_prompts = 64  # held-out prompts sampled for the gold reward, win rate and malformed share; in [1, inf)
n_samples = 8  # samples per prompt; in [1, inf)
pair_types = ["answer_flip", "opposite", "random"]  # how y_l is built from y_w (lossbook.alignment.world.PAIR_TYPES)
shift = 0.8  # prompt shift s: P(thumbs-up | x) = (1 + s·z(x))/2; in [0, 1)
shift_feature = "speaker"  # the prompt feature z(x) the shift acts on: "speaker" or "trait"
beta = 1.0  # β of every loss (implicit reward r = β·log π/π_ref), fixed by the DPO pilot in the text; > 0
optimizer = "adam"  # one optimiser for every arm
lr = 3.0e-5  # one learning rate for every arm, fixed by the DPO pilot in the text; > 0
steps = 200  # full-batch updates per arm (120 failed the converged guard in world 1, see the text); in [1, inf)
eval_every = 20  # steps between evaluations (checkpoints of the budget curve); in [1, inf)
udm_embedding = "bow"  # UDM classifier input: "bow" (prompt token counts) or "hidden" (π_ref's mean final hidden state)
min_density_ratio = 0.5  # UDM weight clip, lower end (TRL's min_density_ratio); > 0
max_density_ratio = 10.0  # UDM weight clip, upper end (TRL's max_density_ratio); > 0
equiv_margin = 0.02  # claims 1 and 4b: equivalence margin of Δ p_correct; in [0, 1]
acc_margin = 0.05  # claim 1: equivalence margin of Δ held-out reward accuracy; in [0, 1]
noninf_margin = 0.01  # claim 2: non-inferiority margin of Δ p_correct (BCO − KTO); in [0, 1]
gap_tol = 0.05  # claim 5b: relative excess of the BCE − DPO gap at δ = mean reward over its grid minimum; in [0, inf)
min_reward_acc = 0.75  # guard: held-out reward accuracy every read run must reach; in [0, 1]
plateau_z = 2.0  # exploratory plateau check (not pre-registered): the last 10% of the budget adds < this many noise sds; > 0
extend_factor = 1  # ablation: in a world where a run fails `converged`, continue all its arms to extend_factor × steps (1: off; full: 2); in [1, inf)
n_delta_grid = 201  # δ grid points for Thm 3/4 (spanning the run's reward range); in [3, inf)
sample_temperature = 1.0  # sampling temperature; > 0
max_new_tokens = 8  # longest sampled response (well-formed ones have ≤ 6 tokens); in [1, inf)
base_recipe = "persona-tiny"  # world, tiny GPT, pretraining: a name in lossbook.alignment.recipes.BASE_RECIPES (shared, cached)
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)

# %%
from lossbook import plotting, replicate, repro, tracking

tracking.attach(mlflow_run_id, "bco_unpaired", globals())
plotting.setup()

import dataclasses
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from tqdm.auto import tqdm

from lossbook.alignment import unpaired as U
from lossbook.alignment.preference import clone_policy
from lossbook.alignment.recipes import base_models

dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.perf_counter()
n_worlds = len(world_seeds)
snap = (steps,)
# (label, loss, data set, keep δ, UDM): the arms of every world
arms = [("dpo_paired", "dpo", "paired", False, False), ("bco_paired", "bco_pair", "paired", True, False),
        ("bco_delta", "bco", "shifted", True, False), ("bco_nodelta", "bco", "shifted", False, False),
        ("bco_delta_udm", "bco", "shifted", True, True), ("kto", "kto", "shifted", False, False),
        ("bco_delta_s0", "bco", "unshifted", True, False), ("bco_delta_udm_s0", "bco", "unshifted", True, True)]
print(f"{len(arms)} arms x {n_worlds} worlds; lr {lr:g}, {steps} steps, eval every {eval_every}; shift {shift} on {shift_feature}")

# %% [markdown]
# ## Runs: every arm from the same π_ref in every world

# %%
rows, hists, udm_rows, thm = [], {}, [], []
for ws in tqdm(world_seeds, desc="worlds"):
    models = base_models(base_recipe, ws, device=dev)
    world, ref_model = models["world"], models["base"].to(dev)
    pool = world.multi_token_pairs(n_pairs + n_heldout_pairs + n_val_pairs, seed=ws + 100 + seed, types=pair_types)
    heldout = U.paired_split(world, pool[n_pairs : n_pairs + n_heldout_pairs], on=shift_feature, seed=ws + seed)
    val = U.paired_split(world, pool[n_pairs + n_heldout_pairs :], on=shift_feature, seed=ws + seed)
    evaluate = U.make_evaluator(world, ref_model, heldout, {"test": heldout.prompts[:n_test_prompts]}, beta=beta, n_samples=n_samples,
                                max_new_tokens=max_new_tokens, temperature=sample_temperature, seed=ws + seed + 1, val=val, device=dev)
    sets = {"paired": U.paired_split(world, pool[:n_pairs], on=shift_feature, seed=ws + seed),
            "shifted": U.unpaired_split(world, n_pairs, shift=shift, on=shift_feature, seed=ws + 200 + seed, types=pair_types),
            "unshifted": U.unpaired_split(world, n_pairs, shift=0.0, on=shift_feature, seed=ws + 300 + seed, types=pair_types)}
    udm = {k: U.udm_example_weights(world, sets[k], ref_model, udm_embedding, min_ratio=min_density_ratio, max_ratio=max_density_ratio, seed=ws + seed)
           for k in ("shifted", "unshifted")}
    for k, s_k in (("shifted", shift), ("unshifted", 0.0)):
        neg = ~sets[k].desirable
        q = U.udm_quality(udm[k][neg].numpy(), sets[k].z[neg].numpy(), s_k, min_density_ratio, max_density_ratio)
        udm_rows.append({"world": ws, "data": k, "shift": s_k, "z_pos": float(sets[k].z[~neg].mean()), "z_neg": float(sets[k].z[neg].mean()),
                         "w_mean": float(udm[k][neg].mean()), "w_min": float(udm[k][neg].min()), "w_max": float(udm[k][neg].max()), **q})
    policies = {}
    for label, loss, key, keep_delta, use_udm in tqdm(arms, desc=f"arms (world {ws})", leave=False):
        repro.seed_everything(ws + seed)
        cfg = U.BinaryConfig(loss=loss, beta=beta, lr=lr, optimizer=optimizer, steps=steps, delta=keep_delta,
                             udm_weight=udm[key] if use_udm else None, eval_every=eval_every, snapshot_steps=())
        t0 = time.perf_counter()
        policies[label] = (clone_policy(ref_model), cfg, key)
        h = U.train_binary(policies[label][0], ref_model, sets[key], cfg, evaluate=evaluate, device=dev)
        best, final = U.read_best(h, "val/p_correct"), h["eval"][-1][1]
        hists[(ws, label)] = h
        rows.append({"world": ws, "arm": label, "read_step": best["step"], "converged": replicate.converged(best["curve"]).passed,
                     **{k: best[k] for k in ("p_correct", "p_correct_pos", "p_correct_neg", "reward_acc", "auc", "chosen_dlogp", "rejected_dlogp",
                                             "test/gold", "test/win", "test/malformed", "test/kl", "test/win_pos", "test/win_neg")},
                     **{f"{k}_end": final[k] for k in ("p_correct", "reward_acc", "auc", "test/gold", "test/malformed")},
                     "p_correct_ref": h["eval"][0][1]["p_correct"], "delta_end": h["delta"][-1], "reward_sd_end": float(h["final_rewards"].std()), "loss_end": h["loss"][-1], "seconds": time.perf_counter() - t0})
        if label == "bco_paired":  # Thm 3/4 on this run's own final rewards (training pairs)
            r = h["final_rewards"].numpy()
            rw, rl = r[: n_pairs], r[n_pairs:]
            mean_r = 0.5 * (rw.mean() + rl.mean())
            grid = np.linspace(min(r.min(), 0.0) - 1.0, max(r.max(), 0.0) + 1.0, n_delta_grid)
            ex = U.excess_gap_at(rw, rl, mean_r, grid)
            thm.append({"world": ws, "mean_reward": mean_r, "running_delta": h["delta"][-1], "bound_argmin": U.bound_argmin_delta(rw, rl),
                        "min_gap": float(U.bce_dpo_gap(rw, rl, grid).min()), "gap_running": U.excess_gap_at(rw, rl, h["delta"][-1], grid)["gap"], **ex,
                        "grid": grid, "curve": U.bce_dpo_gap(rw, rl, grid).mean(1)})
    if extend_factor > 1 and not all(r["converged"] for r in rows if r["world"] == ws):  # the guard's remedy, as an ablation
        evaluate_cheap = U.make_evaluator(world, ref_model, heldout, {}, beta=beta, n_samples=n_samples, max_new_tokens=max_new_tokens, val=val, device=dev)
        for label, (pol, cfg, key) in tqdm(policies.items(), desc=f"{extend_factor}x budget (world {ws})", leave=False):
            cfg_ext = dataclasses.replace(cfg, steps=(extend_factor - 1) * steps)
            hists[(ws, label)]["eval_ext"] = U.train_binary(pol, ref_model, sets[key], cfg_ext, evaluate=evaluate_cheap, device=dev, resume=hists[(ws, label)]["resume"])["eval"]
    del policies

for r in rows:  # exploratory plateau check and the extended budget (where a world was not extended: its own read)
    h = hists[(r["world"], r["arm"])]
    r.update({f"plateau_{k}": v for k, v in U.plateau_gain([m["val/p_correct"] for _, m in h["eval"]]).items() if k != "window_start"})
    b2 = U.read_best({"eval": h["eval"] + h["eval_ext"]}) if "eval_ext" in h else None
    r.update({"extended": b2 is not None, "read_step_2x": b2["step"] if b2 else np.nan, "p_correct_2x": b2["p_correct"] if b2 else r["p_correct"],
              "reward_acc_2x": b2["reward_acc"] if b2 else r["reward_acc"], "converged_2x": replicate.converged(b2["curve"]).passed if b2 else r["converged"]})
table = pd.DataFrame(rows)
udm_table = pd.DataFrame(udm_rows)
thm_table = pd.DataFrame([{k: v for k, v in t.items() if k not in ("grid", "curve")} for t in thm])
labels = [a[0] for a in arms]
def col(arm: str, key: str) -> np.ndarray:
    return table.query("arm == @arm").set_index("world").reindex(world_seeds)[key].to_numpy(dtype=float)


tracking.log_dict(table.to_dict(orient="records"), "arm_table.json")
tracking.log_dict(udm_table.to_dict(orient="records"), "udm_table.json")
summary = table.groupby("arm")[["read_step", "p_correct", "reward_acc", "auc", "test/gold", "test/win", "test/malformed", "test/kl", "p_correct_end", "test/malformed_end", "delta_end", "seconds"]].mean().reindex(labels)
display(summary.round(3))
display(udm_table.round(3))
display(thm_table.round(4))

# %% [markdown]
# ## Figures: budget curves, the per-world differences, Thm 3/4 on the run's rewards, UDM weights

# %%
fig, axes = plt.subplots(1, 4, figsize=(18, 4))
for label in labels:
    ev = [hists[(ws, label)]["eval"] for ws in world_seeds]
    x = [s for s, _ in ev[0]]
    for ax, key in zip(axes, ["p_correct", "auc", "test/gold", "test/malformed"]):
        ax.plot(x, np.mean([[m[key] for _, m in e] for e in ev], 0), marker="o", ms=3, label=label, ls="--" if label.endswith("s0") else "-")
for ax, t in zip(axes, ["p_correct (held-out share of right first answers)", "AUC of the implicit reward (pooled)", "test gold reward (sampled)", "malformed share (test samples)"]):
    ax.set(xlabel="update step", title=t)
axes[0].legend(fontsize=7)
fig.suptitle(f"Budget curves, mean over {n_worlds} worlds (lr {lr:g}, β {beta:g})")
fig.tight_layout()
tracking.log_figure(fig, "budget_curves")

# %% [markdown]
# **The `converged` guard on its own curves.** Validation p_correct (the early-stopping signal) of every arm in every
# world; the shaded band is the last 10% of the budget (a best checkpoint there fails `replicate.converged`), the star
# the selected checkpoint; where a world was continued to `extend_factor` × `steps` (ablation), the continuation is
# dotted, its own last 10% lightly shaded and its read checkpoint an open circle.

# %%
fig, axes = plt.subplots(1, n_worlds, figsize=(5.5 * n_worlds, 4), squeeze=False, sharey=True)
for ax, ws in zip(axes[0], world_seeds):
    x = np.array([s_ for s_, _ in hists[(ws, labels[0])]["eval"]])
    cut = len(x) - max(1, int(np.ceil(0.1 * len(x))))
    ax.axvspan(0.5 * (x[cut - 1] + x[cut]), x[-1], color="grey", alpha=0.25, label=f"last 10% of {steps} steps")
    for i, label in enumerate(labels):
        h = hists[(ws, label)]
        ax.plot(x, [m["val/p_correct"] for _, m in h["eval"]], color=plt.cm.tab10(i), lw=1.2, ls="--" if label.endswith("s0") else "-", label=label)
        b = U.read_best(h)
        ax.plot([b["step"]], [b["val/p_correct"]], marker="*", ms=11, color=plt.cm.tab10(i), mec="k", mew=0.6)
        if "eval_ext" in h:
            ax.plot([x[-1]] + [s_ for s_, _ in h["eval_ext"]], [b["curve"][-1]] + [m["val/p_correct"] for _, m in h["eval_ext"]], color=plt.cm.tab10(i), lw=1, ls=":")
            b2 = U.read_best({"eval": h["eval"] + h["eval_ext"]})
            ax.plot([b2["step"]], [b2["val/p_correct"]], marker="o", ms=7, mfc="none", color=plt.cm.tab10(i), mew=1.2)
    if "eval_ext" in hists[(ws, labels[0])]:
        x2 = [s_ for s_, _ in hists[(ws, labels[0])]["eval"] + hists[(ws, labels[0])]["eval_ext"]]
        cut2 = len(x2) - max(1, int(np.ceil(0.1 * len(x2))))
        ax.axvspan(0.5 * (x2[cut2 - 1] + x2[cut2]), x2[-1], color="grey", alpha=0.1, label=f"last 10% of {x2[-1]} steps")
    ax.set(xlabel="update step", title=f"world {ws}: validation p_correct ({n_val_pairs} pairs)")
axes[0][0].set_ylabel("validation p_correct")
axes[0][0].legend(fontsize=7, loc="lower right")
fig.suptitle("Where each run was read (star) against the converged guard's window (shaded)" + ("; dotted: longer budget, open circle: its read" if any("eval_ext" in h for h in hists.values()) else ""))
fig.tight_layout()
tracking.log_figure(fig, "validation_budget_curves")

# %%
contrasts = {"BCO − DPO (paired)": ("bco_paired", "dpo_paired"), "BCO(δ) − KTO": ("bco_delta", "kto"), "BCO(δ) − BCO(δ=0)": ("bco_delta", "bco_nodelta"),
             f"UDM − none (s={shift:g})": ("bco_delta_udm", "bco_delta"), "UDM − none (s=0)": ("bco_delta_udm_s0", "bco_delta_s0")}
fig, axes = plt.subplots(1, 3, figsize=(16, 4))
for ax, key in zip(axes, ["p_correct", "auc", "test/gold"]):
    for i, (a, b) in enumerate(contrasts.values()):
        d = col(a, key) - col(b, key)
        ax.scatter(np.full(n_worlds, i), d, color="C0")
        ax.scatter([i], [d.mean()], color="k", marker="_", s=400)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(contrasts)), list(contrasts), rotation=25, ha="right", fontsize=8)
    ax.set(ylabel=f"Δ {key} at the read point", title=f"{key}: per world (dots), mean (bar)")
fig.tight_layout()
tracking.log_figure(fig, "contrasts")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
t0_ = thm[0]
axes[0].plot(t0_["grid"], t0_["curve"], label="mean BCE(δ) − DPO gap")
for v, name, c in [(t0_["mean_reward"], "δ = mean reward", "C1"), (t0_["running_delta"], "running δ (training)", "C2"), (t0_["bound_argmin"], "argmin of the Thm 4 bound", "C3")]:
    axes[0].axvline(v, color=c, ls="--", label=name)
axes[0].set(xlabel="shift δ", ylabel="gap (nats)", title=f"Thm 3/4 on BCO's own rewards (world {world_seeds[0]}, {n_pairs} training pairs)")
axes[0].legend(fontsize=8)
shifted = U.unpaired_split(world, n_pairs, shift=shift, on=shift_feature, seed=world_seeds[-1] + 200 + seed, types=pair_types)
w_last = U.udm_example_weights(world, shifted, ref_model, udm_embedding, min_ratio=min_density_ratio, max_ratio=max_density_ratio, seed=world_seeds[-1] + seed)
neg = ~shifted.desirable
zz = np.linspace(-1, 1, 50)
axes[1].scatter(shifted.z[neg].numpy() + np.random.default_rng(0).normal(0, 0.02, int(neg.sum())), w_last[neg].numpy(), s=8, alpha=0.5, label=f"UDM weights ({udm_embedding})")
axes[1].plot(zz, np.clip(U.true_density_ratio(zz, shift), min_density_ratio, max_density_ratio), color="k", label="true ratio (1+sz)/(1−sz), clipped")
axes[1].set(xlabel=f"prompt feature z ({shift_feature})", ylabel="weight of a thumbs-down example", yscale="log", title=f"UDM vs the true density ratio (world {world_seeds[-1]}, s = {shift:g})")
axes[1].legend(fontsize=8)
fig.tight_layout()
tracking.log_figure(fig, "thm4_and_udm")

# %% [markdown]
# ## Claims (rules fixed before running)

# %%
def per_world(v: np.ndarray, fmt: str = "+.3f") -> str:
    return ", ".join(f"w{ws} {x:{fmt}}" for ws, x in zip(world_seeds, v))


def guards(*names: str) -> list:
    acc = min(float(col(a, "reward_acc").min()) for a in names)
    return [replicate.progress_reached(acc, min_reward_acc, lower_is_better=False, what=f"held-out reward accuracy (worst of {', '.join(names)})"),
            replicate.Guard("converged", bool(all(col(a, "converged").all() for a in names)), f"validation p_correct peaked before the last 10% of {steps} steps in every world: "
                            + "; ".join(f"{a} read at {per_world(col(a, 'read_step'), '.0f')}" for a in names), f"a longer budget than {steps} steps")]


def end_txt(a: str, b: str, key: str = "p_correct") -> str:
    return f"at the end of the budget ({steps} steps) Δ {key} is {per_world(col(a, key + '_end') - col(b, key + '_end'))}"


d1 = col("bco_paired", "p_correct") - col("dpo_paired", "p_correct")
d1a = col("bco_paired", "reward_acc") - col("dpo_paired", "reward_acc")
o1a = replicate.mean_within_rule(d1a, -acc_margin, acc_margin)
o1 = replicate.all_of(replicate.mean_within_rule(d1, -equiv_margin, equiv_margin), o1a)
replicate.record(
    "bco_paired_matches_dpo",
    statement=f"On paired data BCO (running δ) performs on par with DPO: Δ p_correct within ±{equiv_margin} and Δ held-out reward accuracy within ±{acc_margin}",
    paper="Jung et al. 2024 (BCO), abstract and paired-data results", paper_value="on a paired preference dataset BCO performs on par with DPO (and KTO, v1)",
    values=d1, outcome=o1, guards=guards("bco_paired", "dpo_paired"),
    measured=f"Δ p_correct {o1.statistic:+.4f} [{o1.ci.low:+.4f}, {o1.ci.high:+.4f}] ({per_world(d1, '+.4f')}); Δ reward acc {o1a.statistic:+.3f} [{o1a.ci.low:+.3f}, {o1a.ci.high:+.3f}]; "
             f"Δ test gold {per_world(col('bco_paired', 'test/gold') - col('dpo_paired', 'test/gold'))}",
    diagnosis=replicate.Diagnosis(f"Read at the end instead of the best validation checkpoint, {end_txt('bco_paired', 'dpo_paired')} and Δ reward acc "
                                  f"{per_world(col('bco_paired', 'reward_acc_end') - col('dpo_paired', 'reward_acc_end'))}; malformed share at the end BCO "
                                  f"{per_world(col('bco_paired', 'test/malformed_end'))} vs DPO {per_world(col('dpo_paired', 'test/malformed_end'))}.",
                                  "the same runs read at the end of the budget (fixed budget instead of early stopping)"),
)

d2 = col("bco_delta", "p_correct") - col("kto", "p_correct")
o2 = replicate.mean_ci_rule(d2, -noninf_margin, "above")
replicate.record(
    "bco_not_worse_than_kto_unpaired",
    statement=f"On unpaired thumbs-up/down data with a prompt shift (s = {shift:g}), BCO with δ is not worse than KTO: t-CI of Δ p_correct above −{noninf_margin}",
    paper="Jung et al. 2024 (BCO) v1, binary-signal experiments; KTO: Ethayarajh et al. 2024", paper_value="BCO aligns effectively and robustly from binary signals; compared with KTO",
    values=d2, outcome=o2, guards=guards("bco_delta", "kto"),
    measured=f"Δ p_correct {o2.statistic:+.4f} [{o2.ci.low:+.4f}, {o2.ci.high:+.4f}] ({per_world(d2, '+.4f')}); Δ AUC {per_world(col('bco_delta', 'auc') - col('kto', 'auc'))}; "
             f"Δ test gold {per_world(col('bco_delta', 'test/gold') - col('kto', 'test/gold'))}",
    diagnosis=replicate.Diagnosis(f"{end_txt('bco_delta', 'kto')}; KTO's read steps {per_world(col('kto', 'read_step'), '.0f')} vs BCO's {per_world(col('bco_delta', 'read_step'), '.0f')}.",
                                  "the same runs read at the end of the budget"),
)

d3 = col("bco_delta", "p_correct") - col("bco_nodelta", "p_correct")
o3 = replicate.mean_ci_rule(d3, 0.0, "above")
replicate.record(
    "reward_shift_helps",
    statement=f"The running reward shift δ improves unpaired BCO over δ = 0 (shifted data, s = {shift:g}): t-CI of Δ p_correct above 0",
    paper="Jung et al. 2024 (BCO), reward shift (Thm 4 and ablation)", paper_value="the reward shift further minimises the gap between the BCE and DPO losses and helps alignment",
    values=d3, outcome=o3, guards=guards("bco_delta", "bco_nodelta"),
    measured=f"Δ p_correct {o3.statistic:+.4f} [{o3.ci.low:+.4f}, {o3.ci.high:+.4f}] ({per_world(d3, '+.4f')}); final running δ {per_world(col('bco_delta', 'delta_end'))}; "
             f"Δ AUC {per_world(col('bco_delta', 'auc') - col('bco_nodelta', 'auc'))}",
    diagnosis=replicate.Diagnosis(f"The running δ is {per_world(col('bco_delta', 'delta_end'))} at the end against a spread (sd) of the training rewards of "
                                  f"{per_world(col('bco_delta', 'reward_sd_end'))}: the shift only changes the loss where it is comparable to that spread; "
                                  f"{end_txt('bco_delta', 'bco_nodelta')}.",
                                  "the same runs read at the end of the budget; the δ trajectory of every run"),
)

d4 = col("bco_delta_udm", "p_correct") - col("bco_delta", "p_correct")
o4 = replicate.mean_ci_rule(d4, 0.0, "above")
uq, us = udm_table.query("data == 'shifted'"), udm_table.query("data == 'unshifted'")
replicate.record(
    "udm_helps_under_shift",
    statement=f"With D⁺ and D⁻ prompts differently distributed (s = {shift:g} on the {shift_feature}), UDM weights improve unpaired BCO(δ): t-CI of Δ p_correct above 0",
    paper="Jung et al. 2024 (BCO) v1 §4.2; TRL experimental.bco", paper_value="UDM helps when the thumbs-up and thumbs-down prompt distributions diverge",
    values=d4, outcome=o4, guards=guards("bco_delta_udm", "bco_delta"),
    measured=f"Δ p_correct {o4.statistic:+.4f} [{o4.ci.low:+.4f}, {o4.ci.high:+.4f}] ({per_world(d4, '+.4f')}); Δ AUC {per_world(col('bco_delta_udm', 'auc') - col('bco_delta', 'auc'))}; "
             f"UDM weights vs true ratio: Spearman ρ {per_world(uq['rho'].to_numpy(), '.2f')}",
    diagnosis=replicate.Diagnosis(
        f"The UDM classifier recovers the shift (ρ with the true ratio {per_world(uq['rho'].to_numpy(), '.2f')}), but the shifted feature ({shift_feature}) does not enter the gold "
        f"preference, and the right-answer share on the D⁻-heavy half (z < 0) is {per_world(col('bco_delta', 'p_correct_neg'))} without and {per_world(col('bco_delta_udm', 'p_correct_neg'))} "
        f"with UDM (z > 0: {per_world(col('bco_delta', 'p_correct_pos'))} / {per_world(col('bco_delta_udm', 'p_correct_pos'))}); at s = 0 the same difference is "
        f"{per_world(col('bco_delta_udm_s0', 'p_correct') - col('bco_delta_s0', 'p_correct'))}; {end_txt('bco_delta_udm', 'bco_delta')}.",
        "the same arms on unshifted data (s = 0); the split by prompt half; the UDM weights against the known density ratio; the end of the budget"),
)

d4b = col("bco_delta_udm_s0", "p_correct") - col("bco_delta_s0", "p_correct")
o4b = replicate.mean_within_rule(d4b, -equiv_margin, equiv_margin)
replicate.record(
    "udm_neutral_without_shift",
    statement=f"Without a prompt shift (s = 0) UDM leaves unpaired BCO(δ) unchanged: Δ p_correct within ±{equiv_margin}",
    paper="Jung et al. 2024 (BCO) v1 §4.2", paper_value="UDM is for divergent thumbs-up / thumbs-down prompt distributions (a no-op when they match)",
    values=d4b, outcome=o4b, guards=guards("bco_delta_udm_s0", "bco_delta_s0"),
    measured=f"Δ p_correct {o4b.statistic:+.4f} [{o4b.ci.low:+.4f}, {o4b.ci.high:+.4f}] ({per_world(d4b, '+.4f')}); UDM weights at s = 0: mean "
             f"{per_world(us['w_mean'].to_numpy(), '.2f')}, range up to {per_world(us['w_max'].to_numpy(), '.2f')}",
    diagnosis=replicate.Diagnosis(f"At s = 0 the classifier still fits noise: weights span [{us['w_min'].min():.2f}, {us['w_max'].max():.2f}] on {n_pairs} + {n_pairs} prompts; {end_txt('bco_delta_udm_s0', 'bco_delta_s0')}.",
                                  "the UDM weights at s = 0; the end of the budget"),
)

# %% [markdown]
# **Exploratory rows (not judged): a plateau check next to the pre-registered `converged` guard.** `converged` fails
# whenever the best validation checkpoint falls in the last 10% of the budget, also when the curve is flat there and the
# argmax lands late by noise. For each claim and world, z = (best validation p_correct in that window − best before it) /
# σ̂, σ̂ the curve's step-to-step noise from its second differences (`unpaired.plateau_gain`), maximised over the claim's two
# arms; "plateaued" when z < `plateau_z`. This is a plateau guard, not pre-registered (written after the `converged` guard
# failed); it cannot change a verdict. The guard's own remedy, a longer budget, is the ablation after it.

# %%
claim_arms = {"bco_paired_matches_dpo": ("bco_paired", "dpo_paired"), "bco_not_worse_than_kto_unpaired": ("bco_delta", "kto"),
              "reward_shift_helps": ("bco_delta", "bco_nodelta"), "udm_helps_under_shift": ("bco_delta_udm", "bco_delta"),
              "udm_neutral_without_shift": ("bco_delta_udm_s0", "bco_delta_s0")}
plateau = {}
for cid, (a, b) in claim_arms.items():
    plateau[cid] = np.maximum(col(a, "plateau_z"), col(b, "plateau_z"))
    replicate.record(
        f"{cid}_plateau",
        statement=f"Plateau check for {cid} (a plateau guard, not pre-registered): in every world the last 10% of the {steps}-step budget adds less than {plateau_z:g} "
                  f"noise sds to the best earlier validation p_correct of {a} and of {b}",
        paper="book protocol (exploratory guard; no paper claim)", values=plateau[cid], outcome=replicate.k_of_n_rule(plateau[cid] < plateau_z, n_worlds), kind="exploratory",
        threshold=f"z < {plateau_z:g} in {n_worlds} of {n_worlds} worlds (exploratory)",
        measured=f"z (max of the two arms) {per_world(plateau[cid], '+.2f')}; gain in the window {a} {per_world(col(a, 'plateau_gain'), '+.4f')}, {b} {per_world(col(b, 'plateau_gain'), '+.4f')}; "
                 f"noise σ̂ {a} {per_world(col(a, 'plateau_noise'), '.4f')}, {b} {per_world(col(b, 'plateau_noise'), '.4f')}",
    )

# %% [markdown]
# **Ablation: the guard's remedy (not judged).** With `extend_factor` > 1, every arm of a world where some run failed
# `converged` is continued from its last step (same optimiser state and running δ, `train_binary(resume=)`) to
# `extend_factor` × `steps`, evaluated every `eval_every` steps on the held-out and validation pairs (no sampling), and
# re-read at its best validation checkpoint over the whole longer curve; the other worlds keep their read. The same
# statistics and rules are read again; the verdicts above stay those of the pre-registered read.

# %%
rules = {"bco_paired_matches_dpo": lambda d: replicate.mean_within_rule(d, -equiv_margin, equiv_margin),
         "bco_not_worse_than_kto_unpaired": lambda d: replicate.mean_ci_rule(d, -noninf_margin, "above"),
         "reward_shift_helps": lambda d: replicate.mean_ci_rule(d, 0.0, "above"), "udm_helps_under_shift": lambda d: replicate.mean_ci_rule(d, 0.0, "above"),
         "udm_neutral_without_shift": lambda d: replicate.mean_within_rule(d, -equiv_margin, equiv_margin)}
ext_worlds = sorted({int(w) for w in table.loc[table["extended"], "world"]})
word = {True: "would pass", False: "would fail", None: "inconclusive"}
ext_rows = []
for cid, (a, b) in claim_arms.items():
    d_pre, d_2x = col(a, "p_correct") - col(b, "p_correct"), col(a, "p_correct_2x") - col(b, "p_correct_2x")
    o_pre, o_2x = rules[cid](d_pre), rules[cid](d_2x)
    conv = table.loc[table["extended"] & table["arm"].isin(claim_arms[cid]), "converged_2x"]
    ext_rows.append({"claim": cid, "pre-registered Δ p_correct": f"{o_pre.statistic:+.4f} [{o_pre.ci.low:+.4f}, {o_pre.ci.high:+.4f}]",
                     f"{extend_factor}x Δ p_correct": f"{o_2x.statistic:+.4f} [{o_2x.ci.low:+.4f}, {o_2x.ci.high:+.4f}]", f"rule at {extend_factor}x (guards aside)": word[o_2x.passed],
                     "moves": "; ".join(f"w{ws} {d_pre[i]:+.4f} → {d_2x[i]:+.4f}" for i, ws in enumerate(world_seeds) if ws in ext_worlds) or "none extended",
                     f"converged at {extend_factor}x": f"{int(conv.sum())}/{len(conv)} extended runs",
                     "Δ reward acc (pre → 2x)": f"{(col(a, 'reward_acc') - col(b, 'reward_acc')).mean():+.3f} → {(col(a, 'reward_acc_2x') - col(b, 'reward_acc_2x')).mean():+.3f}"})
ext_table = pd.DataFrame(ext_rows).set_index("claim")
tracking.log_dict(ext_table.reset_index().to_dict(orient="records"), "budget_ablation.json")
display(ext_table if ext_worlds else Markdown(f"No world extended (`extend_factor` = {extend_factor}; the `full` profile sets 2)."))

# %%
min_gaps = thm_table["min_gap"].to_numpy()
replicate.record(
    "bce_upper_bounds_dpo",
    statement="Thm 3 on BCO's own final rewards: BCE(δ) − DPO > 0 for every training pair and every δ on the grid, in every world",
    paper="Jung et al. 2024 (BCO), Thm 1/3", paper_value="−log σ(r_w − r_l) < −log σ(r_w − δ) − log σ(−(r_l − δ)) for every δ",
    values=min_gaps, outcome=replicate.k_of_n_rule(min_gaps > 0, n_worlds), kind="demonstration",
    measured=f"smallest gap over pairs and δ: {per_world(min_gaps, '.2e')}",
)

rel = thm_table["rel_excess"].to_numpy()
o5 = replicate.mean_ci_rule(rel, gap_tol, "below")
replicate.record(
    "gap_smallest_near_mean",
    statement=f"Thm 4 on BCO's own rewards: the mean BCE − DPO gap at δ = ½(mean r_w + mean r_l) is within {100 * gap_tol:.0f}% of its minimum over δ",
    paper="Jung et al. 2024 (BCO), Thm 4", paper_value="the gap bound e^{−(r_w−δ)} + e^{r_l−δ} is minimised at δ = (r_w + r_l)/2 (the reward mean)",
    values=rel, outcome=o5,
    measured=f"relative excess {o5.statistic:.4f} [{o5.ci.low:.4f}, {o5.ci.high:.4f}] ({per_world(rel, '.4f')}); mean reward {per_world(thm_table['mean_reward'].to_numpy())}, grid argmin "
             f"{per_world(thm_table['delta_min'].to_numpy())}, bound argmin {per_world(thm_table['bound_argmin'].to_numpy())}, running δ {per_world(thm_table['running_delta'].to_numpy())}",
    diagnosis=replicate.Diagnosis(f"The exact gap's argmin {per_world(thm_table['delta_min'].to_numpy())} differs from the mean reward {per_world(thm_table['mean_reward'].to_numpy())} "
                                  f"because Thm 4 minimises a bound, whose batch argmin is {per_world(thm_table['bound_argmin'].to_numpy())}; gap at δ = 0 "
                                  f"{per_world(thm_table['gap_zero'].to_numpy())} vs at the mean {per_world(thm_table['gap'].to_numpy())}.",
                                  "the gap curve over the δ grid and the closed-form argmin of the bound"),
)

# %% [markdown]
# ## Discussion (numbers from this run)

# %%
from lossbook import claims  # noqa: E402

wall = time.perf_counter() - t_start
tracking.log_metrics({"time/wall_s": wall})
verdicts = "\n".join(f"- **{c['name']}**: {c['verdict']} — measured {c['measured']} (rule: {c['threshold']})" for c in claims.recorded())
best_arm = summary["p_correct"].idxmax()
display(Markdown("\n".join([
    f"### Verdicts ({n_worlds} worlds, lr {lr:g}, β {beta:g}, {steps} steps, read at the best validation checkpoint)", verdicts, "",
    "- **Where the runs went.** p_correct at the read point (mean over worlds): " + ", ".join(f"{a} {summary.loc[a, 'p_correct']:.3f}" for a in labels)
    + f"; the highest is {best_arm}. Read steps: " + ", ".join(f"{a} {summary.loc[a, 'read_step']:.0f}" for a in labels) + ".",
    "- **Over-optimisation.** At the end of the budget the malformed share of test samples is " + ", ".join(f"{a} {summary.loc[a, 'test/malformed_end']:.2f}" for a in labels)
    + f" (at the read point {summary['test/malformed'].min():.2f}–{summary['test/malformed'].max():.2f}): every loss here keeps pushing the log-ratios apart and takes mass off "
    "well-formed text, which is why each run is read at its best validation checkpoint rather than at the end.",
    f"- **Effect size vs margins.** π_ref's held-out p_correct is {per_world(col('dpo_paired', 'p_correct_ref'), '.3f')}; at the read point DPO adds "
    f"{per_world(col('dpo_paired', 'p_correct') - col('dpo_paired', 'p_correct_ref'))} and unpaired BCO(δ) {per_world(col('bco_delta', 'p_correct') - col('bco_delta', 'p_correct_ref'))}, "
    f"so the pre-set margins (±{equiv_margin} equivalence, −{noninf_margin} non-inferiority) are a sizeable share of what training changes at all in this world.",
    "- **Pooled AUC vs pairwise accuracy.** Held-out reward accuracy (within a prompt) and AUC (across prompts) at the read point: "
    + ", ".join(f"{a} {summary.loc[a, 'reward_acc']:.2f}/{summary.loc[a, 'auc']:.2f}" for a in labels)
    + ". Unpaired data only constrain r per example, so a per-prompt offset of the implicit reward can lower the AUC without changing the pairwise accuracy.",
    f"- **The converged guard on a plateau.** {int((~table['converged']).sum())} of {len(table)} runs are read in the last 10% of the budget ("
    + ", ".join(f"world {ws}: {int((~table.query('world == @ws')['converged']).sum())}/{len(arms)}" for ws in world_seeds) + "); the `converged` guard fails in "
    f"{sum(any(g['name'] == 'converged' and not g['passed'] for g in c.get('guards', [])) for c in claims.recorded())} of {len(claim_arms)} comparison claims. Exploratory plateau check (not pre-registered; z < {plateau_z:g}): " + ", ".join(f"{cid} plateaued in {int((plateau[cid] < plateau_z).sum())}/{n_worlds} worlds "
    f"(largest z {np.max(plateau[cid]):+.2f})" for cid in claim_arms) + ". Runs read in the window: "
    + ", ".join(f"w{r.world} {r.arm} gain {r.plateau_gain:+.4f} = {r.plateau_z:+.1f} σ̂" for r in table.query("not converged").itertuples())
    + f". Where z < {plateau_z:g} the late read is the argmax of a flat curve; where z ≥ {plateau_z:g} the last 10% still adds more than the curve's "
    "step-to-step wobble (full-batch training gives smooth validation curves, so σ̂ is small and a slow steady rise counts), i.e. the budget is short there, "
    "not noisy (see the validation budget curves).",
    (f"- **The guard's remedy (ablation, {extend_factor}× = {extend_factor * steps} steps in world(s) {', '.join(map(str, ext_worlds))}).** "
     + "; ".join(f"{cid}: {r['moves']}, mean {r['pre-registered Δ p_correct']} → {r[f'{extend_factor}x Δ p_correct']} (rule alone {r[f'rule at {extend_factor}x (guards aside)']}; "
                 f"converged at {extend_factor}× {r[f'converged at {extend_factor}x']})" for cid, r in ext_table.iterrows())
     + ". The verdicts above stay those of the pre-registered read.") if ext_worlds else
    (f"- **The guard's remedy (ablation) was not run in this profile** (`extend_factor` = {extend_factor}): continuing one world's {len(arms)} arms by {steps} more steps "
     "adds about a quarter of the default's training time and does not fit its 10-minute budget; the `full` profile sets `extend_factor` = 2 "
     "(or pass `extend_factor=2` to the default)."),
    f"- **The shift δ.** Final running δ of BCO on shifted unpaired data: {per_world(col('bco_delta', 'delta_end'))}; on paired data {per_world(col('bco_paired', 'delta_end'))}.",
    f"- **UDM.** Mean clipped weight of a thumbs-down example at s = {shift:g}: {per_world(uq['w_mean'].to_numpy(), '.2f')} (ρ with the true ratio "
    f"{per_world(uq['rho'].to_numpy(), '.2f')}); the shifted feature ({shift_feature}) is a nuisance for the gold preference in this world, the paper's "
    "writing-vs-coding example is a shift in what the model is good at.",
    "- **What differs from the paper.** A 2-layer GPT trained from scratch on a synthetic world instead of 7B chat models; one small dataset, full batch, one lr and β "
    "for every arm (no per-method tuning); the gold judge is a rule, not GPT-4 / MT-Bench; UDM's classifier reads token counts of the prompt (or π_ref's hidden states), "
    "not a sentence-embedding model; KTO uses TRL's mismatched-pair estimate of z₀.",
    f"- **Wall time** {wall:.0f} s on {dev}.",
])))
