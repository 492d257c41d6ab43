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

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from lossbook import plotting, replicate, repro, tracking
from lossbook.scaling.repetition import (
    duplicate_share,
    effective_data,
    fit_base_law_fixed_e,
    fit_r_star,
    pool_tokens,
    stream_windows,
)
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
# ## Discussion

# %%
wall, cpu = time.time() - t_start, time.process_time() - c_start
tb = table[table["width"] == width].set_index("epochs")
print(f"""* Setting: D = {D_total:,} tokens per run, width {width} (N = {int(full_ref[full_ref['width'] == width]['N'].iloc[0]):,} non-embedding
  parameters), pools of {pool_tokens(steps, batch_size, block_size, max(epochs)):,} to {pool_tokens(steps, batch_size, block_size, 1):,} tokens; {len(seeds)} replicates.
  Single-pass references reach L = {ref.xs(width, level='width').min():.3f}–{ref.xs(width, level='width').max():.3f} at d = {width} and
  {ref.xs(wide, level='width').min():.3f}–{ref.xs(wide, level='width').max():.3f} at d = {wide} (H = {H:.3f}, log V = {np.log(V):.3f}).
* Gap vs the single pass (mean % [95% CI]): """ + "; ".join(f"{e} ep {100 * r.gap_mean:+.2f} [{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]" for e, r in tb.iterrows()) + f"""
* The 1-epoch pool matches the stream ({100 * g1.mean():+.2f}%), so the gaps are repetition, not shift (the Shakespeare version of this
  notebook compared the first U characters with a validation tail, and its 1-epoch reference itself repeated windows).
* Wider model (d = {wide}): gaps """ + ", ".join(f"{e} ep {100 * gap_of(wide, e).mean():+.2f}%" for e in wide_epochs) + f""".
* R_D* per replicate {np.round(r_stars, 2).tolist()} versus the paper's 15.4: our base law has 3 single-pass points for 2 free parameters
  (E = H is exact), each with its own cosine horizon; R_D* is read at a single D, so it is exploratory.
* Verdicts: {', '.join(f"{k}: {v.get('passed')}" for k, v in verdicts.items())}.
* This run: {wall:.0f} s wall, {cpu:.0f} s CPU in the notebook process (cached points cost nothing).""")
