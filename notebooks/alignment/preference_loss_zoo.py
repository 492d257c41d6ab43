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
# **Here, at CPU scale.** The book's persona world (`lossbook.alignment.world`): prompts "Would you say :
# <speaker> <statement> ?", chosen = a trait-consistent response "answer because w1..wk <eos>", rejected = the same
# response with the answer flipped to the opposite group (`answer_flip`), an opposite response, or a random one. A
# tiny GPT pretrained on whole prompt+response documents (`base_recipe` of `lossbook.alignment.recipes`, cached,
# shared with the flagship) is π_ref (the flagship's SFT stage trains only the first answer token and breaks
# multi-token continuations). **A world seed is one replicate**: its own world, pretraining, pairs and runs; every
# claim is read over `world_seeds` (≥ 3) with a CI or a k-of-N rule.
#
# **Matched progress, not equal steps.** An earlier version compared the losses after the same 100 steps, where
# DPO's loss had only gone from 0.693 to ~0.62 and some losses had moved much less than others. Here every loss
# trains (full batch, Adam, one lr, one β; SimPO its own β and γ) up to a step cap, and **every loss is read at the
# first step where the DPO loss of its log-probs on the training pairs, mean −log σ(β·Δ) with β = 0.1, is ≤
# `loss_target` = 0.5** (pre-registered, as in `dpo_displacement`; `lossbook.alignment.progress.train_to_targets`).
# The DPO loss depends on the log-probs only, so it measures how far any loss has separated the pair: "keeps the
# chosen log-prob higher" then means *at the same separation*. The runs are also read at `mid_target` (half-way) and
# at the deeper `deep_target`. The lr was fixed before the claims by the flagship's progress rule on a DPO pilot
# (world 0): the largest of {2e-5, 1e-4, 3e-4} at which DPO reaches L ≤ 0.5 in ≥ 20 steps (1e-4: ~60 steps; at
# 2e-5, the old lr, Δ log π(y_w) at L ≤ 0.5 was nearly the same; `lr_check` below measures it again).
#
# **Measurements at the target.** Δ log π(y_w), Δ log π(y_l) (train pairs); held-out reward accuracy; and, from
# `n_samples` samples per held-out prompt, KL(π‖π_ref), the gold-reward win rate against the reference's samples
# (rule judge `lossbook.alignment.refusal.gold_reward`: +1 for the right answer group, +0.5·relevance of the clause,
# −1 if malformed), the malformed share, and **diversity on the well-formed samples only**
# (`lossbook.alignment.metrics.sample_diversity`: mean pairwise normalised edit distance between a prompt's
# well-formed samples, and the share of distinct ones). The old "diversity" was the NLL of one ≤ 8-token sample per
# prompt, most of them malformed: malformed text is diverse for the wrong reason.
#
# **Claims, with thresholds fixed before running** (ids as in `claims.json`; N worlds, k = ⌈2N/3⌉; all read at L ≤
# `loss_target`; guard: every run a claim reads reached the target):
# 1. `dpo_lowers_chosen`: under DPO the mean Δ log π(y_w) < 0 (t-CI over worlds below 0).
# 2. `rpo_stops_chosen_decrease_eta*` (one per η in `rpo_etas`, the paper's η = 0.005 first): RPO's Δ log π(y_w)
#    minus DPO's has a t-CI above 0, and RPO's Δ log π(y_w) at the target is ≥ its value at `mid_target` (no
#    continual decrease) in ≥ k of N worlds.
# 3. `keeps_chosen_above_dpo_<loss>` for APO-zero, NCA and BCO: Δ log π(y_w) minus DPO's has a t-CI above 0.
# 4. `bco_matches_dpo`: the t-CIs of win rate(BCO) − win rate(DPO) and of the held-out reward accuracy difference
#    lie inside [−0.05, 0.05].
# 5. `fdpo_forward_kl_more_diverse`: pairwise edit diversity of well-formed samples, forward KL minus reverse KL
#    (= DPO), has a t-CI above 0; guard: ≥ half of the prompts have ≥ 2 well-formed samples under both.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seed = 0  # pairs, training and sampling seed (added to each world's seed)
world_seeds = [0, 1, 2]  # replicate worlds: each its own world, pretraining, pairs and runs (≥ 3 outside smoke)
n_train_pairs = 128  # preference pairs every loss trains on (full batch); in [1, inf)
n_eval_pairs = 256  # held-out pairs for the reward accuracy; in [1, inf)
n_gen_prompts = 64  # held-out prompts sampled for KL, win rate, malformed share and diversity; in [1, inf)
n_samples = 8  # samples per prompt (diversity needs several per prompt); in [2, inf)
pair_types = ["answer_flip", "opposite", "random"]  # how y_l is built from y_w (lossbook.alignment.world.PAIR_TYPES)
losses = ["dpo", "ipo", "hinge", "cdpo", "robust_dpo", "ln_dpo", "simpo", "nca", "apo_zero", "sppo_hard", "fdpo_js", "fdpo_alpha", "fdpo_forward_kl", "bco_pair", "kto_pair"]  # registered losses to compare
rpo_etas = [0.005, 1.0]  # RPO η: the paper's 0.005, and 1.0 (the top of Razin et al.'s SFT-coefficient grid; the ablation); in [0, inf)
beta = 0.1  # β of every loss but SimPO, and of the DPO-loss progress measure; > 0
simpo_beta = 2.0  # SimPO has no reference; the paper β is ~2 with γ/β ≈ 0.5; > 0
simpo_gamma = 1.0  # SimPO target margin γ
label_smoothing = 0.1  # cdpo, robust_dpo; in [0, 1)
fdpo_alpha = 0.5  # α of f-DPO's α-divergence (fdpo_alpha)
optimizer = "adam"  # one optimiser for every loss
lr = 1.0e-4  # one learning rate for every loss, fixed by the progress rule in the text; > 0
max_steps = 250  # step cap per loss (full batch); a run stops at the deepest target; in [1, inf)
loss_target = 0.5  # pre-registered progress: every loss is read at its first step with training DPO loss ≤ this; > 0
mid_target = 0.6  # half-way read for the "no continual decrease" part of the RPO claims; > loss_target
mid_gen_losses = ["dpo", "bco_pair", "fdpo_forward_kl"]  # losses also sampled at mid_target (the ablations of claims 4-5)
deep_target = 0.4  # a deeper read of the same runs (progress ablation); < loss_target
lr_check = 2.0e-5  # DPO at this lr (first world) read at the same target: is the reading lr-independent?; > 0
sample_temperature = 1.0  # sampling temperature for KL, win rate and diversity; > 0
max_new_tokens = 8  # longest sampled response (well-formed ones have ≤ 6 tokens); in [1, inf)
equiv_margin = 0.05  # claim 4: equivalence margin of the win-rate and reward-accuracy differences; in [0, 1]
base_recipe = "persona-tiny"  # world, tiny GPT, pretraining and SFT: a name in lossbook.alignment.recipes.BASE_RECIPES (shared, cached)
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
# %%
from lossbook import plotting, replicate, repro, tracking

tracking.attach(mlflow_run_id, "preference_loss_zoo", globals())
plotting.setup()

import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from scipy import stats as sps
from tqdm.auto import tqdm

from lossbook.alignment.preference import PreferenceConfig, clone_policy, evaluate_logps
from lossbook.alignment.progress import policy_at, read_step, train_to_targets
from lossbook.alignment.ranking import ranking_accuracy
from lossbook.alignment.recipes import base_models
from lossbook.alignment.refusal import win_rate
from lossbook.alignment.world import multi_token_preference_data
from lossbook.alignment.zoo import generation_eval, loss_setup, rpo_push_ratio

dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.perf_counter()
runs = [(name, name, {}) for name in losses]  # (label, registered loss, loss kwargs)
runs += [(f"rpo_eta{eta:g}", "rpo", {"eta": eta}) for eta in rpo_etas]
targets = sorted({mid_target, loss_target, deep_target}, reverse=True)
n_worlds = len(world_seeds)
k_worlds = math.ceil(2 * n_worlds / 3)
gen_kw = {"n_samples": n_samples, "max_new_tokens": max_new_tokens, "temperature": sample_temperature, "device": dev}
print(f"{len(runs)} losses x {n_worlds} worlds (claims need >= {k_worlds}); lr {lr:g}, cap {max_steps}; read at DPO loss {targets}")

# %% [markdown]
# ## Runs: every loss from the same start in every world, read at matched DPO loss

# %%
rows, curves = [], {}
for ws in tqdm(world_seeds, desc="worlds"):
    models = base_models(base_recipe, ws, device=dev)
    world, ref_model = models["world"], models["base"]
    pairs = world.multi_token_pairs(n_train_pairs + n_eval_pairs, seed=ws + 100 + seed, types=pair_types)
    train_data = multi_token_preference_data(world, pairs[:n_train_pairs])
    eval_data = multi_token_preference_data(world, pairs[n_train_pairs:]).to(dev)
    gen_prompts = [p["prompt"] for p in pairs[n_train_pairs:][:n_gen_prompts]]
    ev_ref = evaluate_logps(ref_model.to(dev), eval_data)
    ref_gen = generation_eval(world, ref_model, ref_model, gen_prompts, seed=ws + seed + 1, **gen_kw)
    rows.append({"world": ws, "loss": "reference", "reached": True, "step": 0, "malformed": ref_gen["malformed"], "pairwise_edit": ref_gen["pairwise_edit"],
                 "distinct": ref_gen["distinct"], "gold_reward": ref_gen["mean_reward"], "win_rate": 0.5, "kl": 0.0,
                 "reward_acc_heldout": float("nan"), "rank_acc_heldout": ranking_accuracy(ev_ref["chosen_logps"], ev_ref["rejected_logps"])})
    for label, name, extra in tqdm(runs, desc=f"losses (world {ws})", leave=False):
        repro.seed_everything(ws + seed)
        b, kw = loss_setup(name, extra, beta=beta, label_smoothing=label_smoothing, fdpo_alpha=fdpo_alpha, simpo_beta=simpo_beta, simpo_gamma=simpo_gamma)
        cfg = PreferenceConfig(loss=name, beta=b, lr=lr, optimizer=optimizer, steps=max_steps, seed=ws + seed, loss_kwargs=kw)
        t0 = time.perf_counter()
        run = train_to_targets(clone_policy(ref_model), ref_model, train_data, cfg, targets, dpo_beta=beta, device=dev)
        rc, rr = run["ref"]["chosen_logps"].double(), run["ref"]["rejected_logps"].double()
        dch, drj = (run["chosen"] - rc).mean(1).numpy(), (run["rejected"] - rr).mean(1).numpy()
        curves[(ws, label)] = {"dpo_loss": run["dpo_loss"], "chosen": dch, "rejected": drj}
        t = read_step(run, loss_target)
        pol = policy_at(run, loss_target, ref_model).to(dev)
        ev = evaluate_logps(pol, eval_data)
        gen = generation_eval(world, pol, ref_model, gen_prompts, seed=ws + seed + 1, **gen_kw)
        margin = (run["chosen"][t] - rc) - (run["rejected"][t] - rr)
        rows.append({
            "world": ws, "loss": label, "reached": run["t_star"][loss_target] is not None, "step": t, "dpo_loss": float(run["dpo_loss"][t]),
            "chosen_dlogp": float(dch[t]), "rejected_dlogp": float(drj[t]),
            "chosen_dlogp_mid": float(dch[read_step(run, mid_target)]), "chosen_dlogp_deep": float(dch[read_step(run, deep_target)]),
            "reached_mid": run["t_star"][mid_target] is not None, "reached_deep": run["t_star"][deep_target] is not None,
            "reward_acc_heldout": float((ev["chosen_logps"] - ev_ref["chosen_logps"] > ev["rejected_logps"] - ev_ref["rejected_logps"]).double().mean()),
            "rank_acc_heldout": ranking_accuracy(ev["chosen_logps"], ev["rejected_logps"]),
            "kl": gen["kl"], "gold_reward": gen["mean_reward"], "win_rate": win_rate(gen["rewards"].ravel(), ref_gen["rewards"].ravel()),
            "malformed": gen["malformed"], "pairwise_edit": gen["pairwise_edit"], "distinct": gen["distinct"], "div_prompts": gen["n_prompts"] / len(gen_prompts),
            "rpo_push": float(rpo_push_ratio(margin, beta, extra.get("eta", 0.005)).mean()), "seconds": time.perf_counter() - t0,
        })
        if label in mid_gen_losses:  # the same run's policy at the half-way target
            pol_mid = policy_at(run, mid_target, ref_model).to(dev)
            ev_m, gen_m = evaluate_logps(pol_mid, eval_data), generation_eval(world, pol_mid, ref_model, gen_prompts, seed=ws + seed + 1, **gen_kw)
            rows[-1].update({"reward_acc_mid": float((ev_m["chosen_logps"] - ev_ref["chosen_logps"] > ev_m["rejected_logps"] - ev_ref["rejected_logps"]).double().mean()),
                             "kl_mid": gen_m["kl"], "win_rate_mid": win_rate(gen_m["rewards"].ravel(), ref_gen["rewards"].ravel()), "malformed_mid": gen_m["malformed"],
                             "pairwise_edit_mid": gen_m["pairwise_edit"], "div_prompts_mid": gen_m["n_prompts"] / len(gen_prompts)})
    if ws == world_seeds[0]:  # the lr check: DPO at another lr, read at the same target
        repro.seed_everything(ws + seed)
        cfg = PreferenceConfig(loss="dpo", beta=beta, lr=lr_check, optimizer=optimizer, steps=4 * max_steps, seed=ws + seed)
        chk = train_to_targets(clone_policy(ref_model), ref_model, train_data, cfg, [loss_target], dpo_beta=beta, device=dev)
        t_chk = read_step(chk, loss_target)
        lr_row = {"lr": lr_check, "reached": chk["t_star"][loss_target] is not None, "step": t_chk,
                  "chosen_dlogp": float((chk["chosen"][t_chk] - chk["ref"]["chosen_logps"].double()).mean())}

table = pd.DataFrame(rows)
def col(loss: str, key: str) -> np.ndarray:
    return table.query("loss == @loss").set_index("world").reindex(world_seeds)[key].to_numpy(dtype=float)


tracking.log_dict(table.to_dict(orient="records"), "loss_table.json")
cols = ["reached", "step", "chosen_dlogp", "rejected_dlogp", "reward_acc_heldout", "kl", "win_rate", "malformed", "pairwise_edit", "distinct"]
summary = table.groupby("loss", sort=False)[cols].mean()
display(summary.round(3))
print(f"lr check (world {world_seeds[0]}): DPO at lr {lr_check:g} reached L <= {loss_target}: {lr_row['reached']} at step {lr_row['step']}, "
      f"Δ log π(y_w) {lr_row['chosen_dlogp']:+.2f} vs {col('dpo', 'chosen_dlogp')[0]:+.2f} at lr {lr:g}")

# %% [markdown]
# ## Figures: the chosen and rejected log-prob against progress (DPO loss), and the state at the target

# %%
labels = [r[0] for r in runs]
ncol = 6
nrow = int(np.ceil(len(labels) / ncol))
fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow), sharex=True, sharey=True, squeeze=False)
for ax, label in zip(axes.ravel(), labels):
    for i, ws in enumerate(world_seeds):
        c = curves[(ws, label)]
        ax.plot(c["dpo_loss"], c["chosen"], color="tab:green", alpha=0.9, lw=1, label="Δ log π(y_w)" if i == 0 else None)
        ax.plot(c["dpo_loss"], c["rejected"], color="tab:red", alpha=0.9, lw=1, label="Δ log π(y_l)" if i == 0 else None)
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(loss_target, color="gray", lw=0.6, ls="--")
    ax.set_title(label, fontsize=9)
for ax in axes.ravel()[len(labels):]:
    ax.axis("off")
axes[0, 0].invert_xaxis()
for ax in axes[-1]:
    ax.set_xlabel("training DPO loss (progress →)")
for ax in axes[:, 0]:
    ax.set_ylabel("Δ log-prob (nats)")
axes[0, 0].legend(fontsize=7)
fig.suptitle(f"Mean change of the summed log-probs from the reference vs DPO loss, {n_worlds} worlds (one line each); dashed: the read target")
fig.tight_layout()
tracking.log_figure(fig, "logp_vs_progress")
plt.show()

runs_only = table[table["loss"] != "reference"]
agg = runs_only.groupby("loss", sort=False).agg(m=("chosen_dlogp", "mean"), s=("chosen_dlogp", "std"), kl=("kl", "mean"), win=("win_rate", "mean"))
fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
ax[0].barh(agg.index, agg["m"], xerr=agg["s"], color=np.where(agg["m"] < 0, "tab:red", "tab:green"))
ax[0].axvline(0, color="k", lw=0.6)
ax[0].set_xlabel(f"Δ log π(y_w) at DPO loss ≤ {loss_target} (nats; mean ± sd over worlds)")
ax[1].scatter(agg["kl"], agg["win"])
for lab, r in agg.iterrows():
    ax[1].annotate(lab, (r["kl"], r["win"]), fontsize=7)
ax[1].set_xlabel("KL(π‖π_ref) from samples at the target (nats)")
ax[1].set_ylabel("gold win rate vs reference")
fig.tight_layout()
tracking.log_figure(fig, "at_target_chosen_kl_winrate")
plt.show()

# %% [markdown]
# ## Claims (read at the pre-registered target)

# %%
def reached(*names: str) -> replicate.Guard:
    worst = max(float(col(n, "dpo_loss").max()) for n in names)
    return replicate.progress_reached(worst, loss_target, what=f"training DPO loss at the read step (worst of {', '.join(names)} over worlds)",
                                      fix=f"raise max_steps above {max_steps} (or the lr) so {', '.join(names)} reach L <= {loss_target}")


def per_world(v: np.ndarray, fmt: str = "+.2f") -> str:
    return ", ".join(f"w{ws} {x:{fmt}}" for ws, x in zip(world_seeds, v))


d_ch = col("dpo", "chosen_dlogp")
o1 = replicate.mean_ci_rule(d_ch, 0.0, "below")
replicate.record(
    "dpo_lowers_chosen",
    statement=f"At training DPO loss <= {loss_target}, DPO has lowered the mean chosen log-prob below the reference (likelihood displacement)",
    paper="Razin et al. 2025 (Def. 1); Liu et al. 2024 Fig. 1; trl#800", paper_value="chosen log-probs fall during DPO on real LLM data",
    values=d_ch, outcome=o1, guards=[reached("dpo")],
    measured=f"Δ log π(y_w) {o1.statistic:+.2f} [{o1.ci.low:+.2f}, {o1.ci.high:+.2f}] nats ({per_world(d_ch)}); at L <= {mid_target}: {per_world(col('dpo', 'chosen_dlogp_mid'))}",
    diagnosis=replicate.Diagnosis(f"At L <= {mid_target} Δ log π(y_w) is {per_world(col('dpo', 'chosen_dlogp_mid'))}, at L <= {deep_target} {per_world(col('dpo', 'chosen_dlogp_deep'))}.",
                                  f"the same runs read at DPO-loss targets {mid_target} and {deep_target}"),
)

for eta in rpo_etas:
    lab = f"rpo_eta{eta:g}"
    diff = col(lab, "chosen_dlogp") - d_ch
    no_fall = col(lab, "chosen_dlogp") >= col(lab, "chosen_dlogp_mid")
    o = replicate.all_of(replicate.mean_ci_rule(diff, 0.0, "above"), replicate.k_of_n_rule(no_fall, k_worlds))
    other = [e for e in rpo_etas if e != eta]
    abl = "; ".join(f"η = {e:g}: push ratio {np.mean(col(f'rpo_eta{e:g}', 'rpo_push')):.3f}, RPO − DPO {per_world(col(f'rpo_eta{e:g}', 'chosen_dlogp') - d_ch)}" for e in other)
    replicate.record(
        f"rpo_stops_chosen_decrease_eta{str(eta).replace('.', 'p')}",
        statement=f"RPO (η = {eta:g}, sequence-level NLL), read at DPO loss <= {loss_target}, keeps the chosen log-prob above DPO's and it does not keep falling (value at the target >= at L <= {mid_target})",
        paper="Liu et al. 2024 (RPO), Fig. 1 right", paper_value="DPO: significant and continual decrease of chosen log-probs; RPO: none (η = 0.005)",
        values=diff, outcome=o, guards=[reached("dpo", lab)],
        measured=f"RPO − DPO Δ log π(y_w) {o.statistic:+.2f} [{o.ci.low:+.2f}, {o.ci.high:+.2f}] ({per_world(diff)}); RPO at L <= {mid_target} → {loss_target}: "
                 + ", ".join(f"w{ws} {a:+.2f}→{b:+.2f}" for ws, a, b in zip(world_seeds, col(lab, "chosen_dlogp_mid"), col(lab, "chosen_dlogp")))
                 + f"; extra push η/σ(−βΔ) at the target {np.mean(col(lab, 'rpo_push')):.3f}",
        diagnosis=replicate.Diagnosis(
            f"Structural: RPO's gradient on log π(y_w) is −β(σ(−βΔ) + η) against DPO's −βσ(−βΔ), so the SFT term adds η/σ(−βΔ) to DPO's push; at the target "
            f"σ(−βΔ) ≈ 1 − e^(−{loss_target}) and the ratio is {np.mean(col(lab, 'rpo_push')):.3f} for η = {eta:g}, too small to stop a displacement of "
            f"{o1.statistic:+.2f} nats. Ablation: {abl or 'none'}.",
            f"RPO with η in {rpo_etas} on the same pairs and worlds, read at the same DPO-loss target"),
        details={"push_ratio": col(lab, "rpo_push").tolist()},
    )

for name, paper in [("apo_zero", "D'Oosterlinck et al. 2024 (APO)"), ("nca", "Chen et al. 2024 (NCA)"), ("bco_pair", "Jung et al. 2024 (BCO)")]:
    if name not in losses:
        continue
    diff = col(name, "chosen_dlogp") - d_ch
    o = replicate.mean_ci_rule(diff, 0.0, "above")
    replicate.record(
        f"keeps_chosen_above_dpo_{name}",
        statement=f"At the same DPO loss (<= {loss_target}), {name} keeps the chosen log-prob higher than DPO does",
        paper=paper, paper_value="anchored / absolute-reward losses do not push the chosen likelihood down as DPO does",
        values=diff, outcome=o, guards=[reached("dpo", name)],
        measured=f"{name} − DPO Δ log π(y_w) {o.statistic:+.2f} [{o.ci.low:+.2f}, {o.ci.high:+.2f}] ({per_world(diff)}); {name} Δ log π(y_w) {per_world(col(name, 'chosen_dlogp'))}",
        diagnosis=replicate.Diagnosis(
            f"At L <= {mid_target} the difference is {per_world(col(name, 'chosen_dlogp_mid') - col('dpo', 'chosen_dlogp_mid'))}, at L <= {deep_target} "
            f"{per_world(col(name, 'chosen_dlogp_deep') - col('dpo', 'chosen_dlogp_deep'))}; Δ log π(y_l) {name} {per_world(col(name, 'rejected_dlogp'))} vs DPO {per_world(col('dpo', 'rejected_dlogp'))}.",
            f"the same runs read at DPO-loss targets {mid_target} and {deep_target}"),
    )

if "bco_pair" in losses:
    dw = col("bco_pair", "win_rate") - col("dpo", "win_rate")
    da = col("bco_pair", "reward_acc_heldout") - col("dpo", "reward_acc_heldout")
    o = replicate.all_of(replicate.mean_within_rule(dw, -equiv_margin, equiv_margin), replicate.mean_within_rule(da, -equiv_margin, equiv_margin))
    oa = replicate.mean_within_rule(da, -equiv_margin, equiv_margin)
    replicate.record(
        "bco_matches_dpo",
        statement=f"On paired data BCO (running reward shift δ) performs on par with DPO at the same DPO loss (<= {loss_target}): win rate and held-out reward accuracy within ±{equiv_margin}",
        paper="Jung et al. 2024 (BCO), paired-data results", paper_value="BCO ≈ DPO on paired preference data",
        values=dw, outcome=o, guards=[reached("dpo", "bco_pair")],
        measured=f"Δ win rate {o.statistic:+.3f} [{o.ci.low:+.3f}, {o.ci.high:+.3f}] ({per_world(dw, '+.3f')}); Δ reward acc {oa.statistic:+.3f} [{oa.ci.low:+.3f}, {oa.ci.high:+.3f}] "
                 f"({per_world(da, '+.3f')}); KL BCO {per_world(col('bco_pair', 'kl'))} vs DPO {per_world(col('dpo', 'kl'))}",
        diagnosis=replicate.Diagnosis(
            f"At matched DPO loss the two sit at KL {per_world(col('bco_pair', 'kl'))} (BCO) vs {per_world(col('dpo', 'kl'))} (DPO) and win rates "
            f"{per_world(col('bco_pair', 'win_rate'), '.3f')} vs {per_world(col('dpo', 'win_rate'), '.3f')}: at the same DPO loss BCO has moved the policy less. "
            f"Closer to matched KL, DPO read at L <= {mid_target} has KL {per_world(col('dpo', 'kl_mid'))} and win rate {per_world(col('dpo', 'win_rate_mid'), '.3f')} "
            f"(BCO − DPO@{mid_target}: win rate {per_world(col('bco_pair', 'win_rate') - col('dpo', 'win_rate_mid'), '+.3f')}, reward acc "
            f"{per_world(col('bco_pair', 'reward_acc_heldout') - col('dpo', 'reward_acc_mid'), '+.3f')}). The win rate of {n_gen_prompts}×{n_samples} samples has a "
            f"sampling sd of ~{0.5 / math.sqrt(n_gen_prompts * n_samples):.3f} per world, so the ±{equiv_margin} band is decided by the spread over worlds.",
            f"DPO read at the half-way target {mid_target} (nearer BCO's KL at {loss_target}); {n_worlds} worlds, {n_samples} samples per prompt"),
    )

if "fdpo_forward_kl" in losses:
    dd = col("fdpo_forward_kl", "pairwise_edit") - col("dpo", "pairwise_edit")
    enough = float(min(col("fdpo_forward_kl", "div_prompts").min(), col("dpo", "div_prompts").min()))
    g_div = replicate.progress_reached(enough, 0.5, lower_is_better=False, what="share of prompts with >= 2 well-formed samples (worst of f-DPO FKL / DPO)",
                                       fix=f"more samples per prompt than {n_samples}")
    o = replicate.mean_ci_rule(np.nan_to_num(dd, nan=0.0), 0.0, "above")
    replicate.record(
        "fdpo_forward_kl_more_diverse",
        statement=f"At the same DPO loss (<= {loss_target}), f-DPO with forward KL yields more diverse well-formed samples than reverse KL (DPO)",
        paper="Wang et al. 2023 (f-DPO)",
        paper_value="divergences balance alignment and generation diversity (abstract); forward KL the most diverse (our reading)",
        values=np.nan_to_num(dd, nan=0.0), outcome=o, guards=[reached("dpo", "fdpo_forward_kl"), g_div],
        measured=f"pairwise edit diversity FKL − DPO {o.statistic:+.3f} [{o.ci.low:+.3f}, {o.ci.high:+.3f}] ({per_world(dd, '+.3f')}); distinct share FKL {per_world(col('fdpo_forward_kl', 'distinct'))} "
                 f"vs DPO {per_world(col('dpo', 'distinct'))}; malformed FKL {per_world(col('fdpo_forward_kl', 'malformed'))} vs DPO {per_world(col('dpo', 'malformed'))}; "
                 f"win rate FKL {per_world(col('fdpo_forward_kl', 'win_rate'))} vs DPO {per_world(col('dpo', 'win_rate'))}",
        diagnosis=replicate.Diagnosis(
            f"Reference diversity {per_world(col('reference', 'pairwise_edit'), '.3f')}; DPO {per_world(col('dpo', 'pairwise_edit'), '.3f')}, FKL {per_world(col('fdpo_forward_kl', 'pairwise_edit'), '.3f')}; "
            f"JS {per_world(col('fdpo_js', 'pairwise_edit'), '.3f') if 'fdpo_js' in losses else '-'}; α {per_world(col('fdpo_alpha', 'pairwise_edit'), '.3f') if 'fdpo_alpha' in losses else '-'}. "
            f"KL FKL {per_world(col('fdpo_forward_kl', 'kl'))} vs DPO {per_world(col('dpo', 'kl'))}. At the half-way target L <= {mid_target}: malformed FKL "
            f"{per_world(col('fdpo_forward_kl', 'malformed_mid'))} vs DPO {per_world(col('dpo', 'malformed_mid'))}, prompts with >= 2 well-formed samples "
            f"{per_world(np.minimum(col('fdpo_forward_kl', 'div_prompts_mid'), col('dpo', 'div_prompts_mid')))}, diversity FKL − DPO "
            f"{per_world(col('fdpo_forward_kl', 'pairwise_edit_mid') - col('dpo', 'pairwise_edit_mid'), '+.3f')}.",
            f"the same runs sampled at the half-way target {mid_target}; the other f-divergences (JS, α) at the same target; the reference's diversity"),
    )

others = [r[0] for r in runs if r[0] != "dpo"]
v_all = np.array([np.mean(col(lab, "chosen_dlogp") - d_ch) for lab in others])
_ = replicate.record(
    "zoo_at_matched_progress", statement=f"Every loss read at DPO loss <= {loss_target}: Δ log π(y_w) minus DPO's (mean over worlds), one value per loss",
    paper="the zoo's table", values=v_all, outcome=replicate.mean_ci_rule(v_all, 0.0, "above"), kind="exploratory",
    measured="; ".join(f"{lab} {v:+.2f}{'' if bool(col(lab, 'reached').all()) else ' (target not reached in every world)'}" for lab, v in zip(others, v_all)),
    details={"table": summary.reset_index().to_dict("records")},
)

# %% [markdown]
# ## Closing note and discussion (numbers from this run)

# %%
from lossbook import claims  # noqa: E402

wall = time.perf_counter() - t_start
tracking.log_metrics({"time/wall_s": wall})
down = [lab for lab in summary.index if lab != "reference" and summary.loc[lab, "chosen_dlogp"] < 0]
sps_t = float(sps.t.ppf(0.975, max(n_worlds - 1, 1)))  # the t quantile of the claims' intervals
push_txt = ", ".join(f"η = {e:g}: {np.mean(col('rpo_eta' + format(e, 'g'), 'rpo_push')):.3f}" for e in rpo_etas)
not_reached = [lab for lab in labels if not bool(col(lab, "reached").all())]
verdicts = "\n".join(f"- **{c['name']}**: {c['verdict']} — measured {c['measured']} (rule: {c['threshold']})" for c in claims.recorded())
display(Markdown("\n".join([
    f"### Verdicts (every loss read at training DPO loss ≤ {loss_target}, lr {lr:g}, {n_worlds} worlds)", verdicts, "",
    f"- **Progress.** DPO reached L ≤ {loss_target} after {per_world(col('dpo', 'step'), '.0f')} steps; losses that did not reach it in every world within "
    f"{max_steps} steps (read at the cap, their claims guarded): {not_reached or 'none'}. At lr {lr_check:g} DPO reached the target at step {lr_row['step']} with "
    f"Δ log π(y_w) {lr_row['chosen_dlogp']:+.2f} vs {d_ch[0]:+.2f} at lr {lr:g} (world {world_seeds[0]}): the reading at matched progress barely depends on the lr.",
    f"- **Who lowers the chosen log-prob** at the target (mean over worlds): {down}; the rest keep it at or above the reference.",
    f"- **RPO.** The extra push of the SFT term is η/σ(−βΔ): {push_txt} at the target. "
    f"With η = {rpo_etas[0]:g} the SFT term matches DPO's push only once σ(−βΔ) ≤ η, i.e. at a pair DPO loss ≤ −log(1 − η) = {-math.log1p(-rpo_etas[0]):.4f} "
    "nats, whatever the model size: the paper's Fig. 1 effect needs the DPO term to saturate. TRL's `sft` term is a token mean and would need a larger weight still.",
    f"- **Replicates.** With N = {n_worlds} worlds the 95% t-interval is mean ± {sps_t:.2f}·sd/√N, so a difference whose sign holds in every world can still be "
    "inconclusive when the worlds disagree on its size (the per-world values are in each row); the `full` profile has more worlds.",
    f"- **Samples.** Malformed share at the target: reference {per_world(col('reference', 'malformed'))}, DPO {per_world(col('dpo', 'malformed'))} "
    f"(at L <= {mid_target}: {per_world(col('dpo', 'malformed_mid'))}), "
    f"f-DPO FKL {per_world(col('fdpo_forward_kl', 'malformed')) if 'fdpo_forward_kl' in losses else '-'}; diversity is measured on the well-formed ones "
    f"({n_samples} samples for each of {n_gen_prompts} prompts). The probability mass the margin losses take off y_w and y_l goes partly to malformed text, "
    f"and the gold win rate against the reference is below ½ for {int((summary.drop(index='reference')['win_rate'] < 0.5).sum())} of {len(labels)} losses "
    f"(Spearman ρ of KL vs win rate over losses {sps.spearmanr(summary.drop(index='reference')['kl'], summary.drop(index='reference')['win_rate'])[0]:+.2f}).",
    "- **What differs from the papers.** A 2-layer GPT trained from scratch on a synthetic world instead of 7B chat models; one small dataset optimised full-batch, "
    "all losses with one β and one lr (no per-loss tuning — the papers tune each), read at a matched DPO loss rather than after a fixed budget; the gold reward is a "
    "rule judge, not GPT-4 or MT-Bench. BCO runs on paired data with the TRL ≤ 0.28 running-mean δ; KTO uses the batch KL estimate of TRL's old `kto_pair` and "
    "coincides exactly with APO-zero whenever both estimates clamp to 0 (identical rows are that identity, not a bug). RPO uses the paper's sequence-level NLL.",
    f"- **Wall time** {wall:.0f} s on {dev} with {torch.get_num_threads()} threads.",
])))
