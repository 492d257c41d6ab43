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
# # Reward-model ensembles mitigate but do not eliminate over-optimisation
# **Paper:** Eisenstein, Nagpal, Agarwal, Beirami, D'Amour, Dvijotham, Fisch, Heller, Pfohl, Ramachandran, Shaw, Berant (2023), "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate Reward Hacking" (arXiv 2312.09244); with Gao, Schulman, Hilton (2022), "Scaling Laws for Reward Model Overoptimization" (arXiv 2210.10760) and Wang, Nagpal, Berant, Eisenstein, D'Amour, Koyejo, Veitch (2024), "Transforming and Combining Rewards for Aligning Large Language Models" (ICML 2024, arXiv 2402.00742).
# **Claim:** under best-of-n, a proxy reward model's score keeps rising while the gold reward peaks and falls; reward models that agree in distribution disagree under optimisation; ensembles (pretrain-seed > finetune-seed) reach a higher gold reward but still over-optimise; summing log-sigmoid-centred rewards beats a raw sum on being good on both properties.
#
# **The papers.** Gao et al. label comparisons with a "gold" reward model, fit smaller proxy RMs to those labels
# and optimise the proxy by best-of-n (KL(π_bon‖π₀) = log n − (n−1)/n in closed form) and by RL: the proxy score
# rises monotonically while the gold score follows R_bon(d) = d(α − βd) in d = √KL, rising and then falling
# (their Fig. 1 and §3; the fall comes sooner for smaller RMs and less RM data). Eisenstein et al. (abstract, §4–5)
# show that RMs that perform alike in distribution are **underspecified**: aligned to one RM, the policy does not
# improve the reward measured by another RM trained on the same data; **ensembles** (mean, median, min of member
# rewards) mitigate over-optimisation in best-of-n reranking and RLHF, and **pretrain ensembles** (members with
# different pretraining seeds) beat **finetune ensembles** (one pretrained model, different fine-tuning seeds),
# both beating single RMs; but even pretrain ensembles **do not eliminate** reward hacking when all members share an
# error pattern. What we re-checked (stored copy of arXiv 2312.09244v3, abstract): RMs "that perform similarly
# in-distribution can yield very different rewards when used in alignment"; alignment to one RM "does not improve reward
# as measured by another reward model trained on the same data"; pretrain-seed ensembles "lead to better generalization"
# than finetune-seed ensembles, "with both outperforming individual reward models"; and pretrain ensembles "do not
# eliminate reward hacking" because the members "exhibit similar error patterns". The accompanying repository
# (github.com/google-deepmind/reward-ensembles, README) releases their pretrains: five seeds each of T5-base, T5-large and
# T5-XL. Their figures' and tables' numbers (and the tasks, TL;DR, helpfulness and XSum/NLI as we recall them) were not
# reachable in the stored copies, so we quote no number from them: the claims below are their qualitative findings.
# Wang et al. transform a Bradley–Terry reward r into
# u = log σ(r − r_ref(x)), the log-probability of beating a reference response, which has diminishing returns and makes
# Σ_i u_i ≈ log P(good on every property) — a logical AND; aligning to be helpful *and* harmless with the LSC sum
# beats the raw-reward sum in their RLHF experiments. r_ref(x) is a per-prompt reference reward computed from the
# base policy's samples; we use the 85% quantile of π₀'s rewards on the prompt. Wang et al.'s own experimental section
# was not reachable in the stored copies (only the abstract and introduction of arXiv 2402.00742v2 were), so the choice
# is corroborated second-hand: the official code of Fu et al. (2025, "Reward Shaping to Mitigate Reward Hacking in
# RLHF", arXiv 2502.18770; github.com/PorUna-byte/PAR, `trainers/reward_shaper.py`), which runs Wang et al.'s LSC as a
# baseline, centres each prompt's reward at the 0.85 quantile of a normal fitted to the rewards of that prompt's SFT
# (π₀) samples. We take the empirical 0.85 quantile of the `m_samples` π₀ rewards instead of a normal fit, and run the
# 50% quantile (the median) as an ablation.
#
# **Here, at CPU scale.** The book's persona world and tiny GPTs (the flagship's cached `base_recipe`). π₀ is the
# pretrained GPT of `policy_seed`; its samples are ``answer because w1 .. wk <eos>`` responses to persona prompts.
# The **gold** (`reward_models.GoldSpec`) rewards the right answer group (+1) and each clause word that cites a
# concept of the statement (+0.25), and penalises each off-topic or repeated clause word (−0.75) and malformed
# responses (−1): a relational property (does the clause match the prompt?) that a reward model on frozen features
# can only approximate, next to easy surface features (length, answer token) it can latch on to. **Reward models** are
# Bradley–Terry MLP heads on frozen features (last-token and response-mean hidden states) of pretrained GPTs with
# seeds `rm_seeds` — the "pretraining seeds" — each fit on `n_pairs` labelled pairs of π₀ samples (labels
# P(a ≻ b) = σ(κ Δgold)) with `n_finetune_seeds` "fine-tuning seeds" (head init and a bootstrap draw of the labels; an MLP, not
# a linear head, since a convex fit would make fine-tuning seeds coincide). **Best-of-n** is the optimiser: n = 1 … 256
# from `m_samples` = 256 π₀ samples per prompt, read with the unbiased order-statistic estimator
# (`best_of_n.expected_best_of_n`), KL in closed form. **A replicate** is a data seed: fresh prompts, π₀ samples,
# labels and fine-tuning seeds (the pretrained encoders are shared; building more of them is a `full`-profile matter).
# The gold and the RM recipe (features, head width) were fixed in a pilot on data seed 0 before the claims below were
# written; no threshold was set from a claim's outcome.
#
# **Claims, with rules fixed before running** (R replicates; t-CI of the mean over replicates, 95%):
# 1. `proxy_up_gold_down` (Gao et al.): for single RMs, gold at the peak (the argmax n of the *other* replicates' mean
#    curve, so the peak is not chosen on the data it is judged on) minus gold at n_max is > 0, AND the proxy at n_max
#    exceeds the proxy at that peak (under best-of-n the proxy's rise is guaranteed — the expected maximum of n draws
#    grows with n — so the substance of the claim is the gold's fall).
# 2. `ensembles_mitigate`: the peak gold of the pretrain mean-ensemble minus the mean peak gold of its members > 0.
# 3. `ensembles_still_overoptimise`: claim 1's drop for the pretrain mean-ensemble > 0.
# 4. `pretrain_beats_finetune`: peak gold of the pretrain mean-ensemble minus the mean over encoders of the finetune
#    mean-ensemble's peak gold > 0.
# 5. `disagreement_grows`: the std of the pretrain members' standardised rewards at the best-of-n_max response
#    (selected by one member) minus the same at n = 1 > 0.
# 6. `lsc_beats_raw_sum` (Wang et al.): with two property RMs (correct answer; on-topic clause), the share of
#    best-of-`n_lsc` responses good on both under the LSC sum (r_ref = the `lsc_quantile` quantile) minus under the raw
#    sum > 0.
# Guards (all claims): the reward heads converged — in every replicate the mean held-out BT loss of its heads (expected
# NLL on the `n_heldout` held-out pairs under the soft labels σ(κ Δgold)) falls by less than `loss_tol` nats over the last
# quarter of the `head_steps` (`replicate.plateaued` on the negated loss; its remedy: more head steps); every RM's
# held-out pair accuracy against the gold ≥ `acc_min` and the mean pairwise agreement of RMs on held-out pairs ≥
# `agree_min` (the RMs agree in distribution); claims 1 and 3: the gold peak lies inside the
# n grid (best-of-n reached the KL where the curve turns). A "not reproduced" is diagnosed with the label-budget
# ablation (`ablation_pairs` labelled pairs instead of `n_pairs` on the first `n_ablation_seeds` replicates: the label
# budget Gao et al. find over-optimisation to depend on) and, for claim 6, the r_ref ablation.
#
# **History.** The first `default` run used 2000 labelled pairs: every rule above held except claim 4's (undecided), but
# the accuracy guard failed (min held-out accuracy 0.567 < 0.6 over 45 heads), so every verdict was inconclusive. The
# guard's fix — more labels — was applied (8000 pairs); the thresholds were not changed, and the 2000-pair setting is
# now the label-budget ablation. That run had no convergence guard on the heads: their *training* loss still fell
# 0.009 nats over the last quarter of the 400 steps. A guard was then written on the training loss (fall < `loss_tol` =
# 0.002 nats over the last quarter), and a probe on data seed 0 tried its remedy, more steps: the training loss fell
# 0.009, 0.008, 0.007 and 0.009 nats over the last quarter of 400, 800, 1600 and 3200 steps — a steady log-linear
# decline that no affordable budget ends — while the held-out BT loss of the same heads is lowest near step 66 and then
# *rises* (0.632 at step 100, 0.676 at 400, 0.741 at 1600) and held-out accuracy does not improve (min over the heads
# 0.641 at 1600 steps, 0.632 at 3200; 0.644 over all replicates' heads at 400): the
# heads are past convergence and fitting their bootstrap draw's label noise, not short of steps. The guard was therefore
# moved, with the same tolerance, to the held-out BT loss (the convergence of what the RMs are used for) — a change made
# after seeing that probe, recorded here. It passes at today's 400 steps, so `head_steps` and every result are unchanged
# (the fit is bitwise the same; recording the held-out curve does not touch it), and so are the verdicts.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
base_recipe = "persona-tiny"  # world + tiny GPT recipe in lossbook.alignment.recipes.BASE_RECIPES (shared, cached)
rm_seeds = [0, 1, 2]  # pretraining seeds of the RM encoders (the pretrain-ensemble members); at least 2 outside smoke
policy_seed = 0  # the pretrained GPT used as the base policy π₀; in rm_seeds or not
data_seeds = [0, 1, 2, 3, 4]  # replicates: fresh prompts, π₀ samples, labels, fine-tuning seeds; at least 3 outside smoke
n_pairs = 8000  # labelled pairs per replicate (each two π₀ samples of one prompt; 2000 failed the accuracy guard); in [1, inf)
n_heldout = 500  # held-out pairs for the in-distribution guards; in [1, inf)
n_eval_prompts = 64  # prompts for best-of-n; in [1, inf)
m_samples = 256  # π₀ samples per best-of-n prompt (the estimator needs m at least max n); in [1, inf)
n_finetune_seeds = 3  # fine-tuning seeds per pretraining seed (finetune-ensemble size); in [1, inf)
kappa = 4.0  # label sharpness: P(a ≻ b) = σ(κ (gold_a − gold_b)); in [0, inf)
hidden = 16  # width of the BT MLP head; in [1, inf)
head_steps = 400  # full-batch AdamW steps per head; in [1, inf)
loss_tol = 0.002  # guard: max fall of a replicate's mean held-out BT loss over the last quarter of head_steps [nats]; in (0, inf)
head_lr = 1.0e-2  # head learning rate; > 0
head_weight_decay = 1.0e-3  # decoupled weight decay on the head's matrices; in [0, inf)
pool = "last+mean"  # RM features: "last" (last-token hidden state) or "last+mean" (plus the response mean)
temperature = 1.0  # π₀ sampling temperature; > 0
ns = [1, 2, 4, 8, 16, 32, 64, 128, 256]  # best-of-n grid; each in [1, m_samples]
n_lsc = 16  # best-of-n at which claim 6 is read; in ns
lsc_quantile = 0.85  # r_ref(x) = this quantile of π₀'s rewards on x (Wang et al.); in (0, 1)
lsc_ablation_quantile = 0.5  # the r_ref ablation (the median); in (0, 1)
acc_min = 0.6  # guard: every RM's held-out accuracy against the gold ranking; in [0.5, 1]
agree_min = 0.6  # guard: mean pairwise agreement of the RMs on held-out pairs; in [0.5, 1]
ablation_pairs = 2000  # label-budget ablation: labelled pairs per replicate in the ablation runs; in [1, inf)
n_ablation_seeds = 2  # replicates (the first data_seeds) rerun in the label-budget ablation; in [0, len(data_seeds)]
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)

# %%
from lossbook import plotting, replicate, repro, tracking

tracking.attach(mlflow_run_id, "reward_overoptimisation", globals())
plotting.setup()

import dataclasses
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from tqdm.auto import tqdm

from lossbook.alignment import best_of_n as bon
from lossbook.alignment import reward_models as rm
from lossbook.alignment.recipes import base_models

dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.perf_counter()
cfg = rm.ExperimentConfig(n_pairs=n_pairs, n_heldout=n_heldout, n_eval_prompts=n_eval_prompts, m_samples=m_samples,
                          n_finetune=n_finetune_seeds, kappa=kappa, hidden=hidden, steps=head_steps, lr=head_lr,
                          weight_decay=head_weight_decay, pool=pool, temperature=temperature)
d = np.sqrt(bon.kl_best_of_n(np.array(ns)))  # x-axis of every curve: d = √KL (Gao et al.)
i_lsc = ns.index(n_lsc)
qs = (lsc_quantile, lsc_ablation_quantile)
print(f"{len(data_seeds)} replicates x {len(rm_seeds)} pretrain seeds x {n_finetune_seeds} finetune seeds; n up to {max(ns)} (KL {d[-1] ** 2:.2f} nats)")

# %% [markdown]
# ## Base models and replicates
# The encoders and π₀ come from the shared cache (built once per seed, ~35 s each on a 2-core CPU). Each replicate
# samples its own prompts and responses, labels, fits len(rm_seeds) × `n_finetune_seeds` gold heads plus 2 property heads per encoder in
# one stacked fit, and reads every best-of-n curve.

# %%
models = {s: base_models(base_recipe, s, device=dev) for s in sorted({*rm_seeds, policy_seed})}
world = models[policy_seed]["world"]
policy = models[policy_seed]["base"].to(dev)
encoders = {s: models[s]["base"].to(dev) for s in rm_seeds}
runs = {}
for ds in tqdm(data_seeds, desc="replicates"):
    runs[ds] = rm.overoptimisation_replicate(world, policy, encoders, cfg, ns, data_seed=ds, lsc_quantiles=qs, device=dev)
abl_cfg = dataclasses.replace(cfg, n_pairs=ablation_pairs)
ablation = {ds: rm.overoptimisation_replicate(world, policy, encoders, abl_cfg, ns, data_seed=ds, lsc_quantiles=qs, device=dev)
            for ds in tqdm(data_seeds[:n_ablation_seeds], desc="label-budget ablation")}
t_runs = time.perf_counter() - t_start
print(f"runs done in {t_runs:.0f} s; π₀ samples (data seed {data_seeds[0]}): " + ", ".join(f"{k} {v:.3f}" for k, v in runs[data_seeds[0]]["base"].items()))

# %% [markdown]
# ## In distribution: do the reward models agree?

# %%
acc = np.stack([r["heldout_acc"] for r in runs.values()])  # [R, K]
K = acc.shape[1]
off = ~np.eye(K, dtype=bool)
agree = np.array([r["agreement"][off].mean() if K > 1 else 1.0 for r in runs.values()])
heads = runs[data_seeds[0]]["heads"]
same_s = np.array([[a[0] == b[0] for b in heads] for a in heads]) & off
agree_within = np.array([r["agreement"][same_s].mean() if same_s.any() else np.nan for r in runs.values()])
agree_across = np.array([r["agreement"][off & ~same_s].mean() if (off & ~same_s).any() else np.nan for r in runs.values()])
loss = np.stack([r["heldout_loss"].mean(1) for r in runs.values()])  # [R, steps]: mean held-out BT loss of a replicate's heads
train_loss = np.stack([r["train_loss"].mean(1) for r in runs.values()])  # [R, steps]: the same on the labelled pairs
q_tail = int(np.ceil(0.25 * head_steps))  # the last quarter, as `replicate.plateaued` counts it
loss_fall = loss[:, -1 - q_tail] - loss[:, -1]
train_fall = train_loss[:, -1 - q_tail] - train_loss[:, -1]
head_fall = max(float((r["heldout_loss"][-1 - q_tail] - r["heldout_loss"][-1]).max()) for r in runs.values())
display(pd.DataFrame(acc, index=[f"data seed {s}" for s in data_seeds], columns=[f"RM (s={s}, f={f})" for s, f in heads]).round(3))
print(f"held-out accuracy vs the gold ranking: min {acc.min():.3f}, mean {acc.mean():.3f}; mean pairwise agreement {agree.mean():.3f}; "
      f"final held-out BT loss {loss[:, -1].mean():.3f} (fell {loss_fall.mean():.4f} on average, at most {loss_fall.max():.4f}, over the last quarter "
      f"of the {head_steps} steps; the single head that fell most: {head_fall:.4f}); final training loss {train_loss[:, -1].mean():.3f} "
      f"(fell {train_fall.mean():.4f}); agreement of heads "
      f"sharing an encoder {np.nanmean(agree_within):.3f}, across encoders {np.nanmean(agree_across):.3f}")
tracking.log_metrics({"heldout_acc_min": float(acc.min()), "heldout_acc_mean": float(acc.mean()), "agreement_mean": float(agree.mean()),
                      "head_loss_fall_max": float(loss_fall.max())})
fig, ax = plt.subplots(figsize=(7.5, 4))
for i, ds in enumerate(data_seeds):
    ax.plot(np.arange(1, head_steps + 1), loss[i], lw=1.2, color=f"C{i}", label=f"held-out, data seed {ds}")
    ax.plot(np.arange(1, head_steps + 1), train_loss[i], lw=0.8, ls=":", color=f"C{i}")
ax.axvspan(head_steps - q_tail, head_steps, color="gray", alpha=0.15, label=f"last quarter (guard: held-out fall < {loss_tol:g} nats)")
ax.set(xscale="log", xlabel="head training step", ylabel="BT loss, mean over heads  [nats]", title="reward-head convergence (dotted: training loss)")
ax.legend(fontsize=8)
tracking.log_figure(fig, "head_loss")
rm_guards = [
    replicate.plateaued(-loss[int(np.argmax(loss_fall))], last_frac=0.25, max_gain=loss_tol, name="heads_converged"),
    replicate.progress_reached(float(acc.min()), acc_min, lower_is_better=False, what="min held-out RM accuracy", name="rms_accurate",
                               fix="more labelled pairs or richer features"),
    replicate.progress_reached(float(agree.mean()), agree_min, lower_is_better=False, what="mean pairwise RM agreement", name="rms_agree",
                               fix="more labelled pairs or richer features"),
]

# %% [markdown]
# ## Proxy vs gold under best-of-n

# %%
single_gold = np.stack([r["gold"].mean(0) for r in runs.values()])  # [R, L]: mean over single RMs
single_proxy = np.stack([r["proxy"].mean(0) for r in runs.values()])
ens_gold = {k: np.stack([r["ens"][k]["gold"] for r in runs.values()]) for k in runs[data_seeds[0]]["ens"]}
ft_mean_gold = np.mean([ens_gold[f"finetune_s{s}_mean"] for s in rm_seeds], 0)
ft_min_gold = np.mean([ens_gold[f"finetune_s{s}_min"] for s in rm_seeds], 0)
oracle = np.stack([r["oracle"] for r in runs.values()])
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for r in runs.values():
    for k in range(K):
        axes[0].plot(d, r["proxy"][k], color="tab:blue", alpha=0.12, lw=0.8)
        axes[1].plot(d, r["gold"][k], color="tab:blue", alpha=0.12, lw=0.8)
axes[0].plot(d, single_proxy.mean(0), color="tab:blue", lw=2.5, label="single RMs (mean)")
axes[1].plot(d, single_gold.mean(0), color="tab:blue", lw=2.5, label="single RMs (mean; thin: each RM, replicate)")
axes[1].plot(d, ens_gold["pretrain_mean"].mean(0), color="tab:red", lw=2.5, label="pretrain ensemble (mean)")
axes[1].plot(d, ft_mean_gold.mean(0), color="tab:orange", lw=2.5, label="finetune ensembles (mean)")
axes[1].plot(d, oracle.mean(0), color="k", ls="--", label="best-of-n by the gold itself")
axes[0].set(xlabel="d = √KL(π_bon ‖ π₀)  [√nats]", ylabel="proxy reward at best-of-n  [member std]", title="proxy: rises monotonically")
axes[1].set(xlabel="d = √KL(π_bon ‖ π₀)  [√nats]", ylabel="gold reward at best-of-n", title="gold: rises, peaks, falls")
axes[1].set_ylim(min(-0.5, float(single_gold.min()) - 0.1), float(oracle.max()) + 0.1)
for ax in axes:
    ax.legend(fontsize=8)
tracking.log_figure(fig, "proxy_vs_gold")

# %%
fig, ax = plt.subplots(figsize=(7.5, 4.5))
for name, curve, c, ls in (("single RMs", single_gold, "tab:blue", "-"), ("pretrain mean", ens_gold["pretrain_mean"], "tab:red", "-"),
                           ("pretrain min", ens_gold["pretrain_min"], "tab:red", ":"), ("finetune mean", ft_mean_gold, "tab:orange", "-"),
                           ("finetune min", ft_min_gold, "tab:orange", ":")):
    m_, s_ = curve.mean(0), curve.std(0, ddof=1) if curve.shape[0] > 1 else np.zeros(len(ns))
    ax.plot(d, m_, color=c, ls=ls, lw=2, label=name)
    ax.fill_between(d, m_ - s_, m_ + s_, color=c, alpha=0.08)
ax.set(xlabel="d = √KL(π_bon ‖ π₀)  [√nats]", ylabel="gold reward at best-of-n (mean ± sd over replicates)", title="ensembles vs single reward models")
ax.legend(fontsize=8)
tracking.log_figure(fig, "ensembles_gold")
table = pd.DataFrame({"n": ns, "KL": d**2, "single": single_gold.mean(0), "pretrain mean": ens_gold["pretrain_mean"].mean(0),
                      "pretrain min": ens_gold["pretrain_min"].mean(0), "finetune mean": ft_mean_gold.mean(0),
                      "finetune min": ft_min_gold.mean(0), "gold oracle": oracle.mean(0), "proxy (single)": single_proxy.mean(0)})
display(table.round(3))

# %% [markdown]
# ## Disagreement under optimisation, and the KL of best-of-n
# Left: the spread (std) of the pretrain members' standardised rewards at the response chosen by one member, and the
# other members' mean reward there ("alignment to one RM does not improve another"). Right: the closed form
# log n − (n−1)/n against the exact KL of best-of-n on each prompt's empirical sample distribution (identical responses
# are one atom), which the closed form upper-bounds.

# %%
dis = np.stack([r["disagreement"] for r in runs.values()])
cross = np.stack([r["cross"] for r in runs.values()])
self_ = np.stack([r["proxy"][r["ens"]["pretrain_mean"]["members"]].mean(0) for r in runs.values()])
kl_emp = np.stack([r["kl_empirical"] for r in runs.values()])
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
axes[0].plot(d, dis.mean(0), color="tab:purple", lw=2, label="member spread (std) at the chosen response")
axes[0].plot(d, self_.mean(0), color="tab:blue", lw=2, label="choosing member's own reward")
axes[0].plot(d, cross.mean(0), color="tab:green", lw=2, label="other members' reward")
axes[0].set(xlabel="d = √KL  [√nats]", ylabel="standardised reward  [member std]", title="reward models disagree under optimisation")
axes[0].legend(fontsize=8)
axes[1].plot(ns, d**2, "k-", label="log n − (n−1)/n")
axes[1].plot(ns, kl_emp.mean(0), "o--", color="tab:gray", label="exact, empirical π₀ (per prompt)")
axes[1].set(xscale="log", xlabel="n", ylabel="KL(π_bon ‖ π₀)  [nats]", title="best-of-n KL")
axes[1].legend(fontsize=8)
tracking.log_figure(fig, "disagreement_and_kl")

# %% [markdown]
# ## Combining two properties: raw sum vs LSC sum

# %%
lsc = {k: np.stack([r["lsc"][k] for r in runs.values()]) for k in runs[data_seeds[0]]["lsc"]}
lsc_oracle = np.stack([r["lsc_oracle"] for r in runs.values()])
fig, ax = plt.subplots(figsize=(7.5, 4.5))
ax.plot(d, lsc["raw"].mean(0), "o-", color="tab:blue", label="raw sum r_A + r_B")
for q, c in zip(qs, ("tab:red", "tab:pink")):
    ax.plot(d, lsc[f"lsc_q{q:g}"].mean(0), "o-", color=c, label=f"LSC sum, r_ref = {q:g} quantile")
ax.plot(d, lsc_oracle.mean(0), "k--", label="best-of-n by 'good on both' itself")
ax.axvline(d[i_lsc], color="gray", ls=":", lw=1)
ax.set(xlabel="d = √KL  [√nats]", ylabel="share of responses good on both properties", title="AND of two properties under best-of-n")
ax.legend(fontsize=8)
tracking.log_figure(fig, "lsc_vs_raw")

# %% [markdown]
# ## Claims

# %%
R = len(data_seeds)
rec = {}
drop1, peak_i = bon.loo_peak_drop(single_gold)
proxy_gain = single_proxy[:, -1] - single_proxy[np.arange(R), peak_i]
n_peak_single = ns[int(np.argmax(single_gold.mean(0)))]
abl_drop1 = [a["gold"].mean(0)[ns.index(n_peak_single)] - a["gold"].mean(0)[-1] for a in ablation.values()]
peak_guard = replicate.bracketed(n_peak_single, ns, what="best-of-n (single-RM gold)", name="gold_turns")
rec["proxy_up_gold_down"] = replicate.record(
    "proxy_up_gold_down",
    statement="Under best-of-n, single RMs' proxy reward keeps rising while the gold reward peaks and falls",
    paper="Gao et al. 2022; Eisenstein et al. 2023",
    paper_value="proxy monotone, gold R_bon(d) = d(α − βd) peaks and falls (Gao et al. Fig. 1, §3)",
    values=drop1,
    outcome=replicate.all_of(replicate.mean_ci_rule(drop1, 0.0, "above"), replicate.mean_ci_rule(proxy_gain, 0.0, "above")),
    guards=[*rm_guards, peak_guard],
    diagnosis=replicate.Diagnosis(f"with {ablation_pairs} labelled pairs (instead of {n_pairs}) the single-RM drop from the main runs' peak is "
                                  f"{np.mean(abl_drop1) if abl_drop1 else float('nan'):.3f}", "label-budget ablation"),
    details={"peak_n_per_replicate": [ns[i] for i in peak_i], "proxy_gain": proxy_gain.tolist()},
)
pre_gold = ens_gold["pretrain_mean"]
member_peak = np.stack([r["gold"][r["ens"]["pretrain_mean"]["members"]].max(1).mean() for r in runs.values()])
gain2 = pre_gold.max(1) - member_peak
abl_gain2 = [a["ens"]["pretrain_mean"]["gold"].max() - a["gold"][a["ens"]["pretrain_mean"]["members"]].max(1).mean() for a in ablation.values()]
rec["ensembles_mitigate"] = replicate.record(
    "ensembles_mitigate",
    statement="A pretrain-seed mean ensemble reaches a higher peak gold reward under best-of-n than its single members",
    paper="Eisenstein et al. 2023",
    paper_value="ensembles improve best-of-n reranking over single RMs (abstract, §4)",
    values=gain2,
    outcome=replicate.mean_ci_rule(gain2, 0.0, "above"),
    guards=rm_guards,
    diagnosis=replicate.Diagnosis(f"with {ablation_pairs} labelled pairs (instead of {n_pairs}) the ensemble's peak gain is {np.mean(abl_gain2) if abl_gain2 else float('nan'):.3f}",
                                  "label-budget ablation"),
)
drop3, peak3 = bon.loo_peak_drop(pre_gold)
n_peak_ens = ns[int(np.argmax(pre_gold.mean(0)))]
abl_drop3 = [a["ens"]["pretrain_mean"]["gold"].max() - a["ens"]["pretrain_mean"]["gold"][-1] for a in ablation.values()]
rec["ensembles_still_overoptimise"] = replicate.record(
    "ensembles_still_overoptimise",
    statement="Even the pretrain-seed mean ensemble over-optimises: its gold reward falls after its peak",
    paper="Eisenstein et al. 2023",
    paper_value="ensembles mitigate but do not eliminate reward hacking (title, abstract, §6)",
    values=drop3,
    outcome=replicate.mean_ci_rule(drop3, 0.0, "above"),
    guards=[*rm_guards, replicate.bracketed(n_peak_ens, ns, what="best-of-n (pretrain-ensemble gold)", name="gold_turns")],
    diagnosis=replicate.Diagnosis(f"with {ablation_pairs} labelled pairs (instead of {n_pairs}) the ensemble's peak-to-end drop is "
                                  f"{np.mean(abl_drop3) if abl_drop3 else float('nan'):.3f}", "label-budget ablation"),
    details={"peak_n_per_replicate": [ns[i] for i in peak3]},
)
gain4 = pre_gold.max(1) - np.mean([ens_gold[f"finetune_s{s}_mean"].max(1) for s in rm_seeds], 0)
abl_gain4 = [a["ens"]["pretrain_mean"]["gold"].max() - np.mean([a["ens"][f"finetune_s{s}_mean"]["gold"].max() for s in rm_seeds]) for a in ablation.values()]
rec["pretrain_beats_finetune"] = replicate.record(
    "pretrain_beats_finetune",
    statement="Pretrain-seed ensembles reach a higher peak gold reward than finetune-seed ensembles",
    paper="Eisenstein et al. 2023",
    paper_value="pretrain ensembles generalise better than finetune ensembles (abstract, §4–5)",
    values=gain4,
    outcome=replicate.mean_ci_rule(gain4, 0.0, "above"),
    guards=rm_guards,
    diagnosis=replicate.Diagnosis(f"heads that share an encoder agree on {np.nanmean(agree_within):.3f} of held-out pairs, heads on different "
                                  f"encoders on {np.nanmean(agree_across):.3f}: fine-tuning seeds already decorrelate the members about as much as "
                                  f"pretraining seeds do; with {ablation_pairs} labelled pairs (instead of {n_pairs}) the pretrain − finetune "
                                  f"peak gap is {np.mean(abl_gain4) if abl_gain4 else float('nan'):.3f}", "label-budget ablation; agreement table"),
)
grow5 = dis[:, -1] - dis[:, 0]
rec["disagreement_grows"] = replicate.record(
    "disagreement_grows",
    statement="Reward models that agree in distribution disagree more on the responses best-of-n selects as n grows",
    paper="Eisenstein et al. 2023",
    paper_value="RMs are underspecified: alignment to one RM does not improve another RM trained on the same data (abstract, §3)",
    values=grow5,
    outcome=replicate.mean_ci_rule(grow5, 0.0, "above"),
    guards=rm_guards,
    diagnosis=replicate.Diagnosis(f"with {ablation_pairs} labelled pairs (instead of {n_pairs}) the spread grows by "
                                  f"{np.mean([a['disagreement'][-1] - a['disagreement'][0] for a in ablation.values()]) if ablation else float('nan'):.3f}",
                                  "label-budget ablation"),
)
gain6 = lsc[f"lsc_q{lsc_quantile:g}"][:, i_lsc] - lsc["raw"][:, i_lsc]
abl6 = lsc[f"lsc_q{lsc_ablation_quantile:g}"][:, i_lsc] - lsc["raw"][:, i_lsc]
rec["lsc_beats_raw_sum"] = replicate.record(
    "lsc_beats_raw_sum",
    statement=f"At best-of-{n_lsc}, the LSC sum of two property rewards selects more responses good on both than the raw sum",
    paper="Wang et al. 2024",
    paper_value="LSC-summed rewards beat raw sums for helpful AND harmless RLHF (abstract, §5)",
    values=gain6,
    outcome=replicate.mean_ci_rule(gain6, 0.0, "above"),
    guards=rm_guards,
    diagnosis=replicate.Diagnosis(f"with r_ref at the {lsc_ablation_quantile:g} quantile the LSC − raw gap is {abl6.mean():+.3f} "
                                  f"(the AND oracle reaches {lsc_oracle[:, i_lsc].mean():.3f}, raw {lsc['raw'][:, i_lsc].mean():.3f})",
                                  "r_ref ablation"),
    details={"ablation_quantile_gap": abl6.tolist()},
)
rec["bon_kl_closed_form_vs_empirical"] = replicate.record(
    "bon_kl_closed_form_vs_empirical",
    statement="The closed-form best-of-n KL log n − (n−1)/n upper-bounds the exact KL on π₀'s empirical sample distribution",
    paper="Gao et al. 2022; Beirami et al. 2024",
    paper_value="KL_bon = log n − (n−1)/n (Gao et al. App.); an upper bound (Beirami et al. 2024)",
    values=kl_emp[:, -1] - d[-1] ** 2,
    outcome=replicate.mean_ci_rule(kl_emp[:, -1] - d[-1] ** 2, 0.0, "below"),
    kind="exploratory",
)

# %% [markdown]
# ## Discussion

# %%
abl_single = np.mean([a["gold"].mean(0).max() for a in ablation.values()]) if ablation else float("nan")
abl_acc = np.mean([a["heldout_acc"].mean() for a in ablation.values()]) if ablation else float("nan")
display(Markdown(f"""
**Over-optimisation (claim 1).** Single RMs' proxy reward rises from 0 to {single_proxy.mean(0)[-1]:.2f} member-std at n = {ns[-1]}
(KL {d[-1] ** 2:.2f} nats), while their gold reward rises from {single_gold.mean(0)[0]:.3f} to a peak of {single_gold.mean(0).max():.3f} at
n = {n_peak_single} (KL {bon.kl_best_of_n(n_peak_single):.2f}) and falls to {single_gold.mean(0)[-1]:.3f} at n = {ns[-1]}: the drop from the
out-of-replicate peak is {drop1.mean():.3f} (per replicate {np.round(drop1, 3).tolist()}; verdict: {rec['proxy_up_gold_down']['verdict']}).
Best-of-n by the gold itself reaches {oracle.mean(0)[-1]:.3f}. In distribution the RMs rank {acc.mean():.3f} of held-out pairs like the gold
(min {acc.min():.3f}; mean pairwise agreement {agree.mean():.3f}): far from the gold's own ranking, and that gap is what best-of-n exploits
as n grows. The heads were fit for {head_steps} steps: their mean held-out BT loss ends at {loss[:, -1].mean():.3f} nats and fell at most
{loss_fall.max():.4f} over the last quarter (guard `heads_converged`: < {loss_tol:g}, {'passed' if rm_guards[0].passed else 'FAILED'}); it is
lowest at step {int(np.median(np.argmin(loss, 1))) + 1} (median over replicates; {loss.min(1).mean():.3f} nats) and then rises while the training loss
keeps falling ({train_loss[:, -1].mean():.3f} at the end): the heads over-fit their labels past that point; an early-stopped recipe is untested here.
The guard reads each replicate's mean over heads; the single head whose held-out loss fell most over the last quarter fell {head_fall:.4f} nats.

**Ensembles (claims 2–4).** The pretrain-seed mean ensemble peaks at {pre_gold.mean(0).max():.3f} (n = {n_peak_ens}) against
{member_peak.mean():.3f} for its members (gain {gain2.mean():+.3f}; {rec['ensembles_mitigate']['verdict']}), and finetune-seed mean ensembles at
{np.mean([ens_gold[f'finetune_s{s}_mean'].max(1).mean() for s in rm_seeds]):.3f} (pretrain − finetune {gain4.mean():+.3f}, {rec['pretrain_beats_finetune']['verdict']}; in distribution, heads sharing
an encoder agree on {np.nanmean(agree_within):.3f} of held-out pairs and heads on different encoders on {np.nanmean(agree_across):.3f}). From its
peak the ensemble's gold goes from {pre_gold.mean(0).max():.3f} to {pre_gold.mean(0)[-1]:.3f} at n = {ns[-1]} (out-of-replicate drop {drop3.mean():.3f},
CI [{rec['ensembles_still_overoptimise']['ci']['low']:.3f}, {rec['ensembles_still_overoptimise']['ci']['high']:.3f}]; {rec['ensembles_still_overoptimise']['verdict']}); with
{ablation_pairs} labelled pairs (the ablation) its peak-to-end drop is {np.mean(abl_drop3) if abl_drop3 else float('nan'):.3f} and its peak is at
n = {ns[int(np.argmax(np.mean([a['ens']['pretrain_mean']['gold'] for a in ablation.values()], 0)))] if ablation else 0}.
Min-aggregation peaks at {ens_gold['pretrain_min'].mean(0).max():.3f} (pretrain) and {ft_min_gold.mean(0).max():.3f} (finetune). With
{ablation_pairs} labelled pairs (instead of {n_pairs}) ({n_ablation_seeds} replicates) single RMs reach held-out accuracy {abl_acc:.3f} and a peak gold of
{abl_single:.3f}.

**Disagreement (claim 5).** At the response one member chooses, the members' spread grows from {dis.mean(0)[0]:.2f} (n = 1) to
{dis.mean(0)[-1]:.2f} member-std (n = {ns[-1]}; {rec['disagreement_grows']['verdict']}); the choosing member rates it {self_.mean(0)[-1]:.2f}, the other
members {cross.mean(0)[-1]:.2f}.

**LSC (claim 6).** At best-of-{n_lsc} the share good on both properties is {lsc['raw'][:, i_lsc].mean():.3f} with the raw sum,
{lsc[f'lsc_q{lsc_quantile:g}'][:, i_lsc].mean():.3f} with the LSC sum (r_ref = {lsc_quantile:g} quantile) and
{lsc[f'lsc_q{lsc_ablation_quantile:g}'][:, i_lsc].mean():.3f} at the {lsc_ablation_quantile:g} quantile ({rec['lsc_beats_raw_sum']['verdict']}); π₀'s base rate is
{np.mean([r['base']['good_both'] for r in runs.values()]):.3f} and best-of-{n_lsc} by the property itself {lsc_oracle[:, i_lsc].mean():.3f}: both
combinations stay far below what the two properties allow, so at this scale the property RMs, not the way they are combined, limit
the AND.

**KL.** The closed form is {d[-1] ** 2:.2f} nats at n = {ns[-1]}; the exact KL on each prompt's empirical sample distribution is
{kl_emp.mean(0)[-1]:.2f}, lower because π₀ repeats responses (atoms), as Beirami et al. (2024) show the formula is an upper bound.

**What differs from the papers.** Our gold is a rule, not a larger RM; our RMs are 16-unit heads on frozen 64-dimensional
features of tiny GPTs rather than fine-tuned T5/PaLM models; the optimiser is best-of-n only (no RL); replicates resample data and
fine-tuning seeds but share the {len(rm_seeds)} pretrained encoders. Total time {time.perf_counter() - t_start:.0f} s.
"""))
