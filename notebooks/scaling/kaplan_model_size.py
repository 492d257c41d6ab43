# %% [markdown]
# # Loss falls as a power law in non-embedding parameters
# **Paper:** Kaplan, McCandlish, Henighan, Brown, Chess, Child, Gray, Radford, Wu, Amodei (2020), "Scaling Laws for Neural Language Models", arXiv:2001.08361.
# **Claim:** with ample data, test loss follows L(N) = (N_c/N)^α_N with α_N ≈ 0.076 over many decades of non-embedding parameters N, and counting non-embedding (rather than total) parameters collapses models of different depths onto one curve.
#
# Kaplan et al. trained decoder-only transformers from 768 to 1.5B non-embedding parameters on WebText2 and
# found test loss a power law in N (their Fig. 1, eq. 1.1: α_N = 0.076, N_c = 8.8e13), with depth and width
# mattering little at fixed N — provided embedding parameters are left out of N (Fig. 6). Here we train
# tiny GPTs (about 10^3–2·10^5 non-embedding parameters) on a synthetic Markov language whose entropy rate H is
# known exactly, so we fit the form with an irreducible term, L(N) = E + A·N^−α, and check the fitted E against H.
# Every model sees the same number of fresh tokens (no repetition, but not to convergence: see Discussion).

# %% tags=["parameters"]
mlflow_run_id = ""
profile = "interactive"
seed = 0
device = "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
vocab_size = 128  # in [1, inf)
order = 1
zipf = 1.2
mix = [0.2, 0.8]  # in [0, 1]
widths = [8, 16, 32, 48, 64]  # in [1, inf)
depths = [1, 2, 4]  # in [1, inf)
block_size = 32  # in [1, inf)
batch_size = 32  # in [1, inf)
steps = 300  # in [1, inf)
lr = 0.01  # > 0
warmup = 20  # in [0, inf)
n_boot = 200  # in [1, inf)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lossbook import claims, plotting, repro, tracking
from lossbook.scaling.analysis import decades, group_residual_spread
from lossbook.scaling.fit import fit_power_law
from lossbook.scaling.markov import MarkovSource
from lossbook.scaling.sweep import run_point

tracking.attach(mlflow_run_id, "kaplan_model_size", globals())
plotting.setup()
repro.seed_everything(seed)
repro.set_threads(threads)
data_cfg = {"kind": "markov", "vocab_size": vocab_size, "order": order, "zipf": zipf, "mix": list(mix), "seed": seed, "eval_tokens": 8192}
source = MarkovSource(vocab_size, order, zipf, tuple(mix), seed)
H = source.entropy_rate()
h_mc, h_se = source.entropy_mc(100_000, seed=seed)
print(f"entropy rate H = {H:.4f} nats/token (Monte-Carlo check {h_mc:.4f} ± {h_se:.4f}); log V = {np.log(vocab_size):.4f}")
tracking.log_metrics({"entropy_rate": H, "entropy_mc": h_mc})

# %% [markdown]
# ## Sweep: widths × depths, same token budget
# Each point is cached by its config hash (`runs/cache/scaling_point/`) and logged as a child run.

# %%
rows = []
for L in depths:
    for d in tqdm(widths, desc=f"depth {L}"):
        cfg = {"data": data_cfg, "model": {"n_layer": L, "d_model": d, "n_head": max(1, d // 16), "block_size": block_size},
               "train": {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup, "seed": seed, "n_evals": 4}, "device": device}
        r = run_point(cfg, name=f"kaplan/L{L}-d{d}")
        rows.append({"depth": L, "width": d, **{k: v for k, v in r.items() if not isinstance(v, dict)}})
df = pd.DataFrame(rows)
tracking.log_dict(df.to_dict(orient="list"), "sweep.json")
df[["depth", "width", "N", "N_total", "D", "C", "val_loss", "val_loss_adj", "tokens_per_s", "wall_s"]]

# %% [markdown]
# ## Fit L(N) = E + A·N^−α on non-embedding N
# Summed Huber (δ = 1e-3) on log residuals, multi-start L-BFGS-B with tight tolerances; 95% bootstrap CIs resample
# whole runs (each run is one point here). We fit the control-variate–adjusted validation loss (same shift for
# every model; see `lossbook.scaling.sweep`).

# %%
y = df["val_loss_adj"].to_numpy()
fit_n = fit_power_law(df["N"], y, n_boot=n_boot, seed=seed)
spread_non = group_residual_spread(df["N"], y, df["depth"], fit_n)
spread_tot = group_residual_spread(df["N_total"], y, df["depth"])
print(f"non-embedding: E={fit_n.E:.4f} CI {fit_n.ci.get('E')}, A={fit_n.A:.3g}, alpha={fit_n.alpha:.4f} CI {fit_n.ci.get('alpha')}, R2={fit_n.r2:.4f}")
print(f"depth spread of residuals: non-embedding {spread_non['spread']:.4g}, total {spread_tot['spread']:.4g}")
tracking.log_metrics({"fit/E": fit_n.E, "fit/A": fit_n.A, "fit/alpha": fit_n.alpha, "fit/r2": fit_n.r2, "spread/non_embedding": spread_non["spread"],
                      "spread/total": spread_tot["spread"], "decades_N": decades(df["N"])})

# %% [markdown]
# Diagnostics (not claims): the same law fitted within each depth, and against width alone.

# %%
diag = []
for L, g in df.groupby("depth"):
    f = fit_power_law(g["N"], g["val_loss_adj"], n_starts=16)
    diag.append({"fit on": f"depth {L}", "E": f.E, "alpha": f.alpha, "R2": f.r2})
f_w = fit_power_law(df["width"], y, n_starts=16)
diag.append({"fit on": "width d (all depths)", "E": f_w.E, "alpha": f_w.alpha, "R2": f_w.r2})
diag = pd.DataFrame(diag)
tracking.log_dict(diag.to_dict(orient="list"), "diagnostic_fits.json")
diag

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, col, sp, label in [(axes[0], "N", spread_non, "non-embedding parameters N"), (axes[1], "N_total", spread_tot, "total parameters (incl. embeddings)")]:
    for L, g in df.groupby("depth"):
        ax.scatter(g[col], g["val_loss_adj"], label=f"{L} layer{'s' if L > 1 else ''}", s=30)
    xs = np.geomspace(df[col].min() / 1.5, df[col].max() * 1.5, 100)
    ax.plot(xs, sp["fit"].predict(xs), "k--", lw=1, label=f"fit: E + A·x^-{sp['fit'].alpha:.3f}")
    ax.axhline(H, color="gray", lw=1, ls=":", label="entropy rate H")
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_title(f"depth spread of residuals {sp['spread']:.3g}")
axes[0].set_ylabel("validation loss (nats/token)")
axes[0].legend(fontsize=8)
tracking.log_figure(fig, "loss_vs_params")
plt.show()

# %% [markdown]
# ## Claims (thresholds from the issue, fixed before the run)

# %%
dec = decades(df["N"])
claims.record(
    "power_law_r2",
    statement="L(N) = E + A·N^-alpha fits with R^2 >= 0.98 over >= 1.5 decades of non-embedding N",
    paper="Kaplan et al. 2020, Fig. 1 / eq. 1.1",
    paper_value="power law over 6 decades, alpha_N = 0.076 (WebText2)",
    measured=f"R2 = {fit_n.r2:.4f} over {dec:.2f} decades (alpha = {fit_n.alpha:.3f}, CI {fit_n.ci.get('alpha')})",
    threshold="R2 >= 0.98 and decades >= 1.5",
    passed=bool(fit_n.r2 >= 0.98 and dec >= 1.5),
)
ratio = spread_tot["spread"] / max(spread_non["spread"], 1e-12)
claims.record(
    "non_embedding_collapses_depths",
    statement="Counting non-embedding parameters collapses depths: residual spread across depths >= 2x smaller than with total parameters",
    paper="Kaplan et al. 2020, Fig. 6",
    paper_value="depths collapse with non-embedding N, separate with total N",
    measured=f"spread ratio {ratio:.2f} (total {spread_tot['spread']:.4f}, non-embedding {spread_non['spread']:.4f})",
    threshold="spread(total) / spread(non-embedding) >= 2",
    passed=bool(ratio >= 2),
)
lo, hi = fit_n.ci.get("E", (float("nan"), float("nan")))
claims.record(
    "irreducible_loss_is_entropy",
    statement="The fitted irreducible loss E is consistent with the language's true entropy rate H (H inside E's 95% bootstrap CI)",
    paper="(our synthetic-language check; Kaplan et al. fit no E in L(N))",
    paper_value="n/a",
    measured=f"E = {fit_n.E:.4f} (95% CI {lo:.4f}-{hi:.4f}); H = {H:.4f}",
    threshold="lo <= H <= hi",
    passed=bool(lo <= H <= hi),
)

# %% [markdown]
# ## Discussion
# * **Exponent.** Kaplan's α_N = 0.076 is for L(N) = (N_c/N)^α with no irreducible term on natural text, where
#   the power law spans 768 to 1.5·10^9 parameters. With an explicit E (here the entropy of a bigram Markov
#   source) the reducible part falls much faster, so α is larger; our source's structure (a Zipf-shaped table,
#   learned at rank ≤ d) is also far simpler than language. The number to compare is the *shape* (a clean power
#   law in N, depths collapsing), not the value of α.
# * **Not at convergence.** Every model sees the same fresh-token budget (`steps × batch × block`). Larger models
#   are further from convergence, which bends L(N) upward at the large-N end and biases E upward; Kaplan et al.
#   used early-stopped, converged runs. The `full` profile trains longer.
# * **What limits a model here is width, not depth.** A first-order Markov source is a table P(next | current); a
#   transformer represents it through a rank-d logit map (embedding → residual stream → unembedding), so the
#   residual width d bounds what it can learn and extra layers add parameters without adding the capacity that
#   matters. In our default run, models of equal width reach nearly the same loss at every depth, so at equal
#   N the deeper (narrower) models are worse and neither parameter count collapses the depths; the
#   diagnostic table shows how well width alone predicts the loss. Kaplan's collapse is a statement about
#   natural language, where depth is useful; reproducing it needs a source with compositional structure (e.g.
#   a higher-order or hierarchical source), which our CPU budget could not train past its bigram plateau.
# * **E's confidence interval.** With 15 runs that are not converged, E is weakly identified and its bootstrap
#   CI is wide, so "H inside the CI" is a weak test here; read the CI's width next to the verdict.
# * **Embeddings matter more here.** With vocab 128 and d ≤ 64, embeddings are a large share of total parameters
#   for shallow models, which is exactly the regime where total-parameter counting separates the depths.
