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
# # Likelihood displacement in DPO, and the CHES score that predicts it
# **Paper:** Razin, Malladi, Bhaskar, Chen, Arora, Hanin (2025), "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization", ICLR 2025 (arXiv 2410.08847).
# **Claim:** DPO can *lower* the probability of the preferred response (by 0.21–0.96 in the paper's single-token runs), moving mass to tokens of the same or the opposite meaning; which tokens gain is predicted by the unembeddings (Thm 2), and the CHES similarity of a pair's hidden states ranks how much a sample displaces (Fig. 2).
#
# DPO minimises $\ell = -\log\sigma(\beta\,\Delta)$ with
# $\Delta = [\ln\pi(y^+|x)-\ln\pi_{\rm ref}(y^+|x)] - [\ln\pi(y^-|x)-\ln\pi_{\rm ref}(y^-|x)]$, so it only sees the
# *margin*: $\partial\ell/\partial\ln\pi(y^+) = -\beta\sigma(-\beta\Delta) = -\partial\ell/\partial\ln\pi(y^-)$.
# Razin et al. call **likelihood displacement** the case where the loss falls but $\ln\pi(y^+|x)$ falls too
# (Def. 1); it is *benign* when the mass goes to tokens meaning the same as $y^+$ and *catastrophic* when it goes to
# tokens of the opposite meaning. Their findings, which this notebook tests at CPU scale:
#
# 1. **Single-token displacement (§3, Table 1).** After SFT on the Persona "ends-justify-means" statements, DPO on
#    *one* prompt (100 full-batch steps, β = 0.1, RMSprop lr 1e-7, 10 seeds — the seed picks the prompt — runs whose
#    loss ever rose dropped) lowered π(y+) "by at least 0.21 and up to 0.96 in all runs", where the drop is
#    $\max_{t<t'}\pi_t(y^+)-\pi_{t'}(y^+)$. OLMo-1B with $y^+$ = No, $y^-$ = Never: π(No) 0.85 → 0.01 while *Yes*
#    rose (catastrophic); Llama-3-8B Yes/No: 0.99 → 0.03 with benign gainers (yes, _Yes). IPO displaces too
#    (drops 0.01–0.87, Table 3), and so does DPO without SFT (0.10–0.99, Table 2).
# 2. **Theory (§4, unconstrained features, gradient flow).** Thm 2: $\frac{d}{dt}\ln\pi(z|x)$ has a z-dependent part
#    $\propto\langle W_z, W_{y^+}-W_{y^-}\rangle$, so the tokens that gain are *predictable from the unembeddings*.
#    Thm 1: $\ln\pi(y^+)$ falls faster the larger $\langle W_{y^+},W_{y^-}\rangle+\sum_{z\notin\{y^\pm\}}\pi(z)\langle W_z,W_{y^+}-W_{y^-}\rangle$.
# 3. **CHES ranks samples (§5, Fig. 2).** With $h_{x,y_{<k}}$ the final hidden state that predicts $y_k$,
#    $\mathrm{CHES}_x(y^+,y^-)=\langle\sum_k h_{x,y^+_{<k}},\sum_{k'}h_{x,y^-_{<k'}}\rangle-\|\sum_k h_{x,y^+_{<k}}\|^2$
#    (lnCHES: means instead of sums). One DPO epoch on subsets centred on the 0/25/50/75/100th CHES percentile lowers
#    the mean preferred log-prob more the higher the percentile (at low CHES it *rises*); normalised edit distance and
#    the inner product of the last hidden states do not rank displacement.
#
# **Here, at CPU scale.** No pretrained model can be downloaded, so we build a **synthetic persona world**
# (`lossbook.alignment.world`): answer tokens in an agreeing group {Yes, Yeah, Sure, Certainly, Absolutely} and a
# disagreeing group {No, Never, Maybe, Perhaps}; statements made of concept words with 3 interchangeable synonyms
# each and a latent trait that decides the answer group; a pretraining corpus in which the answer tokens of a group
# and the synonyms of a concept are interchangeable in context (so the unembeddings acquire similarity structure);
# then SFT on single-token answers. A tiny GPT (`lossbook.models.gpt`) is pretrained from scratch and SFT'd (cached
# by config hash under `runs/cache/`; the recipe `base_recipe` in `lossbook.alignment.recipes` is shared by all
# alignment notebooks). **A world seed is one replicate**: its own world, pretraining, SFT and DPO prompts; every
# claim is read over `world_seeds` and reports "k of N worlds" with the per-world numbers.
#
# **Where this departs from the paper, and why** (the old version of this notebook said "as in the paper" for two
# of these; it was not):
# - *SFT labels.* The paper's SFT labels are uniform inside the meaning group; π(y+) dominance after SFT comes from
#   the pretrained prior of a real LM. Our from-scratch model has no such prior, so the SFT label is the *speaker's*
#   favourite token with probability 0.9 (uniform in the group otherwise) — a departure, made so that π(y+) starts
#   high as in Table 1 (0.65–0.99).
# - *Prompts.* The paper's DPO prompts come from its SFT set; ours are fresh statements whose SFT answer is y+.
# - *Progress, not steps.* The paper trains 100 steps at lr 1e-7 on 1–8B models. A step count does not transfer to a
#   ~100k-parameter model; training progress does. We train each run up to a step cap and read it at the first step
#   where its **DPO loss ≤ `loss_target` = 0.5** (pre-registered), with the whole curve shown. For one prompt and
#   one-token responses the DPO loss is a function of π(y+) and π(y−) alone, so IPO and no-SFT runs are read at the
#   same DPO-loss target (`lossbook.alignment.progress`).
# - *lr.* RMSprop, β = 0.1, full batch, one prompt, 10 prompt seeds, as in the paper; lr `dpo_lr` = 3e-5, fixed
#   before the claims by a progress rule on a pilot on world 0 (the lr at which every pair reaches L ≤ 0.5 within
#   the cap while taking ≥ 20 steps to do so, so the curve is resolved; 1e-5 needs ~350 steps for No/Never and more
#   for Sure/Yes, 1e-4 reaches the target in 5–26 steps). The pilot printed π(y+) too; at the loss target it was
#   nearly the same at all three lrs, which the lr figure below shows on this run.
# - *Stability filters.* The paper drops runs whose loss ever rose. We apply two filters over steps 0..t* (t* = the
#   step that reaches the target), stated before the run: the paper's **strict** one (L_{t+1} <= L_t, exact) and a
#   **substantive** one (no single-step rise above `stability_rel_tol` = 1% of the loss). **The claims use the
#   substantive filter** (RMSprop's 0.01–0.1% loss wiggles are not instability); the tables give both counts, and the
#   main claim is recomputed under the strict filter as an exploratory row.
#
# **Position convention for h (fixed for the whole book).** $h_{x,y_{<k}}$ is the final-LayerNorm output (the vector
# that multiplies the unembedding) at the position that *predicts* $y_k$: the last prompt token for $k=1$, token
# $y_{k-1}$ for $k>1$ — exactly $|y|$ positions, as in the paper's **Definition 2**. (The paper's batch script keeps
# `hidden_states[-1][0][query_len-1:]`, one extra position after the last response token.) Our responses end in
# `<eos>`, which counts as a response token.
#
# **Claims, with thresholds fixed before running** (ids as in `claims.json`; N = number of worlds, k = ⌈2N/3⌉):
# 1. `displacement_similar_pairs` (the paper's claim, Table 1): for each same-group pair (No/Never, Sure/Yes), ≥ 80%
#    of the kept runs have max-drop ≥ 0.2 at the loss target, in ≥ k of N worlds.
# 2. `catastrophic_when_similar`: in those displaced same-group runs the opposite-group mass rises by ≥ 0.1 (in
#    ≥ 80% of them), in ≥ k of N worlds.
# 3. `thm2_gain_ordering`: the per-world median Spearman ρ between $\langle W_z,W_{y^+}-W_{y^-}\rangle$ (SFT
#    unembeddings) and the early change of $\ln\pi(z)$ (after `early_steps` steps), over z ∉ {y+, y−}; the
#    order-statistic CI of the median over worlds is above 0.5.
# 4. `ches_ranks_displacement` (Fig. 2): 10 decile windows of each score; replicates = worlds × `pref_set_seeds`
#    (two preference sets per world). Passes if the CI of the median ρ_CHES (Spearman of window index vs mean
#    change of ln π(y+)) has its upper end ≤ −0.7, the top CHES decile lowers ln π(y+) in ≥ 80% of replicates, and
#    ρ_CHES − max(ρ of the two baselines) has a t-CI below 0.
# 5. `similar_displace_more` — **exploratory** (the book's hypothesis, not the paper's: in Table 1 the dissimilar
#    Yes/No drops by 0.62 on average, the same-group pairs by 0.55): per-world mean drop of same-group pairs minus
#    the dissimilar pair's.
# 6. Where the mass goes (same group / opposite group / non-answer), per pair and world, next to Table 1; IPO (Table
#    3) and DPO without SFT (Table 2) as recorded rows; a geometry row per world (same-meaning tokens are closer in
#    unembedding space than different-meaning ones), which is also a guard of claims 1–2.
#
# A `not reproduced` verdict carries a diagnosis computed from the ablations in this notebook (lower loss targets on
# the same runs, the other stability filter, other lrs, untied embeddings, the other worlds).

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seed = 0  # seed of the DPO mini-batch order in the CHES part (the worlds have their own seeds)
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
# the synthetic world, the tiny GPT, pretraining and SFT (AdamW; cached by config hash, shared by the alignment notebooks)
base_recipe = "persona-tiny"  # a name in lossbook.alignment.recipes.BASE_RECIPES: persona-smoke | persona-tiny | persona-small
world_seeds = [0, 1, 2]  # replicate worlds: each its own world, pretraining, SFT and prompts (≥ 3 outside smoke)
tie_weights = True  # False: untied unembedding for the main runs (their own pretraining + SFT per world)
untied_world_seeds = [0]  # worlds re-run with the other tying as an ablation (where the mass goes); [] to skip
# Part 1: single-token DPO on one prompt (Razin et al. §3), read at matched progress
token_pairs = ["No/Never", "Sure/Yes", "Yes/No"]  # y+/y-; the paper's three pairs
n_prompt_seeds = 10  # prompts per pair and world (the seed picks the prompt); in [1, inf)
beta = 0.1  # DPO β (the paper's); > 0
dpo_lr = 3.0e-5  # RMSprop lr, fixed by the progress rule in the text (not by the drops); > 0
max_steps = 800  # step cap per run (full batch); runs are read at the loss target, the rest shows the curve; in [1, inf)
loss_target = 0.5  # pre-registered progress: each run is read at its first step with DPO loss ≤ this; > 0
ablation_targets = [0.65, 0.6, 0.55, 0.5, 0.45, 0.4]  # DPO-loss targets of the share-vs-target ablation (same runs)
stability_rel_tol = 0.01  # substantive filter: no single-step loss rise above this fraction of the loss; in [0, inf)
lr_curves = [1.0e-5, 3.0e-5, 1.0e-4]  # lrs of the curves-vs-loss figure (first world; no claim); > 0
n_lr_curve_seeds = 3  # prompts per pair at each lr of lr_curves; in [1, inf)
ipo_tau = 0.01  # the paper's IPO τ; > 0
ipo_lr = 3.0e-6  # the paper's IPO/DPO lr ratio (1e-8 / 1e-7) applied to dpo_lr; > 0
n_variant_seeds = 3  # prompts per pair and world for the IPO and no-SFT rows; in [1, inf)
early_steps = 5  # "early change" of ln π(z) for the Thm 2 check; in [1, inf)
# Part 3: CHES decile windows (Razin et al. §5)
n_pairs = 1000  # multi-token preference pairs per preference set; in [1, inf)
n_windows = 10  # windows of each score's order (deciles); in [1, inf)
pref_set_seeds = [10, 11]  # preference sets per world (seed offsets of the pair generator)
pref_batch_size = 8  # DPO mini-batch size in Part 3; in [1, inf)
pref_epochs = 1  # DPO epochs per window (the paper: one); in [1, inf)
pref_lr = 1.0e-5  # RMSprop lr in Part 3; > 0
ches_ablation_epochs = 3  # epochs of the Part-3 ablation on the first replicate (more progress); in [0, inf)
# thresholds (written before running; never moved)
drop_threshold = 0.2  # a run displaces when π(y+) max-drop ≥ this (Table 1: drops ≥ 0.21); in [0, 1]
share_threshold = 0.8  # claims 1-2: share of runs per pair/world; in [0, 1]
rise_threshold = 0.1  # claim 2: opposite-group mass rise
rho_threshold = 0.5  # claim 3: median Spearman ρ (Thm 2) ≥ this
ches_rho_threshold = -0.7  # claim 4: upper CI end of the median ρ_CHES ≤ this
min_kept_runs = 5  # guard: the paper keeps ≥ 5 stable runs per configuration; in [1, inf)

# %%
from lossbook import plotting, replicate, repro, tracking

tracking.attach(mlflow_run_id, "dpo_displacement", globals())
plotting.setup()

import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from lossbook.alignment.preference import PreferenceConfig, similarity_scores
from lossbook.alignment.progress import (
    KINDS,
    ches_window_changes,
    curves_vs_loss,
    read_worlds,
    runs_over_worlds,
    share_vs_target,
    unembedding_geometry,
    world_stats,
    world_table,
)
from lossbook.alignment.recipes import base_models
from lossbook.alignment.world import multi_token_preference_data

t_start = time.perf_counter()
dev = repro.get_device(device)
repro.set_threads(threads)
repro.seed_everything(seed)
pairs = [tuple(p.split("/")) for p in token_pairs]
n_worlds = len(world_seeds)
k_worlds = math.ceil(2 * n_worlds / 3)  # "≥ 2 of 3 worlds", for any N
print(f"device {dev}, torch threads {torch.get_num_threads()}, profile {profile}; {n_worlds} worlds, claims need >= {k_worlds}")

# %% [markdown]
# ## Setup: the worlds, pretraining and SFT, and their unembedding geometry
# One pretrained + SFT'd GPT per world seed. The geometry row measures what the paper's argument needs: answer tokens
# of one meaning group closer (cosine of SFT unembeddings) than tokens of different groups, and synonyms closer than
# different concepts.

# %%
t0 = time.perf_counter()
models = {ws: base_models(base_recipe, ws, device=dev, gpt_overrides={"tie_weights": tie_weights}) for ws in world_seeds}
t_models = time.perf_counter() - t0
worlds = {ws: m["world"] for ws, m in models.items()}
sft0 = models[world_seeds[0]]["sft"]
print(f"vocabulary {worlds[world_seeds[0]].vocab_size} tokens; GPT {sft0.num_params(False):,} parameters, tied = {tie_weights}; "
      f"pretrain+SFT (or cache load) of {n_worlds} worlds {t_models:.1f} s")
geometry = pd.DataFrame({ws: unembedding_geometry(m["sft"].unembedding(), m["world"]) for ws, m in models.items()}).T.rename_axis("world")
display(geometry.round(3))
tracking.log_metrics({"time/models_s": t_models, "model/params": sft0.num_params(False)})

# %%
w0 = worlds[world_seeds[0]]
answers = w0.agree_ids + w0.disagree_ids
names = [w0.itos[i] for i in answers]
Wn = torch.nn.functional.normalize(sft0.unembedding().detach().cpu().double()[answers], dim=1)
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for ws, m in models.items():
    axes[0].plot(m["pretrain_history"]["step"], m["pretrain_history"]["loss"], label=f"world {ws}")
    axes[1].plot(m["sft_history"]["step"], m["sft_history"]["loss"], label=f"world {ws}")
axes[0].set(xlabel="pretraining step", ylabel="next-token CE (nats/token)", title="pretraining")
axes[1].set(xlabel="SFT step", ylabel="answer-token CE (nats)", title="SFT (single-token answers)")
axes[0].legend()
im = axes[2].imshow((Wn @ Wn.T).numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
axes[2].set_xticks(range(len(names)), names, rotation=60)
axes[2].set_yticks(range(len(names)), names)
axes[2].set_title(f"cosine of SFT unembeddings W_z (world {world_seeds[0]})")
fig.colorbar(im, ax=axes[2])
tracking.log_figure(fig, "setup_training_and_unembedding_similarity")
plt.show()

# %% [markdown]
# ## Part 1 — single-token displacement at matched progress (Razin et al. §3, Table 1)
# For each world, pair (y+, y−) and prompt seed s, the prompt is the s-th fresh statement of that world whose SFT
# answer is y+. DPO from the SFT model: full batch, one prompt, β = 0.1, RMSprop at `dpo_lr`, up to `max_steps`
# steps; the whole next-token distribution at the answer position is recorded every step, and each run is read at
# its first step t* with DPO loss ≤ `loss_target`. The drop is the paper's $\max_{t<t'\le t^*}\pi_t(y^+)-\pi_{t'}(y^+)$.

# %%
t0 = time.perf_counter()
cfg_dpo = PreferenceConfig(loss="dpo", beta=beta, lr=dpo_lr, optimizer="rmsprop", steps=max_steps)
dpo = runs_over_worlds(models, "sft", cfg_dpo, pairs, n_prompt_seeds, early_steps=early_steps, device=dev, name="dpo_sft", log_curves=True)
t_part1 = time.perf_counter() - t0
reads = read_worlds(dpo, worlds, loss_target, beta, stability_rel_tol)
table = world_table(reads, worlds, drop_threshold)
per_world_stats = world_stats(reads, worlds, drop_threshold, rise_threshold)
stats_strict = world_stats(reads, worlds, drop_threshold, rise_threshold, stability="strict")
print(f"DPO after SFT: {n_worlds * len(pairs) * n_prompt_seeds} runs of {max_steps} steps in {t_part1:.1f} s")
display(Markdown(f"**Per world and pair, read at DPO loss ≤ {loss_target}** (kept = reached the target and passed the "
                 f"substantive filter; Δ = mass change from step 0 to t*, mean over kept runs):"))
display(table.round(3))
display(Markdown("**Per-world statistics the claims read** (substantive filter; then the strict filter):"))
display(per_world_stats.round(3))
display(stats_strict.round(3))

# %% [markdown]
# ### The curves: probabilities and masses against DPO loss, and the drop against the loss target
# Top row: mean over kept runs of π(y+), π(y−) and the three other masses, against the DPO loss (read right to
# left: training lowers the loss), one line style per world; the dotted line is the loss target. Bottom row: the
# share of runs with drop ≥ 0.2 at each loss target of `ablation_targets` (the same runs, read at another target).

# %%
grid = np.linspace(0.693, min(ablation_targets), 60)
colors = dict(zip(KINDS, ("C0", "C3", "C2", "C1", "C7")))
fig, axes = plt.subplots(2, len(pairs), figsize=(5 * len(pairs), 8), squeeze=False)
shares = {}
for j, (yp, ym) in enumerate(pairs):
    for ws, ls in zip(world_seeds, ("-", "--", ":", "-.", (0, (1, 3)))):
        cur = curves_vs_loss(dpo[ws][(yp, ym)], worlds[ws], yp, ym, beta, grid)
        for kind in KINDS:
            axes[0, j].plot(grid, cur[kind], color=colors[kind], ls=ls, label=f"{kind}" if ws == world_seeds[0] else None)
        shares[(ws, yp, ym)] = share_vs_target(dpo[ws][(yp, ym)], worlds[ws], yp, ym, ablation_targets, beta, drop_threshold, stability_rel_tol)
        axes[1, j].plot(ablation_targets, shares[(ws, yp, ym)], marker="o", ls=ls, label=f"world {ws}")
    axes[0, j].axvline(loss_target, color="k", ls=":", lw=1)
    axes[0, j].invert_xaxis()
    axes[0, j].set(title=f"y+ = {yp}, y− = {ym} (lr {dpo_lr:g})", xlabel="DPO loss (nats)", ylabel="probability mass at the answer position")
    axes[0, j].legend(fontsize=7, title=f"line style = world {world_seeds}", title_fontsize=7)
    axes[1, j].axhline(share_threshold, color="k", ls=":", lw=1)
    axes[1, j].axvline(loss_target, color="k", ls=":", lw=1)
    axes[1, j].invert_xaxis()
    axes[1, j].set(xlabel="DPO-loss target (nats)", ylabel=f"share of kept runs with drop ≥ {drop_threshold}", ylim=(-0.05, 1.05))
    axes[1, j].legend(fontsize=7)
tracking.log_figure(fig, "part1_masses_vs_dpo_loss_and_share_vs_target")
plt.show()

# %% [markdown]
# ### Does the learning rate matter at matched progress?
# π(y+) and π(y−) against DPO loss (left: against steps) for the lrs of `lr_curves`, first world,
# `n_lr_curve_seeds` prompts per pair. If the curves against loss coincide, reading at a loss target removes the lr
# from the comparison; against steps they do not.

# %%
t0 = time.perf_counter()
w_first = {world_seeds[0]: models[world_seeds[0]]}
lr_runs = {lr: runs_over_worlds(w_first, "sft", PreferenceConfig(loss="dpo", beta=beta, lr=lr, optimizer="rmsprop", steps=max_steps),
                                pairs, n_lr_curve_seeds, early_steps=early_steps, device=dev)[world_seeds[0]] for lr in lr_curves}
t_lr = time.perf_counter() - t0
fig, axes = plt.subplots(2, len(pairs), figsize=(5 * len(pairs), 8), squeeze=False)
for j, (yp, ym) in enumerate(pairs):
    for lr, c in zip(lr_curves, ("C0", "C1", "C2", "C3")):
        cur = curves_vs_loss(lr_runs[lr][(yp, ym)], w0, yp, ym, beta, grid)
        axes[0, j].plot(grid, cur["y_plus"], color=c, label=f"π(y+), lr {lr:g}")
        axes[0, j].plot(grid, cur["y_minus"], color=c, ls="--", label=f"π(y−), lr {lr:g}")
        axes[1, j].plot(np.mean([r["p_plus"] for r in lr_runs[lr][(yp, ym)]], 0), color=c, label=f"π(y+), lr {lr:g}")
    axes[0, j].axvline(loss_target, color="k", ls=":", lw=1)
    axes[0, j].invert_xaxis()
    axes[0, j].set(title=f"{yp}/{ym}, world {world_seeds[0]}", xlabel="DPO loss (nats)", ylabel="probability")
    axes[1, j].set(xlabel="DPO step (full batch)", ylabel="π(y+)", xscale="log")
    axes[0, j].legend(fontsize=7)
    axes[1, j].legend(fontsize=7)
tracking.log_figure(fig, "part1_lr_curves_vs_loss_and_steps")
plt.show()
lr_table = pd.concat({f"lr {lr:g}": world_table(read_worlds({world_seeds[0]: v}, worlds, loss_target, beta, stability_rel_tol), worlds, drop_threshold)
                      .set_index("pair")[["kept", "mean t*", "share drop≥thr", "mean drop", "π(y+) 0→t*"]] for lr, v in lr_runs.items()}, names=["lr"])
print(f"lr curves: {t_lr:.1f} s")
display(lr_table.round(3))

# %% [markdown]
# ### IPO, DPO without SFT, and untied embeddings (recorded rows, Tables 2–3)
# IPO (τ = 0.01, lr = `ipo_lr`) from the SFT model, and DPO from the *pretrained* model (the paper's Table 2), both
# read at the same DPO-loss target (or at the cap, when the run does not get there: the `reached` column says which).
# The untied ablation repeats the main protocol on `untied_world_seeds` with the other setting of `tie_weights`.

# %%
t0 = time.perf_counter()
cfg_ipo = PreferenceConfig(loss="ipo", beta=ipo_tau, lr=ipo_lr, optimizer="rmsprop", steps=max_steps)
ipo = runs_over_worlds(models, "sft", cfg_ipo, pairs, n_variant_seeds, early_steps=early_steps, device=dev)
nosft = runs_over_worlds(models, "base", cfg_dpo, pairs, n_variant_seeds, early_steps=early_steps, device=dev)
untied_models = {ws: base_models(base_recipe, ws, device=dev, gpt_overrides={"tie_weights": not tie_weights}) for ws in untied_world_seeds}
untied = runs_over_worlds(untied_models, "sft", cfg_dpo, pairs, n_prompt_seeds, early_steps=early_steps, device=dev)
t_variants = time.perf_counter() - t0
reads_ipo, reads_nosft = read_worlds(ipo, worlds, loss_target, beta, stability_rel_tol), read_worlds(nosft, worlds, loss_target, beta, stability_rel_tol)
reads_untied = read_worlds(untied, {ws: m["world"] for ws, m in untied_models.items()}, loss_target, beta, stability_rel_tol)
cols = ["world", "pair", "runs", "reached", "kept", "share drop≥thr", "mean drop", "π(y+) 0→t*", "Δ same_group", "Δ opposite_group", "Δ non_answer", "top gainers (answers)"]


def reads_at_cap(res: dict) -> dict:
    """Runs read at the cap (target 0 is never reached, so every read is at the last step), for rows without progress."""
    return read_worlds(res, worlds, 0.0, beta, stability_rel_tol)


variants = pd.concat({
    f"IPO τ={ipo_tau:g}, lr {ipo_lr:g} (at target)": world_table(reads_ipo, worlds, drop_threshold)[cols],
    f"IPO τ={ipo_tau:g}, lr {ipo_lr:g} (at the cap, {max_steps} steps)": world_table(reads_at_cap(ipo), worlds, drop_threshold, "none", require_reached=False)[cols],
    "DPO without SFT (at target)": world_table(reads_nosft, worlds, drop_threshold)[cols],
    f"DPO, tie_weights={not tie_weights} (at target)": world_table(reads_untied, {ws: m["world"] for ws, m in untied_models.items()}, drop_threshold)[cols],
    f"DPO, tie_weights={tie_weights} (main, at target)": table[cols],
}, names=["setting"])
print(f"variants: {t_variants:.1f} s")
display(variants.round(3))
geo_untied = pd.DataFrame({ws: unembedding_geometry(m["sft"].unembedding(), m["world"]) for ws, m in untied_models.items()}).T
display(Markdown(f"Unembedding geometry with tie_weights={not tie_weights}:"))
display(geo_untied.round(3))

# %% [markdown]
# ### The paper's Table 1 next to ours, and where the mass goes
# Paper: mean over 10 runs after SFT, DPO (tokens with a leading "_" are the space-prefixed variants of a real
# tokenizer; our world has one token per word, so its benign tokens are the other members of the meaning group).
# Ours: per pair, mean over worlds and kept runs at the loss target, with the top gainers over the whole vocabulary
# and over the answer tokens only, and the mass change by kind (non-answer = template words, specials, concepts,
# speakers — tokens that Table 1 does not list).

# %%
paper_t1 = pd.DataFrame([
    ("OLMo-1B", "Yes/No", "0.69 (0.96→0.27)", "_Yes, _yes", "—"),
    ("OLMo-1B", "No/Never", "0.84 (0.85→0.01)", "_No", "Yes, _Yes, _yes"),
    ("Gemma-2B", "Yes/No", "0.22 (0.99→0.77)", "_Yes, _yes", "—"),
    ("Gemma-2B", "No/Never", "0.21 (0.65→0.44)", "no, _No", "yes, Yeah"),
    ("Llama-3-8B", "Yes/No", "0.96 (0.99→0.03)", "yes, _yes, _Yes", "—"),
    ("Llama-3-8B", "Sure/Yes", "0.59 (0.98→0.39)", "sure, _Sure", "Maybe, No, Never"),
], columns=["model", "y+/y−", "π(y+) drop", "benign gainers", "catastrophic gainers"])
mass_rows = table.groupby("pair", sort=False)[["mean drop", "Δ y_plus", "Δ y_minus", "Δ same_group", "Δ opposite_group", "Δ non_answer"]].mean()
mass_rows["top gainers (vocab), by world"] = table.groupby("pair", sort=False)["top gainers (vocab)"].apply(" | ".join)
mass_rows["top gainers (answers), by world"] = table.groupby("pair", sort=False)["top gainers (answers)"].apply(" | ".join)
display(Markdown("**Paper (Razin et al. 2025, Table 1)**"))
display(paper_t1)
display(Markdown(f"**Ours ({n_worlds} worlds, tiny GPT {sft0.num_params(False) / 1e3:.0f}k, read at DPO loss ≤ {loss_target})**"))
display(mass_rows.round(3))
tracking.log_dict({"paper": paper_t1.to_dict("records"), "ours": mass_rows.reset_index().to_dict("records"),
                   "per_world": table.to_dict("records")}, "tables/table1_side_by_side.json")

# %% [markdown]
# ## Part 2 — which tokens gain is predicted by the unembeddings (Thm 2)
# For every kept run, the Spearman ρ over tokens z ∉ {y+, y−} between $a_z=\langle W_z,W_{y^+}-W_{y^-}\rangle$ (SFT
# unembeddings) and $\ln\pi_{t=\text{early}}(z)-\ln\pi_0(z)$. In the unconstrained-features model ρ = 1 exactly
# (`tests/alignment/test_alignment_metrics.py` checks the affine law); in a transformer the hidden state moves along a
# non-isotropic kernel and through the final LayerNorm, so ρ can be lower. Thm 1's score against the drop is printed
# per world (no claim).

# %%
from scipy.stats import spearmanr  # noqa: E402

thm1_rho = {ws: float(spearmanr([r["thm1"] for rs in by.values() for r in rs if r["reached"] and r["substantive"]],
                                [r["drop"] for rs in by.values() for r in rs if r["reached"] and r["substantive"]])[0]) for ws, by in reads.items()}
display(pd.DataFrame({"median ρ (Thm 2)": per_world_stats["median_rho"], "Spearman(Thm 1 score, drop)": pd.Series(thm1_rho)}).round(3))
groups = w0.token_groups()
kind_of = {z: k for k, ids in groups.items() for z in ids}
fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
for ax, (yp, ym) in zip(axes[0], pairs):
    r = dpo[world_seeds[0]][(yp, ym)][0]
    keep = [z for z in range(w0.vocab_size) if z not in (w0.stoi[yp], w0.stoi[ym])]
    for k, color in zip(groups, ("C2", "C1", "C7", "C4", "C9")):
        zs = [z for z in keep if kind_of[z] == k]
        ax.scatter(r["alignment"][zs], r["early_change"][zs], s=14, color=color, label=k)
    ax.set(title=f"{yp}/{ym}, world {world_seeds[0]}, prompt 0: ρ = {r['rho']:.2f}", xlabel="⟨W_z, W_y+ − W_y−⟩ (SFT unembeddings)",
           ylabel=f"Δ ln π(z) after {early_steps} DPO steps")
    ax.legend(fontsize=7, title="token group", title_fontsize=7)
tracking.log_figure(fig, "part2_gain_vs_alignment")
plt.show()

# %% [markdown]
# ## Part 3 — CHES ranks which samples displace (Razin et al. §5, Fig. 2)
# A multi-token preference set per world and `pref_set_seeds` entry: the prompt is a persona statement, y+ a
# trait-consistent response `answer because w1..wk <eos>`, and y− one of eight variants from near-identical to
# disjoint (one synonym swapped, the answer swapped within its group, all tokens swapped for synonyms, one word more or
# less, the answer flipped to the other group, an opposite response, a random one). Scores come from the SFT model
# before DPO, each oriented so that higher = more similar. For each score we train one DPO epoch (RMSprop `pref_lr`,
# mini-batches of `pref_batch_size`) on each of 10 decile windows of its order, from the SFT model every time, and
# measure the mean change of ln π(y+|x) on that window. The paper: 512-sample windows at five percentiles, batch 32,
# one epoch.

# %%
def oriented_scores(model: torch.nn.Module, data) -> dict:
    """CHES, lnCHES and the two baselines of one preference set, each oriented so that higher = more similar."""
    s = {k: v.cpu().numpy() for k, v in similarity_scores(model, data).items()}
    return {"CHES": s["ches"], "lnCHES": s["ln_ches"], "−edit distance": -s["edit_distance"], "last-hidden inner product": s["last_hidden_ip"]}


t0 = time.perf_counter()
cfg3 = PreferenceConfig(loss="dpo", beta=beta, lr=pref_lr, optimizer="rmsprop", batch_size=pref_batch_size, epochs=pref_epochs)
part3, first_rep = {}, None
for ws, m in models.items():
    for ps in pref_set_seeds:
        data3 = multi_token_preference_data(m["world"], m["world"].multi_token_pairs(n_pairs, seed=ws + ps)).to(dev)
        sc = oriented_scores(m["sft"], data3)
        part3[(ws, ps)] = ches_window_changes(m["sft"], data3, sc, n_windows, cfg3, seed=seed, device=dev)
        first_rep = first_rep or (m["sft"], data3, sc)
ches_abl = ches_window_changes(first_rep[0], first_rep[1], first_rep[2], n_windows,
                               PreferenceConfig(loss="dpo", beta=beta, lr=pref_lr, batch_size=pref_batch_size, epochs=ches_ablation_epochs), seed=seed, device=dev)
t_part3 = time.perf_counter() - t0
score_names = list(next(iter(part3.values())))
rho_rep = pd.DataFrame({name: [v[name]["rho"] for v in part3.values()] for name in score_names},
                       index=pd.MultiIndex.from_tuples(list(part3), names=["world", "pref set"]))
rho_rep["top CHES decile Δ ln π(y+)"] = [v["CHES"]["top"] for v in part3.values()]
print(f"Part 3: {len(part3)} replicates × {len(score_names)} scores × {n_windows} windows in {t_part3:.1f} s")
display(Markdown("**Spearman(window index, mean Δ ln π(y+)) per replicate** (−1 = the more similar, the more displaced):"))
display(rho_rep.round(3))
display(Markdown(f"Ablation on the first replicate with {ches_ablation_epochs} epochs per window: "
                 + ", ".join(f"ρ_{k} {v['rho']:+.2f}" for k, v in ches_abl.items())))

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for i, name in enumerate(score_names):
    axes[0].scatter(np.full(len(rho_rep), i) + np.linspace(-0.15, 0.15, len(rho_rep)), rho_rep[name], s=18, label=name)
    axes[0].errorbar(i + 0.3, np.median(rho_rep[name]), yerr=[[np.median(rho_rep[name]) - rho_rep[name].min()], [rho_rep[name].max() - np.median(rho_rep[name])]],
                     fmt="D", color="k", capsize=3)
axes[0].axhline(ches_rho_threshold, color="k", ls=":", lw=1)
axes[0].set_xticks(range(len(score_names)), score_names, rotation=15)
axes[0].set(ylabel="Spearman(decile, mean Δ ln π(y+))", title="per replicate (dots); median and min–max (black)")
rep0 = next(iter(part3.values()))
for name in score_names:
    axes[1].plot(range(1, n_windows + 1), rep0[name]["means"], marker="o", label=name)
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set(xlabel="decile of the score (1 = least similar)", ylabel="mean Δ ln π(y+|x) after one epoch (nats)", title="first replicate")
axes[1].legend(fontsize=8)
tracking.log_figure(fig, "part3_ches_rho_per_replicate")
plt.show()
# %% [markdown]
# ## Claims
# Every claim goes through the replication protocol (`lossbook.replicate`): one statistic per world (or per
# world × preference set), a rule over them written before the run, guards read first, and for a "not reproduced" a
# diagnosis computed from the ablations above (the same runs read at the lowest loss target of `ablation_targets`,
# the strict filter, the untied ablation, the other worlds).

# %%
deep_target = min(ablation_targets)
reads_deep = read_worlds(dpo, worlds, deep_target, beta, stability_rel_tol)
stats_deep = world_stats(reads_deep, worlds, drop_threshold, rise_threshold)
stats_untied = world_stats(reads_untied, {ws: m["world"] for ws, m in untied_models.items()}, drop_threshold, rise_threshold)
display(Markdown(f"**Ablation: the same runs read at DPO loss ≤ {deep_target}** (substantive filter); then the untied ablation at {loss_target}:"))
display(stats_deep.round(3))
display(stats_untied.round(3))
geo_guard = replicate.progress_reached(float(geometry["answer_gap"].min()), 0.0, lower_is_better=False, name="geometry",
                                       what="smallest within − across cosine gap of answer unembeddings over worlds", fix="a world/recipe whose same-meaning tokens are closer")
guards1 = [
    replicate.progress_reached(float(per_world_stats["min_reached"].min()), share_threshold, lower_is_better=False, name="progress",
                               what="smallest share of a (world, pair)'s runs reaching the loss target", fix=f"raise max_steps above {max_steps}"),
    replicate.progress_reached(float(per_world_stats["min_kept"].min()), min_kept_runs, lower_is_better=False, name="enough_stable_runs",
                               what="fewest kept runs of a (world, pair)", fix="more prompt seeds"),
    geo_guard,
]
sim_pairs = [f"{yp}/{ym}" for yp, ym in pairs if w0.answer_group(yp) == w0.answer_group(ym)]


def per_world(col: str, s: pd.DataFrame = per_world_stats) -> str:
    """'w0 0.80, w1 1.00, …' for one column of a per-world statistics table."""
    return ", ".join(f"w{ws} {v:.2f}" for ws, v in s[col].items())


# Claim 1: the paper's displacement for same-group pairs
v1 = per_world_stats["min_share_similar"].to_numpy()
o1 = replicate.k_of_n_rule(v1 >= share_threshold, k_worlds)
replicate.record(
    "displacement_similar_pairs",
    statement=f"DPO on one prompt lowers π(y+) by >= {drop_threshold} in >= {share_threshold:.0%} of the kept runs of every same-group pair ({', '.join(sim_pairs)}), at DPO loss <= {loss_target}, in >= {k_worlds} of {n_worlds} worlds",
    paper="Razin et al. 2025, §3 Table 1", paper_value="drops 0.21–0.96 in all runs (No/Never 0.84, 0.21; Sure/Yes 0.59)",
    values=v1, outcome=o1, guards=guards1,
    measured=f"{int((v1 >= share_threshold).sum())} of {n_worlds} worlds; smallest same-group share per world: {per_world('min_share_similar')}",
    diagnosis=replicate.Diagnosis(
        f"Read deeper on the same runs (DPO loss <= {deep_target}) the per-world smallest share is {per_world('min_share_similar', stats_deep)}; "
        f"under the strict filter at {loss_target}: {per_world('min_share_similar', stats_strict)}; answer-cosine gap per world "
        + ", ".join(f"w{ws} {g:.2f}" for ws, g in geometry["answer_gap"].items()) + ". A world that fails at both targets fails at our scale, not for lack of progress.",
        f"the same runs read at loss targets {ablation_targets} (share-vs-target figure), the strict filter, worlds {world_seeds}"),
    details={"per_world": per_world_stats.reset_index().to_dict("records"), "strict": stats_strict["min_share_similar"].tolist(),
             "deep_target": stats_deep["min_share_similar"].tolist(), "table": table.to_dict("records")},
)
v1s = stats_strict["min_share_similar"].to_numpy()
replicate.record(
    "displacement_similar_pairs_strict_filter", statement="claim displacement_similar_pairs with the paper's strict filter (the loss never rose, exact <=)",
    paper="Razin et al. 2025, §3", values=v1s, outcome=replicate.k_of_n_rule(v1s >= share_threshold, k_worlds), kind="exploratory",
    measured=f"strict filter kept {int(table['strict kept'].sum())} of {int(table['runs'].sum())} runs (substantive: {int(table['substantive kept'].sum())}); smallest share per world: {per_world('min_share_similar', stats_strict)}",
)

# Claim 2: catastrophic (opposite-group) mass rises in the displaced same-group runs
v2 = per_world_stats["share_catastrophic"].to_numpy()
o2 = replicate.k_of_n_rule(v2 >= share_threshold, k_worlds)
replicate.record(
    "catastrophic_when_similar",
    statement=f"In the displaced runs of same-group pairs the opposite-group mass rises by >= {rise_threshold} (in >= {share_threshold:.0%} of them), in >= {k_worlds} of {n_worlds} worlds",
    paper="Razin et al. 2025, §3 Table 1", paper_value="No/Never: Yes, _Yes, _yes gain (OLMo-1B, 0.85→0.01); Sure/Yes: Maybe, No, Never gain (Llama-3-8B)",
    values=v2, outcome=o2, guards=guards1,
    measured=f"share of displaced same-group runs with opposite-group rise >= {rise_threshold}: {per_world('share_catastrophic')} (displaced runs: {per_world('n_displaced_similar')})",
    diagnosis=replicate.Diagnosis(
        f"Where the lost mass goes in same-group pairs (mean Δ at L <= {loss_target}): "
        + "; ".join(f"{p}: same group {mass_rows.loc[p, 'Δ same_group']:+.3f}, opposite {mass_rows.loc[p, 'Δ opposite_group']:+.3f}, non-answer {mass_rows.loc[p, 'Δ non_answer']:+.3f}" for p in sim_pairs)
        + f". Read deeper (L <= {deep_target}) the share is {per_world('share_catastrophic', stats_deep)}; with tie_weights={not tie_weights} "
        + f"(worlds {untied_world_seeds}) {per_world('share_catastrophic', stats_untied) if len(stats_untied) else 'not run'}.",
        f"the same runs at loss target {deep_target}; untied embeddings on worlds {untied_world_seeds}; the mass-by-kind table"),
    details={"per_world": per_world_stats["share_catastrophic"].tolist(), "deep": stats_deep["share_catastrophic"].tolist(), "mass": mass_rows.reset_index().to_dict("records")},
)

# Claim 3: Thm 2's alignment orders the early gains
v3 = np.nan_to_num(per_world_stats["median_rho"].to_numpy(), nan=-1.0)  # a world without kept runs counts as ρ = −1 (and fails a guard)
o3 = replicate.median_ci_rule(v3, rho_threshold, "above")
rho_pairs = table.pivot(index="world", columns="pair", values="median ρ (Thm 2)")
replicate.record(
    "thm2_gain_ordering",
    statement="Spearman ρ between <W_z, W_y+ − W_y−> and the early change of ln π(z) over z ∉ {y+, y−}: per-world median over kept runs, CI of the median over worlds above the threshold",
    paper="Razin et al. 2025, Thm 2", paper_value="exact (ρ = 1) in the unconstrained-features model under gradient flow",
    values=v3, outcome=o3, guards=guards1[:2],
    measured=f"median ρ {o3.statistic:.2f} [{o3.ci.low:.2f}, {o3.ci.high:.2f}] over {o3.n} worlds; per world {per_world('median_rho')}",
    diagnosis=replicate.Diagnosis(
        "Per (world, pair) median ρ: " + "; ".join(f"w{ws}: " + ", ".join(f"{p} {v:.2f}" for p, v in row.items()) for ws, row in rho_pairs.iterrows())
        + f". IPO runs: median ρ {np.median([r['rho'] for by in reads_ipo.values() for rs in by.values() for r in rs]):.2f}; no-SFT runs: "
        + f"{np.median([r['rho'] for by in reads_nosft.values() for rs in by.values() for r in rs]):.2f}; untied: {per_world('median_rho', stats_untied) if len(stats_untied) else 'not run'}. "
        + "The theorem's h moves freely; ours moves through a LayerNorm'd network, so ρ < 1 is expected — the question is by how much.",
        f"IPO and no-SFT runs, untied embeddings (worlds {untied_world_seeds}), per-pair ρ"),
    details={"rho_by_world_pair": rho_pairs.reset_index().to_dict("records"), "thm1_vs_drop": thm1_rho},
)

# Claim 4: CHES deciles rank displacement, better than the baselines
rc = rho_rep["CHES"].to_numpy()
top_neg = rho_rep["top CHES decile Δ ln π(y+)"].to_numpy() < 0
gap = rc - rho_rep[["−edit distance", "last-hidden inner product"]].max(axis=1).to_numpy()
o4 = replicate.all_of(replicate.median_ci_rule(rc, ches_rho_threshold, "below"), replicate.k_of_n_rule(top_neg, math.ceil(share_threshold * len(rc))),
                      replicate.mean_ci_rule(gap, 0.0, "below"))
replicate.record(
    "ches_ranks_displacement",
    statement=f"Over {len(rc)} replicates (worlds × preference sets), {n_windows} decile windows: the CI of the median ρ_CHES has its upper end <= {ches_rho_threshold}, the top CHES decile lowers ln π(y+) in >= {share_threshold:.0%} of replicates, and ρ_CHES − max(ρ baselines) has a CI below 0",
    paper="Razin et al. 2025, §5 Fig. 2", paper_value="CHES percentile 'perfectly matches' the displacement; edit distance and last-hidden inner product not predictive",
    values=rc, outcome=o4,
    measured=f"median ρ_CHES {np.median(rc):+.2f} [{o4.ci.low:+.2f}, {o4.ci.high:+.2f}]; top decile negative in {int(top_neg.sum())}/{len(rc)}; "
             f"ρ_CHES − max baseline mean {gap.mean():+.2f}; median ρ −edit {np.median(rho_rep['−edit distance']):+.2f}, last-hidden {np.median(rho_rep['last-hidden inner product']):+.2f}, lnCHES {np.median(rho_rep['lnCHES']):+.2f}",
    diagnosis=replicate.Diagnosis(
        f"Per replicate ρ_CHES {', '.join(f'{x:+.2f}' for x in rc)}; top-decile change {', '.join(f'{x:+.2f}' for x in rho_rep['top CHES decile Δ ln π(y+)'])}. "
        f"With {ches_ablation_epochs} epochs per window (first replicate) ρ_CHES {ches_abl['CHES']['rho']:+.2f}, top decile {ches_abl['CHES']['top']:+.2f}, "
        f"ρ −edit {ches_abl['−edit distance']['rho']:+.2f}, last-hidden {ches_abl['last-hidden inner product']['rho']:+.2f}.",
        f"a second preference set per world, {n_worlds} worlds, {ches_ablation_epochs}-epoch windows on the first replicate"),
    details={"rho_per_replicate": rho_rep.reset_index().to_dict("records"), "ablation_epochs": {k: v["rho"] for k, v in ches_abl.items()}},
)

# Exploratory rows: the book's similarity hypothesis, where the mass goes, IPO, no SFT, untied
v5 = (per_world_stats["drop_similar"] - per_world_stats["drop_dissimilar"]).to_numpy()
v5 = np.nan_to_num(v5, nan=0.0)
replicate.record(
    "similar_displace_more", statement="Same-group pairs displace more than the dissimilar pair (mean drop at the loss target, per world); the book's hypothesis from Thm 1",
    paper="Razin et al. 2025, Thm 1 (Table 1 has Yes/No at 0.62 vs 0.55 for same-group pairs)", values=v5, outcome=replicate.mean_ci_rule(v5, 0.0, "above"), kind="exploratory",
    measured=f"drop similar − dissimilar per world: {', '.join(f'{x:+.2f}' for x in v5)}; Spearman(Thm 1 score, drop) per world: {', '.join(f'w{ws} {r:+.2f}' for ws, r in thm1_rho.items())}",
)
v6 = table["Δ non_answer"].to_numpy(dtype=float)
v6 = np.nan_to_num(v6, nan=0.0)
replicate.record(
    "where_mass_goes", statement="Mass change by kind at the loss target per (world, pair); the statistic is the non-answer share (tokens Table 1 does not list)",
    paper="Razin et al. 2025, Table 1", values=v6, outcome=replicate.mean_ci_rule(v6, 0.0, "above"), kind="exploratory",
    measured="; ".join(f"{p}: y+ {r['Δ y_plus']:+.2f}, y− {r['Δ y_minus']:+.2f}, same {r['Δ same_group']:+.2f}, opposite {r['Δ opposite_group']:+.2f}, non-answer {r['Δ non_answer']:+.2f}" for p, r in mass_rows.iterrows()),
    details={"per_world": table[["world", "pair", *[f"Δ {k}" for k in KINDS]]].to_dict("records")},
)
for rid, rd, paper_row in (("ipo_displacement", reads_ipo, "Table 3: drops 0.01–0.87"), ("no_sft_displacement", reads_nosft, "Table 2: drops 0.10–0.99")):
    tb = world_table(rd, worlds, drop_threshold)
    vv = np.nan_to_num(tb.groupby("world")["mean drop"].mean().to_numpy(), nan=0.0)
    replicate.record(
        rid, statement=f"{rid.split('_')[0].upper() if rid.startswith('ipo') else 'DPO from the pretrained model'}: mean drop over pairs at DPO loss <= {loss_target}, per world",
        paper=f"Razin et al. 2025, {paper_row}", values=vv, outcome=replicate.mean_ci_rule(vv, drop_threshold, "above"), kind="exploratory",
        measured=f"runs reaching the target {int(tb['reached'].sum())}/{int(tb['runs'].sum())}; mean drop per world {', '.join(f'{x:.2f}' for x in vv)}",
        details={"table": tb.to_dict("records")},
    )
v7 = geometry["answer_gap"].to_numpy()
replicate.record(
    "unembedding_geometry", statement="In every world same-meaning answer tokens (and synonyms) are closer in unembedding space (cosine) than different-meaning ones",
    paper="the premise of Razin et al.'s Thm 1–2 and Table 1's benign/catastrophic reading", values=v7,
    outcome=replicate.k_of_n_rule((geometry["answer_gap"] > 0).to_numpy() & (geometry["synonym_gap"] > 0).to_numpy(), n_worlds), kind="demonstration",
    measured=f"answer gap per world {per_world('answer_gap', geometry)}; synonym gap {per_world('synonym_gap', geometry)}",
    details={"geometry": geometry.reset_index().to_dict("records"), "untied": geo_untied.reset_index().to_dict("records")},
)

# %% [markdown]
# ## Closing note
# The numbers below are computed in this run (nothing here is typed in by hand).

# %%
from lossbook import claims  # noqa: E402

wall = time.perf_counter() - t_start
tracking.log_metrics({"time/wall_s": wall, "time/part1_s": t_part1, "time/part3_s": t_part3, "time/variants_s": t_variants, "time/lr_curves_s": t_lr})
lines = ["| world | y+/y− | kept (strict / substantive) of runs | share drop ≥ " + f"{drop_threshold:g} | mean drop | π(y+) 0→t* | mean t* | Δ same | Δ opposite | Δ non-answer |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for _, r in table.iterrows():
    lines.append(f"| {r['world']} | {r['pair']} | {r['strict kept']} / {r['substantive kept']} of {r['runs']} | {r.get('share drop≥thr', float('nan')):.2f} | "
                 f"{r.get('mean drop', float('nan')):.2f} | {r.get('π(y+) 0→t*', '—')} | {r.get('mean t*', float('nan')):.0f} | {r.get('Δ same_group', float('nan')):+.3f} | "
                 f"{r.get('Δ opposite_group', float('nan')):+.3f} | {r.get('Δ non_answer', float('nan')):+.3f} |")
verdicts = "\n".join(f"- **{c['name']}**: {c['verdict']} — measured {c['measured']} (rule: {c['threshold']})" for c in claims.recorded())
display(Markdown(
    f"### Per world and pair, DPO after SFT, read at DPO loss ≤ {loss_target} (lr {dpo_lr:g}, cap {max_steps} steps)\n" + "\n".join(lines)
    + f"\n\n### Verdicts\n{verdicts}\n\n"
    + f"**Wall time** {wall:.0f} s (pretrain+SFT or cache load {t_models:.0f} s, Part 1 {t_part1:.0f} s, lr curves {t_lr:.0f} s, variants {t_variants:.0f} s, "
    + f"Part 3 {t_part3:.0f} s) on {dev} with {torch.get_num_threads()} threads."
))

# %% [markdown]
# ## Discussion: what differs from the paper (built from this run's numbers)

# %%
lr_t = lr_table.reset_index()
display(Markdown("\n".join([
    f"- **Scale and data.** A {sft0.num_params(False) / 1e3:.0f}k-parameter GPT trained from scratch on a synthetic world, {n_worlds} worlds, "
    f"not OLMo-1B / Gemma-2B / Llama-3-8B on Persona and UltraFeedback. Same-meaning answer tokens are closer than different-meaning ones in "
    f"{int((geometry['answer_gap'] > 0).sum())} of {n_worlds} worlds (cosine gap {geometry['answer_gap'].min():.2f}–{geometry['answer_gap'].max():.2f}).",
    f"- **Progress, not steps.** Runs were read at DPO loss ≤ {loss_target}, reached after {table['mean t*'].min():.0f}–{table['mean t*'].max():.0f} steps "
    f"on average per (world, pair) at lr {dpo_lr:g} (the paper: 100 steps at 1e-7 on 1–8B models). Across lrs {lr_curves} (world {world_seeds[0]}) the mean drop at the target "
    f"ranges over " + "; ".join(f"{p}: {g['mean drop'].min():.2f}–{g['mean drop'].max():.2f}" for p, g in lr_t.groupby("pair", sort=False)) + ", while t* ranges "
    + "; ".join(f"{p}: {g['mean t*'].min():.0f}–{g['mean t*'].max():.0f}" for p, g in lr_t.groupby("pair", sort=False)) + " steps.",
    f"- **Stability filters.** The strict filter kept {int(table['strict kept'].sum())} of {int(table['runs'].sum())} runs, the substantive one "
    f"{int(table['substantive kept'].sum())}; the claims use the substantive one (their strict-filter version is the exploratory row).",
    "- **Where the mass goes.** In the same-group pairs the mass π(y+) loses goes to " + "; ".join(
        f"{p}: same group {mass_rows.loc[p, 'Δ same_group']:+.2f}, opposite {mass_rows.loc[p, 'Δ opposite_group']:+.2f}, non-answer {mass_rows.loc[p, 'Δ non_answer']:+.2f}" for p in sim_pairs)
    + f". Table 1 lists only answer-like tokens as gainers; the answer-only gainers are in the table above. With tie_weights={not tie_weights} "
    + f"(worlds {untied_world_seeds}) the mean non-answer change over pairs is "
    + (f"{world_table(reads_untied, {ws: m['world'] for ws, m in untied_models.items()}, drop_threshold)['Δ non_answer'].mean():+.3f}" if untied_world_seeds else "not measured")
    + f", against {table['Δ non_answer'].mean():+.3f} in the main runs.",
    f"- **IPO and no SFT.** IPO at lr {ipo_lr:g} reached the loss target in {int(world_table(reads_ipo, worlds, drop_threshold)['reached'].sum())} of "
    f"{n_worlds * len(pairs) * n_variant_seeds} runs within {max_steps} steps (RMSprop normalises the gradient scale, so with the paper's lr ratio an IPO step moves the weights ~10× less than a DPO step); "
    f"DPO from the pretrained model starts with π(y+) spread over its group and reached it in {int(world_table(reads_nosft, worlds, drop_threshold)['reached'].sum())}.",
    "- **SFT labels and prompts** depart from the paper as stated at the top (speaker-favourite labels, fresh prompts).",
    f"- **CHES.** {n_windows} decile windows of {n_pairs // n_windows} pairs, one epoch at lr {pref_lr:g}, batch {pref_batch_size} (the paper: 512-sample windows at 5 "
    f"percentiles, batch 32). Median ρ_CHES {np.median(rc):+.2f}, −edit {np.median(rho_rep['−edit distance']):+.2f}, last-hidden "
    f"{np.median(rho_rep['last-hidden inner product']):+.2f}. Edit distance is a sharp competitor in a world whose pairs are built by token edits.",
])))
