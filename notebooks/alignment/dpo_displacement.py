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
# tokens of the opposite meaning. Their findings, which this notebook reproduces at CPU scale:
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
# each and a latent trait (sign of the concepts' polarities) that decides the answer group; a pretraining corpus in
# which the answer token inside a group and the synonyms are interchangeable in context (so the unembeddings acquire
# real similarity structure); SFT on single-token answers where the *speaker* picks the preferred token inside the
# group (so after SFT one token holds most of the mass, as in the paper). A tiny GPT (`lossbook.models.gpt`) is
# pretrained from scratch and SFT'd (both cached by config hash under `runs/cache/`), then we run the paper's
# protocols on it. The world's sizes, the GPT's shape and the pretraining/SFT budgets are one named recipe
# (`base_recipe`, defined in `lossbook.alignment.recipes`) that all alignment notebooks share, so they share the
# cached checkpoints too. The single-token runs and their summary table are `lossbook.alignment.displacement`.
#
# **Position convention for h (fixed for the whole book).** $h_{x,y_{<k}}$ is the final-LayerNorm output (the vector
# that multiplies the unembedding) at the position that *predicts* $y_k$: the last prompt token for $k=1$, token
# $y_{k-1}$ for $k>1$ — exactly $|y|$ positions, as in the paper's **Definition 2**. (The paper's batch script keeps
# `hidden_states[-1][0][query_len-1:]`, one extra position after the last response token.) Our responses end in
# `<eos>`, which counts as a response token.
#
# **Claims, with thresholds fixed before running** (the three of the book's issue; checked in the Claims section):
# 1. displacement occurs (π(y+) max-drop ≥ 0.2) in a majority (> 50%) of stable runs for at least one similar-token
#    pair (y+ and y− in the same meaning group: No/Never, Sure/Yes), **and** the mean max-drop over the similar pairs'
#    stable runs is larger than over the dissimilar pair's (Yes/No);
# 2. Spearman ρ ≥ 0.5 between $\langle W_z,W_{y^+}-W_{y^-}\rangle$ (W of the SFT model) and the early change of
#    $\ln\pi(z)$ (after `early_steps` DPO steps) over all tokens $z\notin\{y^+,y^-\}$ — the **median** ρ over all
#    stable DPO-after-SFT runs;
# 3. CHES-percentile subsets give a monotone change of the mean preferred log-prob (Spearman between percentile and
#    change ≤ −0.9), the top-percentile subset's change is < 0, and CHES predicts better than both baselines: its
#    Spearman is strictly more negative than that of −(normalised edit distance) and of the last-hidden inner
#    product, each oriented so that "higher = more similar" and each evaluated on its own percentile subsets.
#
# Note, before running: in the paper's own Table 1 the mean drop of the dissimilar pair Yes/No (0.69, 0.22, 0.96:
# mean 0.62) is *larger* than that of the same-group pairs (No/Never 0.84, 0.21; Sure/Yes 0.59: mean 0.55), so the
# second half of claim 1 is the book's hypothesis (similar unembeddings → more displacement, Thm 1), not a number
# the paper reports.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seed = 0  # world, model init and data seed
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default
# the synthetic world, the tiny GPT, pretraining and SFT (AdamW; cached by config hash, shared by the alignment notebooks)
base_recipe = "persona-tiny"  # a name in lossbook.alignment.recipes.BASE_RECIPES: persona-smoke | persona-tiny | persona-small
# Part 1: single-token DPO on one prompt (Razin et al. §3)
token_pairs = ["No/Never", "Sure/Yes", "Yes/No"]  # y+/y-; the paper's three pairs
n_prompt_seeds = 10  # the seed picks the prompt
dpo_steps = 100  # full-batch DPO (and IPO) steps per run
beta = 0.1  # DPO β
dpo_lr = 1.0e-5  # RMSprop; fixed by a stability-only rule, see Part 1
ipo_tau = 0.01  # the paper's τ
ipo_lr = 1.0e-6  # the paper's IPO/DPO lr ratio (1e-8 / 1e-7)
lr_sensitivity = [1.0e-6, 1.0e-4]  # DPO repeated at these lrs (no claim)
n_lr_sensitivity_seeds = 5  # prompt seeds per pair at each lr_sensitivity lr
early_steps = 5  # "early change" of ln π(z) for the Thm 2 check
# Part 3: CHES percentile subsets (Razin et al. §5)
n_pairs = 1000  # multi-token preference pairs scored by CHES and the baselines
subset_size = 128  # pairs per percentile window
percentiles = [0, 25, 50, 75, 100]  # window centres (percentile of the score)
pref_batch_size = 8  # DPO mini-batch size in Part 3
pref_epochs = 1  # DPO epochs per window
pref_lr = 1.0e-5  # RMSprop lr in Part 3
part3_seeds = [0, 1, 2]  # the seed shuffles the mini-batches
# thresholds (written before running; never moved)
drop_threshold = 0.2  # claim 1: a run displaces when π(y+) max-drop >= this
rho_threshold = 0.5  # claim 2: median Spearman ρ (Thm 2) >= this
ches_rho_threshold = -0.9  # claim 3: Spearman(percentile, mean change) <= this

# %%
from lossbook import claims, plotting, repro, tracking

tracking.attach(mlflow_run_id, "dpo_displacement", globals())
plotting.setup()

import time
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from scipy.stats import spearmanr

from lossbook.alignment.displacement import displacement_runs, displacement_table, meaning_groups
from lossbook.alignment.metrics import percentile_windows
from lossbook.alignment.preference import PreferenceConfig, clone_policy, similarity_scores, train_preference
from lossbook.alignment.recipes import base_models
from lossbook.alignment.world import multi_token_preference_data

t_start = time.perf_counter()
dev = repro.get_device(device)
repro.set_threads(threads)
repro.seed_everything(seed)
pairs = [tuple(p.split("/")) for p in token_pairs]
print(f"device {dev}, torch threads {torch.get_num_threads()}, profile {profile}")

# %% [markdown]
# ## Setup: the world, pretraining and SFT

# %%
t0 = time.perf_counter()
models = base_models(base_recipe, seed, device=dev)  # the recipe's world and its pretrained and SFT'd GPT
t_models = time.perf_counter() - t0
world, base, sft = models["world"], models["base"].to(dev), models["sft"].to(dev)
print(f"vocabulary {world.vocab_size} tokens; GPT {sft.num_params(False):,} parameters ({sft.num_params():,} non-embedding); "
      f"pretrain+SFT (or cache load) {t_models:.1f} s")
print("example document:", " ".join(world.decode(world.pretrain_corpus(1, seed=123)[0])))
tracking.log_metrics({"time/models_s": t_models, "model/params": sft.num_params(False)})

# %%
answers = world.agree_ids + world.disagree_ids
names = [world.itos[i] for i in answers]
W_sft = sft.unembedding().detach().cpu().double()
Wn = torch.nn.functional.normalize(W_sft[answers], dim=1)
cos = (Wn @ Wn.T).numpy()
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
ph, sh = models["pretrain_history"], models["sft_history"]
axes[0].plot(ph["step"], ph["loss"])
axes[0].set(xlabel="pretraining step", ylabel="next-token CE (nats/token)", title="pretraining")
axes[1].plot(sh["step"], sh["loss"])
axes[1].set(xlabel="SFT step", ylabel="answer-token CE (nats)", title="SFT (single-token answers)")
im = axes[2].imshow(cos, cmap="RdBu_r", vmin=-1, vmax=1)
axes[2].set_xticks(range(len(names)), names, rotation=60)
axes[2].set_yticks(range(len(names)), names)
axes[2].set_title("cosine of SFT unembeddings W_z")
fig.colorbar(im, ax=axes[2])
tracking.log_figure(fig, "setup_training_and_unembedding_similarity")
plt.show()
na = len(world.agree_ids)
within = np.concatenate([cos[:na, :na][np.triu_indices(na, 1)], cos[na:, na:][np.triu_indices(len(answers) - na, 1)]])
across = cos[:na, na:].ravel()
print(f"mean cosine of answer unembeddings: within a meaning group {within.mean():.2f}, across groups {across.mean():.2f}")
for yp, ym in pairs:
    print(f"  cos(W_{yp}, W_{ym}) = {cos[names.index(yp), names.index(ym)]:.2f}")

# %% [markdown]
# ## Part 1 — single-token displacement (Razin et al. §3, Table 1)
#
# For each pair (y+, y−) and seed s, the prompt is the s-th fresh persona statement whose SFT answer is y+ (so π(y+)
# starts high, as in the paper). DPO: 100 full-batch steps on that one prompt, β = 0.1, RMSprop. Runs whose loss ever
# rose are dropped ("stable" runs are kept). We record the whole next-token distribution at the answer position at
# every step.
#
# **Learning rate.** The paper's lr (1e-7) is for 1–8B models; a 100k-parameter model needs a different one. It was
# fixed *before* these runs by a stability-only rule on a pilot (10 prompts per pair, lr ∈ {1e-6, 1e-5, 1e-4}, on a
# model from the same recipe with a longer context window): the
# largest power of ten at which no pilot run's loss rose. At 1e-4 the loss rose in 27 of 30 pilot runs; at 1e-5 in
# none. The pilot also showed drops; they did not enter the choice, and the lr-sensitivity table below repeats the
# experiment at 1e-6 and 1e-4 so the reader can see how much depends on it. IPO uses the paper's IPO/DPO lr ratio
# (1/10) and τ = 0.01; "without SFT" starts DPO from the pretrained model on the same prompts.

# %%
def run_setting(name: str, ref_model: torch.nn.Module, cfg: PreferenceConfig, n_seeds: int) -> dict:
    """Part 1's protocol for every token pair and `n_seeds` prompts (curves of seed 0 logged under `name`)."""
    return displacement_runs(world, ref_model, cfg, pairs, n_seeds, seed=seed, early_steps=early_steps, device=dev, name=name)


def summarize(results: dict) -> pd.DataFrame:
    """One row per token pair over its stable runs (Table 1's columns and ours)."""
    return displacement_table(world, results, drop_threshold)


t0 = time.perf_counter()
cfg_dpo = PreferenceConfig(loss="dpo", beta=beta, lr=dpo_lr, optimizer="rmsprop", steps=dpo_steps)
dpo = run_setting("dpo_sft", sft, cfg_dpo, n_prompt_seeds)
t_part1 = time.perf_counter() - t0
table_dpo = summarize(dpo)
print(f"DPO after SFT: {len(pairs) * n_prompt_seeds} runs in {t_part1:.1f} s")
display(table_dpo)

# %% [markdown]
# The trajectories: mean over stable runs (shaded: min–max over runs) of π(y+), π(y−) and the benign and
# catastrophic masses, and the three biggest gainers of the first stable run (black).

# %%
def traj(runs: list, key: str | int) -> np.ndarray:
    """[runs, steps+1] probability trajectory of a named mass or of token id `key`."""
    return np.stack([r[key] if isinstance(key, str) else r["token_probs"][:, key] for r in runs])



fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), sharey=True)
for ax, (yp, ym) in zip(np.atleast_1d(axes), pairs):
    st = [r for r in dpo[(yp, ym)] if r["stable"]] or dpo[(yp, ym)]
    for key, label, color in (("p_plus", f"π({yp}) = y+", "C0"), ("p_minus", f"π({ym}) = y−", "C3"),
                              ("benign", "benign mass (same group)", "C2"), ("catastrophic", "catastrophic mass (other group)", "C1")):
        T = traj(st, key)
        x = np.arange(T.shape[1])
        ax.plot(x, T.mean(0), color=color, label=label, lw=2)
        ax.fill_between(x, T.min(0), T.max(0), color=color, alpha=0.15)
    r0 = st[0]
    for z, ls in zip(r0["top"], (":", "-.", "--")):
        ax.plot(r0["token_probs"][:, z], color="k", ls=ls, lw=1, label=f"π({world.itos[z]}) (top gainer, run 1)")
    ax.set(title=f"DPO: y+ = {yp}, y− = {ym}", xlabel="DPO step (full batch, one prompt)", ylabel="probability at the answer position")
    ax.legend(fontsize=7)
tracking.log_figure(fig, "part1_probability_trajectories")
plt.show()

# %% [markdown]
# ### IPO, DPO without SFT, and the learning rate
# The same protocol with IPO (τ = 0.01, length-averaged log-ratios, lr = dpo_lr/10), with DPO starting from the
# *pretrained* model (the paper's Table 2 setting), and with DPO at other learning rates. None of these carries a
# claim; they show how much the Part-1 numbers depend on the choices.

# %%
t0 = time.perf_counter()
ipo = run_setting("ipo_sft", sft, PreferenceConfig(loss="ipo", beta=ipo_tau, lr=ipo_lr, optimizer="rmsprop", steps=dpo_steps), n_prompt_seeds)
nosft = run_setting("dpo_base", base, cfg_dpo, n_prompt_seeds)
sens = {lr: run_setting(f"dpo_sft_lr{lr:g}", sft, PreferenceConfig(loss="dpo", beta=beta, lr=lr, optimizer="rmsprop", steps=dpo_steps), n_lr_sensitivity_seeds)
        for lr in lr_sensitivity}
t_variants = time.perf_counter() - t0
cols = ["pair", "stable runs", "frac drop>=thr", "mean drop", "π(y+) from→to (mean)", "top gainers (count)"]
variants = pd.concat(
    [summarize(ipo)[cols].assign(setting=f"IPO τ={ipo_tau:g}, lr {ipo_lr:g}"), summarize(nosft)[cols].assign(setting="DPO without SFT")]
    + [summarize(v)[cols].assign(setting=f"DPO lr {lr:g} ({n_lr_sensitivity_seeds} seeds)") for lr, v in sens.items()]
    + [table_dpo[cols].assign(setting=f"DPO lr {dpo_lr:g} (main)")]
)
print(f"variants: {t_variants:.1f} s")
display(variants.set_index(["setting", "pair"]))

# %% [markdown]
# ### The paper's Table 1 next to ours
# Paper: mean over 10 runs after SFT, DPO (tokens with a leading "_" are the space-prefixed variants of a real
# tokenizer; our world has one token per word, so its benign tokens are the other members of the meaning group).

# %%
paper_t1 = pd.DataFrame([
    ("OLMo-1B", "Yes/No", "0.69 (0.96→0.27)", "_Yes, _yes", "—"),
    ("OLMo-1B", "No/Never", "0.84 (0.85→0.01)", "_No", "Yes, _Yes, _yes"),
    ("Gemma-2B", "Yes/No", "0.22 (0.99→0.77)", "_Yes, _yes", "—"),
    ("Gemma-2B", "No/Never", "0.21 (0.65→0.44)", "no, _No", "yes, Yeah"),
    ("Llama-3-8B", "Yes/No", "0.96 (0.99→0.03)", "yes, _yes, _Yes", "—"),
    ("Llama-3-8B", "Sure/Yes", "0.59 (0.98→0.39)", "sure, _Sure", "Maybe, No, Never"),
], columns=["model", "y+/y−", "π(y+) drop", "benign gainers", "catastrophic gainers"])
ours = []
for (yp, ym), runs in dpo.items():
    st = [r for r in runs if r["stable"]]
    same, opp = meaning_groups(world, yp)
    gain = Counter(z for r in st for z in r["top"])
    ben = [world.itos[z] for z, _ in gain.most_common() if z in same]
    cat = [world.itos[z] for z, _ in gain.most_common() if z in opp]
    oth = [world.itos[z] for z, _ in gain.most_common() if z not in same and z not in opp]
    fr, to = np.mean([r["drop_from_to"][0] for r in st]), np.mean([r["drop_from_to"][1] for r in st])
    ours.append((f"tiny GPT ({sft.num_params(False) / 1e3:.0f}k)", f"{yp}/{ym}", f"{np.mean([r['max_drop'] for r in st]):.2f} ({fr:.2f}→{to:.2f})",
                 ", ".join(ben) or "—", ", ".join(cat) or "—", ", ".join(oth) or "—"))
ours_t1 = pd.DataFrame(ours, columns=["model", "y+/y−", "π(y+) drop", "benign gainers", "catastrophic gainers", "other top-3 gainers"])
display(Markdown("**Paper (Razin et al. 2025, Table 1)**"))
display(paper_t1)
display(Markdown("**Ours (top-3 gainers over stable runs, most frequent first)**"))
display(ours_t1)
tracking.log_dict({"paper": paper_t1.to_dict("records"), "ours": ours_t1.to_dict("records")}, "tables/table1_side_by_side.json")

# %% [markdown]
# ## Part 2 — which tokens gain is predicted by the unembeddings (Thm 2)
# For every stable DPO run we correlate, over all tokens z ∉ {y+, y−}, the alignment
# $a_z=\langle W_z,W_{y^+}-W_{y^-}\rangle$ (unembeddings of the SFT model) with the early change
# $\ln\pi_{t=\text{early}}(z)-\ln\pi_0(z)$. In the unconstrained-features model this correlation is exactly 1
# (`tests/alignment/test_alignment_metrics.py` checks the affine law); in a transformer the hidden state moves along
# $K\,(W_{y^+}-W_{y^-})$ with a non-isotropic kernel K (and through the final LayerNorm), so it can be lower. We also
# show ρ without the prompt's own tokens (their tied embedding rows get gradient through the input) and Thm 1's
# score per pair.

# %%
rho_rows = []
for setting, res in (("DPO after SFT", dpo), ("IPO after SFT", ipo), ("DPO without SFT", nosft)):
    for (yp, ym), runs in res.items():
        st = [r for r in runs if r["stable"]]
        if not st:
            continue
        rho_rows.append({"setting": setting, "pair": f"{yp}/{ym}", "stable runs": len(st),
                         "median ρ": np.median([r["rho"] for r in st]), "min ρ": np.min([r["rho"] for r in st]),
                         "max ρ": np.max([r["rho"] for r in st]),
                         "median ρ (no prompt tokens)": np.median([r["rho_no_prompt"] for r in st]),
                         "Thm 1 score": np.mean([r["thm1"] for r in st]), "mean drop": np.mean([r["max_drop"] for r in st])})
rho_table = pd.DataFrame(rho_rows)
display(rho_table.round(3))
st_all = [r for runs in dpo.values() for r in runs if r["stable"]]
rho_thm1 = float(spearmanr([r["thm1"] for r in st_all], [r["max_drop"] for r in st_all])[0]) if len(st_all) > 2 else float("nan")
print(f"Thm 1: Spearman(Thm 1 score at init, max-drop of π(y+)) over {len(st_all)} stable DPO runs = {rho_thm1:+.2f}")
tracking.log_metrics({"part2/rho_thm1_score_vs_drop": rho_thm1})

groups = world.token_groups()
kind_of = {z: k for k, ids in groups.items() for z in ids}
fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4))
for ax, (yp, ym) in zip(np.atleast_1d(axes), pairs):
    r = dpo[(yp, ym)][0]
    keep = [z for z in range(world.vocab_size) if z not in (world.stoi[yp], world.stoi[ym])]
    for k, color in zip(groups, ("C2", "C1", "C7", "C4", "C9")):
        zs = [z for z in keep if kind_of[z] == k]
        ax.scatter(r["alignment"][zs], r["early_change"][zs], s=14, color=color, label=k)
    for z in r["top"]:
        ax.annotate(world.itos[z], (r["alignment"][z], r["early_change"][z]), fontsize=8)
    ax.set(title=f"{yp}/{ym}, seed 0: ρ = {r['rho']:.2f}", xlabel="⟨W_z, W_y+ − W_y−⟩ (SFT unembeddings)",
           ylabel=f"Δ ln π(z) after {early_steps} DPO steps")
    ax.legend(fontsize=7, title="token group", title_fontsize=7)
tracking.log_figure(fig, "part2_gain_vs_alignment")
plt.show()

# %% [markdown]
# ## Part 3 — CHES ranks which samples displace (Razin et al. §5, Fig. 2)
# A multi-token preference set: the prompt is a persona statement, y+ a trait-consistent response
# `answer because w1..wk <eos>`, and y− one of eight variants from near-identical to disjoint — one synonym swapped,
# the answer swapped within its group, *all* tokens swapped for synonyms (disjoint tokens, same meaning), one word
# more or less, the answer flipped to the other group (near-identical tokens, opposite meaning), an opposite response,
# a random one. Scores come from the SFT model before DPO. For each score we train one DPO epoch (RMSprop, same lr as
# Part 1, mini-batches of `pref_batch_size`) on each of five `subset_size`-pair windows centred on the score's
# 0/25/50/75/100th percentile, starting from the SFT model every time, and measure the mean change of
# $\ln\pi(y^+|x)$ on that window. The paper's protocol: 512-sample windows, batch 32, one epoch, 3 seeds.

# %%
pairs3 = world.multi_token_pairs(n_pairs, seed=seed + 10)
data3 = multi_token_preference_data(world, pairs3).to(dev)
scores = {k: v.cpu().numpy() for k, v in similarity_scores(sft, data3).items()}
types = np.array([p["type"] for p in pairs3])
oriented = {  # higher = more similar, for every score
    "CHES": scores["ches"],
    "lnCHES": scores["ln_ches"],
    "−edit distance": -scores["edit_distance"],
    "last-hidden inner product": scores["last_hidden_ip"],
}
by_type = pd.DataFrame({k: [float(np.mean(v[types == t])) for t in dict.fromkeys(types)] for k, v in oriented.items()},
                       index=list(dict.fromkeys(types)))
display(Markdown("Mean score per pair type (each oriented so that higher = more similar):"))
display(by_type.round(2))

t0 = time.perf_counter()
part3 = {}
pps = []
for name, sc in oriented.items():
    windows = percentile_windows(sc, percentiles, subset_size)
    means = np.zeros((len(percentiles), len(part3_seeds)))
    per_sample = []
    for qi, idx in enumerate(windows):
        for si, s in enumerate(part3_seeds):
            repro.seed_everything(seed + s)
            h = train_preference(clone_policy(sft), sft, data3.subset(idx),
                                 PreferenceConfig(loss="dpo", beta=beta, lr=pref_lr, optimizer="rmsprop", batch_size=pref_batch_size,
                                                  epochs=pref_epochs, seed=s), device=dev)
            change = (h["final"]["chosen_logps"] - h["ref"]["chosen_logps"]).numpy()
            means[qi, si] = change.mean()
            per_sample.append((sc[idx], change))
            pps.append(h["pairs_per_s"])
    m = means.mean(1)
    rho = float(spearmanr(percentiles, m)[0])
    pooled = float(spearmanr(np.concatenate([a for a, _ in per_sample]), np.concatenate([b for _, b in per_sample]))[0])
    part3[name] = {"means": means, "mean": m, "rho": rho, "pooled_rho": pooled}
    tracking.log_metrics({f"part3/{name.replace('−', 'neg ').replace(' ', '_')}/rho": rho})
t_part3 = time.perf_counter() - t0
pairs_per_s = float(np.median(pps))
part3_table = pd.DataFrame({name: [*(f"{x:+.3f}" for x in v["mean"]), f"{v['rho']:+.2f}", f"{v['pooled_rho']:+.2f}"] for name, v in part3.items()},
                           index=[*(f"window @ {q}th pct" for q in percentiles), "Spearman(percentile, mean change)", "per-sample Spearman (pooled)"])
print(f"Part 3: {len(oriented) * len(percentiles) * len(part3_seeds)} DPO epochs in {t_part3:.1f} s; "
      f"median {pairs_per_s:.0f} preference pairs/s during training")
display(Markdown("Mean change of ln π(y+|x) after one DPO epoch, per window (mean over seeds):"))
display(part3_table)
comp = pd.DataFrame({f"{q}th pct": pd.Series(types[idx]).value_counts() for q, idx in zip(percentiles, percentile_windows(oriented["CHES"], percentiles, subset_size))}).fillna(0).astype(int)
display(Markdown("Which kinds of pairs sit in each CHES window (counts):"))
display(comp)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for name, v in part3.items():
    axes[0].errorbar(percentiles, v["mean"], yerr=v["means"].std(1), marker="o", capsize=3, label=f"{name} (ρ = {v['rho']:+.2f})")
axes[0].axhline(0, color="k", lw=0.8)
axes[0].set(xlabel="percentile of the score (window centre)", ylabel="mean Δ ln π(y+|x) after one DPO epoch (nats)",
            title="preferred log-prob change vs similarity percentile")
axes[0].legend(fontsize=8)
order = list(by_type.sort_values("CHES").index)
axes[1].boxplot([oriented["CHES"][types == t] for t in order], showfliers=False)
axes[1].set_xticks(range(1, len(order) + 1), order, rotation=40, ha="right")
axes[1].set(ylabel="CHES (SFT model)", title="CHES by the way y− was built")
tracking.log_figure(fig, "part3_change_vs_percentile")
plt.show()

# %% [markdown]
# ## Claims

# %%
# Claim 1: displacement for a similar pair, and larger for similar than dissimilar pairs
frac, drops_sim, drops_dis = {}, [], []
for (yp, ym), runs in dpo.items():
    st = [r for r in runs if r["stable"]]
    d = [r["max_drop"] for r in st]
    similar = world.answer_group(yp) == world.answer_group(ym)
    frac[f"{yp}/{ym}"] = float(np.mean(np.array(d) >= drop_threshold)) if d else float("nan")
    (drops_sim if similar else drops_dis).extend(d)
sim_pairs = [f"{yp}/{ym}" for yp, ym in pairs if world.answer_group(yp) == world.answer_group(ym)]
best_sim = max((frac[p] for p in sim_pairs if np.isfinite(frac[p])), default=float("nan"))
mean_sim = float(np.mean(drops_sim)) if drops_sim else float("nan")
mean_dis = float(np.mean(drops_dis)) if drops_dis else float("nan")
c1_a = bool(np.isfinite(best_sim) and best_sim > 0.5)
c1_b = bool(np.isfinite(mean_sim) and np.isfinite(mean_dis) and mean_sim > mean_dis)
claims.record(
    "displacement_similar_pairs",
    statement="DPO on one prompt lowers π(y+) by >= 0.2 in most stable runs for a same-group pair, and similar pairs displace more than dissimilar ones",
    paper="Razin et al. 2025, §3 Table 1",
    paper_value="drops 0.21–0.96 in all runs (No/Never 0.84, 0.21; Sure/Yes 0.59; Yes/No 0.69, 0.22, 0.96)",
    measured=f"best similar-pair share {best_sim:.2f}; mean drop similar {mean_sim:.2f} vs dissimilar {mean_dis:.2f}",
    threshold=f"share of stable runs with drop >= {drop_threshold} > 0.5 for at least one similar pair AND mean drop similar > dissimilar",
    passed=c1_a and c1_b,
    details={"share_by_pair": frac, "part_a": c1_a, "part_b": c1_b, "mean_drop_similar": mean_sim, "mean_drop_dissimilar": mean_dis},
)

# Claim 2: Thm 2's alignment predicts the early gain
rhos = [r["rho"] for runs in dpo.values() for r in runs if r["stable"]]
median_rho = float(np.median(rhos)) if rhos else float("nan")
claims.record(
    "thm2_alignment_predicts_gain",
    statement="Spearman ρ between <W_z, W_y+ − W_y−> and the early change of ln π(z), over z ∉ {y+, y−}",
    paper="Razin et al. 2025, Thm 2",
    paper_value="exact (ρ = 1) in the unconstrained-features model under gradient flow",
    measured=f"median ρ {median_rho:.2f} over {len(rhos)} stable runs (per pair: "
             + ", ".join(f"{yp}/{ym} {np.median([r['rho'] for r in runs if r['stable']]):.2f}" for (yp, ym), runs in dpo.items() if any(r['stable'] for r in runs)) + ")",
    threshold=f"median ρ >= {rho_threshold}",
    passed=bool(np.isfinite(median_rho) and median_rho >= rho_threshold),
    details={"rho_by_pair": {f"{yp}/{ym}": [r["rho"] for r in runs if r["stable"]] for (yp, ym), runs in dpo.items()}},
)

# Claim 3: CHES percentiles rank displacement, better than the baselines
ch = part3["CHES"]
# Spearman over 5 points takes discrete values (−0.9 = one adjacent swap); compare with a 1e-9 tolerance so that
# −0.8999999999999999 (float rounding of −0.9) is read as −0.9. The threshold itself is unchanged.
c3_mono = bool(ch["rho"] <= ches_rho_threshold + 1e-9)
c3_top = bool(ch["mean"][-1] < 0)
c3_base = bool(ch["rho"] < part3["−edit distance"]["rho"] and ch["rho"] < part3["last-hidden inner product"]["rho"])
claims.record(
    "ches_ranks_displacement",
    statement="Subsets at increasing CHES percentiles lower the preferred log-prob monotonically more; the top subset's change is negative; CHES beats edit distance and last-hidden inner product",
    paper="Razin et al. 2025, §5 Fig. 2",
    paper_value="CHES percentile 'perfectly matches' the displacement; baselines not predictive",
    measured=f"ρ_CHES {ch['rho']:+.2f}, top-window change {ch['mean'][-1]:+.3f}; ρ_−edit {part3['−edit distance']['rho']:+.2f}, "
             f"ρ_last-hidden {part3['last-hidden inner product']['rho']:+.2f}",
    threshold=f"ρ_CHES <= {ches_rho_threshold} AND top-window change < 0 AND ρ_CHES < ρ of both baselines",
    passed=c3_mono and c3_top and c3_base,
    details={"monotone": c3_mono, "top_negative": c3_top, "beats_baselines": c3_base,
             "means": {k: v["mean"].tolist() for k, v in part3.items()}, "rhos": {k: v["rho"] for k, v in part3.items()}},
)

# %% [markdown]
# ### Reading claim 1: is the displacement over, or still under way at step 100?
# For each pair: the DPO loss at the last step, π(y+) at the start and the end, and its slope over the last 10 steps
# (negative = still falling), next to the same numbers at the other learning rates. If π(y+) is still falling when the
# 100 steps end, the size of the drop measures the length of the run as much as the phenomenon.

# %%
why_rows = []
for label, res in [(f"lr {dpo_lr:g} (main)", dpo)] + [(f"lr {lr:g}", v) for lr, v in sens.items()]:
    for (yp, ym), runs in res.items():
        st = [r for r in runs if r["stable"]]
        if not st:
            why_rows.append({"setting": label, "pair": f"{yp}/{ym}", "stable": 0})
            continue
        tail = min(10, len(st[0]["p_plus"]) - 1)
        why_rows.append({
            "setting": label, "pair": f"{yp}/{ym}", "stable": len(st),
            "final DPO loss": np.mean([r["loss"][-1] for r in st]),
            "π(y+) start": np.mean([r["p_plus"][0] for r in st]),
            "π(y+) end": np.mean([r["p_plus"][-1] for r in st]),
            "slope of π(y+), last 10 steps (/step)": np.mean([(r["p_plus"][-1] - r["p_plus"][-1 - tail]) / tail for r in st]),
            "share drop ≥ thr": np.mean([r["max_drop"] >= drop_threshold for r in st]),
            "mean drop": np.mean([r["max_drop"] for r in st]),
        })
why_table = pd.DataFrame(why_rows)
display(why_table.round(4))

# %% [markdown]
# ## Closing note
# The numbers below are computed in this run (nothing here is typed in by hand).

# %%
wall = time.perf_counter() - t_start
for _, row in table_dpo.iterrows():
    key = row["pair"].replace("/", "_")
    tracking.log_metrics({f"part1/{key}/mean_drop": row["mean drop"], f"part1/{key}/share_drop_ge_thr": row["frac drop>=thr"],
                          f"part1/{key}/median_rho": row["median ρ (Thm 2)"]})
tracking.log_metrics({"time/wall_s": wall, "time/part1_s": t_part1, "time/part3_s": t_part3, "throughput/pairs_per_s": pairs_per_s,
                      "part1/mean_drop_similar": mean_sim, "part1/mean_drop_dissimilar": mean_dis, "part2/median_rho": median_rho})
lines = ["| y+/y− | same group | stable | share drop ≥ " + f"{drop_threshold:.1f} | mean drop (π from→to) | median ρ (Thm 2) | top gainers |",
         "|---|---|---|---|---|---|---|"]
for _, row in table_dpo.iterrows():
    lines.append(f"| {row['pair']} | {row['similar']} | {row['stable runs']} | {row['frac drop>=thr']:.2f} | {row['mean drop']:.2f} "
                 f"({row['π(y+) from→to (mean)']}) | {row['median ρ (Thm 2)']:.2f} | {row['top gainers (count)']} |")
still = [f"{r['pair']} ({r['slope of π(y+), last 10 steps (/step)']:+.4f}/step)" for r in why_rows
         if r["setting"].endswith("(main)") and r.get("stable") and r["slope of π(y+), last 10 steps (/step)"] < 0]
verdicts = "\n".join(f"- **{c['name']}**: {c['verdict']} — measured {c['measured']} (threshold: {c['threshold']})" for c in claims.recorded())
display(Markdown(
    "### Measured drops per token pair (DPO after SFT)\n" + "\n".join(lines)
    + f"\n\nπ(y+) was still falling at step {dpo_steps} (slope over the last 10 steps < 0) for: {', '.join(still) or 'no pair'}."
    + f"\n\n### Verdicts\n{verdicts}\n\n"
    + "**Part 3 Spearman (percentile vs mean Δ ln π(y+)):** "
    + ", ".join(f"{k} {v['rho']:+.2f}" for k, v in part3.items())
    + f"\n\n**Wall time** {wall:.0f} s (pretrain+SFT or cache load {t_models:.0f} s, Part 1 {t_part1:.0f} s, variants {t_variants:.0f} s, "
    + f"Part 3 {t_part3:.0f} s) on {dev} with {torch.get_num_threads()} threads. **DPO throughput** during Part 3: "
    + f"{pairs_per_s:.0f} pairs/s (mini-batch {pref_batch_size}); `benchmarks/dpo_throughput.py` measures it in isolation."
))

# %% [markdown]
# ## Discussion: what differs from the paper
# - **Scale and data.** A ~100k-parameter GPT trained from scratch on a synthetic world, not OLMo-1B/Gemma-2B/
#   Llama-3-8B on Persona and UltraFeedback. The world is built to have the structure the argument needs (meaning
#   groups whose members share contexts); the unembedding cosines above show how much of it the model picked up.
# - **Optimiser and lr.** RMSprop as in the paper, but at lr 1e-5 (chosen by the stability rule above) instead of
#   1e-7; displacement sizes depend on it (see the lr table), the direction of the findings is what we compare.
# - **"Similar" pairs.** Claim 1 calls a pair similar when y+ and y− share a meaning group. The theory's notion is
#   geometric (Thm 1: ⟨W_y+, W_y−⟩ and the mass-weighted alignment of the other tokens); the Thm 1 score per pair is
#   in the Part 2 table, and the paper's own Table 1 has the dissimilar pair Yes/No displacing as much as the others.
# - **Thm 2 in a transformer.** The theorem is exact for free hidden states; here h is produced by the network and
#   normalised by the final LayerNorm, which removes the component of the update along h (and so subtracts a term
#   proportional to each token's current logit). Where ρ is low, the scatter shows which tokens break the order.
# - **CHES baselines.** Our last-hidden baseline reads the state that predicts `<eos>` (the paper's reads the one
#   after it). Edit distance could be a sharp competitor in a world whose pairs are built by token edits; this is why
#   the set includes same-meaning-but-disjoint (all synonyms) and near-identical-but-opposite (answer flip) pairs.
# - **CHES and length.** The sum form grows with the response length: a y− that *extends* y+ has
#   ⟨Σh+, Σh−⟩ = ‖Σh+‖² + ⟨Σh+, h_extra⟩, a *truncated* y− loses a term. The window-composition table shows how much
#   of the CHES ordering comes from such pairs; lnCHES (means) is the length-normalised check.
# - **Seeds.** In Part 3 the seed only reshuffles the mini-batches (the start model is the same SFT model), as the
#   paper's seeds do for a fixed pretrained model.
