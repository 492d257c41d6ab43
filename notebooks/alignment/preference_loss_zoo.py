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
# # The preference-loss zoo: which losses lower the chosen likelihood, and which keep it up
# **Paper:** Liu et al. (2024) "Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly an Adversarial Regularizer" (RPO, arXiv 2405.16436); Jung et al. (2024) "Binary Classifier Optimization for LLM Alignment" (BCO, arXiv 2404.04656); Wang et al. (2023) f-DPO (arXiv 2309.16240); Razin et al. (2025) likelihood displacement (arXiv 2410.08847).
# **Claim:** DPO lowers the chosen log-prob while its loss falls; an SFT term (RPO), anchored losses (APO-zero, NCA) and BCO keep it higher; BCO ≈ DPO on paired data; f-DPO's divergence trades alignment for diversity.
#
# "Why do the chosen log-probs go *down* during DPO?" is the most repeated question of DPO users (trl#800,
# eric-mitchell/direct-preference-optimization#32/#36, LlamaFactory#6153). DPO only optimises the
# *margin* β·[(log π − log π_ref)(y_w) − (log π − log π_ref)(y_l)], so nothing stops both log-probs from falling.
# Many later losses add something that anchors the chosen response: RPO adds η·β·NLL(y_w) (Liu et al. 2024,
# who report that it stops DPO's "significant and continual decrease" of chosen log-probs, Fig. 1), APO-zero
# and NCA push the chosen *reward* up on its own, BCO classifies chosen vs rejected rewards around a running
# shift δ (and Jung et al. show it performs on par with DPO on paired data), and f-DPO swaps the reverse KL for
# other f-divergences ("a balance between alignment performance and generation diversity", abstract).
#
# **Here, at CPU scale.** One synthetic preference dataset from the book's persona world
# (`lossbook.alignment.world`): prompts "Would you say : <speaker> <statement> ?", chosen = a
# trait-consistent response "answer because w1..wk <eos>", rejected = the same response with the answer
# flipped to the opposite group (`answer_flip`, near-identical tokens, opposite meaning), an opposite
# response, or a random one. A tiny GPT is pretrained on whole prompt+response documents (`lossbook.alignment.sft`
# with the shared `base_recipe` of `lossbook.alignment.recipes`, cached checkpoints shared with the flagship
# notebook; we use the pretrained model as π_ref, see Setup), then
# each loss fine-tunes a copy of it from the same start,
# with the **same optimiser, learning rate, number of full-batch steps and β** (SimPO, which has no reference
# and a different β scale, gets its paper-style β and γ). We log the TRL metric names for every loss and
# measure at the end: Δ log π(y_w) and Δ log π(y_l) (train pairs), reward accuracy (held-out pairs), KL(π‖π_ref)
# and entropy from policy samples, and a **gold-reward win rate** against the reference's samples on held-out
# prompts (rule judge `lossbook.alignment.refusal.gold_reward`: +1 for the right answer group, +0.5·relevance of the clause,
# −1 if malformed).
#
# **Claims, with thresholds fixed before running** (checked in the Claims section):
# 1. `dpo_lowers_chosen`: under DPO the loss falls and the final mean Δ log π(y_w) < 0 on the training pairs.
# 2. `rpo_stops_chosen_decrease_eta*` (one per η in `rpo_etas`, the paper's η = 0.005 first): RPO's final
#    Δ log π(y_w) > DPO's, and its chosen log-prob does not keep falling: value at the end ≥ value at mid-training.
# 3. `keeps_chosen_above_dpo_<loss>` for APO-zero, NCA and BCO: final Δ log π(y_w) > DPO's.
# 4. `bco_matches_dpo`: |win rate(BCO) − win rate(DPO)| ≤ 0.05 and |held-out reward accuracy difference| ≤ 0.05.
# 5. `fdpo_forward_kl_more_diverse`: sample entropy under f-DPO with forward KL > under reverse KL (= DPO).

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seed = 0  # pairs, training and sampling seed
world_seed = 0  # world, pretraining and SFT seed (with base_recipe it names the cached base checkpoints)
n_train_pairs = 128  # preference pairs every loss trains on (full batch); in [1, inf)
n_eval_pairs = 256  # held-out pairs and prompts for reward accuracy, KL, entropy and win rate; in [1, inf)
pair_types = ["answer_flip", "opposite", "random"]  # how y_l is built from y_w (lossbook.alignment.world.PAIR_TYPES)
losses = ["dpo", "ipo", "hinge", "cdpo", "robust_dpo", "ln_dpo", "simpo", "nca", "apo_zero", "sppo_hard", "fdpo_js", "fdpo_alpha", "fdpo_forward_kl", "bco_pair", "kto_pair"]  # registered losses to compare
rpo_etas = [0.005, 1.0]  # RPO η: the paper 0.005, and 1.0 (the top of Razin et al. SFT-coefficient grid); in [0, inf)
beta = 0.1  # β of every loss but SimPO; > 0
simpo_beta = 2.0  # SimPO has no reference; the paper β is ~2 with γ/β ≈ 0.5; > 0
simpo_gamma = 1.0  # SimPO target margin γ
label_smoothing = 0.1  # cdpo, robust_dpo; in [0, 1)
fdpo_alpha = 0.5  # α of f-DPO's α-divergence (fdpo_alpha)
optimizer = "adam"  # one optimiser for every loss
lr = 2.0e-5  # one learning rate for every loss; > 0
steps = 100  # full-batch updates per loss; in [1, inf)
sample_temperature = 1.0  # sampling temperature for KL, entropy and the win rate; > 0
max_new_tokens = 8  # longest sampled response; in [1, inf)
base_recipe = "persona-tiny"  # world, tiny GPT, pretraining and SFT: a name in lossbook.alignment.recipes.BASE_RECIPES (shared, cached)
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
# %%
from lossbook import claims, plotting, repro, tracking

tracking.attach(mlflow_run_id, "preference_loss_zoo", globals())
plotting.setup()

import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from tqdm.auto import tqdm

from lossbook.alignment import refusal as rw
from lossbook.alignment.preference import PreferenceConfig, clone_policy, evaluate_logps, train_preference
from lossbook.alignment.ranking import ranking_accuracy
from lossbook.alignment.recipes import base_models
from lossbook.alignment.world import multi_token_preference_data
from lossbook.alignment.zoo import loss_setup

dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.time()
runs = [(name, name, {}) for name in losses]  # (label, registered loss, loss kwargs)
runs += [(f"rpo_eta{eta:g}", "rpo", {"eta": eta}) for eta in rpo_etas]

# %% [markdown]
# ## Setup: world, pretrained + SFT model (cached), preference pairs

# %%
models = base_models(base_recipe, world_seed, device=dev)  # the recipe's world and its pretrained and SFT'd GPT
# The reference is the *pretrained* model: the flagship's SFT stage trains only the first answer token, which
# breaks multi-token continuations (its samples repeat answer tokens), while pretraining is on whole
# "prompt answer because w1..wk <eos>" documents — i.e. it already is an SFT model for this response format.
world, ref_model = models["world"], models["base"]
print(f"vocab {world.vocab_size}; pretrain loss {models['pretrain_history']['loss'][-1]:.3f}; SFT loss {models['sft_history']['loss'][-1]:.3f}")

pairs = world.multi_token_pairs(n_train_pairs + n_eval_pairs, seed=world_seed + 100 + seed, types=pair_types)
train_pairs, eval_pairs = pairs[:n_train_pairs], pairs[n_train_pairs:]
train_data = multi_token_preference_data(world, train_pairs)
eval_data = multi_token_preference_data(world, eval_pairs)
eval_prompts = [p["prompt"] for p in eval_pairs]
gold_gap = np.mean([rw.gold_reward(world, p["prompt"], p["chosen"]) - rw.gold_reward(world, p["prompt"], p["rejected"]) for p in train_pairs])
print(f"{len(train_data)} train / {len(eval_data)} held-out pairs, types {pair_types}; mean gold(y_w) − gold(y_l) = {gold_gap:.2f}")

repro.seed_everything(seed)
ref_gen = rw.evaluate_generations(world, ref_model, ref_model, eval_prompts, max_new_tokens=max_new_tokens, temperature=sample_temperature, seed=seed + 1, device=dev)
print(f"reference: gold reward {ref_gen['mean_reward']:.3f}, entropy {ref_gen['entropy']:.2f} nats, mean length {ref_gen['mean_len']:.1f}")

# %% [markdown]
# ## Runs: every loss, same start, same budget

# %%
results, histories = [], {}
for label, name, extra in tqdm(runs, desc="losses"):
    repro.seed_everything(seed)
    b, kw = loss_setup(name, extra, beta=beta, label_smoothing=label_smoothing, fdpo_alpha=fdpo_alpha,
                       simpo_beta=simpo_beta, simpo_gamma=simpo_gamma)  # SimPO: its own β, γ; BCO: a fresh δ
    policy = clone_policy(ref_model)
    cfg = PreferenceConfig(loss=name, beta=b, lr=lr, optimizer=optimizer, steps=steps, seed=seed, loss_kwargs=kw)
    logger = tracking.MetricLogger(prefix=f"{label}/")
    t0 = time.time()
    h = train_preference(policy, copy.deepcopy(ref_model), train_data, cfg, device=dev, logger=logger)
    ev_ref, ev_pol = evaluate_logps(ref_model.to(dev), eval_data.to(dev)), evaluate_logps(policy, eval_data.to(dev))
    rew_c = ev_pol["chosen_logps"] - ev_ref["chosen_logps"]
    rew_r = ev_pol["rejected_logps"] - ev_ref["rejected_logps"]
    gen = rw.evaluate_generations(world, policy, ref_model, eval_prompts, max_new_tokens=max_new_tokens, temperature=sample_temperature, seed=seed + 1, device=dev)
    fin, ref = h["final"], h["ref"]
    row = {
        "loss": label,
        "chosen_dlogp": float((fin["chosen_logps"] - ref["chosen_logps"]).mean()),
        "rejected_dlogp": float((fin["rejected_logps"] - ref["rejected_logps"]).mean()),
        "reward_acc_heldout": float((rew_c > rew_r).double().mean()),
        "rank_acc_heldout": ranking_accuracy(ev_pol["chosen_logps"], ev_pol["rejected_logps"]),
        "kl": gen["kl"],
        "entropy": gen["entropy"],
        "gold_reward": gen["mean_reward"],
        "win_rate": rw.win_rate(gen["rewards"], ref_gen["rewards"]),
        "loss_first": h["loss"][0],
        "loss_last": h["loss"][-1],
        "seconds": time.time() - t0,
    }
    results.append(row)
    histories[label] = h
    tracking.log_metrics({f"final/{label}/{k}": v for k, v in row.items() if k != "loss"})

table = pd.DataFrame(results).set_index("loss")
display(table.round(3))
tracking.log_dict(table.reset_index().to_dict(orient="records"), "loss_table.json")
print(f"reference accuracy on held-out pairs (ranking, raw): {ranking_accuracy(ev_ref['chosen_logps'], ev_ref['rejected_logps']):.3f}")

# %% [markdown]
# ## Figures: chosen and rejected log-prob trajectories

# %%
labels = list(histories)
ncol = 5
nrow = int(np.ceil(len(labels) / ncol))
fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), sharex=True, sharey=True, squeeze=False)
for ax, label in zip(axes.ravel(), labels):
    h = histories[label]
    rc, rr = float(h["ref"]["chosen_logps"].mean()), float(h["ref"]["rejected_logps"].mean())
    ax.plot(h["step"], np.array(h["logps/chosen"]) - rc, label="Δ log π(y_w)", color="tab:green")
    ax.plot(h["step"], np.array(h["logps/rejected"]) - rr, label="Δ log π(y_l)", color="tab:red")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_title(label, fontsize=9)
for ax in axes.ravel()[len(labels):]:
    ax.axis("off")
for ax in axes[-1]:
    ax.set_xlabel("step")
for ax in axes[:, 0]:
    ax.set_ylabel("Δ log-prob (nats)")
axes[0, 0].legend(fontsize=7)
fig.suptitle("Change of the mean summed log-prob from the reference (training pairs, full batch)")
fig.tight_layout()
tracking.log_figure(fig, "logp_trajectories")
plt.show()

fig, ax = plt.subplots(1, 2, figsize=(11, 4))
ax[0].scatter(table["kl"], table["win_rate"])
for lab, r in table.iterrows():
    ax[0].annotate(lab, (r["kl"], r["win_rate"]), fontsize=7)
ax[0].set_xlabel("KL(π‖π_ref) from samples (nats)")
ax[0].set_ylabel("gold win rate vs reference")
ax[1].barh(table.index, table["chosen_dlogp"], color=np.where(table["chosen_dlogp"] < 0, "tab:red", "tab:green"))
ax[1].set_xlabel("final Δ log π(y_w) (nats)")
ax[1].axvline(0, color="k", lw=0.6)
fig.tight_layout()
tracking.log_figure(fig, "kl_winrate_chosen")
plt.show()

# %%
down = table.index[table["chosen_dlogp"] < 0].tolist()
up = table.index[table["chosen_dlogp"] >= 0].tolist()
print(f"chosen log-prob lowered (final Δ < 0) by: {down}\nkept at or above the reference by: {up}")
print(f"reference held-out raw ranking accuracy {ranking_accuracy(ev_ref['chosen_logps'], ev_ref['rejected_logps']):.3f}; gold reward {ref_gen['mean_reward']:.3f}")

# %% [markdown]
# ## Claims

# %%
d = table.loc["dpo"]
dpo_h = histories["dpo"]
claims.record(
    "dpo_lowers_chosen",
    statement="DPO lowers the mean chosen log-prob below the reference while its loss falls (likelihood displacement)",
    paper="Razin et al. 2025 (Def. 1); Liu et al. 2024 Fig. 1; trl#800",
    paper_value="chosen log-probs fall during DPO on real LLM data",
    measured=f"Δ log π(y_w) = {d['chosen_dlogp']:.2f} nats; loss {d['loss_first']:.3f} -> {d['loss_last']:.3f}",
    threshold="final mean Δ log π(y_w) < 0 and final loss < initial loss",
    passed=bool(d["chosen_dlogp"] < 0 and d["loss_last"] < d["loss_first"]),
)


def chosen_curve(label: str) -> np.ndarray:
    return np.array(histories[label]["logps/chosen"])


for eta in rpo_etas:
    lab = f"rpo_eta{eta:g}"
    cur = chosen_curve(lab)
    mid, end = float(cur[len(cur) // 2]), float(cur[-1])
    claims.record(
        f"rpo_stops_chosen_decrease_eta{str(eta).replace('.', 'p')}",
        statement=f"RPO (η = {eta:g}, sequence-level NLL) keeps the chosen log-prob above DPO's and stops its continual decrease",
        paper="Liu et al. 2024 (RPO), Fig. 1 right",
        paper_value="DPO: significant and continual decrease of chosen log-probs; RPO: none (η = 0.005)",
        measured=f"final Δ log π(y_w): RPO {table.loc[lab, 'chosen_dlogp']:.2f} vs DPO {d['chosen_dlogp']:.2f}; RPO chosen log-prob mid {mid:.2f} -> end {end:.2f}",
        threshold="RPO final Δ log π(y_w) > DPO's and chosen log-prob at the end ≥ at mid-training",
        passed=bool(table.loc[lab, "chosen_dlogp"] > d["chosen_dlogp"] and end >= mid),
    )

for name, paper in [("apo_zero", "D'Oosterlinck et al. 2024 (APO)"), ("nca", "Chen et al. 2024 (NCA)"), ("bco_pair", "Jung et al. 2024 (BCO)")]:
    if name not in table.index:
        continue
    claims.record(
        f"keeps_chosen_above_dpo_{name}",
        statement=f"{name} keeps the chosen log-prob higher than DPO does",
        paper=paper,
        paper_value="anchored / absolute-reward losses do not push the chosen likelihood down as DPO does",
        measured=f"final Δ log π(y_w): {name} {table.loc[name, 'chosen_dlogp']:.2f} vs DPO {d['chosen_dlogp']:.2f}",
        threshold="final Δ log π(y_w) > DPO's",
        passed=bool(table.loc[name, "chosen_dlogp"] > d["chosen_dlogp"]),
    )

if "bco_pair" in table.index:
    bc = table.loc["bco_pair"]
    dw, da = abs(bc["win_rate"] - d["win_rate"]), abs(bc["reward_acc_heldout"] - d["reward_acc_heldout"])
    claims.record(
        "bco_matches_dpo",
        statement="On paired data BCO (running reward shift δ) performs on par with DPO",
        paper="Jung et al. 2024 (BCO), paired-data results",
        paper_value="BCO ≈ DPO on paired preference data",
        measured=f"win rate BCO {bc['win_rate']:.3f} vs DPO {d['win_rate']:.3f}; held-out reward acc {bc['reward_acc_heldout']:.3f} vs {d['reward_acc_heldout']:.3f}",
        threshold="|Δ win rate| ≤ 0.05 and |Δ held-out reward accuracy| ≤ 0.05",
        passed=bool(dw <= 0.05 and da <= 0.05),
    )

if "fdpo_forward_kl" in table.index:
    fk = table.loc["fdpo_forward_kl"]
    claims.record(
        "fdpo_forward_kl_more_diverse",
        statement="f-DPO with forward KL yields more diverse samples (higher entropy) than reverse KL (DPO)",
        paper="Wang et al. 2023 (f-DPO)",
        paper_value="divergences balance alignment and generation diversity (abstract); forward KL the most diverse (our reading)",
        measured=f"entropy forward KL {fk['entropy']:.2f} vs DPO {d['entropy']:.2f} nats; win rate {fk['win_rate']:.3f} vs {d['win_rate']:.3f}",
        threshold="entropy(forward KL) > entropy(DPO)",
        passed=bool(fk["entropy"] > d["entropy"]),
    )
print(f"total wall time {time.time() - t_start:.0f} s")

# %% [markdown]
# ## Discussion
#
# What differs from the papers: a 2-layer GPT trained from scratch on a synthetic world instead of 7B chat
# models; one small dataset (256 pairs) optimised full-batch for a fixed number of steps, all losses with one β
# and one learning rate (no per-loss tuning — the papers tune each); the gold reward is a rule judge, not
# GPT-4 or MT-Bench. BCO runs on paired data with the TRL ≤ 0.28 running-mean δ (`RunningMean`, cumulative);
# its UDM density-ratio weights are 1 here because both terms share the prompt. KTO uses the batch KL estimate
# of TRL's old `kto_pair`. RPO uses the paper's sequence-level NLL (summed over response tokens), so η·β
# multiplies an NLL of ~10 nats; TRL's `"sft"` loss is a token mean and would need a larger weight for the same
# effect. Paired KTO with TRL's batch KL estimate coincides *exactly* with APO-zero whenever both estimates clamp
# to 0 (both mean log-ratios fall, as here): (1 − σ(βs_w)) + (1 − σ(−βs_l)) = (1 − σ(βs_w)) + σ(βs_l); identical
# rows in the table are this identity, not a bug. A win rate below 0.5 means the tuned policy's samples score
# *worse* than the reference's under the gold judge: the reference already answers with the right group most of
# the time, and mass pushed off the rejected responses lands partly on malformed sequences (KL column). The
# verdicts above are for this setup only; read the trajectories figure for *how* each loss moves the
# two log-probs, which is the question DPO users ask.
