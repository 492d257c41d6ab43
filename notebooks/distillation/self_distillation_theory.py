# %% [markdown]
# # Self-distillation in closed form: ground truth dampens the regularisation, and ξ > 1 helps under label noise
# **Paper:** Borup & Andersen (2021), "Even your Teacher Needs Guidance: Ground-Truth Targets Dampen Regularization Imposed by Self-Distillation" (NeurIPS); Das & Sanghavi (2023), "Understanding Self-Distillation in the Presence of Label Noise" (ICML).
# **Claim:** repeated kernel-ridge self-distillation on α·y + (1 − α)·f_prev converges to KRR with λ/α (and collapses to 0 at α = 0): on the 11-point toy, test MSE 0.16477 → 0.14915 (step 3) → 0.49505 (limit) at α = 0 but → 0.14959 at α = 0.35; and with noisy labels the best student weight ξ on the teacher exceeds 1.
#
# **(a) Borup & Andersen.** Step τ fits kernel ridge regression (RBF kernel, γ = 80, λ = 0.2) to the target
# α·y + (1 − α)·f^(τ−1)(X), starting from f^(0)(X) = y. In the kernel's eigenbasis the fitted values are
# V B^(τ) Vᵀ y with B^(τ) = A((1 − α)B^(τ−1) + αI), A = D(D + λI)⁻¹, so every step shrinks the small-eigenvalue
# directions more (the "sparsification" of Mobahi et al. 2020); the limit is α·k(x)ᵀ(αK + λI)⁻¹y, i.e. KRR with
# regularisation λ/α, which is 0 when α = 0. The authors' toy (README table, α = 0 | α = 0.35, MSE against
# sin(2πx) on a 101-point grid): steps 1–6 0.16477, 0.15076, **0.14915**, 0.15561, 0.16735, 0.18251 | 0.16477,
# 0.15424, 0.15089, 0.14983, 0.14954, 0.14948; limit 0.49505 | 0.14959.
#
# **About the toy's data.** The 11 targets are a hard-coded list in the authors' notebook
# (`Kennethborup/self_distillation: toy_example.ipynb`, the values of Mobahi et al. 2020); the notebook's
# commented-out generator (`np.random.seed(7)`, sin(2πx) + N(0, 0.5²)) does **not** produce them, and the
# repository carries no licence, so the book does not ship them. Pass their path as `borup_data_path` (one number
# per line) to check the paper's digits; without it, this notebook runs every closed-form check on generated
# data of the same shape (11 equispaced points, sin(2πx) + N(0, 0.5²), seed `toy_seed`) and records the
# paper-number claim as inconclusive.
#
# **(b) Das & Sanghavi.** A ridge teacher θ_T = (XᵀX + λI)⁻¹Xᵀy is fitted on noisy responses; the student
# minimises ξ‖Xθ_T − Xθ‖² + (1 − ξ)‖y − Xθ‖² + λ‖θ‖², convex for every ξ. Their finding: under heavy noise the
# parameter-error-minimising ξ exceeds 1 (the student should *over*-trust the teacher), and with cross-entropy,
# ξ ∈ {1.5, 2} beats ξ ≤ 1 when 30% or 50% of the labels are corrupted. We check the ridge case in closed form and
# the cross-entropy case with a softmax-regression student on scikit-learn digits.

# %% tags=["parameters"]
mlflow_run_id = ""
profile = "interactive"
borup_data_path = ""
toy_seed = 0
borup_steps = 6
borup_alphas = [0.0, 0.35]
krr_gamma = 80.0
krr_lambda = 0.2
limit_steps = 400  # in [1, inf)
ridge_n = 50  # in [1, inf)
ridge_d = 20  # in [1, inf)
ridge_lambda = 1.0
ridge_sigmas = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0]
ridge_draws = 200  # in [1, inf)
noise_rates = [0.3, 0.5]  # in [0, 1)
xis = [0.0, 0.5, 1.0, 1.5, 2.0]
softmax_seeds = [0, 1, 2, 3, 4]
softmax_weight_decay = 1.0e-3
softmax_steps = 300  # in [1, inf)
softmax_lr = 5.0e-2  # > 0
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)

# %%
from lossbook import tracking

tracking.attach(mlflow_run_id, "self_distillation_theory", globals())

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.kernel_ridge import KernelRidge

from lossbook import claims, plotting, repro
from lossbook.data.classification import load_dataset
from lossbook.distillation import theory as dt
from lossbook.stats import verdict_greater

plotting.setup()
repro.set_threads(threads)
t_start = time.time()
PAPER = {0.0: ([0.16477, 0.15076, 0.14915, 0.15561, 0.16735, 0.18251], 0.49505),
         0.35: ([0.16477, 0.15424, 0.15089, 0.14983, 0.14954, 0.14948], 0.14959)}
if borup_data_path:
    X, y = dt.load_borup_toy(borup_data_path)  # raises a clear FileNotFoundError when the path is wrong
    data_source = f"authors' targets from {borup_data_path}"
else:
    X, y = dt.make_toy_like(11, noise=0.5, seed=toy_seed)
    data_source = f"generated stand-in (sin(2πx) + N(0, 0.5²), seed {toy_seed}); the paper's targets were not supplied"
print("Borup toy data:", data_source)
tracking.log_metrics({"borup/authors_data": float(bool(borup_data_path))})

# %% [markdown]
# ## (a) Kernel ridge self-distillation

# %%
runs = {a: dt.krr_self_distillation(X, y, alpha=a, steps=borup_steps, gamma=krr_gamma, lam=krr_lambda) for a in borup_alphas}
table = pd.DataFrame({f"MSE (α = {a:g})": r.mse + [r.mse_limit] for a, r in runs.items()},
                     index=[str(i) for i in range(1, borup_steps + 1)] + ["∞"])
for a in borup_alphas:
    if a in PAPER and borup_steps >= 6:
        table[f"paper (α = {a:g})"] = PAPER[a][0] + [np.nan] * (borup_steps - 6) + [PAPER[a][1]]
for a, r in runs.items():
    for i, m in enumerate(r.mse, 1):
        tracking.log_metrics({f"borup/mse_alpha{a:g}": m}, step=i)
    tracking.log_metrics({f"borup/mse_limit_alpha{a:g}": r.mse_limit})
table.round(5)

# %%
fig, axes = plt.subplots(1, len(borup_alphas), figsize=(5.5 * len(borup_alphas), 4), squeeze=False)
cmap = plt.get_cmap("viridis")
for ax, (a, r) in zip(axes[0], runs.items(), strict=True):
    ax.plot(r.x_eval, np.sin(2 * np.pi * r.x_eval), color="0.6", lw=1, label="sin(2πx)")
    for i, p in enumerate(r.preds):
        ax.plot(r.x_eval, p, color=cmap(i / max(1, len(r.preds) - 1)), label=f"f{i + 1}")
    ax.plot(r.x_eval, r.limit, "k--", label="f∞")
    ax.scatter(X, y, marker="x", color="k", zorder=3)
    ax.set(xlabel="x", ylabel="f(x)", title=f"α = {a:g}", ylim=(-1.6, 1.6))
    ax.legend(ncol=3, fontsize=8)
tracking.log_figure(fig, "krr_self_distillation_fits")

fig, axes = plt.subplots(1, len(borup_alphas), figsize=(5.5 * len(borup_alphas), 4), squeeze=False)
for ax, a in zip(axes[0], borup_alphas, strict=True):
    B, B_lim = dt.b_diagonals(X, alpha=a, steps=borup_steps, gamma=krr_gamma, lam=krr_lambda)
    for i, row in enumerate(B):
        ax.plot(np.arange(1, len(row) + 1), row, "o-", ms=3, color=cmap(i / max(1, len(B) - 1)), label=f"B({i + 1})")
    ax.plot(np.arange(1, len(B_lim) + 1), B_lim, "k--", label="B(∞)")
    ax.set(xlabel="eigen-direction (largest eigenvalue first)", ylabel="diagonal of B", yscale="log", title=f"α = {a:g}")
    ax.legend(fontsize=8)
tracking.log_figure(fig, "krr_B_diagonals")

# %% [markdown]
# ### Closed-form checks (they hold for any data, so they run on whichever data are loaded)
# Rules fixed before the run: the step-`limit_steps` fit equals the closed-form limit to 1e-6 and the limit
# equals scikit-learn's `KernelRidge(alpha = λ/α)` to 1e-8, for every α > 0 in `borup_alphas`; at α = 0 the limit
# is exactly 0 and after 2000 steps the fit is below 1% of the first step's size; the B diagonals never grow.

# %%
lim_err, skl_err = {}, {}
for a in [a for a in borup_alphas if a > 0]:
    long = dt.krr_self_distillation(X, y, alpha=a, steps=limit_steps, gamma=krr_gamma, lam=krr_lambda)
    lim_err[a] = float(np.abs(long.preds[-1] - long.limit).max())
    skl = KernelRidge(alpha=krr_lambda / a, kernel="rbf", gamma=krr_gamma).fit(X, y).predict(long.x_eval)
    skl_err[a] = float(np.abs(long.limit - skl).max())
zero = dt.krr_self_distillation(X, y, alpha=0.0, steps=2000, gamma=krr_gamma, lam=krr_lambda)
shrink = float(np.abs(zero.preds[-1]).max() / np.abs(zero.preds[0]).max())
B_monotone = all(np.all(np.diff(dt.b_diagonals(X, alpha=a, steps=50, gamma=krr_gamma, lam=krr_lambda)[0], axis=0) <= 1e-12) for a in borup_alphas)
print("limit error:", lim_err, "sklearn error:", skl_err, "α = 0 shrink after 2000 steps:", shrink)

claims.record(
    "krr_limit_is_lambda_over_alpha",
    statement="Self-distillation with ground-truth weight α converges to KRR with regularisation λ/α",
    paper="Borup & Andersen 2021, Thm. 4.3", paper_value="f∞(x) = α k(x)ᵀ(αK + λI)⁻¹y",
    measured=f"max|f(τ={limit_steps}) − f∞| = {max(lim_err.values(), default=float('nan')):.2e}; max|f∞ − KRR(λ/α)| = {max(skl_err.values(), default=float('nan')):.2e}",
    threshold="< 1e-6 and < 1e-8 for every α > 0",
    passed=bool(lim_err) and all(v < 1e-6 for v in lim_err.values()) and all(v < 1e-8 for v in skl_err.values()),
)
claims.record(
    "krr_alpha_zero_collapses",
    statement="Without ground truth (α = 0) repeated self-distillation collapses to the zero function; the B diagonals only shrink",
    paper="Mobahi et al. 2020; Borup & Andersen 2021", paper_value="limit 0 (MSE 0.49505 = mean sin² on the grid)",
    measured=f"|f2000| / |f1| = {shrink:.2e}; limit max |f∞| = {np.abs(zero.limit).max():.1e}; B monotone: {B_monotone}",
    threshold="ratio < 1e-2, limit exactly 0, B never grows", passed=bool(shrink < 1e-2 and np.abs(zero.limit).max() == 0 and B_monotone),
)

# %% [markdown]
# ### The paper's digits
# Rule: every printed MSE (steps 1–6 and ∞, α = 0 and 0.35) rounds to the paper's value at 5 decimals. Only
# meaningful with the authors' targets; with the generated stand-in the claim is recorded as inconclusive.

# %%
ours = {a: [round(m, 5) for m in runs[a].mse[:6]] + [round(runs[a].mse_limit, 5)] for a in PAPER if a in runs and borup_steps >= 6}
paper_all = {a: PAPER[a][0] + [PAPER[a][1]] for a in ours}
mismatch = sum(o != p for a in ours for o, p in zip(ours[a], paper_all[a], strict=True))
claims.record(
    "borup_toy_numbers",
    statement="KRR self-distillation on the 11-point toy reproduces the paper's MSE table (α = 0 and α = 0.35)",
    paper="Borup & Andersen 2021 (repository README table)",
    paper_value="α=0: 0.16477 0.15076 0.14915 0.15561 0.16735 0.18251 | ∞ 0.49505; α=0.35: 0.16477 0.15424 0.15089 0.14983 0.14954 0.14948 | ∞ 0.14959",
    measured=("; ".join(f"α={a:g}: " + " ".join(f"{v:.5f}" for v in ours[a]) for a in ours)) + f" ({data_source})",
    threshold="all 14 values equal at 5 decimals (needs the authors' data; otherwise inconclusive)",
    passed=(mismatch == 0 and len(ours) == 2) if borup_data_path else None,
)

# %% [markdown]
# ## (b) Ridge self-distillation under noise: the best ξ exceeds 1
# θ_S(ξ) = θ_T + ξ·v with v = (M − I)θ_T, M = (XᵀX + λI)⁻¹XᵀX, so the error is a quadratic in ξ with minimiser
# ξ* = −(θ_T − θ*)·v/‖v‖² (unit-tested against a grid search). Design: n = 50, d = 20 anisotropic Gaussian
# inputs, planted θ*, y = Xθ* + σε, λ = 1, `ridge_draws` draws per σ. **Rule:** at the largest σ the mean-error
# curve's argmin over ξ is > 1 and the median per-draw ξ* is > 1; at the smallest σ the median ξ* is < 1.

# %%
xi_grid = np.linspace(-1.0, 4.0, 101)
curves, xstar_med = {}, {}
for sg in ridge_sigmas:
    err, xs = dt.ridge_xi_curve(n=ridge_n, d=ridge_d, sigma=sg, lam=ridge_lambda, xis=xi_grid, n_draws=ridge_draws, seed=0)
    curves[sg] = err
    xstar_med[sg] = float(np.median(xs))
ridge_df = pd.DataFrame({"σ": ridge_sigmas, "argmin ξ of mean error": [xi_grid[np.argmin(curves[s])] for s in ridge_sigmas],
                         "median per-draw ξ*": [xstar_med[s] for s in ridge_sigmas],
                         "error at ξ=0 (teacher)": [curves[s][np.argmin(np.abs(xi_grid))] for s in ridge_sigmas],
                         "error at argmin": [curves[s].min() for s in ridge_sigmas]}).set_index("σ")
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for sg in ridge_sigmas:
    axes[0].plot(xi_grid, curves[sg] / curves[sg][np.argmin(np.abs(xi_grid))], label=f"σ = {sg:g}")
axes[0].axvline(1, color="k", lw=0.8, ls=":")
axes[0].set(xlabel="ξ (weight on the teacher)", ylabel="E‖θ_S − θ*‖² / teacher's", ylim=(0, 2), title="ridge student error vs ξ")
axes[0].legend(fontsize=8)
axes[1].plot(ridge_sigmas, ridge_df["median per-draw ξ*"], "o-", label="median ξ*")
axes[1].plot(ridge_sigmas, ridge_df["argmin ξ of mean error"], "s--", label="argmin of mean error")
axes[1].axhline(1, color="k", lw=0.8, ls=":")
axes[1].set(xscale="log", xlabel="noise σ", ylabel="optimal ξ", title="optimal ξ grows with the noise")
axes[1].legend()
tracking.log_figure(fig, "ridge_optimal_xi")
s_hi, s_lo = max(ridge_sigmas), min(ridge_sigmas)
claims.record(
    "ridge_optimal_xi_above_one",
    statement="Under heavy label noise the error-minimising student weight ξ on the teacher exceeds 1",
    paper="Das & Sanghavi 2023", paper_value="ξ* > 1 at high noise",
    measured=f"σ={s_hi:g}: argmin {ridge_df.loc[s_hi, 'argmin ξ of mean error']:.2f}, median ξ* {xstar_med[s_hi]:.2f}; σ={s_lo:g}: median ξ* {xstar_med[s_lo]:.2f}",
    threshold="largest σ: argmin > 1 and median ξ* > 1; smallest σ: median ξ* < 1",
    passed=bool(ridge_df.loc[s_hi, "argmin ξ of mean error"] > 1 and xstar_med[s_hi] > 1 and xstar_med[s_lo] < 1),
)
ridge_df.round(3)

# %% [markdown]
# ## (c) Softmax student on noisy digits
# Teacher: softmax (multinomial logistic) regression on scikit-learn digits with 30% or 50% of the training and
# validation labels replaced by a uniformly drawn other class. Student: the same model trained on
# q = ξ·p_T + (1 − ξ)·e_y (ξ = 0 is the teacher itself), i.e. ξ·CE(p_T) + (1 − ξ)·CE(y).
#
# **Negative targets.** For ξ > 1, q_y = ξ·p_T,y + 1 − ξ is negative wherever p_T,y < 1 − 1/ξ (the teacher
# doubts the given label): that example pushes its label's probability *down*. Cross-entropy with a negative
# target is unbounded below (p_y → 0 sends −q_y log p_y to −∞). We keep the loss as it is (no clipping: clipping
# would change the estimator) and bound it with weight decay: for a linear model log p grows at most linearly
# in ‖W‖, so the L2 penalty keeps the objective bounded below and the minimiser finite; training is full-batch
# Adam for a fixed `softmax_steps` steps (Das & Sanghavi likewise use weight decay and a fixed budget).
#
# **Rule (fixed before the run):** for each noise rate, the best ξ > 1 and the best ξ ≤ 1 are each chosen by mean
# (noisy-label) validation accuracy over seeds; the claim holds for that rate if the paired bootstrap 95% CI of
# their clean-test accuracy difference lies above 0 (below 0: not reproduced; else inconclusive). The claim holds
# overall if it holds at both rates; if any rate is not reproduced, not reproduced; otherwise inconclusive.

# %%
split = load_dataset("digits", seed=0)
C = split.n_classes
rows = []
neg_frac = {}
for rate in noise_rates:
    for seed in softmax_seeds:
        repro.seed_everything(seed)
        y_tr = dt.symmetric_label_noise(split.y_train, rate, C, seed=1000 + seed)
        y_va = dt.symmetric_label_noise(split.y_val, rate, C, seed=2000 + seed)
        teacher = dt.fit_softmax_regression(split.x_train, F.one_hot(y_tr, C).float(), weight_decay=softmax_weight_decay,
                                            steps=softmax_steps, lr=softmax_lr, seed=seed)
        with torch.no_grad():
            p_t = torch.softmax(teacher(split.x_train), 1)
        for xi in xis:
            q = dt.self_distill_targets(p_t, y_tr, float(xi))
            neg_frac[(rate, xi)] = neg_frac.get((rate, xi), 0.0) + (q < 0).any(1).float().mean().item() / len(softmax_seeds)
            student = dt.fit_softmax_regression(split.x_train, q, weight_decay=softmax_weight_decay, steps=softmax_steps, lr=softmax_lr, seed=seed)
            with torch.no_grad():
                acc_te = (student(split.x_test).argmax(1) == split.y_test).float().mean().item()
                acc_va = (student(split.x_val).argmax(1) == y_va).float().mean().item()
                acc_tr_clean = (student(split.x_train).argmax(1) == split.y_train).float().mean().item()
            rows.append({"noise": rate, "seed": seed, "xi": float(xi), "test_acc": acc_te, "val_acc_noisy": acc_va, "train_acc_clean": acc_tr_clean})
            tracking.log_metrics({f"digits_noise{rate:g}/xi{xi:g}/test_acc": acc_te}, step=seed)
sm = pd.DataFrame(rows)
tab = sm.groupby(["noise", "xi"]).agg(test_mean=("test_acc", "mean"), test_std=("test_acc", "std"), val_mean=("val_acc_noisy", "mean"))
tab["examples with a negative target"] = [neg_frac[k] for k in tab.index]
tab.round(4)

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for rate in noise_rates:
    t = tab.loc[rate]
    ax.errorbar(t.index, 100 * t["test_mean"], yerr=100 * t["test_std"], fmt="o-", capsize=4, label=f"{100 * rate:.0f}% noisy labels")
ax.axvline(1, color="k", lw=0.8, ls=":")
ax.set(xlabel="ξ (weight on the teacher; 0 = teacher)", ylabel="clean test accuracy (%)", title="softmax self-distillation on digits")
ax.legend()
tracking.log_figure(fig, "digits_xi_sweep")

# %%
verdicts, per_rate = [], {}
for rate in noise_rates:
    t = tab.loc[rate]
    big = t[t.index > 1]["val_mean"].idxmax()
    small = t[t.index <= 1]["val_mean"].idxmax()
    a = sm[(sm.noise == rate) & (sm.xi == big)].sort_values("seed")["test_acc"].to_numpy()
    b = sm[(sm.noise == rate) & (sm.xi == small)].sort_values("seed")["test_acc"].to_numpy()
    v, ci = verdict_greater(a, b)
    verdicts.append(v)
    per_rate[rate] = f"{100 * rate:.0f}%: ξ={big:g} vs ξ={small:g}: {100 * ci.diff:+.2f} pp [{100 * ci.low:+.2f}, {100 * ci.high:+.2f}]"
overall = False if any(v is False for v in verdicts) else (True if all(v is True for v in verdicts) else None)
claims.record(
    "softmax_xi_above_one_beats",
    statement="With 30% and 50% symmetric label noise, a softmax student with ξ > 1 beats ξ ≤ 1",
    paper="Das & Sanghavi 2023", paper_value="ξ ∈ {1.5, 2} beats ξ ≤ 1 on several datasets at 30% / 50% corruption",
    measured="; ".join(per_rate.values()), threshold="paired bootstrap 95% CI (seeds) of clean-test difference above 0 at every noise rate",
    passed=overall,
)
print(f"wall time: {time.time() - t_start:.0f} s")
tracking.log_metrics({"wall_seconds": time.time() - t_start})

# %% [markdown]
# ## Discussion
# * **(a)** The recursion, the limit KRR(λ/α) and the collapse at α = 0 are exact linear algebra, so they hold on
#   any data; what needs the authors' 11 targets is the printed table. With those targets (not shipped; see the
#   top) every value matches to the 5 printed decimals — we checked this during development with a private copy
#   of the list, and `tests/test_distill_theory.py::test_borup_paper_numbers` repeats the check when
#   `LOSSBOOK_BORUP_TOY` points at it. On the generated stand-in the qualitative picture (α = 0 first helps then
#   drifts to 0; α = 0.35 settles near its limit) may differ in detail, because it depends on the noise draw.
# * **(b)** In the ridge model the student's error is an exact quadratic in ξ, and the optimal ξ moves above 1 as
#   the noise grows, as Das & Sanghavi argue: the teacher's shrinkage is beneficial under noise and the student
#   amplifies it. At very low noise the optimum is *below 0* (the student should undo part of the teacher's
#   shrinkage), in line with the later closed-form analysis noted in the research notes (arXiv 2602.17565).
# * **(c)** The cross-entropy experiment is small (a linear softmax model on 1,437 digits, 5 seeds). In the
#   default run the accuracy differences between ξ values were fractions of a point: at 50% noise ξ = 1.5 had
#   the best test mean but its CI against the validation-chosen ξ ≤ 1 spans 0; at 30% noise the
#   validation-chosen ξ = 1.5 was slightly *worse* than ξ = 0.5 (CI below 0), so the rule records "not
#   reproduced". With ξ > 1 a large share of examples get a negative label entry (the table's last column), and
#   the weight-decayed linear model stays finite. The paper's experiments use deep networks on larger datasets,
#   where the teacher's errors are more structured and the gain from ξ > 1 is larger; a linear teacher on digits
#   already averages most of the symmetric noise away, leaving little for the student to add.
