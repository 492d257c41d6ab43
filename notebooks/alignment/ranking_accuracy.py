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
# # Preference learning does not learn preference rankings
# **Paper:** Chen, Malladi, Zhang, Chen, Zhang, Cho, Lin (2024), "Preference Learning Algorithms Do Not Learn Preference Rankings", NeurIPS 2024 (arXiv 2405.19534).
# **Claim:** DPO-trained models rank most preference pairs no better than chance-ish (most < 60%) while the exact RLHF/DPO optimum would reach ~97–99%; Thm 4.1: a pair ends correctly ranked iff its DPO loss < −log σ(β·c), so DPO rarely flips the pairs the reference misranks, fewer as c grows.
#
# Chen et al. measure the **ranking accuracy** of a model — does it give the preferred response y_w a higher
# likelihood than y_l? — raw (summed log-probs) and length-normalised (mean token log-prob). Preference-tuned
# LLMs score mostly below 60% (abstract; the book's notes give Zephyr-7B-DPO on AlpacaFarm validation: 54%
# length-normalised, 42% raw — example values not re-checked against the paper's table),
# while the **idealized** model — the exact optimum π* ∝ π_ref·exp(r*/β) of RLHF/DPO, computable from the
# annotators' preference fractions α under Bradley–Terry, π*(y1)/π*(y2) = [π_ref(y1)/π_ref(y2)]·(α₁₂/α₂₁)^{1/β} —
# would reach a median of ~97–99% over β ∈ {0.01, 0.1, 1, 5, 10}. Their **Theorem 4.1** explains why: with
# c = log π_ref(y_l) − log π_ref(y_w) the reference's misranking margin, π ranks the pair correctly iff
# L_DPO(pair) < −log σ(β·c); a pair the reference misranks by a wide margin needs a very low DPO loss to flip,
# and DPO rarely gets there ("DPO rarely flips the ranking of the two continuations"; the book's notes give under
# 10% of such pairs for Pythia-2.8B on HH, a figure we did not re-check against the paper's table).
#
# **Here, at CPU scale.** The book's persona world with a tiny GPT (pretrained on prompt+response documents with
# the shared `base_recipe` of `lossbook.alignment.recipes`; cached checkpoints shared with the flagship) as π_ref. Pairs come with **exact annotator fractions**
# (`lossbook.alignment.refusal.annotated_pairs`): annotators like the right answer group and, mildly, a longer justification;
# α = σ(κ·Δu). Half the pairs (`answer_flip`, `opposite`) agree with the reference's prior, half (`extend`,
# `truncate`: the longer response is preferred) go against the raw-likelihood prior, which favours shorter
# responses — as in real data, where the reference misranks many pairs. We train DPO (β = 0.1, full batch, Adam,
# a fixed budget chosen before running) and measure ranking accuracy before and after, on train and held-out
# pairs, against the idealized accuracy over the β grid; Theorem 4.1 is checked on every pair.
#
# **Claims, with thresholds fixed before running:**
# 1. `achieved_below_idealized`: after DPO, held-out ranking accuracy (raw and length-normalised) is at least
#    10 points below the median idealized accuracy over the β grid (paper: most < 60% vs ~97–99%).
# 2. `thm41_all_pairs`: Theorem 4.1 holds on 100% of the pairs (train + held-out, after training).
# 3. `dpo_flips_minority`: of the training pairs the reference misranks (raw, c > 0), DPO flips < 50%, and the
#    flip rate in the top tercile of c is ≤ that of the bottom tercile (paper: < 10% flipped).

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seed = 0  # pairs, train/held-out split and DPO seed
world_seed = 0  # world, pretraining and SFT seed (with base_recipe it names the cached base checkpoints)
n_train_pairs = 256  # annotated pairs DPO trains on (full batch); in [1, inf)
n_eval_pairs = 256  # held-out annotated pairs; in [1, inf)
kappa = 3.0  # annotator sharpness κ in α: σ(κ·Δu); > 0
length_bonus = 0.3  # annotator utility per clause word
betas_ideal = [0.01, 0.1, 1.0, 5.0, 10.0]  # the paper grid for the idealized accuracy; > 0
beta = 0.1  # DPO β; > 0
optimizer = "adam"  # DPO optimiser
lr = 2.0e-5  # DPO learning rate; > 0
steps = 100  # full-batch DPO updates; in [1, inf)
gap_threshold = 0.10  # claim 1: idealized median − achieved ≥ 10 points (written before running); in [0, 1]
base_recipe = "persona-tiny"  # world, tiny GPT, pretraining and SFT: a name in lossbook.alignment.recipes.BASE_RECIPES (shared, cached)
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
# %%
from lossbook import claims, plotting, repro, tracking

tracking.attach(mlflow_run_id, "ranking_accuracy", globals())
plotting.setup()

import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from lossbook.alignment import ranking as rk
from lossbook.alignment import refusal as rw
from lossbook.alignment.preference import PreferenceConfig, clone_policy, evaluate_logps, train_preference
from lossbook.alignment.recipes import base_models
from lossbook.alignment.world import multi_token_preference_data

dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.time()

# %% [markdown]
# ## Setup: reference model and annotated pairs

# %%
models = base_models(base_recipe, world_seed, device=dev)  # the recipe's world and its pretrained and SFT'd GPT
# π_ref = the pretrained model (trained on whole prompt+response documents); the flagship's SFT stage only
# trains the first answer token and breaks multi-token continuations.
world, ref_model = models["world"], models["base"]

pairs = rw.annotated_pairs(world, n_train_pairs + n_eval_pairs, seed=world_seed + 200 + seed, kappa=kappa, length_bonus=length_bonus)
rng = np.random.default_rng(seed)
order = rng.permutation(len(pairs))
pairs = [pairs[i] for i in order]
splits = {"train": pairs[:n_train_pairs], "heldout": pairs[n_train_pairs:]}
data = {k: multi_token_preference_data(world, v) for k, v in splits.items()}
alpha = {k: torch.tensor([p["alpha"] for p in v], dtype=torch.float64) for k, v in splits.items()}
types = {k: np.array([p["type"] for p in v]) for k, v in splits.items()}
ref_lp = {k: evaluate_logps(ref_model.to(dev), d.to(dev)) for k, d in data.items()}
print(pd.Series(types["train"]).value_counts().to_dict(), f"mean α = {float(alpha['train'].mean()):.3f}")

# %% [markdown]
# ## Idealized ranking accuracy (exact RLHF/DPO optimum) and the reference's accuracy

# %%
def acc_row(lp: dict, split: str) -> dict:
    c, r, lc, lr_ = lp["chosen_logps"], lp["rejected_logps"], lp["chosen_len"], lp["rejected_len"]
    return {"raw": rk.ranking_accuracy(c, r), "length_norm": rk.ranking_accuracy(c, r, lc, lr_, normalized=True)}


ideal = {}
for split in data:
    lp = ref_lp[split]
    ideal[(split, "raw")] = rk.idealized_ranking_accuracy(lp["chosen_logps"], lp["rejected_logps"], alpha[split], betas_ideal)
    ideal[(split, "length_norm")] = rk.idealized_ranking_accuracy(
        lp["chosen_logps"] / lp["chosen_len"], lp["rejected_logps"] / lp["rejected_len"], alpha[split], betas_ideal
    )
ideal_df = pd.DataFrame({f"{s}/{m}": v for (s, m), v in ideal.items()}).T
ideal_df.columns = [f"β={b:g}" for b in ideal_df.columns]
ideal_df["min"], ideal_df["median"], ideal_df["max"] = ideal_df.min(axis=1), ideal_df.median(axis=1), ideal_df.max(axis=1)
display(ideal_df.round(3))

# %% [markdown]
# ## DPO

# %%
repro.seed_everything(seed)
policy = clone_policy(ref_model)
cfg = PreferenceConfig(loss="dpo", beta=beta, lr=lr, optimizer=optimizer, steps=steps, seed=seed)
hist = train_preference(policy, copy.deepcopy(ref_model), data["train"], cfg, device=dev, logger=tracking.MetricLogger(prefix="dpo/"))
pol_lp = {k: evaluate_logps(policy, d.to(dev)) for k, d in data.items()}

rows = []
for split in data:
    for when, lp in (("reference", ref_lp[split]), ("after DPO", pol_lp[split])):
        rows.append({"split": split, "model": when, **acc_row(lp, split)})
    rows.append({"split": split, "model": "idealized (median over β)", "raw": ideal_df.loc[f"{split}/raw", "median"], "length_norm": ideal_df.loc[f"{split}/length_norm", "median"]})
acc_df = pd.DataFrame(rows)
display(acc_df.round(3))
rew_acc = float(((pol_lp["heldout"]["chosen_logps"] - ref_lp["heldout"]["chosen_logps"]) > (pol_lp["heldout"]["rejected_logps"] - ref_lp["heldout"]["rejected_logps"])).double().mean())
print(f"DPO loss {hist['loss'][0]:.3f} -> {hist['loss'][-1]:.3f}; held-out *reward* accuracy (TRL rewards/accuracies, involves π_ref) {rew_acc:.3f}")
by_type = pd.DataFrame(
    {
        "reference": pd.Series(rk.ranking_correct(ref_lp["heldout"]["chosen_logps"], ref_lp["heldout"]["rejected_logps"]).numpy()).groupby(types["heldout"]).mean(),
        "after DPO": pd.Series(rk.ranking_correct(pol_lp["heldout"]["chosen_logps"], pol_lp["heldout"]["rejected_logps"]).numpy()).groupby(types["heldout"]).mean(),
    }
)
print("held-out raw ranking accuracy by pair type:")
display(by_type.round(3))
tracking.log_dict(acc_df.to_dict(orient="records"), "ranking_accuracy.json")
for r in rows:
    tag = f"{r['split']}/{r['model'].split()[0]}"
    tracking.log_metrics({f"rank_acc_raw/{tag}": r["raw"], f"rank_acc_ln/{tag}": r["length_norm"]})

# %% [markdown]
# ## Theorem 4.1 on every pair, and which misranked pairs DPO flips

# %%
thm = {k: rk.thm41_check(pol_lp[k]["chosen_logps"], pol_lp[k]["rejected_logps"], ref_lp[k]["chosen_logps"], ref_lp[k]["rejected_logps"], beta) for k in data}
agree_all = torch.cat([t["agree"] for t in thm.values()])
n_ties = int(torch.cat([t["tie"] for t in thm.values()]).sum())
print(f"Thm 4.1 agreement {float(agree_all.double().mean()):.4f} on {agree_all.numel()} pairs ({n_ties} numerical ties)")

c_tr = rk.misranking_margin(ref_lp["train"]["chosen_logps"], ref_lp["train"]["rejected_logps"])
mis = c_tr > 0
flipped = (pol_lp["train"]["chosen_logps"] > pol_lp["train"]["rejected_logps"]) & mis
flip_rate = float(flipped.double().sum() / mis.double().sum().clamp(min=1))
cm = c_tr[mis].numpy()
edges = [0.0, *np.quantile(cm, [1 / 3, 2 / 3]).tolist(), float(cm.max()) + 1e-6] if len(cm) >= 3 else [0.0, 1e9]
bins = rk.flip_rates_by_margin(ref_lp["train"]["chosen_logps"], ref_lp["train"]["rejected_logps"], pol_lp["train"]["chosen_logps"], pol_lp["train"]["rejected_logps"], edges)
display(pd.DataFrame(bins).round(3))
print(f"reference misranks {int(mis.sum())}/{len(mis)} training pairs; DPO flips {flip_rate:.3f} of them")

fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
t = thm["train"]
ok = t["ranked"].numpy()
ax[0].scatter(t["bound"].numpy()[ok], t["dpo_loss"].numpy()[ok], s=8, label="ranked correctly", color="tab:green")
ax[0].scatter(t["bound"].numpy()[~ok], t["dpo_loss"].numpy()[~ok], s=8, label="misranked", color="tab:red")
lim = float(max(t["bound"].max(), t["dpo_loss"].max()))
ax[0].plot([0, lim], [0, lim], "k--", lw=0.8, label="L_DPO = −log σ(βc)")
ax[0].set_xlabel("−log σ(β·c)  (Thm 4.1 bound)")
ax[0].set_ylabel("DPO loss of the pair after training")
ax[0].legend(fontsize=8)
ax[0].set_title("Thm 4.1: correct iff below the diagonal")
ax[1].hist([c_tr[~mis].numpy(), cm], bins=30, label=["reference right (c ≤ 0)", "reference wrong (c > 0)"], stacked=True)
ax[1].set_xlabel("c = log π_ref(y_l) − log π_ref(y_w) (nats)")
ax[1].set_ylabel("pairs")
ax[1].legend(fontsize=8)
b_df = pd.DataFrame(bins)
ax[2].bar([f"[{b['lo']:.1f}, {b['hi']:.1f})" for b in bins], b_df["flipped"].fillna(0))
ax[2].set_xlabel("misranking margin c (nats), terciles")
ax[2].set_ylabel("share flipped by DPO")
fig.tight_layout()
tracking.log_figure(fig, "thm41_and_flips")
plt.show()

fig, ax = plt.subplots(figsize=(7, 4))
for m, style in (("raw", "-o"), ("length_norm", "--s")):
    ax.plot(betas_ideal, [ideal[("heldout", m)][b] for b in betas_ideal], style, label=f"idealized, {m}")
    ax.axhline(float(acc_df.query("split == 'heldout' and model == 'after DPO'")[m].iloc[0]), ls=":" if m == "raw" else "-.", color="gray", label=f"after DPO, {m}")
ax.set_xscale("log")
ax.set_xlabel("β of the idealized model")
ax.set_ylabel("held-out ranking accuracy")
ax.legend(fontsize=8)
fig.tight_layout()
tracking.log_figure(fig, "idealized_vs_achieved")
plt.show()

# %% [markdown]
# ## Claims

# %%
ach = acc_df.query("split == 'heldout' and model == 'after DPO'").iloc[0]
gaps = {m: float(ideal_df.loc[f"heldout/{m}", "median"] - ach[m]) for m in ("raw", "length_norm")}
claims.record(
    "achieved_below_idealized",
    statement="After DPO, ranking accuracy is far below the idealized accuracy of the exact DPO/RLHF optimum",
    paper="Chen et al. 2024, Table 1 / Fig. 1",
    paper_value="most models < 60% (abstract), gaps up to 59 points; e.g. Zephyr-7B-DPO AlpacaFarm 54% (LN) / 42% (raw) vs idealized median ~97-99% (example values from the book notes, not re-checked against the table)",
    measured=f"held-out raw {ach['raw']:.3f} vs idealized median {ideal_df.loc['heldout/raw', 'median']:.3f}; LN {ach['length_norm']:.3f} vs {ideal_df.loc['heldout/length_norm', 'median']:.3f}",
    threshold=f"idealized median − achieved ≥ {gap_threshold:.2f} for both raw and length-normalised",
    passed=bool(min(gaps.values()) >= gap_threshold),
    details=gaps,
)
claims.record(
    "thm41_all_pairs",
    statement="Thm 4.1: a pair is ranked correctly iff its DPO loss < −log σ(β·c)",
    paper="Chen et al. 2024, Theorem 4.1",
    paper_value="holds for every pair (a theorem)",
    measured=f"{float(agree_all.double().mean()):.4f} of {agree_all.numel()} pairs",
    threshold="agreement on 100% of pairs",
    passed=bool(agree_all.all()),
)
top, bottom = bins[-1]["flipped"], bins[0]["flipped"]
claims.record(
    "dpo_flips_minority",
    statement="DPO flips only a minority of the pairs the reference misranks, and fewer as the margin c grows",
    paper="Chen et al. 2024, §4 (Fig. 3)",
    paper_value="DPO rarely flips a misranked pair (NYU-CDS summary); < 10% flipped for Pythia-2.8B on HH (book notes, not re-checked)",
    measured=f"{flip_rate:.3f} of {int(mis.sum())} misranked pairs flipped; by c tercile {[round(b['flipped'], 3) for b in bins]}",
    threshold="flip rate < 0.5 and top-tercile flip rate ≤ bottom-tercile flip rate",
    passed=bool(flip_rate < 0.5 and (np.isnan(top) or np.isnan(bottom) or top <= bottom)) if int(mis.sum()) > 0 else None,
)
print(f"total wall time {time.time() - t_start:.0f} s")

# %% [markdown]
# ## Discussion
#
# Differences from the paper: a 2-layer GPT on a synthetic world, not 1–7B chat models on UltraFeedback or
# AlpacaFarm; the annotator fractions are *exact* by construction (Bradley–Terry on a known utility), where the
# paper uses a handful of human cross-annotations or a simulated 0.75; the idealized model uses the reference
# log-probs exactly, so its accuracy is a true upper bound for this π_ref. Chen et al.'s code compares ratios
# with a tie band of 0.05 on both sides, which we follow. Their raw-likelihood branch compares the *ratio of
# summed log-probs* rather than the likelihood ratio; we use the likelihood ratio. Theorem 4.1 is an algebraic
# identity, so its check is a check of the implementation (and of numerical ties); the informative part is how
# far the DPO loss of the misranked pairs is from the bound −log σ(βc) (left panel).
#
# The idealized accuracy depends on how strongly annotators agree. Here the length pairs have α = σ(κ·0.3)
# (≈ 0.71 with κ = 3), so (α/(1−α))^{1/β} is only e^{0.9/β}: for β ≥ 1 the idealized optimum cannot overturn a
# reference margin c of a few nats, and it keeps the reference's length-driven misrankings. Read the β columns of
# the idealized table: the raw idealized accuracy collapses from ~1 at β ≤ 0.1 to about the reference's at β ≥ 1,
# so its *median* over the paper's grid can sit near the achieved accuracy, while the length-normalised one
# (margins per token are small) stays high. The claim's threshold uses the median, as the paper does.
