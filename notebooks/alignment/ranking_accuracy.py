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
# **Two definitions of the idealized raw accuracy.** The paper's Eq. 3 uses the likelihood ratio
# π_ref(y1)/π_ref(y2). Its official code (`rlhf_minimizer_client.py::_compute_likelihood_ratios_helper`, read in
# github.com/angie-chen55/pref-learning-ranking-acc) does so only in the length-normalised branch (ppl₂/ppl₁); its
# raw branch multiplies (α₁₂/α₂₁)^{1/β} by the **quotient of the two summed log-probs**, log π_ref(y1) / log π_ref(y2).
# The paper's raw idealized numbers therefore use the quotient; its *achieved* accuracies
# (`calibration_metrics_lib.py::rank`) compare summed log-probs, i.e. the likelihood ratio. We report the idealized
# raw accuracy both ways (`lossbook.alignment.ranking.DEFINITIONS`) and judge the claim with the likelihood ratio
# (the paper's equation); the quotient is an exploratory row.
#
# **Here, at CPU scale.** The book's persona world with a tiny GPT (pretrained on prompt+response documents with
# the shared `base_recipe` of `lossbook.alignment.recipes`; cached checkpoints shared with the flagship) as π_ref.
# Pairs come with **exact annotator fractions** (`lossbook.alignment.refusal.annotated_pairs`): annotators like the
# right answer group and, mildly, a longer justification; α = σ(κ·Δu). Half the pairs (`answer_flip`, `opposite`)
# agree with the reference's prior, half (`extend`, `truncate`: the longer response is preferred) go against the
# raw-likelihood prior, which favours shorter responses — as in real data, where the reference misranks many pairs.
# **A world seed is one replicate** (its own world, pretraining, pairs and DPO run); claims read ≥ 3 worlds.
#
# **Progress, not steps.** An earlier version trained 100 Adam steps at lr 2e-5 and stopped at a DPO loss of ~0.62
# (start log 2 = 0.693); with 4× the steps its "DPO flips only a minority" verdict no longer held and the
# achieved-vs-idealized gap nearly closed. A step count does not transfer from 1–7B models to a 100k-parameter one;
# training progress does. So DPO runs (full batch, β = 0.1, Adam lr `lr`) up to a cap of `max_steps`, and the claims
# are read at the first step where the **training DPO loss ≤ `loss_target` = 0.5** (pre-registered, as in the
# flagship `dpo_displacement`); the same runs are read at `ablation_targets` to show how each verdict depends on
# progress (`lossbook.alignment.progress.train_to_targets`). The lr was fixed before the claims by the flagship's
# progress rule on a pilot (world 0, DPO): the largest of {2e-5, 1e-4, 3e-4} that reaches L ≤ 0.5 in ≥ 20 steps, so
# the curve is resolved, and at which L ≤ 0.3 is within the cap (1e-4: ~60 steps to 0.5).
#
# **Claims, with thresholds fixed before running** (N worlds, k = ⌈2N/3⌉):
# 1. `achieved_below_idealized`: at L ≤ `loss_target`, held-out ranking accuracy (raw and length-normalised) is at
#    least `gap_threshold` = 10 points below the median idealized accuracy over the β grid (likelihood-ratio
#    definition): the t-CI over worlds of min(raw gap, LN gap) lies above 0.10.
# 2. `thm41_all_pairs` (demonstration: an identity): Theorem 4.1 holds on 100% of the pairs in every world.
# 3. `dpo_flips_minority`: of the training pairs the reference misranks (c > 0), DPO flips < `flip_threshold` = 50%
#    (t-CI over worlds below 0.5), and the top-tercile flip rate of c is ≤ the bottom tercile's in ≥ k of N worlds.
# 4. `achieved_below_idealized_paper_code` (exploratory): claim 1's raw gap with the code's log-prob quotient.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seed = 0  # pairs, train/held-out split and DPO seed (added to each world's seed)
world_seeds = [0, 1, 2]  # replicate worlds: each its own world, pretraining, pairs and DPO run (≥ 3 outside smoke)
n_train_pairs = 256  # annotated pairs DPO trains on (full batch); in [1, inf)
n_eval_pairs = 256  # held-out annotated pairs; in [1, inf)
kappa = 3.0  # annotator sharpness κ in α: σ(κ·Δu); > 0
length_bonus = 0.3  # annotator utility per clause word
betas_ideal = [0.01, 0.1, 1.0, 5.0, 10.0]  # the paper grid for the idealized accuracy; > 0
beta = 0.1  # DPO β; > 0
optimizer = "adam"  # DPO optimiser
lr = 1.0e-4  # DPO learning rate, fixed by the progress rule in the text; > 0
max_steps = 400  # step cap of each DPO run (full batch); runs stop at the deepest target; in [1, inf)
loss_target = 0.5  # pre-registered progress: claims are read at the first step with training DPO loss ≤ this; > 0
ablation_targets = [0.65, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2]  # DPO-loss targets the same runs are read at (progress ablation)
gap_threshold = 0.10  # claim 1: idealized median − achieved ≥ 10 points (written before running); in [0, 1]
flip_threshold = 0.5  # claim 3: DPO flips fewer than this share of the misranked pairs; in [0, 1]
base_recipe = "persona-tiny"  # world, tiny GPT, pretraining and SFT: a name in lossbook.alignment.recipes.BASE_RECIPES (shared, cached)
device = "auto"  # "auto" (CUDA, else MPS, else CPU), or a torch device such as "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
# %%
from lossbook import plotting, replicate, repro, tracking

tracking.attach(mlflow_run_id, "ranking_accuracy", globals())
plotting.setup()

import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from tqdm.auto import tqdm

from lossbook.alignment import ranking as rk
from lossbook.alignment import refusal as rw
from lossbook.alignment.preference import PreferenceConfig, clone_policy, evaluate_logps
from lossbook.alignment.progress import read_step, train_to_targets
from lossbook.alignment.recipes import base_models
from lossbook.alignment.world import multi_token_preference_data

dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.perf_counter()
targets = sorted({*ablation_targets, loss_target}, reverse=True)
n_worlds = len(world_seeds)
k_worlds = math.ceil(2 * n_worlds / 3)
print(f"{n_worlds} worlds (claims need >= {k_worlds}); DPO lr {lr:g}, cap {max_steps} steps, read at L <= {loss_target} and {targets}")

# %% [markdown]
# ## Setup, idealized accuracy and DPO, per world
# For each world: the reference (pretrained GPT), the annotated pairs split into train / held-out, the idealized
# accuracy of the exact optimum over the β grid (both definitions for raw), and one DPO run read at every target.

# %%
ideal_rows, read_rows, runs, splits_by_world = [], [], {}, {}
for ws in tqdm(world_seeds, desc="worlds"):
    models = base_models(base_recipe, ws, device=dev)
    world, ref_model = models["world"], models["base"]
    pairs = rw.annotated_pairs(world, n_train_pairs + n_eval_pairs, seed=ws + 200 + seed, kappa=kappa, length_bonus=length_bonus)
    order = np.random.default_rng(ws + seed).permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    splits = {"train": pairs[:n_train_pairs], "heldout": pairs[n_train_pairs:]}
    data = {k: multi_token_preference_data(world, v) for k, v in splits.items()}
    alpha = {k: torch.tensor([p["alpha"] for p in v], dtype=torch.float64) for k, v in splits.items()}
    ref_lp = {k: evaluate_logps(ref_model.to(dev), d.to(dev)) for k, d in data.items()}
    for split, lp in ref_lp.items():
        c, r, lc, lr_ = (lp[k].cpu().double() for k in ("chosen_logps", "rejected_logps", "chosen_len", "rejected_len"))
        for name, args, kw in (("raw", (c, r), {}), ("raw (code: log-prob quotient)", (c, r), {"definition": "logprob_quotient"}),
                               ("length_norm", (c / lc, r / lr_), {})):
            acc = rk.idealized_ranking_accuracy(*args, alpha[split], betas_ideal, **kw)
            ideal_rows.append({"world": ws, "split": split, "variant": name, **{f"β={b:g}": v for b, v in acc.items()}, "median": float(np.median(list(acc.values())))})
    repro.seed_everything(ws + seed)
    cfg = PreferenceConfig(loss="dpo", beta=beta, lr=lr, optimizer=optimizer, steps=max_steps, seed=ws + seed)
    run = train_to_targets(clone_policy(ref_model), ref_model, data["train"], cfg, targets, dpo_beta=beta, eval_data=data["heldout"], device=dev)
    runs[ws], splits_by_world[ws] = run, {k: [p["type"] for p in v] for k, v in splits.items()}
    for tg in [None, *targets]:  # None = the reference (step 0)
        t = 0 if tg is None else read_step(run, tg)
        for split, (ck, rk_, refk) in {"train": ("chosen", "rejected", "ref"), "heldout": ("eval_chosen", "eval_rejected", "eval_ref")}.items():
            rf = run[refk]
            s = rk.ranking_summary(run[ck][t], run[rk_][t], rf["chosen_logps"], rf["rejected_logps"], rf["chosen_len"], rf["rejected_len"], beta)
            read_rows.append({"world": ws, "target": np.nan if tg is None else tg, "reached": tg is None or run["t_star"][tg] is not None,
                              "step": t, "split": split, "train_dpo_loss": float(run["dpo_loss"][t]), **s})
    tracking.log_metrics({f"w{ws}/steps_run": run["n_steps"], **{f"w{ws}/t_star_{tg:g}": (run["t_star"][tg] if run["t_star"][tg] is not None else -1) for tg in targets}})

ideal = pd.DataFrame(ideal_rows)
reads = pd.DataFrame(read_rows)
display(ideal.round(3))
tracking.log_dict(ideal.to_dict(orient="records"), "idealized_accuracy.json")
tracking.log_dict(reads.to_dict(orient="records"), "ranking_reads.json")

# %% [markdown]
# ## Accuracy and flips against training progress
# Each run read at every DPO-loss target (step 0 = the reference). Dotted lines: each world's idealized median
# (likelihood ratio).

# %%
ho = reads.query("split == 'heldout'")
tr = reads.query("split == 'train'")
fig, ax = plt.subplots(1, 3, figsize=(16, 4.2))
for ws in world_seeds:
    h = ho.query("world == @ws")
    ax[0].plot(h["train_dpo_loss"], h["raw"], "-o", label=f"world {ws}, raw")
    ax[0].plot(h["train_dpo_loss"], h["length_norm"], "--s", label=f"world {ws}, LN")
    for variant, ls in (("raw", ":"), ("length_norm", "-.")):
        sel = (ideal["world"] == ws) & (ideal["split"] == "heldout") & (ideal["variant"] == variant)
        ax[0].axhline(float(ideal.loc[sel, "median"].iloc[0]), ls=ls, lw=0.8, color="gray")
    t_ = tr.query("world == @ws")
    ax[1].plot(t_["train_dpo_loss"], t_["flip_rate"], "-o", label=f"world {ws}: all misranked")
    ax[1].plot(t_["train_dpo_loss"], t_["flip_top"], ":^", label=f"world {ws}: top tercile of c")
    ax[2].plot(runs[ws]["dpo_loss"], label=f"world {ws}")
for a in ax[:2]:
    a.axvline(loss_target, color="k", lw=0.7)
    a.invert_xaxis()
    a.set_xlabel("training DPO loss (nats; progress →)")
ax[0].set_ylabel("held-out ranking accuracy")
ax[0].set_title("achieved accuracy vs progress (gray: idealized medians)")
ax[1].set_ylabel("share of reference-misranked train pairs flipped")
ax[1].axhline(flip_threshold, color="tab:red", lw=0.7)
ax[2].axhline(loss_target, color="k", lw=0.7)
ax[2].set(xlabel="DPO step", ylabel="training DPO loss (nats)", title=f"DPO loss curves (lr {lr:g})")
for a in ax:
    a.legend(fontsize=6)
fig.tight_layout()
tracking.log_figure(fig, "accuracy_and_flips_vs_progress")
plt.show()

# %%
ws0 = world_seeds[0]
run0 = runs[ws0]
t0_ = read_step(run0, loss_target)
thm = rk.thm41_check(run0["chosen"][t0_], run0["rejected"][t0_], run0["ref"]["chosen_logps"], run0["ref"]["rejected_logps"], beta)
ok = thm["ranked"].numpy()
fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
ax[0].scatter(thm["bound"].numpy()[ok], thm["dpo_loss"].numpy()[ok], s=8, label="ranked correctly", color="tab:green")
ax[0].scatter(thm["bound"].numpy()[~ok], thm["dpo_loss"].numpy()[~ok], s=8, label="misranked", color="tab:red")
lim = float(max(thm["bound"].max(), thm["dpo_loss"].max()))
ax[0].plot([0, lim], [0, lim], "k--", lw=0.8, label="L_DPO = −log σ(βc)")
ax[0].set(xlabel="−log σ(β·c)  (Thm 4.1 bound)", ylabel="DPO loss of the pair", title=f"Thm 4.1, world {ws0}, train pairs at L ≤ {loss_target}")
ax[0].legend(fontsize=8)
ih = ideal.query("world == @ws0 and split == 'heldout'").set_index("variant")
for var, style in (("raw", "-o"), ("raw (code: log-prob quotient)", "-x"), ("length_norm", "--s")):
    ax[1].plot(betas_ideal, [ih.loc[var, f"β={b:g}"] for b in betas_ideal], style, label=f"idealized, {var}")
h0 = ho.query("world == @ws0 and target == @loss_target").iloc[0]
ax[1].axhline(h0["raw"], ls=":", color="gray", label=f"after DPO (L ≤ {loss_target}), raw")
ax[1].axhline(h0["length_norm"], ls="-.", color="gray", label=f"after DPO (L ≤ {loss_target}), LN")
ax[1].set(xscale="log", xlabel="β of the idealized model", ylabel="held-out ranking accuracy", title=f"idealized vs achieved, world {ws0}")
ax[1].legend(fontsize=7)
fig.tight_layout()
tracking.log_figure(fig, "thm41_and_idealized")
plt.show()

# %% [markdown]
# ## Claims (read at the pre-registered target)

# %%
at = reads.query("target == @loss_target")
ho_t, tr_t = at.query("split == 'heldout'").set_index("world"), at.query("split == 'train'").set_index("world")
ideal_med = ideal.query("split == 'heldout'").pivot(index="world", columns="variant", values="median")
gap_raw = (ideal_med["raw"] - ho_t["raw"]).to_numpy()
gap_ln = (ideal_med["length_norm"] - ho_t["length_norm"]).to_numpy()
gap_code = (ideal_med["raw (code: log-prob quotient)"] - ho_t["raw"]).to_numpy()
loss_read = tr_t["train_dpo_loss"].to_numpy()
reached_guard = replicate.progress_reached(float(loss_read.max()), loss_target, what="training DPO loss at the read step (worst world)",
                                           fix=f"raise max_steps above {max_steps} or the lr so every world reaches L <= {loss_target}")
by_target = reads.query("split == 'heldout'").groupby("target")
curve = {tg: (ideal_med["raw"].to_numpy() - g.set_index("world")["raw"].reindex(ideal_med.index).to_numpy(),
              ideal_med["length_norm"].to_numpy() - g.set_index("world")["length_norm"].reindex(ideal_med.index).to_numpy()) for tg, g in by_target}
gap_curve = "; ".join(f"L≤{tg:g}: raw {np.mean(r):+.2f}, LN {np.mean(n):+.2f}" for tg, (r, n) in sorted(curve.items(), reverse=True))
def per_world(v: np.ndarray, fmt: str = ".3f") -> str:
    return ", ".join(f"w{ws} {x:{fmt}}" for ws, x in zip(world_seeds, v))


v1 = np.minimum(gap_raw, gap_ln)
raw_by_beta = ", ".join(f"β={b:g} {ih.loc['raw', f'β={b:g}']:.2f}" for b in betas_ideal)  # world 0, held-out
o1 = replicate.mean_ci_rule(v1, gap_threshold, "above")
replicate.record(
    "achieved_below_idealized",
    statement=f"At training DPO loss <= {loss_target}, held-out ranking accuracy (raw and LN) is >= {gap_threshold:.2f} below the median idealized accuracy over the β grid (likelihood-ratio definition)",
    paper="Chen et al. 2024, Table 1 / Fig. 1",
    paper_value="most models < 60% (abstract), gaps up to 59 points; e.g. Zephyr-7B-DPO AlpacaFarm 54% (LN) / 42% (raw) vs idealized median ~97-99% (example values from the book notes, not re-checked against the table)",
    values=v1, outcome=o1, guards=[reached_guard],
    measured=f"min(raw, LN) gap {o1.statistic:.3f} [{o1.ci.low:.3f}, {o1.ci.high:.3f}]; raw gap {per_world(gap_raw)}; LN gap {per_world(gap_ln)}; achieved raw {per_world(ho_t['raw'].to_numpy())}, LN {per_world(ho_t['length_norm'].to_numpy())}",
    diagnosis=replicate.Diagnosis(
        f"Two measured causes. (i) Progress: the mean gaps over worlds by DPO-loss target are {gap_curve}; the LN gap the paper reports is large early "
        f"and small by L <= {loss_target}. (ii) The definition: under Eq. 3's likelihood ratio the idealized raw accuracy falls at β >= 1 "
        f"(world {world_seeds[0]}: {raw_by_beta}): the optimum keeps the reference's "
        f"length-driven misrankings, since (α/(1−α))^(1/β) is only e^(κ·{length_bonus}/β) on the length pairs, so the raw median over the paper's β grid "
        f"({per_world(ideal_med['raw'].to_numpy())}) is below what DPO reaches. With the official code's log-prob quotient the raw median is "
        f"{per_world(ideal_med['raw (code: log-prob quotient)'].to_numpy())} and the raw gap {per_world(gap_code)}.",
        f"the same runs read at DPO-loss targets {targets}; the idealized accuracy per β and under both definitions"),
    details={"gap_raw": gap_raw.tolist(), "gap_ln": gap_ln.tolist(), "gap_by_target": {str(k): [list(map(float, a)) for a in v] for k, v in curve.items()}},
)
v1c = gap_code
replicate.record(
    "achieved_below_idealized_paper_code",
    statement=f"Claim 1's raw gap with the official code's idealized definition (quotient of the summed reference log-probs), at DPO loss <= {loss_target}",
    paper="Chen et al. 2024, Table 1 (raw idealized numbers; rlhf_minimizer_client.py)", paper_value="idealized raw median ~99% (book notes)",
    values=v1c, outcome=replicate.mean_ci_rule(v1c, gap_threshold, "above"), kind="exploratory",
    measured=f"raw gap (code definition) {per_world(gap_code)}; idealized raw median (code) {per_world(ideal_med['raw (code: log-prob quotient)'].to_numpy())} vs (likelihood ratio) {per_world(ideal_med['raw'].to_numpy())}",
)
agree = reads.query("target == target")["thm41_agree"].groupby(reads["world"]).min().reindex(world_seeds).to_numpy()
replicate.record(
    "thm41_all_pairs",
    statement="Thm 4.1: a pair is ranked correctly iff its DPO loss < −log σ(β·c), on every pair of every world at every read step",
    paper="Chen et al. 2024, Theorem 4.1", paper_value="holds for every pair (a theorem)",
    values=agree, outcome=replicate.k_of_n_rule(agree == 1.0, n_worlds), kind="demonstration",
    measured=f"smallest agreement over splits and targets per world: {per_world(agree)}",
)
flip = tr_t["flip_rate"].to_numpy()
top_le_bottom = np.nan_to_num(tr_t["flip_top"].to_numpy(), nan=1.0) <= np.nan_to_num(tr_t["flip_bottom"].to_numpy(), nan=0.0)
o3 = replicate.all_of(replicate.mean_ci_rule(flip, flip_threshold, "below"), replicate.k_of_n_rule(top_le_bottom, k_worlds))
flip_curve = "; ".join(f"L≤{tg:g}: {g['flip_rate'].mean():.2f} (top tercile {g['flip_top'].mean():.2f})" for tg, g in sorted(reads.query("split == 'train'").groupby("target"), reverse=True))
_ = replicate.record(
    "dpo_flips_minority",
    statement=f"At DPO loss <= {loss_target}, DPO flips < {flip_threshold:.0%} of the training pairs the reference misranks (t-CI over worlds), and the top-tercile flip rate of c is <= the bottom tercile's in >= {k_worlds} of {n_worlds} worlds",
    paper="Chen et al. 2024, §4 (Fig. 3)",
    paper_value="DPO rarely flips a misranked pair (NYU-CDS summary); < 10% flipped for Pythia-2.8B on HH (book notes, not re-checked)",
    values=flip, outcome=o3, guards=[reached_guard],
    measured=f"flip rate {o3.statistic:.3f} [{o3.ci.low:.3f}, {o3.ci.high:.3f}] ({per_world(flip)}; misranked pairs {per_world(tr_t['n_misranked'].to_numpy(), '.0f')}); "
             f"bottom/top tercile {', '.join(f'w{ws} {b:.2f}/{t:.2f}' for ws, b, t in zip(world_seeds, tr_t['flip_bottom'], tr_t['flip_top']))}",
    diagnosis=replicate.Diagnosis(
        f"Thm 4.1 makes the flip rate a function of progress: a misranked pair flips once its DPO loss falls below −log σ(βc), so the share grows as the loss falls. "
        f"Mean flip rate over worlds by DPO-loss target: {flip_curve}.",
        f"the same runs read at DPO-loss targets {targets}"),
    details={"flip_by_target": {str(tg): g["flip_rate"].tolist() for tg, g in reads.query("split == 'train'").groupby("target")}},
)

# %% [markdown]
# ## Closing note and discussion (numbers from this run)

# %%
from lossbook import claims  # noqa: E402

wall = time.perf_counter() - t_start
tracking.log_metrics({"time/wall_s": wall})
tab = ho_t[["step", "train_dpo_loss", "raw", "length_norm"]].join(tr_t[["flip_rate", "flip_bottom", "flip_top", "n_misranked"]]).join(ideal_med.add_prefix("idealized median, "))
display(tab.round(3))
ref_ho = reads.query("split == 'heldout' and target != target").set_index("world")
deep = reads.query("split == 'heldout' and target == @targets[-1]").set_index("world")
verdicts = "\n".join(f"- **{c['name']}**: {c['verdict']} — measured {c['measured']} (rule: {c['threshold']})" for c in claims.recorded())
display(Markdown("\n".join([
    f"### Verdicts (read at training DPO loss ≤ {loss_target}, lr {lr:g})", verdicts, "",
    f"- **Progress.** DPO reached L ≤ {loss_target} after {per_world(tr_t['step'].to_numpy(), '.0f')} steps; the deepest target L ≤ {targets[-1]} was "
    f"{'reached in every world' if bool(deep['reached'].all()) else 'not reached in every world'} (steps {per_world(deep['step'].to_numpy(), '.0f')}). "
    f"Held-out raw accuracy goes from the reference's {per_world(ref_ho['raw'].to_numpy())} to {per_world(ho_t['raw'].to_numpy())} at the target and "
    f"{per_world(deep['raw'].to_numpy())} at L ≤ {targets[-1]}; LN from {per_world(ref_ho['length_norm'].to_numpy())} to {per_world(ho_t['length_norm'].to_numpy())} and {per_world(deep['length_norm'].to_numpy())}.",
    f"- **Gaps by progress** (idealized median − achieved, mean over worlds): {gap_curve}.",
    f"- **Flips by progress**: {flip_curve}.",
    f"- **Which definition the paper's numbers use.** The raw idealized medians are {per_world(ideal_med['raw'].to_numpy())} with the likelihood ratio (Eq. 3) and "
    f"{per_world(ideal_med['raw (code: log-prob quotient)'].to_numpy())} with the code's log-prob quotient, which the paper's raw idealized numbers use. "
    "The quotient of two negative summed log-probs is < 1 when y_w is the more likely response, so it inverts the reference's vote and shrinks it to "
    "log(|log π_ref(y_w)| / |log π_ref(y_l)|); the annotators' term (1/β)·log(α/(1−α)) then decides more pairs, which raises the idealized accuracy at β ≥ 1.",
    "- **Differences from the paper.** A 2-layer GPT on a synthetic world, not 1–7B chat models on UltraFeedback or AlpacaFarm; the annotator fractions are exact "
    "by construction (Bradley–Terry on a known utility); the idealized model uses the reference log-probs exactly, so it is a true upper bound for this π_ref. "
    "Chen et al.'s code ranks the idealized ratio with a tie band of 0.05 on both sides, which we follow. Theorem 4.1 is an algebraic identity, so its row checks "
    "the implementation; the informative part is how far the misranked pairs' DPO loss is from the bound (left panel above).",
    f"- **Wall time** {wall:.0f} s on {dev} with {torch.get_num_threads()} threads.",
])))
