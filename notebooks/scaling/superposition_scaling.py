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
# # Under strong superposition the loss falls as 1/m whatever the feature frequencies
# **Paper:** Yizhou Liu, Ziming Liu, Jeff Gore (2025), "Superposition Yields Robust Neural Scaling", NeurIPS 2025 (arXiv 2505.10465; code github.com/liuyz0/SuperpositionScaling).
# **Claim:** "when superposition is weak, meaning only the most frequent features are represented without interference, the scaling of loss with model size depends on the underlying feature frequency; if feature frequencies follow a power law, so does the loss. In contrast, under strong superposition, where all features are represented but overlap with each other, the loss becomes inversely proportional to the model dimension across a wide range of feature frequency distributions", because "the interference (squared overlaps) between vectors scales inversely with that dimension".
#
# **The paper's toy** (Anthropic's toy model of superposition, Elhage et al. 2022). Inputs have $n$ sparse
# features $x_i = u_i v_i$, $u_i \sim \mathrm{Bernoulli}(p_i)$, $v_i \sim U(0,2)$, with power-law frequencies
# $p_i \propto i^{-\alpha}$ normalised so that $\sum_i p_i = 1$ (one active feature per input on average).
# An autoencoder of width $m$ reconstructs them, $\hat x = \mathrm{ReLU}(W W^\top x + b)$ with
# $W \in \mathbb R^{n\times m}$, trained on the mean squared error with Adam (lr $10^{-2}$, 10% warmup,
# cosine to 5%), fresh data every step. The degree of superposition is set by a decoupled weight decay
# $\gamma$ on $W$ (their `exp/adamw.py`): $W_i \leftarrow W_i(1-\eta\gamma)$ for $\gamma \ge 0$, and for
# $\gamma < 0$ a "growth" $W_i \leftarrow W_i + \eta\gamma W_i(1-1/\lVert W_i\rVert)$ that pulls every row to
# unit norm. Sweeping $\gamma \in [-1, 1]$ at $n = 1000$, $m = 10\ldots100$ (6 widths), batch 2048 and 20,000
# steps (`exp/exp-10.py`), they find: with $\gamma = +1$ (weak superposition) only the most frequent
# features keep a row of norm $> 1/2$ (represented fraction $\phi_{1/2} \approx m/n$) and the loss is the
# weight of the dropped features, $L \approx \langle v^2\rangle \sum_{i>m} p_i / n \propto m^{-(\alpha-1)}$
# (a power law only for $\alpha > 1$); with $\gamma = -1$ (strong superposition) every feature is represented
# ($\phi_{1/2} \approx 1$) and the loss is interference, $L \propto 1/m$ (model exponent $\alpha_m \approx 1$)
# for a broad range of $\alpha$, steepening to about $2(\alpha-1)$ only for very skewed frequencies; the
# squared overlaps of the normalised rows scale as $1/m$, as for random unit vectors ($E[(u\cdot v)^2] = 1/m$).
# The paper's LLM analysis finds $\alpha_m = 0.91 \pm 0.04$ (their Fig. 6) — not tested here.
#
# **Here, at CPU scale.** The same model, loss, data law, optimizer, schedule and decay rule, at
# $n = 256$ features, widths $m = 4\ldots40$ (one decade, 5 widths), batch 128 and a few thousand steps; all
# $K$ = (3 exponents α × 2 regimes × 3 seeds) models of one width are one batched $(K, n, m)$ tensor
# (`lossbook.scaling.superposition.train_toys`; tested equal to training each model alone). A seed is one
# independent replicate: its own initialisation and its own data stream (shared by the α's, regimes and
# widths of that seed — common random numbers). **The weak-regime decay depends on the batch.** A rare
# feature's Adam update is about $\sqrt{Bp_i}$ of a full step when $Bp_i < 1$, and the decay holds its row near
# that norm over $\gamma$, so which features survive ($\lVert W_i\rVert > 1/2$) depends on $B$ and $\gamma$
# together. A pilot (4000 steps, widths 4/13/40, before any claim was evaluated) found the paper's
# $\gamma = 1$ at our batch 128 keeps only 0.1–0.75·m features and $\gamma = 0.25$ keeps 1–3.5·m; we use their
# geometric mean $\gamma = 0.5$ as the weak setting and run the paper's $\gamma = 1$ as an ablation.
#
# **Claims, rules fixed before running** (the replication protocol, `lossbook.replicate`; exponents are
# least-squares slopes of $\log L$ on $\log m$ over the widths, one per seed; 95% Student-t CIs over seeds):
# 1. *strong, per α*: the model exponent $\alpha_m = -\mathrm{slope}$ is 1: CI inside [0.75, 1.25];
# 2. *weak, per α*: the loss follows the frequency law of the features the model keeps, the paper's
#    $L \approx \langle v^2\rangle\sum_{i>k}p_i/n$ with $k = \phi_{1/2}n$ measured (their Fig. 5): measured
#    log–log slope − the law's slope over the same widths, CI inside [−0.2, 0.2]. The version with $k = m$
#    (exponent $\approx \alpha - 1$ when exactly $m$ features are kept) is recorded as exploratory;
# 3. *robust*: the spread (max − min over α) of the exponent is smaller under strong than under weak
#    superposition: CI of (spread_strong − spread_weak) below 0;
# 4. *interference*: the mean squared overlap of the normalised represented rows falls as $1/m$: the
#    exponent (mean over α per seed) has its CI inside [0.75, 1.25].
#
# **Guards**, read first: *plateaued* (no model of the claim's regime and α — of the whole regime for claims
# 3 and 4 — had its training loss fall by more than 5% over the last quarter of its steps), *regime reached* (strong: $\phi_{1/2} \ge 0.9$ at every width; weak: at most $1.5\,m$ features
# represented at every width, and on average ≥ 80% of the $k$ represented are the $k$ most frequent), *fit* ($R^2 \ge 0.9$ for every seed's
# power-law fit, claims 1 and 4) and *range* (the widths span ≥ 1 decade). **Ablations** behind any
# "not reproduced": the budget (every regime at the smallest and largest width, seed 0, twice the steps), the
# paper's own weak decay $\gamma = 1$ in the same run, and the weak law with the *measured* number of
# represented features $k = \phi_{1/2} n$ in place of $m$.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
n_features = 256  # n, the number of sparse features (paper: 1000); in [2, inf)
widths = [4, 7, 13, 23, 40]  # model widths m, log-spaced over >= 1 decade (paper: 10..100), each below n_features; in [1, inf)
alphas = [0.5, 1.0, 1.5]  # frequency exponents, p_i ∝ i^-alpha (paper sweeps 0..2); in [0, inf)
density = 1.0  # activation density E = sum_i p_i, expected active features per input (paper: 1), at most n_features; > 0
gamma_strong = -1.0  # decay gamma < 0 pulls rows to unit norm: strong superposition (paper: -1); in [-inf, 0)
gamma_weak = 0.5  # decay gamma > 0 for weak superposition, chosen for batch 128 by the pilot (see text); in (0, inf)
gamma_weak_paper = 1.0  # the paper's weak decay, run in the ablation; in (0, inf)
seeds = [0, 1, 2]  # replicates: each seed draws its own init and data stream; 3 or more
steps = 10000  # Adam steps per model (paper: 20000 at batch 2048); in [1, inf)
batch = 128  # inputs per step, fresh every step (paper: 2048); in [1, inf)
lr = 1.0e-2  # peak Adam learning rate for W and b (paper: 1e-2); > 0
warmup_frac = 0.1  # linear warmup share of the steps, then cosine (paper: 2000 of 20000); in [0, 1)
final_frac = 0.05  # the cosine ends at this fraction of lr (paper: 0.05); in [0, 1]
eval_batches = 8  # fresh batches for each model's final loss; in [1, inf)
ablation_factor = 2  # budget ablation: steps x this at the smallest and largest width, first seed; in [1, inf)
strong_band = [0.75, 1.25]  # claim 1: the CI of the strong-regime exponent lies inside (paper: alpha_m ≈ 1)
weak_tol = 0.2  # claim 2: |measured − predicted| weak-regime slope CI inside ±weak_tol; > 0
overlap_band = [0.75, 1.25]  # claim 4: the CI of the squared-overlap exponent lies inside (paper: 1/m)
max_drop = 0.05  # guard: largest relative fall of the training loss over the last 25% of steps; in (0, 1)
min_r2 = 0.9  # guard: every seed's log–log fit has at least this R²; in [0, 1]
strong_phi_min = 0.9  # guard: represented fraction at every width, strong regime; in [0, 1]
weak_k_max = 1.5  # guard: represented features / m at every width, weak regime (weak = at most ~m kept); > 0
top_share_min = 0.8  # guard: mean share of the represented features that are the most frequent ones, weak regime; in [0, 1]
device = "auto"  # "auto" | "cpu" | "cuda"
threads = 1  # torch intra-op CPU threads; 0 keeps the torch default; in [0, inf)

# %%
from lossbook import plotting, replicate, repro, tracking

tracking.attach(mlflow_run_id, "superposition_scaling", globals())
plotting.setup()

import itertools
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from lossbook.scaling import superposition as sup

dev = repro.get_device(device)
repro.set_threads(threads)
t_start, c_start = time.time(), time.process_time()
regimes = {"strong": gamma_strong, "weak": gamma_weak}
configs = [(a, r, s) for a, r, s in itertools.product(alphas, regimes, seeds)]  # one model per (α, regime, seed)
probs = {a: sup.feature_probs(n_features, a, density) for a in alphas}
decades = float(np.log10(max(widths) / min(widths)))
print(f"device {dev}; n = {n_features}; widths {widths} ({decades:.2f} decades); {len(configs)} models per width; {steps} steps of batch {batch}")

# %% [markdown]
# ## Runs
# One call trains every (α, regime, seed) model at every width: per width one batched tensor, all widths fed
# the same fresh batch each step. Final losses are measured on `eval_batches` fresh batches per model.

# %%
runs = sup.train_toys(
    torch.stack([probs[a] for a, _, _ in configs]), [regimes[r] for _, r, _ in configs], [s for _, _, s in configs], widths,
    steps=steps, batch=batch, lr=lr, warmup_frac=warmup_frac, final_frac=final_frac, eval_batches=eval_batches, device=dev, progress=True,
)
rows = []
for m, run in runs.items():
    for k, (a, r, s) in enumerate(configs):
        q = run.curve[:, k]
        rows.append({"alpha": a, "regime": r, "seed": s, "m": m, "loss": float(run.eval_loss[k]),
                     "phi": float(sup.represented_fraction(run.W[k])), "overlap2": sup.mean_sq_overlap(run.W[k]),
                     "last_drop": float(1 - q[-1] / q[int(0.75 * len(q)) - 1]), "pred_m": sup.weak_loss_prediction(probs[a], m),
                     "top_share": sup.top_k_share(run.W[k])})
df = pd.DataFrame(rows)
df["k_rep"] = df.phi * n_features
df["pred_k"] = [sup.weak_loss_prediction(probs[a], k) for a, k in zip(df.alpha, df.k_rep)]
tracking.log_dict(df.to_dict(orient="records"), "tables/runs.json")
t_main, c_main = time.time() - t_start, time.process_time() - c_start
print(f"main runs: wall {t_main:.0f}s, process CPU {c_main:.0f}s")
display(df.groupby(["regime", "alpha", "m"])[["loss", "phi", "overlap2", "last_drop"]].mean().unstack("m").round(5))

# %% [markdown]
# ## Exponents
# One log–log least-squares fit per (regime, α, seed) over the widths; the weak-regime prediction is the
# same fit applied to the paper's expression at the same widths.

# %%
fits = sup.slopes_by(df, ["regime", "alpha", "seed"], "m", "loss")
fits["exponent"] = -fits.slope
pred = sup.slopes_by(df[df.seed == seeds[0]], ["regime", "alpha"], "m", "pred_m")[["regime", "alpha", "slope"]].rename(columns={"slope": "pred_slope"})
fits = fits.merge(pred, on=["regime", "alpha"])
fits = fits.merge(sup.slopes_by(df, ["regime", "alpha", "seed"], "m", "pred_k")[["regime", "alpha", "seed", "slope"]].rename(columns={"slope": "pred_k_slope"}), on=["regime", "alpha", "seed"])
ov = sup.slopes_by(df[df.regime == "strong"], ["alpha", "seed"], "m", "overlap2")
ov["exponent"] = -ov.slope
table = fits.groupby(["regime", "alpha"]).agg(exponent=("exponent", "mean"), sd=("exponent", "std"), r2_min=("r2", "min"),
                                              law_k_exponent=("pred_k_slope", lambda v: -v.mean()), law_m_exponent=("pred_slope", lambda v: -v.mean()))
display(table.round(3))
display(ov.groupby("alpha").agg(overlap_exponent=("exponent", "mean"), sd=("exponent", "std"), r2_min=("r2", "min")).round(3))
tracking.log_dict(fits.to_dict(orient="records"), "tables/fits.json")

# %% [markdown]
# ## Ablation: budget, and the paper's weak decay
# The smallest and largest width again, first seed, `ablation_factor` × the steps, every α under the strong,
# the weak and the paper's weak decay ($\gamma = 1$). The two-width exponent is compared with the main run's.

# %%
abl_cfg = [(a, r, seeds[0]) for a in alphas for r in ("strong", "weak", "weak_paper")]
abl_gamma = {**regimes, "weak_paper": gamma_weak_paper}
abl_widths = [min(widths), max(widths)]
abl = sup.train_toys(
    torch.stack([probs[a] for a, _, _ in abl_cfg]), [abl_gamma[r] for _, r, _ in abl_cfg], [s for _, _, s in abl_cfg], abl_widths,
    steps=ablation_factor * steps, batch=batch, lr=lr, warmup_frac=warmup_frac, final_frac=final_frac, eval_batches=eval_batches, device=dev, progress=True,
)
abl_df = pd.DataFrame([{"alpha": a, "regime": r, "m": m, "loss": float(abl[m].eval_loss[k]), "phi": float(sup.represented_fraction(abl[m].W[k])),
                        "last_drop": float(1 - abl[m].curve[-1, k] / abl[m].curve[int(0.75 * len(abl[m].curve)) - 1, k])}
                       for m in abl_widths for k, (a, r, _) in enumerate(abl_cfg)])
two_pt = sup.slopes_by(abl_df, ["regime", "alpha"], "m", "loss").assign(exponent_long=lambda d: -d.slope)[["regime", "alpha", "exponent_long"]]
main_2pt = sup.slopes_by(df[(df.seed == seeds[0]) & df.m.isin(abl_widths)], ["regime", "alpha"], "m", "loss").assign(exponent_main=lambda d: -d.slope)
budget = main_2pt[["regime", "alpha", "exponent_main"]].merge(two_pt, on=["regime", "alpha"], how="right")
budget["k_rep_at_max_m"] = [float(abl_df[(abl_df.regime == r) & (abl_df.alpha == a) & (abl_df.m == max(widths))].phi.iloc[0] * n_features) for r, a in zip(budget.regime, budget.alpha)]
display(budget.round(3))
tracking.log_dict(budget.to_dict(orient="records"), "tables/budget_ablation.json")

# %% [markdown]
# ## Figures

# %%
ms = np.array(widths, float)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
for ax, reg in zip(axes[:2], ("strong", "weak")):
    for j, a in enumerate(alphas):
        d = df[(df.regime == reg) & (df.alpha == a)].groupby("m").loss
        e = table.loc[(reg, a), "exponent"]
        ax.errorbar(ms, d.mean(), yerr=d.std(), marker="o", color=f"C{j}", capsize=3, label=f"α = {a}: slope −{e:.2f}")
        if reg == "weak":
            ax.plot(ms, [sup.weak_loss_prediction(probs[a], m) for m in widths], ls="--", color=f"C{j}", alpha=0.7)
    ax.plot(ms, df[df.regime == reg].loss.max() * ms[0] / ms, ls=":", color="k", label="∝ 1/m")
    ax.set(xscale="log", yscale="log", xlabel="model width m", ylabel="final MSE loss", title=f"{reg} superposition (γ = {regimes[reg]:g})" + (";  dashed: frequency law" if reg == "weak" else ""))
    ax.legend(fontsize=8)
for j, a in enumerate(alphas):
    d = df[(df.regime == "strong") & (df.alpha == a)].groupby("m").overlap2
    axes[2].errorbar(ms, d.mean(), yerr=d.std(), marker="o", color=f"C{j}", capsize=3, label=f"strong, α = {a}")
    axes[2].plot(ms, df[(df.regime == "weak") & (df.alpha == a)].groupby("m").overlap2.mean(), marker="x", ls="--", color=f"C{j}", alpha=0.6, label=f"weak, α = {a}")
axes[2].plot(ms, 1 / ms, ls=":", color="k", label="1/m (random unit vectors)")
axes[2].set(xscale="log", yscale="log", xlabel="model width m", ylabel="mean squared overlap ⟨(Ŵ_i·Ŵ_j)²⟩", title="interference of represented features")
axes[2].legend(fontsize=7)
for ax in axes:
    ax.set_xticks(widths, labels=[str(m) for m in widths])
    ax.xaxis.set_minor_locator(plt.NullLocator())
fig.tight_layout()
tracking.log_figure(fig, "loss_and_overlap_vs_width")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for j, a in enumerate(alphas):
    for reg, mk in (("strong", "o-"), ("weak", "x--")):
        axes[0].plot(ms, df[(df.regime == reg) & (df.alpha == a)].groupby("m").phi.mean(), mk, color=f"C{j}", label=f"{reg}, α = {a}")
axes[0].plot(ms, ms / n_features, ":", color="k", label="m / n")
axes[0].set(xscale="log", yscale="log", xlabel="model width m", ylabel="represented fraction φ½ = share of ‖W_i‖ > ½", title="how many features are represented")
axes[0].legend(fontsize=7)
axes[0].set_xticks(widths, labels=[str(m) for m in widths])
axes[0].xaxis.set_minor_locator(plt.NullLocator())
for j, (reg, a) in enumerate(itertools.product(("strong", "weak"), alphas)):
    axes[1].plot([steps, ablation_factor * steps], budget[(budget.regime == reg) & (budget.alpha == a)][["exponent_main", "exponent_long"]].to_numpy().ravel(), "o-", color=f"C{j}", label=f"{reg}, α = {a}")
axes[1].set(xscale="log", xlabel="Adam steps", ylabel=f"exponent between m = {abl_widths[0]} and {abl_widths[1]}", title="budget ablation (seed 0)")
axes[1].legend(fontsize=7)
fig.tight_layout()
tracking.log_figure(fig, "represented_fraction_and_budget")

# %% [markdown]
# ## Claims
# Rules, tolerances and guards were written in the introduction before running and are not changed afterwards.

# %%
guard_range = replicate.progress_reached(decades, 1.0, lower_is_better=False, what="decades of m covered", name="range", fix="widen the width grid to a decade")
worst_drop = {key: float(g.last_drop.max()) for key, g in [*df.groupby("regime"), *df.groupby(["regime", "alpha"])]}
plateau = {key: replicate.progress_reached(v, max_drop, what=f"largest loss fall over the last 25% of steps {key}", name="plateaued", fix=f"more steps than {steps}") for key, v in worst_drop.items()}
exps = {(reg, a): fits[(fits.regime == reg) & (fits.alpha == a)].sort_values("seed") for reg in regimes for a in alphas}
for a in alphas:
    f, d = exps["strong", a], df[(df.regime == "strong") & (df.alpha == a)]
    e_long = float(budget[(budget.regime == "strong") & (budget.alpha == a)].exponent_long.iloc[0])
    e_main = float(budget[(budget.regime == "strong") & (budget.alpha == a)].exponent_main.iloc[0])
    replicate.record(
        f"strong_inverse_m_alpha{a:g}".replace(".", "p"),
        statement=f"strong superposition (γ = {gamma_strong:g}), p_i ∝ i^-{a:g}: the loss falls as 1/m (model exponent α_m = 1)",
        paper="Liu, Liu & Gore 2025", paper_value="α_m ≈ 1 for a broad range of α (toy model, Fig. 4; LLMs 0.91 ± 0.04, Fig. 6)",
        values=f.exponent.to_numpy(), outcome=replicate.mean_within_rule(f.exponent.to_numpy(), *strong_band),
        guards=[plateau["strong", a], replicate.progress_reached(float(d.phi.min()), strong_phi_min, lower_is_better=False, what="min represented fraction φ½", name="regime_reached"),
                replicate.progress_reached(float(f.r2.min()), min_r2, lower_is_better=False, what="min fit R²", name="fit_r2"), guard_range],
        diagnosis=replicate.Diagnosis(f"the two-width exponent of seed {seeds[0]} moves from {e_main:.2f} at {steps} steps to {e_long:.2f} at {ablation_factor * steps}: "
                                      + ("the exponent is still moving with the budget; the shortfall is our training length" if abs(e_long - e_main) > 0.1 else "it is budget-stable; the shortfall is not the training length but our scale (n/m = "
                                         f"{n_features / max(widths):.1f} at the largest width vs 10 in the paper)"), "budget ablation (ablation_factor × steps at the extreme widths)"),
    )
for a in alphas:
    f, d = exps["weak", a], df[(df.regime == "weak") & (df.alpha == a)]
    diff = (f.slope - f.pred_k_slope).to_numpy()
    diff_m = (f.slope - f.pred_slope).to_numpy()
    weak_guards = [plateau["weak", a], replicate.progress_reached(float((d.k_rep / d.m).max()), weak_k_max, what="max represented features / m", name="regime_reached_at_most_m"),
                   replicate.progress_reached(float(d.top_share.mean()), top_share_min, lower_is_better=False, what="mean share of represented features that are the most frequent", name="regime_reached_top_k"), guard_range]
    replicate.record(
        f"weak_frequency_law_alpha{a:g}".replace(".", "p"),
        statement=f"weak superposition (γ = {gamma_weak:g}), p_i ∝ i^-{a:g}: the loss follows the frequency law of the kept features, ⟨v²⟩Σ_(i>k) p_i / n with k = φ½n",
        paper="Liu, Liu & Gore 2025", paper_value="L ≈ ⟨v²⟩ Σ_(i>φn) p_i (Sec. 4, Fig. 5); α_m = α − 1 when φn ∝ m",
        values=diff, outcome=replicate.mean_within_rule(diff, -weak_tol, weak_tol),
        measured=f"exponent {-f.slope.mean():.3f} vs the law's {-f.pred_k_slope.mean():.3f} (k = φ½n); slope difference {diff.mean():+.3f}",
        guards=weak_guards,
        diagnosis=replicate.Diagnosis(f"measured/law loss ratio by width (seed mean): {(d.groupby('m').loss.mean() / d.groupby('m').pred_k.mean()).round(2).tolist()}; "
                                      f"kept features k = {d.groupby('m').k_rep.mean().round(0).tolist()}, of which {100 * d.top_share.mean():.0f}% are the most frequent: "
                                      "where the ratio drifts with m, the kept rows are not reconstructed perfectly (the law assumes they are)", "the law with k = m (exploratory row) and the paper's γ = 1 in the budget ablation"),
    )
    replicate.record(
        f"weak_exponent_alpha_minus_one_alpha{a:g}".replace(".", "p"),
        statement=f"weak superposition (γ = {gamma_weak:g}), p_i ∝ i^-{a:g}: the loss follows the frequency law with exactly the m most frequent features kept (k = m)",
        paper="Liu, Liu & Gore 2025", paper_value="α_m = α − 1 (asymptotically; the finite-n law over our widths: see measured)",
        values=diff_m, outcome=replicate.mean_within_rule(diff_m, -weak_tol, weak_tol), kind="exploratory",
        measured=f"exponent {-f.slope.mean():.3f} vs the k = m law's {-f.pred_slope.mean():.3f} (asymptotic α − 1 = {a - 1:g})",
        guards=weak_guards,
    )
spread = {reg: np.array([np.ptp([exps[reg, a].exponent.to_numpy()[i] for a in alphas]) for i in range(len(seeds))]) for reg in regimes}
dspread = spread["strong"] - spread["weak"]
replicate.record(
    "strong_exponent_robust_across_alpha",
    statement="the loss exponent depends less on the frequency exponent α under strong than under weak superposition",
    paper="Liu, Liu & Gore 2025", paper_value="strong: α_m ≈ 1 across α; weak: α_m = α − 1 (Fig. 4)",
    values=dspread, outcome=replicate.mean_ci_rule(dspread, 0.0, "below"),
    measured=f"spread over α = {alphas}: strong {spread['strong'].mean():.3f}, weak {spread['weak'].mean():.3f}",
    guards=[plateau["strong"], plateau["weak"], guard_range],
    diagnosis=replicate.Diagnosis(f"strong-regime exponents {[round(float(exps['strong', a].exponent.mean()), 2) for a in alphas]} vs weak {[round(float(exps['weak', a].exponent.mean()), 2) for a in alphas]}; "
                                  f"budget ablation exponents (strong) {budget[budget.regime == 'strong'].exponent_long.round(2).tolist()}", "budget ablation"),
)
ov_seed = ov.groupby("seed").exponent.mean().to_numpy()
e_ov = {a: float(ov[ov.alpha == a].exponent.mean()) for a in alphas}
replicate.record(
    "overlap_sq_inverse_m",
    statement="under strong superposition the mean squared overlap of the normalised represented rows falls as 1/m",
    paper="Liu, Liu & Gore 2025", paper_value="⟨(Ŵ_i·Ŵ_j)²⟩ ∝ 1/m, like random unit vectors (Sec. 5, Fig. 6; LLM heads too)",
    values=ov_seed, outcome=replicate.mean_within_rule(ov_seed, *overlap_band),
    measured=f"exponent {ov_seed.mean():.3f} (per α: {', '.join(f'{a:g}: {e:.3f}' for a, e in e_ov.items())}); m·⟨overlap²⟩ at m = {max(widths)}: {float(df[(df.regime == 'strong') & (df.m == max(widths))].overlap2.mean() * max(widths)):.2f}",
    guards=[plateau["strong"], replicate.progress_reached(float(df[df.regime == "strong"].phi.min()), strong_phi_min, lower_is_better=False, what="min represented fraction φ½", name="regime_reached"),
            replicate.progress_reached(float(ov.r2.min()), min_r2, lower_is_better=False, what="min fit R²", name="fit_r2"), guard_range],
    diagnosis=replicate.Diagnosis(f"m·⟨overlap²⟩ by width (strong, mean over α): {(df[df.regime == 'strong'].groupby('m').overlap2.mean() * ms).round(2).tolist()} (1 for random unit vectors)", "the overlap of the budget-ablation models"),
)
t_all, c_all = time.time() - t_start, time.process_time() - c_start
tracking.log_metrics({"wall_time_s": t_all, "process_cpu_s": c_all, "main_wall_s": t_main, "main_cpu_s": c_main})
print(f"wall time {t_all:.0f}s, process CPU {c_all:.0f}s")

# %% [markdown]
# ## Discussion
# The numbers this discussion rests on, from this run:

# %%
for reg in regimes:
    for a in alphas:
        t = table.loc[(reg, a)]
        print(f"{reg:6s} α = {a:g}: exponent {t.exponent:.3f} ± {t.sd:.3f} (sd over {len(seeds)} seeds, min R² {t.r2_min:.3f})"
              + (f"; the frequency law predicts {t.law_k_exponent:.3f} with the kept k, {t.law_m_exponent:.3f} with k = m" if reg == "weak" else "")
              + f"; φ½n {df[(df.regime == reg) & (df.alpha == a)].k_rep.min():.0f}–{df[(df.regime == reg) & (df.alpha == a)].k_rep.max():.0f} of {n_features}")
print(f"overlap exponent {ov_seed.mean():.3f}; worst last-quarter loss fall: " + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in worst_drop.items()))
print(f"paper's weak decay γ = {gamma_weak_paper:g} at batch {batch}: represented features at m = {max(widths)}: "
      + ", ".join(f"α = {a:g}: {k:.0f}" for a, k in zip(budget[budget.regime == 'weak_paper'].alpha, budget[budget.regime == 'weak_paper'].k_rep_at_max_m)))
print("budget ablation, exponent between m = {} and {} at {} -> {} steps: ".format(*abl_widths, steps, ablation_factor * steps)
      + "; ".join(f"{r} α = {a:g}: {e0:.2f} -> {e1:.2f}" for r, a, e0, e1 in budget[["regime", "alpha", "exponent_main", "exponent_long"]].itertuples(index=False) if r != "weak_paper"))
print(f"weak regime: share of the kept features that are the most frequent {df[df.regime == 'weak'].top_share.mean():.2f}; kept / m at the largest width "
      + ", ".join(f"α = {a:g}: {float(df[(df.regime == 'weak') & (df.alpha == a) & (df.m == max(widths))].k_rep.mean()) / max(widths):.2f}" for a in alphas))
print(f"time: main runs {t_main:.0f}s wall / {c_main:.0f}s CPU; total {t_all:.0f}s wall / {c_all:.0f}s CPU")

# %% [markdown]
# * **What is the same as the paper.** The model, the MSE loss, the data law with $\sum_i p_i = 1$, the
#   initialisation ($W \sim N(0, 1/m)$, $b \sim N(0, 1)$), Adam at lr $10^{-2}$ with warmup and cosine to 5%,
#   and the decay/growth rule are the official code's. **What differs:** $n = 256$ instead of 1000 (so the
#   largest width is $n/6.4$, not $n/10$), widths 4–40, batch 128 instead of 2048 and a few thousand steps
#   instead of 20,000, three seeds where the paper runs one; and the weak decay is $\gamma = 0.5$, set for
#   our batch by the pilot described in the introduction — the ablation line above shows what the paper's
#   $\gamma = 1$ leaves represented at batch 128.
# * **Reading the exponents.** The table gives the fitted exponent per regime and α next to the paper's
#   value (strong: 1; weak: the frequency law's slope over the same widths, which for $n = 256$ is steeper
#   than the asymptotic $\alpha - 1$ because the sum is truncated at $n$). The verdicts above say which claims
#   reproduce; every "not reproduced" names its ablation.
# * **Guards.** The plateau guard reads how much each model still improved in its last quarter; the budget
#   line above shows where the strong-regime exponent moves when the steps are doubled, and the weak-regime
#   line shows whether the decay kept the *most frequent* features (the paper's picture) or a noisier set —
#   at a small batch Adam's update for a feature seen in few steps is noisy, so which rows survive the decay
#   is partly chance. A failed guard names the budget that would fix it.
# * **Interference.** Random unit vectors in $\mathbb R^m$ have $m\langle(u\cdot v)^2\rangle = 1$; the trained
#   strong-regime rows sit near that, which is the paper's geometric reason for $1/m$.
