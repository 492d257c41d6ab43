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
# # Calibration metrics done right: what binned ECE measures, and what it misses
# **Paper:** Kumar, Liang, Ma (2019), "Verified Uncertainty Calibration", NeurIPS; Guo et al. (2017); Choi, Kim, Lee (2023), "Rethinking Evaluation Metric for Probability Estimation Models Using Esports Data" (arXiv 2309.06248).
# **Claim:** the plug-in binned ECE is biased upward (> 0 for a perfectly calibrated model, shrinking like 1/√n); the debiased L2 estimator of Kumar et al. is closer to the truth; the number of bins can flip which model looks better; the Balance score equals accuracy − mean confidence and cancels regional over- and under-confidence.
#
# Every calibration number in this book is an *estimate*. To see what the estimators do we need
# predictions whose true calibration error is known exactly, so this notebook uses synthetic binary
# predictions (`lossbook.calibration.metrics.SyntheticBinary`): a latent u ~ U(0, 1), a prediction
# s = pred(u) = P̂(y = 1), a true probability q = truth(u) = P(y = 1 | s), and labels y ~ Bernoulli(q).
# The true L_p calibration error (∫ |truth − pred|^p)^{1/p} is then a one-dimensional integral, computed
# by quadrature. Models:
#
# * **temperature t**: truth u, prediction σ(logit(u)/t) — t = 1 perfectly calibrated, t < 1
#   over-confident, t > 1 under-confident (the miscalibration temperature scaling undoes);
# * **oscillating**: prediction u, truth u + 0.1·sin(10πu) — miscalibrated at fine resolution,
#   calibrated on average over any bin of width 0.2;
# * **offsetting**: under-confident (by 0.1) at top-label confidences below 0.75 and over-confident
#   (by 0.1) above, with equal mass on both sides.
#
# ECE here is the binned L1 calibration error of the positive-class probability s against y
# (`calibration_error(s, y)`); for binary predictions it has the same true value as Guo's top-label ECE
# (|P(correct | c) − c| = |q − s|). The Balance-score section works top-label, as that metric does.
#
# **Claims, rules fixed before running** (the replication protocol, `lossbook.replicate`; the
# replicates are the seeds: each draws its own sample streams):
# 1. *plug-in bias*: for the calibrated model the plug-in ECE (15 equal-width bins) is > 0 at every n
#    in every replicate, and the 95% t-CI of the mean log-log slope against n lies inside [−0.6, −0.4]
#    (theory: −1/2);
# 2. *debiasing helps* (Kumar et al. 2019): per replicate, the mean over models and n ≤ 3,000 of
#    |plug-in L2 − true L2 CE| − |debiased L2 − true L2 CE|; its 95% t-CI over replicates lies above 0;
# 3. *bin count can flip rankings* — a **demonstration** (a constructed example shows that a flip *can*
#    happen): with n = 20,000 the model that looks better with 5 bins looks worse with 50, in ≥ 4 of 5 replicates;
# 4. *Balance = accuracy − mean confidence* — a **demonstration** (an algebraic identity): the
#    four-case definition, implemented literally, equals mean(a − c) to 1e-12 in every replicate;
# 5. *Balance cancels*: for the offsetting model (true Balance exactly 0, true ECE 0.1), the 95% t-CI
#    of the mean Balance over replicates lies inside ±0.02 (Balance misses at least 80% of the
#    miscalibration) while the t-CI of the mean top-label ECE lies above 0.05.
#    v0.1 judged this claim on each draw with a cut |Balance| < 0.01 and passed only ~60% of the time
#    although the claim is true; the "rule reliability" section measures both rules' pass rates.
#
# The Balance score's definition is quoted from a secondary summary of Choi et al. (the paper's
# tables were not retrievable here); claim 4 checks that definition's algebra, not the paper's numbers.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seeds = [0, 1, 2, 3, 4]  # one sample stream per seed (sections 2 and 3 use 1000 + seed and 2000 + seed)
sizes = [100, 300, 1000, 3000, 10000, 30000]  # sample sizes n at which the estimators are compared; in [1, inf)
n_reps = 20  # datasets drawn per (seed, n): the seed fixes the stream, the repetitions smooth the estimate; in [1, inf)
n_bins = 15  # bins of every estimator in section 1 (Guo et al. use 15); in [1, inf)
temperatures = [0.5, 1.0, 2.0]  # temperature models σ(logit(u)/t): over-confident, calibrated, under-confident; > 0
n_sweep_samples = 20000  # samples per model in the bin-count sweep (claim 3); in [1, inf)
bin_counts = [2, 5, 10, 15, 25, 50, 100]  # equal-width bin counts of the sweep; claim 3 reads 5 and 50; in [1, inf)
n_balance_samples = 5000  # samples per (seed, model) in the Balance-score section (claims 4 and 5); in [1, inf)
n_boot = 500  # bootstrap resamples of each Balance / ECE confidence interval (per replicate, over samples); in [1, inf)
balance_margin = 0.02  # claim 5: the t-CI of the mean Balance must lie within ±0.02 (a fifth of the true ECE 0.1); in [0, inf)
ece_seen = 0.05  # claim 5: the t-CI of the mean top-label ECE of the offsetting model must lie above this; in [0, 1]
n_rule_sets = 200  # simulated replicate sets for the rule-reliability check of claim 5; in [1, inf)
debias_max_n = 3000  # claim 2 pools the cells with n up to this (the small-sample regime the debiasing is for); in [1, inf)

# %%
from lossbook import plotting, replicate, stats, tracking

tracking.attach(mlflow_run_id, "calibration_metrics", globals())
plotting.setup()

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from lossbook.calibration import metrics as cm

t_start = time.time()
models = {f"T={t:g}": cm.temperature_model(t) for t in temperatures}
models["oscillating"] = cm.oscillating_model(0.1, 5)
models["offsetting"] = cm.offsetting_model(0.1, 0.75)
truth = pd.DataFrame(
    {name: {"true ECE (L1)": m.true_ce(1), "true L2 CE": m.true_ce(2)} for name, m in models.items()}
).T
display(truth.round(4))
tracking.log_dict(truth.to_dict(), "tables/true_calibration_error.json")


# %% [markdown]
# ## 1. The plug-in ECE of a perfectly calibrated model, and the debiased L2 estimator
# For every seed, n and model we draw `n_reps` datasets and average the estimators: plug-in ECE
# (L1, equal-width), plug-in L2 and debiased L2 (Kumar et al.: per bin subtract the outcome mean's
# sampling variance ȳ(1−ȳ)/(n_b−1); equal-mass bins as in their code), each with 15 bins.

# %%
rows = []
for seed in seeds:
    rng = np.random.default_rng(seed)
    for name in [f"T={t:g}" for t in temperatures]:
        m = models[name]
        for n in sizes:
            acc = [cm.binned_estimates(*m.sample(n, rng)[:2], n_bins) for _ in range(n_reps)]
            rows.append({"seed": seed, "model": name, "n": n, **pd.DataFrame(acc).mean().to_dict()})
est = pd.DataFrame(rows)
est["true_l1"] = est.model.map(truth["true ECE (L1)"])
est["true_l2"] = est.model.map(truth["true L2 CE"])
est["err_plugin"] = (est.l2_plugin - est.true_l2).abs()
est["err_debiased"] = (est.l2_debiased - est.true_l2).abs()
tracking.log_dict(est.to_dict(orient="records"), "tables/estimates.json")
display(est.groupby(["model", "n"])[["true_l1", "ece", "ece_q", "true_l2", "l2_plugin", "l2_debiased"]].mean().round(4))

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for ax, name in zip(axes, [f"T={t:g}" for t in temperatures]):
    g = est[est.model == name].groupby("n")
    for col, lab in (("ece", "plug-in ECE (L1)"), ("l2_plugin", "plug-in L2"), ("l2_debiased", "debiased L2")):
        mu, sd = g[col].mean(), g[col].std()
        ax.errorbar(mu.index, mu, yerr=sd, marker="o", ms=3, capsize=3, label=lab)
    ax.axhline(truth.loc[name, "true ECE (L1)"], color="k", ls="--", lw=1, label="true ECE (L1)")
    ax.axhline(truth.loc[name, "true L2 CE"], color="k", ls=":", lw=1, label="true L2 CE")
    ax.set_xscale("log")
    ax.set_xlabel("number of samples n (log scale)")
    ax.set_ylabel("calibration error")
    ax.set_title(name + (" (perfectly calibrated)" if name == "T=1" else ""))
axes[0].legend(fontsize=8)
tracking.log_figure(fig, "estimators_vs_n")
plt.show()

# %% [markdown]
# For the calibrated model the truth is 0, so every positive value is bias. On log-log axes the
# plug-in ECE falls on a line of slope ≈ −1/2: with a fixed number of bins each bin's accuracy is a
# mean of ~n/15 Bernoulli draws, whose absolute deviation from its expectation scales like 1/√n.

# %%
cal = est[est.model == "T=1"]
slopes = []
for seed in seeds:
    d = cal[cal.seed == seed]
    slopes.append(np.polyfit(np.log(d.n), np.log(d.ece), 1)[0])
slopes = np.array(slopes)
fig, ax = plt.subplots(figsize=(5.5, 4))
for seed in seeds:
    d = cal[cal.seed == seed]
    ax.loglog(d.n, d.ece, "o-", ms=3, alpha=0.7, label=f"seed {seed}")
nn = np.array(sizes, dtype=float)
ax.loglog(nn, cal.groupby("n").ece.mean().iloc[0] * np.sqrt(nn[0] / nn), "k--", label="∝ 1/√n")
ax.set_xlabel("number of samples n")
ax.set_ylabel("plug-in ECE of a calibrated model")
ax.legend(fontsize=8)
tracking.log_figure(fig, "calibrated_ece_vs_n")
plt.show()
print("log-log slopes per seed:", np.round(slopes, 3))

# %% [markdown]
# ## 2. The number of bins can flip a comparison
# Model A = temperature 0.8 (mildly over-confident everywhere, true ECE ≈ 0.033); model B =
# oscillating (true ECE ≈ 0.064). B's error averages out inside bins of width 0.2, so coarse binning
# hides it. This is a constructed example — it shows that a ranking *can* flip, not how often it does.

# %%
model_a, model_b = cm.temperature_model(0.8), models["oscillating"]
sweep = []
for seed in seeds:
    rng = np.random.default_rng(1000 + seed)
    sa, ya, _ = model_a.sample(n_sweep_samples, rng)
    sb, yb, _ = model_b.sample(n_sweep_samples, rng)
    for b in bin_counts:
        sweep.append({"seed": seed, "bins": b, "A (T=0.8)": cm.calibration_error(sa, ya, b), "B (oscillating)": cm.calibration_error(sb, yb, b)})
sweep = pd.DataFrame(sweep)
tracking.log_dict(sweep.to_dict(orient="records"), "tables/bin_sweep.json")
g = sweep.groupby("bins")
fig, ax = plt.subplots(figsize=(6, 4))
for col, tru in (("A (T=0.8)", model_a.true_ce()), ("B (oscillating)", model_b.true_ce())):
    (line,) = ax.plot(g[col].mean().index, g[col].mean(), "o-", label=f"{col}: estimated")
    ax.fill_between(g[col].mean().index, g[col].min(), g[col].max(), color=line.get_color(), alpha=0.2)
    ax.axhline(tru, color=line.get_color(), ls="--", lw=1, label=f"{col}: true")
ax.set_xscale("log")
ax.set_xlabel("number of equal-width bins (log scale)")
ax.set_ylabel(f"plug-in ECE (n = {n_sweep_samples})")
ax.legend(fontsize=8)
tracking.log_figure(fig, "bin_count_sweep")
plt.show()
display(g[["A (T=0.8)", "B (oscillating)"]].mean().round(4))

# %% [markdown]
# ## 3. The Balance score
# Choi et al. define, for a binary prediction p̂ and outcome y, a gain/loss per sample:
# 1 − p̂ (p̂ ≥ 0.5, y = 1), p̂ (p̂ < 0.5, y = 0), −p̂ (p̂ ≥ 0.5, y = 0), −1 + p̂ (p̂ < 0.5, y = 1),
# averaged over samples. With confidence c = max(p̂, 1 − p̂) and correctness a, the four cases are
# a − c, so the score is accuracy − mean confidence: a signed, one-bin ECE. We implement the four
# cases literally and compare with `balance_score`.

# %%
def balance_four_cases(p: np.ndarray, y: np.ndarray) -> float:
    g = np.where(p >= 0.5, np.where(y == 1, 1 - p, -p), np.where(y == 0, p, -1 + p))
    return float(g.mean())


bal_rows, max_dev = [], 0.0
for seed in seeds:
    rng = np.random.default_rng(2000 + seed)
    for name, m in models.items():
        s, y, _ = m.sample(n_balance_samples, rng)
        probs = np.stack([1 - s, s], 1)
        b_lit, b_lib = balance_four_cases(s, y), cm.balance_score(probs, y)
        max_dev = max(max_dev, abs(b_lit - b_lib))
        b, blo, bhi = stats.bootstrap_ci(cm.balance_score, probs, y, n_boot=n_boot, seed=seed)
        e, elo, ehi = stats.bootstrap_ci(cm.ece, probs, y, n_boot=n_boot, seed=seed)
        bal_rows.append({"seed": seed, "model": name, "balance": b, "balance_lo": blo, "balance_hi": bhi,
                         "ece": e, "ece_lo": elo, "ece_hi": ehi, "true_ece": m.true_ce(), "four_case_dev": abs(b_lit - b_lib),
                         "min_case_count": int(np.bincount(2 * (s >= 0.5) + y, minlength=4).min())})
bal = pd.DataFrame(bal_rows)
tracking.log_dict(bal.to_dict(orient="records"), "tables/balance.json")
print(f"max |four-case balance − (accuracy − mean confidence)| = {max_dev:.2e}")
summary_bal = bal.groupby("model", sort=False)[["true_ece", "ece", "balance"]].agg(["mean", "std"]).round(4)
display(summary_bal)

fig, ax = plt.subplots(figsize=(6.5, 4))
x = np.arange(len(models))
gb = bal.groupby("model", sort=False)
ax.bar(x - 0.2, gb.ece.mean(), 0.4, yerr=gb.ece.std(), capsize=3, label="top-label ECE (15 bins)")
ax.bar(x + 0.2, gb.balance.mean(), 0.4, yerr=gb.balance.std(), capsize=3, label="Balance score (acc − conf)")
ax.scatter(x, gb.true_ece.mean(), color="k", marker="_", s=400, zorder=3, label="true ECE")
ax.axhline(0, color="k", lw=0.8)
ax.set_xticks(x, list(models), rotation=20)
ax.set_ylabel("value")
ax.legend(fontsize=8)
tracking.log_figure(fig, "balance_vs_ece")
plt.show()

# %% [markdown]
# ## Rule reliability (claim 5)
# A rule is only as good as how often it passes when its claim is true. The offsetting model's true
# Balance is exactly 0, so we simulate `n_rule_sets` replicate sets of the same size and count how often
# each rule passes: v0.1's per-draw cut (|Balance| < 0.01 and a CI containing 0, in every replicate) and
# the protocol's rule (the t-CI of the mean Balance within ±`balance_margin`).

# %%
rates = cm.balance_rule_pass_rates(models["offsetting"], n_balance_samples, len(seeds), n_rule_sets, balance_margin, seed=3000)
display(pd.Series(rates, name="pass rate when the claim is true").round(3))
tracking.log_metrics({f"rule_pass_rate/{k}": v for k, v in rates.items()})

# %% [markdown]
# ## Claims

# %%
mean_cal = cal.groupby("n").ece.mean()
positive = np.array([bool((cal[cal.seed == sd].ece > 0).all()) for sd in seeds])
decades = float(np.log10(max(sizes) / min(sizes)))
replicate.record(
    "plugin_ece_biased_sqrt_n",
    statement="the plug-in ECE of a perfectly calibrated model is > 0 and shrinks like 1/sqrt(n)",
    paper="Kumar et al. 2019 (bias of binned estimators); Guo et al. 2017 (ECE)",
    paper_value="bias > 0, O(1/sqrt(n)) for a fixed number of bins",
    values=slopes, outcome=replicate.all_of(replicate.mean_within_rule(slopes, -0.6, -0.4), replicate.k_of_n_rule(positive, len(positive))),
    guards=[replicate.progress_reached(decades, 2.0, lower_is_better=False, what="decades of n spanned", name="range", fix="widen sizes to span 2 decades")],
    measured=f"ECE at n={sizes[0]}: {mean_cal.iloc[0]:.4f}, at n={sizes[-1]}: {mean_cal.iloc[-1]:.4f}; log-log slope {stats.format_mean_std(slopes, 1.0, 3)}",
    details={"mean_ece_by_n": mean_cal.round(5).to_dict()},
)

small = est[est.n <= debias_max_n]
gain = small.assign(d=small.err_plugin - small.err_debiased).groupby("seed").d.mean().to_numpy()
replicate.record(
    "debiased_l2_closer_to_truth",
    statement="the debiased L2 calibration error is closer to the true L2 CE than the plug-in L2 estimate",
    paper="Kumar, Liang, Ma 2019", paper_value="debiased estimator needs fewer samples for the same accuracy",
    values=gain, outcome=replicate.mean_ci_rule(gain, 0.0, "above"),
    guards=[replicate.progress_reached(small.n.nunique(), 3, lower_is_better=False, what="sample sizes n ≤ debias_max_n", name="range", fix="add sample sizes up to debias_max_n")],
    measured=f"per-replicate mean |plug-in − truth| − |debiased − truth| = {stats.format_mean_std(gain, 1.0, 4)}",
    details={"mean_abs_err_plugin": float(small.err_plugin.mean()), "mean_abs_err_debiased": float(small.err_debiased.mean())},
)

def a_looks_better(sd: int, bins: int) -> bool:
    r = sweep[(sweep.seed == sd) & (sweep.bins == bins)].iloc[0]
    return bool(r["A (T=0.8)"] < r["B (oscillating)"])


flip = np.array([a_looks_better(sd, 5) != a_looks_better(sd, 50) for sd in seeds])
replicate.record(
    "bin_count_flips_ranking",
    statement="the number of bins can flip which of two models has the lower ECE (a constructed example)",
    paper="Kumar et al. 2019; Nixon et al. 2019 (binning choices change rankings)", paper_value="rankings depend on the binning scheme",
    values=flip, outcome=replicate.k_of_n_rule(flip, min(4, len(seeds))), kind="demonstration",
    guards=[replicate.Guard("bins_read", {5, 50} <= set(bin_counts), f"bin counts {bin_counts} (the rule reads 5 and 50)", "add 5 and 50 to bin_counts")],
    measured=f"ranking at 5 bins opposite to 50 bins in {int(flip.sum())}/{len(seeds)} replicates",
)

exact = bal.groupby("seed").four_case_dev.max().to_numpy() <= 1e-12
replicate.record(
    "balance_is_acc_minus_conf",
    statement="the Balance score equals accuracy minus mean confidence (an identity)",
    paper="Choi, Kim, Lee 2023 (definition via a secondary summary)", paper_value="four-case gain/loss average",
    values=exact, outcome=replicate.k_of_n_rule(exact, len(exact)), kind="demonstration",
    guards=[replicate.progress_reached(int(bal.min_case_count.min()), 1, lower_is_better=False, what="samples in the rarest of the four cases", name="all_cases_seen", fix="draw more samples")],
    measured=f"max deviation {max_dev:.1e}",
)

off = bal[bal.model == "offsetting"]
half = replicate.mean_ci_rule(off.balance.to_numpy()).ci
replicate.record(
    "balance_cancels_offsetting_miscalibration",
    statement="regional over- and under-confidence cancel in the Balance score while ECE sees them",
    paper="Choi, Kim, Lee 2023 (pitfall of a signed, unbinned score)", paper_value="Balance ≈ 0 possible with large ECE",
    values=off.balance.to_numpy(),
    outcome=replicate.all_of(replicate.mean_within_rule(off.balance.to_numpy(), -balance_margin, balance_margin),
                             replicate.mean_ci_rule(off.ece.to_numpy(), ece_seen, "above")),
    guards=[replicate.progress_reached((half.high - half.low) / 2, balance_margin, what="t-CI half-width of the mean Balance", name="power", fix="more replicates or samples per replicate")],
    diagnosis=replicate.Diagnosis(f"rule reliability under the true model: the CI rule passes {100 * rates['t_ci_within_margin']:.0f}% of simulated replicate sets",
                                  "balance_rule_pass_rates (rule reliability section)"),
    measured=f"offsetting model: Balance {stats.format_mean_std(off.balance, 1.0, 4)}, ECE {stats.format_mean_std(off.ece, 1.0, 4)} (true ECE 0.1)",
    details={"per_seed": off[["seed", "balance", "balance_lo", "balance_hi", "ece", "ece_lo"]].round(5).to_dict(orient="records")},
)
tracking.log_metrics({"wall_time_s": time.time() - t_start})
print(f"wall time {time.time() - t_start:.0f}s")

# %% [markdown]
# ## Discussion
# * **Plug-in ECE is a biased estimator.** A perfectly calibrated model scores well above 0 at small n
#   (the first claim's numbers) and the bias falls like 1/√n. Comparisons between models on a
#   1,000-sample test set should therefore carry a CI (`stats.bootstrap_ci`) — differences of a percent
#   or two can be pure noise; `metrics.ece_floor` gives the floor for a given set of predictions.
# * **Debiasing** (Kumar et al.) subtracts each bin's sampling variance; on miscalibrated models it
#   removes most of the upward bias, on a calibrated one it is clamped at 0. The L1 ECE has no such
#   unbiased correction; the debiased L2 is the better-behaved number when n is small.
# * **Bins.** More bins lower the bias from averaging within a bin but raise the variance per bin;
#   an oscillating miscalibration is invisible at coarse resolution. Report the binning scheme with
#   every ECE (this book reports equal-width and equal-mass).
# * **Balance score** is accuracy − mean confidence: exact for uniformly over- or under-confident
#   models (|Balance| = true ECE for the temperature models above), blind when errors change sign.
#   Like any estimate it has sampling noise; judge "Balance ≈ 0" by a CI over replicates against a
#   margin set from the miscalibration it should reveal. The rule-reliability table shows why: a per-draw
#   cut at 0.01 fails often when the claim is true, the CI rule almost never.
