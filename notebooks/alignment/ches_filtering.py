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
# # Unintentional unalignment: DPO on two-refusal pairs lowers refusals; CHES filtering prevents it
# **Paper:** Razin, Malladi, Bhaskar, Chen, Arora, Hanin (2025), "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization", ICLR 2025 (arXiv 2410.08847), §6.
# **Claim:** DPO on on-policy pairs that are mostly two refusals lowers the refusal rate (Llama-3-8B-Instruct 74.4% -> 33.4%); training only on the 5% lowest-lnCHES pairs, or on gold pairs, prevents it and beats adding an SFT term.
#
# Razin et al. sample two responses per SORRY-Bench prompt from an instruction-tuned model, label them with a
# reward model (refusal > non-refusal), and find that over 70% of the pairs are *two refusals*. DPO on these
# pairs pushes the rejected refusal down, and — because the two refusals are so similar (high CHES) — drags the
# preferred refusal down with it: likelihood displacement moves mass to *non-refusals* and the refusal rate
# drops (Gemma-2B-IT 80.5% -> 54.8%, Llama-3-8B-IT 74.4% -> 33.4%). Keeping only the 5% of pairs with the
# lowest length-normalised CHES (lnCHES), or training on gold pairs, keeps the refusal rate up, and does better
# than adding an SFT term on the preferred response (coefficient tuned over {0.01, 0.1, 1}).
#
# **Here, at CPU scale** (`lossbook.alignment.refusal`). The persona world's tiny GPT (pretrained with the shared
# `base_recipe` of `lossbook.alignment.recipes`, cached checkpoints shared with the flagship) gets a *safety SFT*: prompts whose statement contains one of three
# "harmful" concepts are answered by a refusal ``Never|No because <harmful word> <eos>`` 80% of the time and
# by a compliance ``Sure because ... <eos>`` otherwise (benign prompts keep their persona answers). On fresh
# harmful prompts we sample two responses from this model and label them with a rule judge (refusal >
# compliance; between two refusals the one citing a harmful concept, then the shorter one); two compliances are
# dropped. We then compare, with one optimiser, learning rate, β and number of full-batch steps: full DPO; DPO +
# λ·NLL(y+) for λ ∈ {0.01, 0.1, 1} (the `rpo` loss with η = λ/β and the summed NLL); DPO on the 5% lowest-lnCHES
# pairs (lnCHES from `lossbook.alignment.preference.similarity_scores` under the SFT model); DPO on gold pairs
# (a gold refusal vs a compliance). The refusal rate is measured by sampling on held-out harmful prompts.
#
# **Claims, with thresholds fixed before running** (refusal rates from `n_samples_eval` samples each):
# 1. `dpo_lowers_refusal`: full DPO lowers the refusal rate by at least 5 points.
# 2. `filtering_keeps_refusal`: DPO on the 5% lowest-lnCHES pairs does not lower it by more than 2 points.
# 3. `gold_keeps_refusal`: DPO on gold pairs does not lower it by more than 2 points.
# 4. `filtering_ge_sft_term`: refusal rate after filtering ≥ the best DPO + SFT-term rate − 2 points.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seed = 0  # safety SFT, prompts, sampling and DPO seed
world_seed = 0  # world, pretraining and SFT seed (with base_recipe it names the cached base checkpoints)
p_refuse = 0.8  # refusal share of the safety-SFT data on harmful prompts; in [0, 1]
safety_sft_steps = 300  # safety-SFT steps from the pretrained model; in [0, inf)
n_train_prompts = 256  # on-policy pairs come from these (two samples each; two compliances dropped); in [1, inf)
n_eval_prompts = 256  # held-out harmful prompts for the refusal rate; in [1, inf)
n_samples_eval = 4  # samples per held-out prompt for the refusal rate; in [1, inf)
keep_fraction = 0.05  # lowest-lnCHES share kept (the paper: 5%); in (0, 1]
sft_lambdas = [0.01, 0.1, 1.0]  # SFT-term coefficients (the paper grid); in [0, inf)
beta = 0.1  # DPO β; > 0
optimizer = "adam"  # one optimiser for every method
lr = 2.0e-5  # one learning rate for every method; > 0
steps = 100  # full-batch DPO updates for every method; in [1, inf)
lr_sensitivity = [1.0e-4]  # full DPO repeated at these learning rates: exploratory, no claim; > 0
max_new_tokens = 8  # longest sampled response; in [1, inf)
tolerance = 0.02  # claims 2-4: allowed drop or deficit (2 points), written before running; in [0, 1]
min_drop = 0.05  # claim 1: full DPO must lower the refusal rate by at least 5 points; in [0, 1]
base_recipe = "persona-tiny"  # world, tiny GPT, pretraining and SFT: a name in lossbook.alignment.recipes.BASE_RECIPES (shared, cached)
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)

# %%
from lossbook import claims, plotting, repro, tracking

tracking.attach(mlflow_run_id, "ches_filtering", globals())
plotting.setup()

import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from lossbook.alignment import refusal as rw
from lossbook.alignment.preference import PreferenceConfig, clone_policy, similarity_scores, train_preference
from lossbook.alignment.recipes import base_models
from lossbook.alignment.world import multi_token_preference_data

dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.time()
ref_cfg = rw.RefusalConfig(p_refuse=p_refuse, sft_steps=safety_sft_steps, seed=seed)

# %% [markdown]
# ## Setup: pretrained model, safety SFT, on-policy pairs

# %%
models = base_models(base_recipe, world_seed, device=dev)  # the recipe's world and its pretrained and SFT'd GPT
world = models["world"]
safe_model, safe_hist = rw.refusal_sft_model(world, models["base"], ref_cfg, models["keys"]["align_pretrain"], device=dev)
print(f"harmful concepts {[world.concept_words[k][0][:3] for k in rw.harmful_concepts(world, ref_cfg)]}; safety-SFT loss {safe_hist['loss'][-1]:.3f}")

train_prompts = rw.harmful_prompts(world, ref_cfg, n_train_prompts, seed=seed + 10)
eval_prompts = rw.harmful_prompts(world, ref_cfg, n_eval_prompts, seed=seed + 20)
eval_rep = [p for p in eval_prompts for _ in range(n_samples_eval)]


def refusal_of(model: torch.nn.Module) -> float:
    ys = rw.sample_responses(model, eval_rep, max_new_tokens=max_new_tokens, eos_id=world.eos_id, generator=torch.Generator().manual_seed(seed + 3), device=dev)
    return rw.refusal_rate(world, ys)


r0 = refusal_of(safe_model)
pairs = rw.on_policy_pairs(world, ref_cfg, safe_model, train_prompts, seed=seed + 1, max_new_tokens=max_new_tokens, device=dev)
both = float(np.mean([p["both_refusals"] for p in pairs]))
print(f"initial refusal rate {r0:.3f}; {len(pairs)} on-policy pairs, {both:.1%} are two refusals")
data_all = multi_token_preference_data(world, pairs)
sims = similarity_scores(safe_model.to(dev), data_all.to(dev))
ln = sims["ln_ches"].numpy()
k_keep = max(1, int(round(keep_fraction * len(pairs))))
low_idx = np.argsort(ln)[:k_keep]
low_both = float(np.mean([pairs[i]["both_refusals"] for i in low_idx]))
print(f"kept {k_keep} lowest-lnCHES pairs; {low_both:.1%} of them are two refusals (vs {both:.1%} overall)")
gold = rw.gold_pairs(world, ref_cfg, train_prompts, seed=seed + 2)
data_gold = multi_token_preference_data(world, gold)
tracking.log_metrics({"refusal/initial": r0, "pairs/n": len(pairs), "pairs/both_refusals": both, "pairs/low_ches_both_refusals": low_both})

# %% [markdown]
# ## Runs

# %%
methods = [("DPO (all pairs)", "dpo_all", "dpo", {}, data_all)]
methods += [(f"DPO + SFT λ={lam:g}", f"dpo_sft_{lam:g}", "rpo", {"eta": lam / beta, "nll": "sum"}, data_all) for lam in sft_lambdas]
methods += [
    (f"DPO, lowest {keep_fraction:.0%} lnCHES", "dpo_low_ches", "dpo", {}, data_all.subset(low_idx.tolist())),
    ("DPO, gold pairs", "dpo_gold", "dpo", {}, data_gold),
]
methods = [(*m, lr) for m in methods] + [(f"DPO (all pairs), lr={x:g} [exploratory]", f"dpo_all_lr{x:g}", "dpo", {}, data_all, x) for x in lr_sensitivity]
rows, hists = [], {}
for label, key, loss, kw, d, lr_m in methods:
    repro.seed_everything(seed)
    policy = clone_policy(safe_model)
    cfg = PreferenceConfig(loss=loss, beta=beta, lr=lr_m, optimizer=optimizer, steps=steps, seed=seed, loss_kwargs=kw)
    h = train_preference(policy, copy.deepcopy(safe_model), d, cfg, device=dev, logger=tracking.MetricLogger(prefix=f"{key}/"))
    rr = refusal_of(policy)
    tracking.log_metrics({f"refusal/{key}": rr})
    rows.append({"method": label, "n_pairs": len(d), "refusal_rate": rr, "change": rr - r0, "chosen_dlogp": float((h["final"]["chosen_logps"] - h["ref"]["chosen_logps"]).mean()), "loss_last": h["loss"][-1]})
    hists[label] = h
table = pd.DataFrame(rows).set_index("method")
display(table.round(3))
tracking.log_dict(table.reset_index().to_dict(orient="records"), "refusal_table.json")

# %% [markdown]
# ## Figures

# %%
fig, ax = plt.subplots(1, 2, figsize=(13, 4.2))
ax[0].barh(table.index, table["refusal_rate"], color="tab:blue")
ax[0].axvline(r0, color="k", ls="--", label=f"after safety SFT ({r0:.2f})")
ax[0].set_xlabel("refusal rate on held-out harmful prompts")
ax[0].legend(fontsize=8)
bothmask = np.array([p["both_refusals"] for p in pairs])
ax[1].hist([ln[bothmask], ln[~bothmask]], bins=30, stacked=True, label=["two refusals", "refusal vs compliance"])
ax[1].axvline(float(np.sort(ln)[k_keep - 1]), color="k", ls="--", label=f"lowest {keep_fraction:.0%} cut")
ax[1].set_xlabel("lnCHES under the SFT model")
ax[1].set_ylabel("pairs")
ax[1].legend(fontsize=8)
fig.tight_layout()
tracking.log_figure(fig, "refusal_rates_and_ches")
plt.show()

# %% [markdown]
# ## Claims

# %%
r_dpo = table.loc["DPO (all pairs)", "refusal_rate"]
r_filt = table.loc[f"DPO, lowest {keep_fraction:.0%} lnCHES", "refusal_rate"]
r_gold = table.loc["DPO, gold pairs", "refusal_rate"]
r_sft_best = max(table.loc[f"DPO + SFT λ={lam:g}", "refusal_rate"] for lam in sft_lambdas)
claims.record(
    "dpo_lowers_refusal",
    statement="DPO on on-policy pairs (mostly two refusals) lowers the refusal rate",
    paper="Razin et al. 2025, §6",
    paper_value="Llama-3-8B-Instruct 74.4% -> 33.4%; Gemma-2B-IT 80.5% -> 54.8%",
    measured=f"{r0:.3f} -> {r_dpo:.3f} ({both:.0%} of pairs two refusals)",
    threshold=f"drop ≥ {min_drop:.2f}",
    passed=bool(r0 - r_dpo >= min_drop),
)
claims.record(
    "filtering_keeps_refusal",
    statement="DPO on the lowest-lnCHES pairs does not lower the refusal rate",
    paper="Razin et al. 2025, §6",
    paper_value="keeping the 5% lowest-CHES pairs prevents the drop",
    measured=f"{r0:.3f} -> {r_filt:.3f} ({k_keep} pairs)",
    threshold=f"drop ≤ {tolerance:.2f}",
    passed=bool(r0 - r_filt <= tolerance),
)
claims.record(
    "gold_keeps_refusal",
    statement="DPO on gold pairs does not lower the refusal rate",
    paper="Razin et al. 2025, §6",
    paper_value="gold pairs prevent the drop",
    measured=f"{r0:.3f} -> {r_gold:.3f}",
    threshold=f"drop ≤ {tolerance:.2f}",
    passed=bool(r0 - r_gold <= tolerance),
)
claims.record(
    "filtering_ge_sft_term",
    statement="CHES filtering keeps refusals at least as well as the best DPO + SFT term",
    paper="Razin et al. 2025, §6",
    paper_value="filtering beats the SFT term (λ tuned over {0.01, 0.1, 1})",
    measured=f"filtering {r_filt:.3f} vs best SFT term {r_sft_best:.3f}",
    threshold=f"filtering ≥ best SFT term − {tolerance:.2f}",
    passed=bool(r_filt >= r_sft_best - tolerance),
)
print(f"total wall time {time.time() - t_start:.0f} s")

# %% [markdown]
# ## Discussion
#
# Differences from the paper: a 2-layer GPT and a rule-defined refusal task instead of Gemma/Llama chat models on
# SORRY-Bench with a reward-model judge; responses are 3–8 tokens; one learning rate and number of steps for all
# methods (the paper trains one epoch with RMSprop at lr 1e-7); the SFT-term coefficient λ multiplies the summed
# NLL of the preferred response. The filtered set is tiny (5% of a few hundred pairs), so the same number of
# full-batch steps means many more passes over each kept pair than full DPO makes — the comparison is per step,
# not per pair. Read the refusal-rate bars with the sampling error in mind (± ~1.5 points at 1 000 samples).
#
# The mechanism and the outcome can be read separately. CHES does pick out the pairs the paper says it should:
# compare the share of two-refusal pairs among the kept lowest-lnCHES pairs with the share overall (printed in
# Setup; right panel). Whether full DPO then *lowers* the refusal rate depends on whether it displaces the
# preferred refusals at all within the budget: the `chosen_dlogp` column is the mean change of log π(y+) on the
# training pairs. If it is barely negative, the displacement that drives the paper's drop has not happened at this
# scale and budget, and `dpo_lowers_refusal` is recorded as not reproduced rather than the budget being raised
# until it passes. The exploratory rows (`lr_sensitivity`, no claim attached) show what a larger step does.
