# %% [markdown]
# # The fundamental limits of knowledge transfer over finite domains: √(|S||A|/n), |S||A|/n and |S|/n
# **Paper:** Zhao & Zhu (2024), "Towards the Fundamental Limits of Knowledge Transfer over Finite Domains" (ICLR; arXiv 2310.07838).
# **Claim:** from n hard labels the MLE attains the minimax TV rate √(|S||A|/n); with the teacher's probabilities of the sampled labels the limit is |S||A|/n, a naive cross-entropy on them is asymptotically biased and the empirical squared-error-logit (SEL) loss attains the limit; with full soft labels the KL/CE student attains |S|/n, free of |A| (Figure 2: fitted slopes β̂ ≈ −0.532 and −0.525 for hard labels, −1.004 and −0.998 for SEL, −0.977 for soft labels).
#
# **The setting.** A teacher π*(·|s) over a finite label set A for each input s of a finite S, inputs drawn
# from ρ, and n i.i.d. pairs (s_i, a_i) ~ ρ × π*. The risk of a student π̂ is the ρ-weighted total variation
# TV(π̂, π* | ρ) = Σ_s ρ(s)·TV(π̂(·|s), π*(·|s)) (eq. 2.1). Three protocols give the student progressively more
# (Table 1): **hard labels** (s, a): lower bound Ω(√(|S||A|/n)) (Thm 3.1), attained by the MLE of
# −Σ log π(a_i|s_i), π̂ = N(s,a)/N(s) (Thm 3.2); **partial soft labels** (s, a, π*(a|s)): lower bound
# Ω(|S||A|/n) (Thm 4.1); the naive CE_ptl = −Σ π*(a_i|s_i) log π(a_i|s_i) has the minimiser
# π̂ ∝ N(s,a)·π*(a|s), which tends to π*²/Σπ*² (Lemma 4.2) and is biased unless π* is uniform or a Dirac
# (Thm 4.3); the empirical SEL loss Σ_i ½[log π(a_i|s_i) − log π*(a_i|s_i)]² (eq. 4.6) is minimised by
# matching π* on every seen label (eq. 4.7) and attains Õ(|S||A|/n) (Thm 4.4); **soft labels**
# (s, a, π*(·|s)): lower bound Ω(|S|/n), free of |A| (Thm 5.1), attained by any KL minimiser, π̂ = π* on the
# seen inputs (Thm 5.2). The students are closed forms, so the simulation is exact up to Monte Carlo error;
# the paper's conventions (§6): Uniform(A) on an unseen input, and for SEL the missing mass of a seen input
# spread uniformly over its unseen labels.
#
# **Why the paper's worst-case instances.** On a fixed instance with ρ and π* bounded away from 0 the SEL and
# soft-label risks fall *exponentially* once every input (and label) is seen (Remark 6.1; the paper's Figure 1,
# our Instance-0 panel): a minimax rate is a statement about the worst instance at each n, so the paper's
# Figure 2 uses instances that move with n (Appendix F), and so do we: **Instance 1** (hard labels) ρ uniform,
# π*(2j−1|s), π*(2j|s) = (1 ± ¼√(|S||A|/n))/|A|; **Instance 2** (partial soft labels) ρ uniform, (|A|−1)/2
# labels of mass |S|/(n+1) each, as many of mass 0 and one heavy label: every light label is seen about once
# per input, whatever n; **Instance 3** (soft labels) the non-uniform ρ(s) = 1/(n+1) on all inputs but one,
# π* as in Instance 2: |S| − 1 inputs are each seen about once. The paper averages 64,000 repeats per point for
# one instance; here every replicate draws its **own teacher** (a random vertex of Instance 1's hypercube, a
# random label permutation per input for Instances 0, 2, 3, a random heavy input for Instance 3) and its own
# data, and averages `n_repeats` data sets per grid point.
#
# **Protocol, fixed before the run** (`lossbook.replicate`). One replicate = one seed: one teacher draw and
# independent data streams. Per replicate, the mean risk over the Monte Carlo data sets at each grid point is
# fitted by least squares on log-log axes; the slope is that replicate's exponent.
# * **Rates in n** (`n_grid`, 2 decades by default): the minimax student on its instance — hard labels / MLE on
#   Instance 1 (theory −½), partial soft labels / SEL on Instance 2 (−1), soft labels / KL on Instance 3 (−1).
#   Rule: the 95% t-CI of the mean slope over replicates lies within **±0.10** of the theory exponent
#   (`mean_within_rule`); entirely outside: not reproduced.
# * **Rates in |A|** at fixed n (`n_fixed`, |A| over 1.2 decades, from 8): the same three students on the same
#   instances; theory exponents ½ (hard), 1 (partial), 0 (soft: *free of |A|*). Rule: t-CI within **±0.15**.
#   Why the |A| grids start at 8/9: the constants of the rates carry factors such as (1 − 1/|A|) and (|A| − 1)
#   that bend a log-log line at small |A| (decided from the closed forms before any run); the grids from 4/5
#   are run as an ablation.
# * **Guards** on every rate claim: the grid spans ≥ 1.5 decades of n (≥ 1 decade of |A|); every replicate's
#   fit has R² ≥ 0.98 (not for the soft-label |A| fit, whose theory line is flat: R² has nothing to explain
#   there); every mean risk has a Monte Carlo relative SE ≤ 5% (hence > 0); the largest mean risk is
#   ≤ 0.5 (not saturated); the grid lies in the theorem's regime (n ≥ |S||A|/4 for Thm 3.1,
#   n ≥ |S|(|A| − 1)/2 − 1 for Thm 4.1, n > |S| − 1 for Thm 5.1; for the |A| sweeps at the largest |A|, and
#   for the hard-label sweep also n/|S| ≥ 4|A|, so each label is expected ≥ 4 times per input).
# * **CE_ptl is biased** (Instance 0, fixed in n, the paper's Figure 1a with (|S|, |A|) = (100, 25)): at the
#   largest n, CE_ptl's risk divided by the closed-form limit TV(π*²/Σπ*², π* | ρ) has its t-CI in [0.9, 1.1]
#   **and** SEL's risk divided by the same limit has its t-CI below 0.1. Guard: the limit is ≥ 0.1 (the instance
#   is far from uniform and Dirac teachers, where Thm 4.3 says CE_ptl is unbiased).
# * **Ranking** (Figure 1): on Instance 0 at every n, mean risk CE(hard) ≥ SEL ≥ CE/KL(soft) (ties allowed),
#   in every replicate (`k_of_n_rule`, k = n).
# * **Simulator check** (demonstration): on Instance 3 the soft-label risk has the exact expectation
#   Σ_s ρ(s)(1 − ρ(s))ⁿ TV(Uniform, π*(·|s)); the Monte Carlo mean is within 4 standard errors of it at every n
#   in every replicate.
# * **Ablations** behind any diagnosis: fits over the upper half of each n grid (the asymptotic end), the |A|
#   sweeps from |A| = 4/5, and the fixed Instance 0 for every student.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seeds = [0, 1, 2, 3, 4]  # replicates: each seed draws its teachers (hypercube vertex, label permutations, heavy input) and its own data; in [0, inf)
n_repeats = 2000  # Monte Carlo data sets per grid point and replicate (the mean risk averages them); in [2, inf)
S = 20  # |S| of Instances 1-3; in [2, inf)
A_hard = 10  # |A| of Instance 1 for the n-rate (even; an odd value leaves the last label at mass 0); in [2, inf)
A_partial = 11  # |A| of Instances 2 and 3 for the n-rates (odd; an even value leaves the last label at mass 0); in [3, inf)
n_grid = [1000, 2000, 5000, 10000, 20000, 50000, 100000]  # sample sizes of the n-rate fits; in [1, inf)
n_fixed = 40000  # n of the |A| sweeps; in [1, inf)
A_grid_hard = [8, 16, 32, 64, 128]  # |A| of the hard-label sweep (even); in [2, inf)
A_grid_partial = [9, 17, 33, 65, 129]  # |A| of the partial- and soft-label sweeps (odd); in [3, inf)
A_grid_hard_small = [4, 8, 16, 32, 64]  # ablation: the hard-label |A| sweep from 4; in [2, inf)
A_grid_partial_small = [5, 9, 17, 33, 65]  # ablation: the partial/soft |A| sweeps from 5; in [3, inf)
S_classic = 100  # |S| of the fixed Instance 0 (the paper's Figure 1a); in [1, inf)
A_classic = 25  # |A| of Instance 0 (Figure 1a); in [2, inf)
n_grid_classic = [100, 300, 1000, 3000, 10000, 30000, 100000]  # sample sizes on Instance 0; in [1, inf)
n_repeats_classic = 500  # Monte Carlo data sets per n and replicate on Instance 0; in [2, inf)
n_boot = 200  # bootstrap resamples of the Monte Carlo repeats behind each replicate's slope CI; in [10, inf)

# %%
from lossbook import tracking

tracking.attach(mlflow_run_id, "knowledge_transfer_limits", globals())

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from lossbook import plotting, replicate
from lossbook.distillation import transfer_limits as tl

plotting.setup()
t_start, cpu_start = time.time(), time.process_time()
PAPER = "Zhao & Zhu 2024"
RATE_TOL, A_TOL = 0.10, 0.15  # pre-registered tolerances on the n- and |A|-exponents
MIN_DECADES_N, MIN_DECADES_A, MIN_R2, MAX_REL_SE = 1.5, 1.0, 0.98, 0.05  # pre-registered guards
SETUPS = {  # per protocol: worst-case instance, minimax student, |A| of the n-rate, theory exponents in n and |A|, |A| grids
    "hard": tl.RateSetup("instance1", "ce_sgl", A_hard, -0.5, 0.5, tuple(A_grid_hard), tuple(A_grid_hard_small)),
    "partial": tl.RateSetup("instance2", "sel_ptl", A_partial, -1.0, 1.0, tuple(A_grid_partial), tuple(A_grid_partial_small)),
    "soft": tl.RateSetup("instance3", "ce_ful", A_partial, -1.0, 0.0, tuple(A_grid_partial), tuple(A_grid_partial_small)),
}
REGIME = {  # the smallest n each lower bound is stated for, as a function of |A|, and in words
    "hard": (lambda a: S * a / 4, "n ≥ |S||A|/4 (Thm 3.1)"), "partial": (lambda a: S * (a - 1) / 2 - 1, "n ≥ |S|(|A|−1)/2 − 1 (Thm 4.1)"),
    "soft": (lambda a: S, "n > |S| − 1 (Thm 5.1)")}
half = (len(n_grid) + 1) // 2  # the upper-half fits use the last `half` grid points
print(f"replicates: {len(seeds)}; Monte Carlo data sets per point: {n_repeats}; n grid {n_grid[0]}…{n_grid[-1]}")

# %% [markdown]
# ## Rates in n on the worst-case instances
# Every student on every instance (the paper's Figure 2 shows all four learners on each instance too); the
# rule reads only the minimax student of each instance.

# %%
n_curves = {k: [tl.n_curve(su.instance, S, su.A, n_grid, n_repeats, seed) for seed in seeds] for k, su in SETUPS.items()}
rows = []
for k, su in SETUPS.items():
    for m in tl.LEARNERS:
        sl, r2 = tl.replicate_fits(n_curves[k], m)
        up, _ = tl.replicate_fits(n_curves[k], m, last=half)
        ok = np.isfinite(sl).all()
        lo, hi = (np.nan, np.nan) if not ok or len(sl) < 2 else sps.t.interval(0.95, len(sl) - 1, sl.mean(), sps.sem(sl))
        rows.append({"setting": k, "instance": su.instance, "student": tl.LABELS[m], "minimax": m == su.learner,
                     "theory": su.theory_n if m == su.learner else np.nan,
                     "slope": sl.mean() if ok else np.nan, "t-CI low": lo, "t-CI high": hi, "min R²": np.nanmin(r2) if ok else np.nan,
                     "upper-half slope": up.mean() if np.isfinite(up).all() else np.nan,
                     "risk at n_max": np.mean([c.mean(m)[-1] for c in n_curves[k]])})
rates = pd.DataFrame(rows)
for k in SETUPS:
    tracking.log_metrics({f"{k}/{m}/slope": float(rates[(rates.setting == k) & (rates.student == tl.LABELS[m])].slope.iloc[0]) for m in tl.LEARNERS})
tracking.log_dict(rates.to_dict(orient="records"), "tables/rates_in_n.json")
rates.round(4)

# %% [markdown]
# Per replicate: each replicate's slope of its minimax student, with a percentile bootstrap CI over its Monte
# Carlo data sets (`lossbook.stats`; data set j at every n resampled as one unit) — the within-replicate
# uncertainty, next to the spread across teachers that the rule reads.

# %%
per_rep = []
for k, su in SETUPS.items():
    sl, r2 = tl.replicate_fits(n_curves[k], su.learner)
    for seed, c, s_, q in zip(seeds, n_curves[k], sl, r2, strict=True):
        lo, hi = tl.bootstrap_slope(c, su.learner, n_boot=n_boot, seed=seed)
        per_rep.append({"setting": k, "student": tl.LABELS[su.learner], "seed": seed, "slope": s_, "bootstrap low": lo, "bootstrap high": hi, "R²": q})
per_rep = pd.DataFrame(per_rep)
per_rep.round(4)

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
for ax, (k, su) in zip(axes, SETUPS.items(), strict=True):
    tl.plot_curves(ax, n_curves[k], fit_learner=su.learner, theory_slope=su.theory_n, title=f"{su.instance} (|S| = {S}, |A| = {su.A}): {k} labels")
fig.suptitle(f"Risk vs n on the worst-case instances (mean over {len(seeds)} teachers × {n_repeats} data sets; bars: ±1 sd over teachers)")
tracking.log_figure(fig, "risk_vs_n")

# %% [markdown]
# ## Rates in |A| at fixed n

# %%
a_curves = {k: [tl.a_curve(su.instance, S, su.A_grid, n_fixed, n_repeats, seed) for seed in seeds] for k, su in SETUPS.items()}
a_small = {k: [tl.a_curve(su.instance, S, su.A_grid_small, n_fixed, n_repeats, seed) for seed in seeds] for k, su in SETUPS.items()}
a_rows = []
for k, su in SETUPS.items():
    for m in tl.LEARNERS:
        sl, r2 = tl.replicate_fits(a_curves[k], m)
        sm, _ = tl.replicate_fits(a_small[k], m)
        a_rows.append({"setting": k, "instance": su.instance, "student": tl.LABELS[m], "theory": su.theory_A if m == su.learner else np.nan,
                       "|A|-slope": sl.mean() if np.isfinite(sl).all() else np.nan, "sd": sl.std(ddof=1) if len(sl) > 1 and np.isfinite(sl).all() else np.nan,
                       "min R²": np.nanmin(r2) if np.isfinite(r2).any() else np.nan,
                       "|A|-slope, grid from 4/5 (ablation)": sm.mean() if np.isfinite(sm).all() else np.nan})
a_rates = pd.DataFrame(a_rows)
tracking.log_dict(a_rates.to_dict(orient="records"), "tables/rates_in_A.json")
a_rates.round(4)

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
for ax, (k, su) in zip(axes, SETUPS.items(), strict=True):
    tl.plot_curves(ax, a_curves[k], fit_learner=su.learner, theory_slope=su.theory_A, xlabel="|A| (labels)",
                   title=f"{su.instance} at n = {n_fixed}, |S| = {S}: {k} labels")
fig.suptitle("Risk vs |A| at fixed n: hard labels ∝ √|A|, partial soft labels ∝ |A|, soft labels free of |A|")
tracking.log_figure(fig, "risk_vs_A")

# %% [markdown]
# ## The classic regime: Instance 0, fixed in n (the paper's Figure 1a)

# %%
inst0 = [tl.instance0(S_classic, A_classic, tl.rng_for(seed, 5)) for seed in seeds]
c0 = [tl.fixed_curve(i, n_grid_classic, n_repeats_classic, seed) for i, seed in zip(inst0, seeds, strict=True)]
limit0 = np.array([float(tl.tv_risk(tl.ce_ptl_limit(i.pi_star), i)) for i in inst0])
ratio_ptl = np.array([c.mean("ce_ptl")[-1] for c in c0]) / limit0
ratio_sel = np.array([c.mean("sel_ptl")[-1] for c in c0]) / limit0
means0 = {m: np.mean([c.mean(m) for c in c0], axis=0) for m in tl.LEARNERS}
classic = pd.DataFrame(means0, index=pd.Index(n_grid_classic, name="n")).rename(columns=tl.LABELS)
classic["CE_ptl limit TV(π*²/Σπ*², π*)"] = limit0.mean()
fig, ax = plt.subplots(figsize=(7, 4.6))
for m in tl.LEARNERS:
    mu = means0[m]
    ax.plot(np.asarray(n_grid_classic)[mu > 0], mu[mu > 0], "o-", ms=4, label=tl.LABELS[m] + (" (→ 0)" if (mu == 0).any() else ""))
ax.axhline(limit0.mean(), color="k", ls=":", lw=1, label="CE_ptl limit (Lemma 4.2)")
ax.set(xscale="log", yscale="log", xlabel="n (samples)", ylabel="TV(π̂, π* | ρ)",
       title=f"Instance 0 (|S| = {S_classic}, |A| = {A_classic}), fixed in n: CE_ptl stays biased")
ax.legend(fontsize=8)
tracking.log_figure(fig, "classic_instance0")
classic.round(4)

# %% [markdown]
# ## Claims

# %%
verdicts = {}
for k, su in SETUPS.items():
    inst, learner, th = su.instance, su.learner, su.theory_n
    sl, _ = tl.replicate_fits(n_curves[k], learner)
    up, _ = tl.replicate_fits(n_curves[k], learner, last=half)
    out = replicate.mean_within_rule(sl, th - RATE_TOL, th + RATE_TOL)
    guards = tl.rate_guards(n_curves[k], learner, min_decades=MIN_DECADES_N, min_r2=MIN_R2, max_rel_se=MAX_REL_SE,
                            x_min_required=REGIME[k][0](su.A), what="n", regime=REGIME[k][1])
    c0_slope = [tl.fit_loglog(n_grid_classic[:3], means0[learner][:3]).slope] if (means0[learner][:3] > 0).all() else ["n/a"]
    diag = replicate.Diagnosis(
        f"{tl.LABELS[learner]} on {inst}: slope over the whole grid {sl.mean():.3f}, over its upper half (n ≥ {n_grid[-half]}) {up.mean():.3f} "
        f"[sd {up.std(ddof=1) if len(up) > 1 else 0:.3f}]; per-replicate bootstrap CIs in the per-replicate table; on the fixed Instance 0 the same "
        f"student's first-three-point slope is {c0_slope[0] if isinstance(c0_slope[0], str) else f'{c0_slope[0]:.2f}'} (a fixed instance is not a worst case)",
        "upper-half fits (rates table, column 'upper-half slope') and the fixed Instance 0 curve")
    verdicts[f"{k}_label_rate_in_n"] = replicate.record(
        f"{k}_label_rate_in_n", statement=f"With {k} labels the minimax student's TV risk falls as n^{th:g} on the worst-case instance",
        paper=f"{PAPER}, Table 1, Fig. 2", paper_value={"hard": "√(|S||A|/n), Thm 3.1/3.2; Fig. 2 β̂ ≈ −0.532, −0.525",
                                                        "partial": "|S||A|/n, Thm 4.1/4.4; Fig. 2 β̂ ≈ −1.004, −0.998",
                                                        "soft": "|S|/n, Thm 5.1/5.2; Fig. 2 β̂ ≈ −0.977"}[k],
        values=sl, outcome=out, guards=guards, diagnosis=diag,
        measured=f"slope {out.statistic:.3f} [{out.ci.low:.3f}, {out.ci.high:.3f}] (n = {out.n} teachers; theory {th:g})")

for k, su in SETUPS.items():
    inst, learner, tha, grid, small = su.instance, su.learner, su.theory_A, su.A_grid, su.A_grid_small
    sl, _ = tl.replicate_fits(a_curves[k], learner)
    sm, _ = tl.replicate_fits(a_small[k], learner)
    out = replicate.mean_within_rule(sl, tha - A_TOL, tha + A_TOL)
    guards = tl.rate_guards(a_curves[k], learner, min_decades=MIN_DECADES_A, min_r2=MIN_R2 if tha != 0 else -np.inf, max_rel_se=MAX_REL_SE,
                            x_min_required=None, what="|A|")
    guards.append(replicate.progress_reached(n_fixed, REGIME[k][0](max(grid)), lower_is_better=False, what="n_fixed", name="theorem_regime",
                                             fix=f"{REGIME[k][1]} at the largest |A|"))
    if k == "hard":
        guards.append(replicate.progress_reached(n_fixed / S / max(grid), 4.0, lower_is_better=False, what="n/(|S|·max|A|)",
                                                 name="labels_seen", fix=f"n_fixed ≥ {4 * S * max(grid)}"))
    diag = replicate.Diagnosis(
        f"{tl.LABELS[learner]} on {inst} at n = {n_fixed}: |A|-slope {sl.mean():.3f} on |A| = {grid[0]}…{grid[-1]}, "
        f"{sm.mean():.3f} on the grid from {small[0]} (the closed forms' (1 − 1/|A|) and (|A| − 1) factors bend the line at small |A|)",
        "the |A| sweep from |A| = 4/5 (column '|A|-slope, grid from 4/5 (ablation)')")
    verdicts[f"{k}_label_rate_in_A"] = replicate.record(
        f"{k}_label_rate_in_A",
        statement={"hard": "With hard labels the risk grows as √|A| at fixed n", "partial": "With partial soft labels the SEL student's risk grows as |A| at fixed n",
                   "soft": "With soft labels the risk is free of |A| at fixed n"}[k],
        paper=f"{PAPER}, Table 1", paper_value={"hard": "√(|S||A|/n)", "partial": "|S||A|/n", "soft": "|S|/n, free of |A| (Thm 5.1/5.2)"}[k],
        values=sl, outcome=out, guards=guards, diagnosis=diag,
        measured=f"|A|-slope {out.statistic:.3f} [{out.ci.low:.3f}, {out.ci.high:.3f}] (n = {out.n} teachers; theory {tha:g})")

out_ptl = replicate.all_of(replicate.mean_within_rule(ratio_ptl, 0.9, 1.1), replicate.mean_ci_rule(ratio_sel, 0.1, "below"))
verdicts["partial_ce_biased"] = replicate.record(
    "partial_ce_biased", statement="With partial soft labels the naive CE student stays at its biased limit π*²/Σπ*² while SEL converges",
    paper=f"{PAPER}, Lemma 4.2, Thm 4.3, Fig. 1a", paper_value="CE_ptl fails to converge (≈ 0.44 TV at (|S|, |A|) = (100, 25)); SEL → 0",
    values=ratio_ptl, outcome=out_ptl,
    guards=[replicate.progress_reached(float(limit0.min()), 0.1, lower_is_better=False, what="closed-form CE_ptl bias", name="bias_visible",
                                       fix="an instance farther from uniform and Dirac teachers")],
    diagnosis=replicate.Diagnosis(f"CE_ptl mean risk by n: {np.round(means0['ce_ptl'], 4).tolist()} against the limit {limit0.mean():.4f}; "
                                  f"SEL: {np.round(means0['sel_ptl'], 4).tolist()}", "the Instance-0 curve over n_grid_classic"),
    measured=f"CE_ptl risk / limit at n = {n_grid_classic[-1]}: {ratio_ptl.mean():.4f} [{out_ptl.ci.low:.4f}, {out_ptl.ci.high:.4f}]; "
             f"SEL / limit {ratio_sel.mean():.2e} (limit {limit0.mean():.4f})")

flags = [bool(np.all(c.mean("ce_sgl") >= c.mean("sel_ptl")) and np.all(c.mean("sel_ptl") >= c.mean("ce_ful"))) for c in c0]
verdicts["ranking_classic"] = replicate.record(
    "ranking_classic", statement="More privileged information never hurts: CE(hard) ≥ SEL(partial) ≥ KL(soft) in risk at every n on Instance 0",
    paper=f"{PAPER}, Fig. 1", paper_value="π̂_CE,sgl ⪯ π̂_SEL,ptl ⪯ π̂_CE,ful", values=flags, outcome=replicate.k_of_n_rule(flags, len(flags)),
    diagnosis=replicate.Diagnosis(f"mean risks by n: {classic.round(4).to_dict(orient='list')}", "the Instance-0 table"),
    measured=f"ordering held at every n in {sum(flags)} of {len(flags)} replicates")

zmax = np.array([tl.ce_ful_z(c, [tl.instance3(S, A_partial, int(n), tl.rng_for(seed, 0)) for n in n_grid], n_grid).max()
                 for c, seed in zip(n_curves["soft"], seeds, strict=True)])
verdicts["simulator_matches_missing_mass"] = replicate.record(
    "simulator_matches_missing_mass", statement="The Monte Carlo soft-label risk equals its exact missing-mass expectation (simulator check)",
    paper=f"{PAPER}, eq. E.1", paper_value="E TV = Σ_s ρ(s)(1 − ρ(s))ⁿ TV(Uniform, π*(·|s))", values=zmax < 4,
    outcome=replicate.k_of_n_rule(zmax < 4, len(zmax)), kind="demonstration",
    diagnosis=replicate.Diagnosis(f"largest |z| per replicate {np.round(zmax, 2).tolist()}", "the soft-label curves on Instance 3"),
    measured=f"largest |MC − exact| / SE per replicate: {np.round(zmax, 2).tolist()}")

# %% [markdown]
# ## Results

# %%
table = rates[rates.minimax][["setting", "instance", "student", "slope", "t-CI low", "t-CI high", "theory", "min R²", "upper-half slope"]].copy()
a_tab = a_rates[a_rates.theory.notna()].set_index("setting")
table["|A|-slope"] = table.setting.map(a_tab["|A|-slope"])
table["|A| theory"] = table.setting.map(a_tab["theory"])
print(table.round(3).to_string(index=False))
tracking.log_dict(table.to_dict(orient="records"), "tables/rates_table.json")
for k, v in verdicts.items():
    print(f"{k:32s} passed={v.get('passed')!s:5s} {v.get('measured')}  {v.get('why') or ''}")
wall, cpu = time.time() - t_start, time.process_time() - cpu_start
print(f"wall time: {wall:.0f} s, CPU time: {cpu:.0f} s")
tracking.log_metrics({"wall_seconds": wall, "cpu_seconds": cpu})

# %% [markdown]
# ## Discussion
# Built from this run's numbers:

# %%
g = {k: table.set_index("setting").loc[k] for k in SETUPS}
off = rates[(~rates.minimax) & rates.slope.notna()]
print(f"* Rates in n. Hard labels (MLE, Instance 1): slope {g['hard'].slope:.3f} [{g['hard']['t-CI low']:.3f}, {g['hard']['t-CI high']:.3f}] "
      f"against −½ (the paper: −0.532, −0.525); partial soft labels (SEL, Instance 2): {g['partial'].slope:.3f} "
      f"[{g['partial']['t-CI low']:.3f}, {g['partial']['t-CI high']:.3f}] against −1 (paper −1.004, −0.998); soft labels (KL, Instance 3): "
      f"{g['soft'].slope:.3f} [{g['soft']['t-CI low']:.3f}, {g['soft']['t-CI high']:.3f}] against −1 (paper −0.977). The upper-half fits "
      f"({g['hard']['upper-half slope']:.3f}, {g['partial']['upper-half slope']:.3f}, {g['soft']['upper-half slope']:.3f}) show whether the "
      f"exponent still drifts at the top of the grid. The CIs are narrow enough to exclude the exact exponents: what they resolve are "
      f"the constants' slow n-dependence (finite counts per label for the MLE, Instance 3's teacher below), not a different rate.")
exact_soft = [tl.expected_risk_ce_ful(tl.instance3(S, A_partial, int(n)), int(n)) for n in n_grid]
tv_light = [float(tl.tv(np.full(A_partial, 1 / A_partial), tl.instance3(S, A_partial, int(n)).pi_star[0])) for n in (n_grid[0], n_grid[-1])]
print(f"* Why the soft-label slope sits a little above −1 (as the paper's −0.977 does): its exact expectation on Instance 3 has the slope "
      f"{tl.fit_loglog(n_grid, exact_soft).slope:.3f} on this grid, because the light inputs' TV(Uniform, π*) grows from {tv_light[0]:.3f} "
      f"at n = {n_grid[0]} to {tv_light[1]:.3f} at n = {n_grid[-1]} (Instance 3's teacher tends to a Dirac); it is a constant of the rate, and "
      f"the upper-half fit is closer to −1.")
print(f"* The factor √n between the protocols is a factor in risk: at n = {n_grid[-1]} the hard-label MLE on its instance is at "
      f"{rates[(rates.setting == 'hard') & rates.minimax]['risk at n_max'].iloc[0]:.4f} TV, SEL on its "
      f"instance at {rates[(rates.setting == 'partial') & rates.minimax]['risk at n_max'].iloc[0]:.2e}. On each instance the students with more "
      f"information than it was built against decay faster or are exactly 0 (the rates table: e.g. SEL and KL on Instance 1); the non-minimax "
      f"students that are fitted have slopes {', '.join(f'{r.student} on {r.instance}: {r.slope:.2f}' for r in off.itertuples())}.")
print(f"* |A|. At n = {n_fixed}: hard-label slope in |A| {a_tab.loc['hard', '|A|-slope']:.3f} (theory ½), SEL {a_tab.loc['partial', '|A|-slope']:.3f} "
      f"(theory 1), soft labels {a_tab.loc['soft', '|A|-slope']:.3f} (theory 0). On the ablation grids from |A| = 4/5 the slopes are "
      f"{a_tab.loc['hard', '|A|-slope, grid from 4/5 (ablation)']:.3f}, {a_tab.loc['partial', '|A|-slope, grid from 4/5 (ablation)']:.3f} and "
      f"{a_tab.loc['soft', '|A|-slope, grid from 4/5 (ablation)']:.3f}: the finite-|A| factors of the constants (the MLE's √(1 − 1/|A|), the "
      f"(|A| − 1)/2 light labels of Instance 2, TV(Uniform, π*) = 1 − 1/|A| − … of Instance 3) steepen the small-|A| end, which is why the "
      f"pre-registered grids start at 8/9. The soft-label risk does not grow with |A| because it is the missing mass of ρ times a TV ≤ 1.")
print(f"* Bias of the naive CE. On Instance 0 (|S| = {S_classic}, |A| = {A_classic}) CE_ptl's risk at n = {n_grid_classic[-1]} is "
      f"{ratio_ptl.mean():.4f} × its closed-form limit {limit0.mean():.4f} (the paper's Figure 1a plateaus at ≈ 0.44), while SEL and KL reach "
      f"{means0['sel_ptl'][-1]:.1e} and {means0['ce_ful'][-1]:.1e}: on a fixed instance they converge exponentially (Remark 6.1), which is why "
      f"a rate needs the n-dependent instances. On Instances 1-3 CE_ptl is not visibly biased (teachers near uniform or near Dirac, "
      f"Thm 4.3's exceptions), as the paper also notes.")
print(f"* What the replicates measure. The teacher draws (hypercube vertex, label permutations, heavy input) are symmetries of each "
      f"instance, so the spread across replicates is Monte Carlo spread (per-replicate bootstrap CIs of the same width, in the per-replicate "
      f"table), and the CIs are narrow against the pre-registered ±{RATE_TOL:g} / ±{A_TOL:g}. A minimax rate is a sup over instances: the "
      f"simulation can show that the paper's worst-case instances attain the rates and that the students' risks scale as stated; it cannot "
      f"show that no instance is harder.")
print(f"* Scale: {len(seeds)} teachers × {n_repeats} data sets per point (the paper: one teacher, 64,000 repeats); the students are closed "
      f"forms, so no optimisation budget can confound the rates; wall {wall:.0f} s, CPU {cpu:.0f} s.")
