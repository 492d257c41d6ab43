# %% [markdown]
# # Compute-optimal models grow parameters and data in about equal proportion
# **Paper:** Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models" (Chinchilla), arXiv:2203.15556; Besiroglu, Erdil, Barnett, You (2024), "Chinchilla Scaling: A replication attempt", arXiv:2404.10102; Pearce & Song (2024), "Reconciling Kaplan and Chinchilla Scaling Laws", arXiv:2406.12907.
# **Claim:** for a compute budget C, the loss-minimising model size grows as N_opt ∝ C^a with a ≈ 0.5 (paper 0.46–0.50 from three approaches; the replication's refit of Approach 3 gives 0.513), and a law fitted at small budgets predicts the compute-optimal loss at larger ones.
#
# Hoffmann et al. estimate a three ways: (1) the lower envelope of loss-vs-FLOPs training curves, (2) IsoFLOP
# profiles (a parabola in log N per budget) and (3) a parametric fit L(N, D) = E + A/N^α + B/D^β. The
# replication showed that (3) needs log-space logsumexp predictions, Huber δ = 1e-3, tight optimizer tolerances
# and many starts; its headline constants come from the Huber *likelihood with a scale* (`objective=
# "huber_likelihood"` in `lossbook.scaling.fit`, which lands on their A = 482.0, B = 2085, E = 1.817,
# α = 0.348, β = 0.366 on their data). We run IsoFLOP sweeps of tiny 2-layer GPTs on the task language of
# `lossbook.scaling.task_language` (Zipf-distributed tasks spelled by code tokens; exact entropy).
#
# **One axis, stated once.** C is the exact training FLOPs of a run (attention and the unembedding included)
# and N is the **total** parameter count (embeddings included, tied), the pair for which C ≈ 6·N·D holds at
# every width. Approach 3's a is the slope of its own N_opt(C) on that axis, read by minimising the fitted law
# along each exact-FLOP line (`sweep.optimal_on_axis`), not β/(α+β), which assumes C ∝ N·D. Pearce & Song
# (2024) show that pairing non-embedding N with FLOPs that include the embeddings' work biases a upward at
# small scale; a secondary claim refits Approach 2 on those mixed axes.
#
# **Protocol, fixed before the run** (`lossbook.replicate`):
# * **Replicates.** Each seed in `seeds` is one world (codes, task maps, training stream, validation set,
#   inits); every claim's statistic is computed once per replicate.
# * **Guards.** *bracketed*: every budget's parabola has a positive curvature and its minimum inside the
#   sizes trained for it (per replicate); *not_at_boundary*: Approach 3's E and exponents inside their ranges
#   (`fit.fit_guards`); *range*: the budgets span ≥ 1.5 decades.
# * **Rules.** (1) a from Approach 2 on the consistent axis: 95% t-CI of the mean over replicates inside
#   [0.35, 0.65]. (2) The three approaches agree: the t-CI of the mean max pairwise gap below 0.1. (3) A fit on
#   budgets ≤ C_max/10 predicts the compute-optimal loss at C_max within 2% (t-CI of the mean relative error
#   below 0.02). (4) Pearce & Song: a on the mixed axes minus a on the consistent axis, t-CI of the mean above 0.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seeds = [0, 1, 2]  # replicates: each seed draws the codes, task maps, training stream, validation set and inits; in [0, inf)
device = "cpu"  # "cpu" | "cuda" | "auto"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
n_tasks = 1024  # tasks of the language (Zipf-ranked); in [1, inf)
code_alphabet = 32  # code tokens (n_tasks <= code_alphabet**code_len); in [1, inf)
code_len = 2  # code tokens per task; in [1, inf)
n_symbols = 16  # input/output symbols of every task's map; in [2, inf)
zipf = 1.5  # task prior exponent; in [0, inf)
eps = 0.1  # probability that y is uniform instead of f_t(x); in [0, 1]
n_layer = 2  # layers of every model; in [1, inf)
ladder = [8, 12, 16, 24, 32, 48, 64, 96]  # widths the IsoFLOP sizes are chosen from; in [1, inf)
budgets = [1.0e10, 3.2e10, 1.0e11, 3.2e11]  # exact training FLOPs per run; > 0
n_sizes = 5  # widths per budget, centred on tokens_per_param; in [3, inf)
tokens_per_param = 20.0  # the centre of each IsoFLOP profile (D / N_total); > 0
n_evals = 8  # validation evaluations along each run (Approach 1 reads them); in [1, inf)
block_size = 16  # context length (a multiple of the episode length code_len + 2); in [1, inf)
batch_size = 32  # sequences per step; in [1, inf)
lr = 3.0e-3  # AdamW peak learning rate; > 0
warmup_frac = 0.05  # linear warmup as a share of each run; in [0, 1]
eval_tokens = 16384  # validation targets per replicate; in [1, inf)
n_starts = 64  # Approach 3 grid starts; in [1, inf)
objective = "huber"  # Approach 3 objective: "huber" (summed) | "huber_likelihood" (the replication's headline estimator)
a_range = [0.35, 0.65]  # rule 1: the mean a must lie in this interval; in [0, 1]
gap_tol = 0.1  # rule 2: max pairwise gap between the three a's; in [0, 1]
extrapolation_tol = 0.02  # rule 3: relative error of the predicted optimal loss at C_max; in [0, 1]
csv_path = ""  # optional: published (N, D, loss) points, e.g. Epoch's data/svg_extracted_data.csv (not shipped: no license)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from lossbook import plotting, replicate, repro, tracking
from lossbook.scaling.analysis import decades
from lossbook.scaling.fit import envelope_approach, fit_chinchilla, fit_guards, isoflop_approach
from lossbook.scaling.sweep import gpt_size, isoflop_widths, optimal_on_axis, run_point, task_language

tracking.attach(mlflow_run_id, "chinchilla_compute_optimal", globals())
plotting.setup()
repro.set_threads(threads)
t_start, c_start = time.time(), time.process_time()
lang = {"kind": "tasks", "n_tasks": n_tasks, "code_alphabet": code_alphabet, "code_len": code_len, "n_symbols": n_symbols, "zipf": zipf, "eps": eps,
        "eval_tokens": eval_tokens}
V = task_language({**lang, "seed": seeds[0]}).vocab_size
H = task_language({**lang, "seed": seeds[0]}).bayes_loss(block_size)
tokens_per_step = batch_size * block_size
ratio_mixed = [float(gpt_size(d, n_layer, V, block_size)[1] / (6 * gpt_size(d, n_layer, V, block_size)[0])) for d in ladder]
print(f"Bayes loss H = {H:.4f}; vocab {V}; budgets span {decades(budgets):.2f} decades; "
      f"FLOPs/(6·N_non-embedding) from {ratio_mixed[0]:.2f} (d = {ladder[0]}) to {ratio_mixed[-1]:.2f} (d = {ladder[-1]})")

# %% [markdown]
# ## IsoFLOP sweeps
# Per budget and replicate, `n_sizes` consecutive widths centred on `tokens_per_param` tokens per (total)
# parameter; each trains for D = C / (exact FLOPs per token) tokens, a complete cosine run.

# %%
rows, curves = [], []
for seed in seeds:
    for C in budgets:
        for d in isoflop_widths(C, ladder, n_layer, V, block_size, n_sizes, tokens_per_param, axis="total"):
            st = max(int(round(C / (gpt_size(d, n_layer, V, block_size)[1] * tokens_per_step))), 10)
            cfg = {"data": {**lang, "seed": seed}, "model": {"n_layer": n_layer, "d_model": d, "n_head": max(1, d // 16), "block_size": block_size},
                   "train": {"steps": st, "batch_size": batch_size, "lr": lr, "warmup": int(warmup_frac * st), "seed": seed, "n_evals": n_evals}, "device": device}
            r = run_point(cfg, name=f"chinchilla/s{seed}-C{C:.2g}-d{d}")
            rows.append({"seed": seed, "budget": C, "width": d, "steps": st, **{k: v for k, v in r.items() if not isinstance(v, dict)}})
            curves.append((seed, r["N_total"], np.array(r["val_curve"]["flops"]), np.array(r["val_curve"]["val_loss"])))
df = pd.DataFrame(rows)
df["L"] = df["val_loss_adj"]
tracking.log_dict(df.to_dict(orient="list"), "sweep.json")
df[["seed", "budget", "width", "N", "N_total", "D", "C", "steps", "L", "wall_s"]]

# %% [markdown]
# ## The three approaches per replicate, on the consistent axis (N_total, exact C)
# Approach 2 also on the mixed axes (non-embedding N, exact C) for the Pearce & Song comparison; Approach 3's a
# is the slope of its own N_opt(C) (`optimal_on_axis`), with β/(α+β) printed next to it.

# %%
per_rep, a3_fits, a2_fits = [], {}, {}
for seed, g in df.groupby("seed"):
    a2 = a2_fits[seed] = isoflop_approach(g["budget"], g["N_total"], g["L"])
    a2_mixed = isoflop_approach(g["budget"], g["N"], g["L"])
    a1 = envelope_approach([(n, f, v) for s, n, f, v in curves if s == seed], n_points=16)
    f3 = a3_fits[seed] = fit_chinchilla(g["N_total"], g["D"], g["L"], n_starts=n_starts, objective=objective)
    o3 = optimal_on_axis(f3.predict, budgets, n_layer, V, block_size, axis="total")
    small = g[g["budget"] <= max(budgets) / 10 * (1 + 1e-9)]
    fs = fit_chinchilla(small["N_total"], small["D"], small["L"], n_starts=n_starts, objective=objective)
    pred = optimal_on_axis(fs.predict, [max(budgets)], n_layer, V, block_size, axis="total")["L_opt"][0]
    obs = float(a2["L_opt"][np.argmax(a2["budgets"])])
    inside = [c not in a2["unbracketed"] and g["N_total"][g.budget == c].min() < p.x_opt < g["N_total"][g.budget == c].max()
              for c, p in zip(a2["budgets"], a2["parabolas"])]
    best = g.loc[g.groupby("budget")["L"].idxmin()]
    per_rep.append({"seed": seed, "best_tokens_per_param": float(np.median(best["D"] / best["N_total"])), "best_at_smallest": int((best["width"] == g.groupby("budget")["width"].min().to_numpy()).sum()),
                    "a1": a1["a"], "a2": a2["a"], "a3": o3["a"], "a3_beta_over_sum": f3.a, "a2_mixed": a2_mixed["a"],
                    "E": f3.E, "alpha": f3.alpha, "beta": f3.beta, "flags": "; ".join(f3.flags) or "none", "a3_at_edge": o3["at_edge"],
                    "unbracketed": int(len(inside) - np.sum(inside)), "extrap_pred": pred, "extrap_obs": obs, "extrap_rel_err": abs(pred - obs) / obs})
rep = pd.DataFrame(per_rep)
rep["max_gap"] = rep[["a1", "a2", "a3"]].max(axis=1) - rep[["a1", "a2", "a3"]].min(axis=1)
rep["bias_mixed"] = rep["a2_mixed"] - rep["a2"]
tracking.log_dict(rep.to_dict(orient="list"), "per_replicate.json")
tracking.log_metrics({f"mean/{k}": float(rep[k].mean()) for k in ("a1", "a2", "a3", "a2_mixed", "E", "alpha", "beta")})
display(rep.round(4))

# %%
s0 = seeds[0]
g0, p0 = df[df.seed == s0], a2_fits[s0]
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for (C, g), p in zip(g0.groupby("budget"), p0["parabolas"]):
    (line,) = axes[0].plot(g["N_total"], g["L"], "o", label=f"C = {C:.2g} FLOPs")
    xs = np.geomspace(g["N_total"].min() / 1.3, g["N_total"].max() * 1.3, 100)
    axes[0].plot(xs, np.polyval(p.coef[::-1], np.log(xs)), color=line.get_color(), lw=1)
    axes[0].plot(p.x_opt, p.y_opt, "*", color=line.get_color(), ms=12)
axes[0].axhline(H, color="gray", ls=":", lw=1, label="Bayes loss H")
axes[0].set_xscale("log")
axes[0].set_xlabel("total parameters N")
axes[0].set_ylabel("validation loss (nats/token)")
axes[0].set_title(f"IsoFLOP profiles, replicate {s0} (stars: minima)")
axes[0].legend(fontsize=8)
Cs = np.geomspace(min(budgets), max(budgets), 30)
axes[1].plot(p0["budgets"], p0["N_opt"], "o", label=f"Approach 2 (a = {rep['a2'].iloc[0]:.3f})")
o3 = optimal_on_axis(a3_fits[s0].predict, Cs, n_layer, V, block_size, axis="total")
axes[1].plot(Cs, o3["N_opt"], "C2--", label=f"Approach 3, its own N_opt(C) (a = {rep['a3'].iloc[0]:.3f})")
axes[1].set_xscale("log")
axes[1].set_yscale("log")
axes[1].set_xlabel("training compute C (exact FLOPs)")
axes[1].set_ylabel("compute-optimal total N")
axes[1].legend(fontsize=8)
tracking.log_figure(fig, "isoflop_and_nopt")
plt.show()

# %% [markdown]
# ## Claims (rules and guards from the introduction, fixed before the run)

# %%
g_br = [replicate.Guard(f"bracketed_seed{r.seed}", r.unbracketed == 0, f"{r.unbracketed} of {len(budgets)} budgets without a parabola minimum inside their sizes",
                        "more or recentred sizes per budget") for r in rep.itertuples()]
g_fit = [replicate.Guard(f"{g.name}_seed{s}", g.passed, g.detail, g.fix) for s in seeds for g in fit_guards(a3_fits[s])]
g_range = replicate.progress_reached(decades(budgets), 1.5, lower_is_better=False, what="decades of C", name="range", fix="more budgets")
verdicts = {}
a2v = rep["a2"].to_numpy()
verdicts["compute_optimal_exponent"] = replicate.record(
    "compute_optimal_exponent", statement="N_opt ∝ C^a with a in [0.35, 0.65] (Approach 2, total N against exact FLOPs)",
    paper="Hoffmann et al. 2022 Table 2; Besiroglu et al. 2024", paper_value="a = 0.49 (Approach 2); replication 0.513 (Approach 3)",
    values=a2v, outcome=replicate.mean_within_rule(a2v, *a_range), guards=[g_range, *g_br],
    diagnosis=replicate.Diagnosis(f"a2 per replicate {np.round(a2v, 3).tolist()}; Approach 3's own N_opt(C) slope {rep['a3'].round(3).tolist()}; "
                                  f"best runs at D/N_total = {rep['best_tokens_per_param'].round(0).tolist()}",
                                  "Approach 3 on the same runs and Approach 2 on the mixed axes (per-replicate table)"),
)
gap = rep["max_gap"].to_numpy()
verdicts["three_approaches_agree"] = replicate.record(
    "three_approaches_agree", statement="The three estimates of a agree within 0.1 (max pairwise gap)",
    paper="Hoffmann et al. 2022 Table 2", paper_value="a = 0.50 / 0.49 / 0.46 (Approaches 1/2/3)",
    values=gap, outcome=replicate.mean_ci_rule(gap, gap_tol, "below"), guards=[g_range, *g_br, *g_fit],
    diagnosis=replicate.Diagnosis(f"a1 {rep['a1'].round(3).tolist()} reads unannealed points along cosine runs; a3 {rep['a3'].round(3).tolist()}",
                                  "Approach 3's β/(α+β) next to its own slope (per-replicate table)"),
)
err = rep["extrap_rel_err"].to_numpy()
verdicts["small_budget_fit_extrapolates"] = replicate.record(
    "small_budget_fit_extrapolates", statement="A Chinchilla-form fit on budgets <= C_max/10 predicts the compute-optimal loss at C_max within 2%",
    paper="Hoffmann et al. 2022 (Chinchilla predicted from smaller runs)", paper_value="Chinchilla 70B outperformed as predicted",
    values=err, outcome=replicate.mean_ci_rule(err, extrapolation_tol, "below"), guards=[g_range, *g_br],
    diagnosis=replicate.Diagnosis(f"predicted {rep['extrap_pred'].round(4).tolist()} vs observed {rep['extrap_obs'].round(4).tolist()}",
                                  "the full-range fit's N_opt(C) against the parabola minima (figure)"),
)
bias = rep["bias_mixed"].to_numpy()
verdicts["mixed_axes_bias_a_upward"] = replicate.record(
    "mixed_axes_bias_a_upward", statement="Non-embedding N against FLOPs that include the embeddings' work raises the fitted a (Approach 2)",
    paper="Pearce & Song 2024", paper_value="non-embedding counting at small scale pushes a toward Kaplan's 0.73",
    values=bias, outcome=replicate.mean_ci_rule(bias, 0.0, "above"), guards=[g_range, *g_br],
    measured=f"a(mixed) - a(total) = {np.mean(bias):+.3f} (per replicate {np.round(bias, 3).tolist()})",
    diagnosis=replicate.Diagnosis(f"FLOPs/(6·N) spans {ratio_mixed[0]:.2f}-{ratio_mixed[-1]:.2f} over the ladder but the optimal widths move little",
                                  "the ladder's FLOPs/(6N) ratios printed at the top"),
)

# %% [markdown]
# ## Optional: fit published (N, D, loss) points
# Set `csv_path` to a CSV with columns `N`, `D`, `loss` (or Epoch's `Model Size`, `Training FLOP`, `loss`, from
# `epoch-research/analyzing-chinchilla`, which carries no license and is therefore not shipped). Both
# objectives are fitted; the replication drops the five highest losses.

# %%
if csv_path:
    ext = pd.read_csv(csv_path).rename(columns={"Model Size": "N", "Training Tokens": "D", "Loss": "loss"})
    ext["D"] = ext["D"] if "D" in ext else ext["Training FLOP"] / (6 * ext["N"])
    ext = ext[ext["loss"] < np.sort(ext["loss"])[-5]]
    for obj in ("huber", "huber_likelihood"):
        f = fit_chinchilla(ext["N"], ext["D"], ext["loss"], objective=obj)
        print(obj, {k: round(v, 4) for k, v in f.as_dict().items()}, "flags:", f.flags or "none")
        tracking.log_metrics({f"csv_fit/{obj}/{k}": v for k, v in f.as_dict().items()})
else:
    print("csv_path is empty: skipping the fit of published points.")

# %% [markdown]
# ## Discussion

# %%
wall, cpu = time.time() - t_start, time.process_time() - c_start
print(f"""* a per replicate: Approach 1 {rep['a1'].round(3).tolist()}, Approach 2 {rep['a2'].round(3).tolist()}, Approach 3 (own slope)
  {rep['a3'].round(3).tolist()} (β/(α+β) {rep['a3_beta_over_sum'].round(3).tolist()}); mixed axes {rep['a2_mixed'].round(3).tolist()}.
* Approach 3: E {rep['E'].round(4).tolist()} against H = {H:.4f}; alpha {rep['alpha'].round(3).tolist()}, beta {rep['beta'].round(3).tolist()};
  boundary flags {rep['flags'].tolist()}.
* Where the minima sit: the lowest-loss run of each budget has D/N_total = {rep['best_tokens_per_param'].round(0).tolist()} (median over budgets;
  the profiles are centred on {tokens_per_param:g}), and it is the smallest width of its profile in {rep['best_at_smallest'].tolist()} of {len(budgets)} budgets:
  a profile centred on a pilot optimum (issue 16 item 3) is what the bracketed guard asks for.
* Approach 1 reads unannealed evaluation points along cosine runs (a known bias; annealed endpoints are issue 16's item 3).
* Verdicts: {', '.join(f"{k}: {v.get('passed')}" for k, v in verdicts.items())}.
* This run: {wall:.0f} s wall, {cpu:.0f} s CPU in the notebook process.""")
