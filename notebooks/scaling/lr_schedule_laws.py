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
# # One law predicts the loss curve of any learning-rate schedule; WSD sits above cosine, then drops below it
# **Paper:** Kairong Luo, Haodong Wen, Shengding Hu, Zhenbo Sun, Zhiyuan Liu, Maosong Sun, Kaifeng Lyu, Wenguang Chen (2025), "A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules", ICLR 2025 (arXiv 2503.12811; code github.com/thu-yao-01-luo/MultiPowerLaw); and Kaiyue Wen, Zhiyuan Li, Jason Wang, David Hall, Percy Liang, Tengyu Ma (2024), "Understanding Warmup-Stable-Decay Learning Rates: A River Valley Loss Landscape Perspective", arXiv 2410.05192.
# **Claim:** the multi-power law L(t) = L0 + A·(S1(t) + S_W)^−α − LD(t), fitted on a constant, a cosine and a two-stage run, predicts the loss curves of unseen schedules (WSD, longer runs) with a mean relative error of 0.04–0.28% (25M–400M models); and "the loss remains elevated during the stable phase but sharply declines during the decay phase" of WSD, ending below cosine.
#
# **The law** (Luo et al. eq. 5, symbols checked against the official `src/models.py`): S1(t) is the sum of the
# learning rates up to step t (warmup included, which is S_W), and the loss drop of an annealed schedule is
# LD(t) = B·Σ_k (η_{k−1} − η_k)·G(η_k^−γ·S_k(t)), G(x) = 1 − (C·x + 1)^−β, S_k(t) = Σ_{τ=k}^{t} η_τ: every
# step down of the LR buys a drop that saturates as a power of the LR area since. A constant schedule has
# LD = 0 and the law is a power law in S1. The paper fits its 7 parameters on three 25M–400M runs (cosine
# and constant 24k steps, a two-stage 3e-4 → 9e-5 run) by a summed Huber loss of the log residual and
# predicts held-out curves: 72k-step cosine and constant runs, WSD with exponential and linear decay, other
# two-stage runs. The official repository reports a mean relative error (PredE) averaged over its held-out
# curves of 0.110% / 0.142% / 0.168% (25M / 100M / 400M); per curve the mean runs from 0.04% to 0.28% and the
# worst point reaches 1.8%. (Checked: `schedule_laws.mpl_predict` with the published parameters on the
# released curves gives 0.110 / 0.143 / 0.168%, per curve 0.043-0.278%, worst point 1.79%.)
# Wen et al. explain WSD's curve by a river-valley landscape: a high LR makes fast progress along the river
# while oscillating between the hills; the decay removes the oscillation. Their bigram toy shows the
# landscape arising from tokens of different uncertainty.
#
# **Here** tiny GPTs (2 layers, d = 32) train on the scaling family's synthetic `TaskLanguage` (fresh tokens
# every step, an exact entropy rate, a power-law-like learning curve as the model learns Zipf-ranked tasks),
# under seven schedules: constant (2T steps; its first T fit), cosine, two-stage (T/2 at η_max, then 0.3 η_max)
# for the fit; WSD with linear and exponential decay over the last 20% (T), a 2× longer cosine, the constant's
# second half and a 2× WSD held out. The validation loss on a fixed set every `eval_every` updates is the curve.
#
# **Protocol, fixed before the run** (`lossbook.replicate`):
# * **Replicates.** Each seed is one replicate: its own world (task codes and maps), training stream,
#   validation set and initialisation, shared by all its schedules (as in the paper, schedules differ only in
#   the LR). Each law is fitted per replicate, on that replicate's three fitting curves.
# * **Rules.** (1) *held-out prediction*: the held-out mean relative error (mean over the five held-out
#   curves of each curve's mean |L_pred − L|/L after warmup) has a 95% t-CI below `mre_max` = 0.5% (the paper's
#   level is 0.04–0.28% on 24k–72k-step curves of far larger models; our curves are short and noisier, so
#   the bar is set at twice its worst curve). (2) *beats a power law*: the S1-only power law's held-out error
#   over the MPL's, t-CI above `beat_ratio` = 2. (3) *stable phase above cosine*: L_WSD − L_cos at the last
#   stable step (t = 0.8 T), t-CI above 0. (4) *WSD ends below cosine*: L_cos − L_WSD at T, t-CI above 0.
#   The momentum law of Tissue et al. (2024) is an exploratory baseline.
# * **Guards.** *schedule effect*: the annealing gain (constant − cosine at T, relative) must exceed
#   2·`mre_max`, or there is nothing for a law to predict; *fit not at a boundary* for every replicate's MPL
#   (exponents inside (0.01, 3), L0 inside (0, min L), coefficients off their box); for (4), *decay drop vs
#   seed noise*: WSD's drop during its decay ≥ 3× the standard deviation of the paired final differences.
# * **Ablations** for a negative: the MPL refitted on all eight curves (can the form describe our curves at
#   all?), the 2× budget and the exponential decay shape for (4); for a failed boundary guard, the profile of
#   the fit objective over β and over γ (each held on a grid, the other six parameters refitted): a profile
#   that is flat, or falls monotonically to the bound, says the fitting curves do not pin that exponent down.
#
# **What pins β and γ in the paper, and what we changed (issue 16, disclosed).** The previous stop ran this
# protocol and got *inconclusive* for rules (1) and (2): held-out MRE 0.223 / 0.493 / 0.513% (mean 0.410%) and
# power / MPL 6.41 / 3.87 / 1.67, with the boundary guard failed 3/3 (β, γ → 0.001 with a large B·C in two
# replicates, β at its bound 10 in one). The official code (`src/config.py`, `src/fitting.py`, the released
# `loss_curve_repo/csv_*`) differs from ours in: curve length (fits on 24k-step cosine and constant runs and
# an 8k + 8k two-stage run, warmup 2160, one point per 128 steps, i.e. 109-171 points per curve, against our
# 48-50); the same three fitting schedules (as ours); no smoothing step in the code (the released losses are
# given to 4 decimals); one start C = 1, β = γ = 0.5 after the same grid, unbounded AdamW (200 steps, lr 5e-3 on
# the exponents), where we bound and refine to convergence. What differs most is the signal to noise: the
# released 100M curves move by 0.03% per point (the sd of the second difference of log L / √6) against an
# annealing drop of ~2-3% of the loss; ours move 0.05-0.18% per point against a 1.7% drop. A pilot on worlds
# 100-102 (never used for a verdict) tried the guard's remedy within the budget, fitting curves twice as long
# (T = 3000) and a validation set 4× larger (32768 targets): β and γ still went to their lower bound 0.001 in
# 3/3 fits (per-point noise 0.15-0.18% on the constant run, 0.05-0.10% on cosine and two-stage). Since that
# remedy did not help and doubles the cost, the protocol is unchanged (T = 1500, 8192 targets); the profiles
# below are the added ablation, and they are what the boundary guard now reports with its flags.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
seeds = [0, 1, 2]  # replicates: each seed draws a world (codes, maps), training stream, validation set and init; in [0, inf)
device = "cpu"  # "cpu" | "cuda" | "auto"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
n_tasks = 1024  # tasks of the language (Zipf-ranked); in [1, inf)
code_alphabet = 32  # code tokens; a task is spelled by code_len of them; in [1, inf)
code_len = 2  # code tokens per task; in [1, inf)
n_symbols = 16  # input/output symbols of every task's map; in [2, inf)
zipf = 1.5  # task prior p_t ∝ (t+1)^-zipf; in [0, inf)
eps = 0.1  # probability that y is uniform instead of f_t(x); in [0, 1]
d_model = 32  # GPT width; in [1, inf)
n_layer = 2  # GPT layers; in [1, inf)
block_size = 16  # context length (a multiple of the episode length code_len + 2); in [1, inf)
batch_size = 64  # sequences per step per model; in [1, inf)
steps = 1500  # T: updates of the fitting runs (the long runs get long_factor·T); in [1, inf)
long_factor = 2  # length of the held-out long runs in units of T; in [1, inf)
lr = 1.0e-2  # peak AdamW learning rate of every schedule; > 0
warmup = 75  # linear warmup updates of every schedule (5% of T); in [0, steps)
cosine_final = 0.1  # cosine ends at this fraction of the peak (the paper's 3e-5 of 3e-4); in [0, 1]
two_stage_lr = 0.3  # second stage of the two-stage fitting run as a fraction of the peak (the paper's 9e-5 of 3e-4); in (0, 1]
two_stage_frac = 0.5  # share of the two-stage run at the lower LR (the paper's 8000 of 16000 steps); in (0, 1)
wsd_decay = 0.2  # share of a WSD run spent decaying (Hägele et al., Wen et al.: 10-20%); in (0, 1)
wsd_final = 0.1  # WSD decays to this fraction of the peak (the paper's 3e-5 of 3e-4); in (0, 1]
eval_every = 30  # updates between validation evaluations (the curve's resolution); in [1, inf)
eval_tokens = 8192  # validation targets per replicate; in [1, inf)
momentum_decay = 0.999  # λ of Tissue et al.'s momentum law (their value, not fitted); in (0, 1)
profile_beta = [0.01, 0.1, 0.5, 2.0]  # β values at which the MPL objective is profiled (β held, the rest refitted); in (0.001, 10)
profile_gamma = [0.01, 0.1, 0.5, 2.0]  # γ values of the same profile (γ held, the rest refitted); in (0.001, 3)
mre_max = 0.005  # rule 1: held-out mean relative error below this; in (0, inf)
beat_ratio = 2.0  # rule 2: power-law error / MPL error above this; in [1, inf)
noise_factor = 3.0  # guard of rule 4: WSD decay drop >= this × sd of the paired final differences; in [0, inf)
toy_vocab = 64  # river-valley toy: vocabulary of the bigram language; in [2, inf)
toy_det_frac = 0.9  # river-valley toy: share of tokens with a deterministic successor; in [0, 1]
toy_lr = 8.0  # river-valley toy: peak SGD learning rate; > 0
toy_steps = 10000  # river-valley toy: SGD steps per schedule; in [1, inf)
toy_batch = 32  # river-valley toy: pairs per SGD step; in [1, inf)
toy_init_std = 2.0  # river-valley toy: std of the initial logits; in [0, inf)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from lossbook import cache, plotting, replicate, repro, tracking
from lossbook.models.gpt import GPTConfig
from lossbook.scaling import schedule_laws as sl
from lossbook.scaling.task_language import TaskLanguage

tracking.attach(mlflow_run_id, "lr_schedule_laws", globals())
plotting.setup()
repro.set_threads(threads)
t_start, c_start = time.time(), time.process_time()
dev = str(repro.get_device(device))
lang = {"n_tasks": n_tasks, "code_alphabet": code_alphabet, "code_len": code_len, "n_symbols": n_symbols, "zipf": zipf, "eps": eps}
worlds = [TaskLanguage(**lang, seed=s) for s in seeds]
cfg = GPTConfig(vocab_size=worlds[0].vocab_size, block_size=block_size, n_layer=n_layer, n_head=max(1, d_model // 16), d_model=d_model)
H = worlds[0].bayes_loss(block_size)
T, T2 = steps, long_factor * steps
wsd_kw = {"decay_frac": wsd_decay, "final_frac": wsd_final}
RUNS = {  # name: (schedule, updates, schedule kwargs, role)
    "constant": ("constant", T2, {}, "fit (first T) + held out (rest)"),
    "cosine": ("cosine", T, {"final_frac": cosine_final}, "fit"),
    "two_stage": ("two_stage", T, {"final_frac": two_stage_lr, "decay_frac": two_stage_frac}, "fit"),
    "wsd_linear": ("wsd", T, {**wsd_kw, "decay_shape": "linear"}, "held out"),
    "wsd_exp": ("wsd", T, {**wsd_kw, "decay_shape": "exp"}, "held out"),
    "cosine_long": ("cosine", T2, {"final_frac": cosine_final}, "held out"),
    "wsd_linear_long": ("wsd", T2, {**wsd_kw, "decay_shape": "linear"}, "held out"),
}
print(f"vocab {cfg.vocab_size}, Bayes loss H = {H:.4f} nats/token; {len(seeds)} replicates × {len(RUNS)} schedules, "
      f"{sum(r[1] for r in RUNS.values())} stacked updates of {len(seeds)} models, {batch_size * block_size} tokens per model per update")

# %% [markdown]
# ## Runs: one stacked training per schedule, the replicates as the stack
# Each (schedule, replicates) training is cached by its config hash (`lossbook.cache`).

# %%
base_key = {"lang": lang, "seeds": list(seeds), "model": repr(cfg), "lr": lr, "warmup": warmup, "batch": batch_size, "eval_every": eval_every, "eval_tokens": eval_tokens,
            "device": dev}


def run(name: str) -> list[dict]:
    sch, n, kw, _ = RUNS[name]
    key = {**base_key, "schedule": sch, "steps": n, "kw": kw}
    return cache.cached("lr_schedule_curve", key, lambda: sl.train_curves(worlds, seeds, cfg, schedule=sch, steps=n, lr=lr, warmup=warmup, batch_size=batch_size,
                                                                            eval_every=eval_every, eval_tokens=eval_tokens, schedule_kwargs=kw, device=dev))


raw = {}
for name in RUNS:
    t0, c0 = time.time(), time.process_time()
    raw[name] = run(name)
    print(f"{name:16s} {RUNS[name][1]:5d} updates: final loss {[round(r['loss'][-1], 4) for r in raw[name]]}  ({time.time() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU)")
curves = [{name: sl.Curve(name, np.asarray(raw[name][j]["lrs"]), np.asarray(raw[name][j]["t"]), np.asarray(raw[name][j]["loss"])) for name in RUNS}
          for j in range(len(seeds))]
after = [{n: sl.window(c, lo=warmup) for n, c in cj.items()} for cj in curves]  # points after warmup, as the paper
fit_sets = [[sl.window(cj["constant"], hi=T), cj["cosine"], cj["two_stage"]] for cj in after]
held = [{"constant (T, 2T]": sl.window(cj["constant"], lo=T), **{n: cj[n] for n in ("wsd_linear", "wsd_exp", "cosine_long", "wsd_linear_long")}} for cj in after]
tracking.log_dict({n: [{"t": r["t"], "loss": r["loss"]} for r in raw[n]] for n in RUNS}, "curves.json")

# %% [markdown]
# ## Fits per replicate: the multi-power law, the S1-only power law, the momentum law

# %%
fits, rows = [], []
for j, s in enumerate(seeds):
    start = sl.initial_guess(fit_sets[j])
    f = {"mpl": sl.fit_law("mpl", fit_sets[j], start=start), "power": sl.fit_law("power", fit_sets[j], start=start),
         "momentum": sl.fit_law("momentum", fit_sets[j], start=start, fixed={"lam": momentum_decay})}
    fits.append(f)
    for law, fl in f.items():
        err = {n: sl.relative_error(fl, c) for n, c in held[j].items()}
        fit_err = np.mean([sl.relative_error(fl, c)["mean"] for c in fit_sets[j]])
        rows.append({"seed": s, "law": law, "fit_mre_%": 100 * fit_err, "heldout_mre_%": 100 * np.mean([e["mean"] for e in err.values()]),
                     **{f"{n} %": 100 * e["mean"] for n, e in err.items()}, "worst_%": 100 * max(e["max"] for e in err.values()),
                     "flags": "; ".join(fl.flags) or "none", **{k: v for k, v in fl.params.items() if k != "lam"}})
tab = pd.DataFrame(rows)
tracking.log_dict(tab.to_dict(orient="list"), "fits.json")
display(tab.round(4))

# %% [markdown]
# ## Identifiability: the objective's profile over β and over γ
# Per replicate, β (then γ) is held at each grid value and the other six parameters are refitted on the same
# three fitting curves (`schedule_laws.profile_objective`); shown is the objective over the free fit's, and the
# held-out error each profile fit would give.

# %%
prof_rows = []
for j, s in enumerate(seeds):
    free = fits[j]["mpl"]
    for name, grid in (("beta", profile_beta), ("gamma", profile_gamma)):
        for v, fp in zip(grid, sl.profile_objective("mpl", fit_sets[j], name, grid, start=free.params)):
            prof_rows.append({"seed": s, "param": name, "value": v, "objective_ratio": fp.objective / free.objective,
                              "heldout_mre_%": 100 * np.mean([sl.relative_error(fp, c)["mean"] for c in held[j].values()]), "flags": "; ".join(fp.flags) or "none"})
prof = pd.DataFrame(prof_rows)
tracking.log_dict(prof.to_dict(orient="list"), "profiles.json")
display(prof.round(4))
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, name in zip(axes, ("beta", "gamma")):
    for j, s in enumerate(seeds):
        q = prof[(prof.param == name) & (prof.seed == s)]
        ax.plot(q.value, q.objective_ratio, "o-", color=f"C{j}", label=f"replicate {s} (free fit: {name} = {fits[j]['mpl'].params[name]:.3g})")
    ax.axhline(1, color="k", lw=0.8)
    ax.set(xscale="log", xlabel=f"{name} (held)", ylabel="objective / free fit's objective", title=f"profile of the MPL fit objective over {name}")
    ax.legend(fontsize=8)
tracking.log_figure(fig, "mpl_profiles")
plt.show()
prof_rise = prof.groupby(["param", "seed"]).objective_ratio.max() - 1  # how much worse the worst grid value fits
prof_mre = prof.groupby(["param", "seed"])["heldout_mre_%"].agg(["min", "max"])

# %% [markdown]
# Ablation: the MPL refitted on all eight curves of each replicate (in-sample). If even this fit misses by
# more than `mre_max`, the form (not the extrapolation) is what fails on our curves.

# %%
all_fit = []
for j, s in enumerate(seeds):
    every = [*fit_sets[j], *held[j].values()]
    fa = sl.fit_law("mpl", every, start=fits[j]["mpl"].params)
    all_fit.append({"seed": s, "in_sample_mre_%": 100 * np.mean([sl.relative_error(fa, c)["mean"] for c in every]), "flags": "; ".join(fa.flags) or "none",
                    **{k: v for k, v in fa.params.items()}})
all_fit = pd.DataFrame(all_fit)
display(all_fit.round(4))

# %% [markdown]
# ## Figures: schedules, curves and predictions (first replicate), WSD against cosine

# %%
names_plot = list(RUNS)
fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
for i, n in enumerate(names_plot):
    c = curves[0][n]
    axes[0].plot(np.arange(c.lrs.size), c.lrs, color=f"C{i}", label=f"{n} ({RUNS[n][3]})")
    pred = fits[0]["mpl"].predict(c.lrs, after[0][n].t)
    axes[1].plot(c.t + 1, c.loss, color=f"C{i}", lw=1.2, label=n)
    axes[1].plot(after[0][n].t + 1, pred, color=f"C{i}", ls="--", lw=1)
    axes[2].plot(after[0][n].t + 1, 100 * (pred - after[0][n].loss) / after[0][n].loss, color=f"C{i}", lw=1, label=n)
axes[0].set(xlabel="update", ylabel="learning rate", title="schedules")
axes[0].legend(fontsize=7)
lo = min(float(c.loss.min()) for c in after[0].values())
axes[1].set(xlabel="update", ylabel="validation loss (nats/token)", title="loss (solid) and MPL fitted on constant[:T] + cosine + two-stage (dashed)",
            ylim=(lo - 0.02, lo + 0.25))
axes[1].axvline(T, color="gray", lw=0.8, ls=":")
axes[1].legend(fontsize=7)
axes[2].axhline(0, color="k", lw=0.8)
axes[2].axhspan(-100 * mre_max, 100 * mre_max, color="gray", alpha=0.15, label=f"±{100 * mre_max:g}% (rule 1 on the mean)")
axes[2].set(xlabel="update", ylabel="(MPL − observed)/observed (%)", title="prediction error, first replicate")
axes[2].legend(fontsize=7)
tracking.log_figure(fig, "curves_and_mpl")
plt.show()

t_stable = int(round((1 - wsd_decay) * T)) - 1  # last update of WSD's stable phase
diff = np.array([np.asarray(raw["wsd_linear"][j]["loss"]) - np.asarray(raw["cosine"][j]["loss"]) for j in range(len(seeds))])
fig, ax = plt.subplots(figsize=(7, 4))
for j, s in enumerate(seeds):
    ax.plot(np.asarray(raw["cosine"][j]["t"]) + 1, diff[j], lw=1, label=f"replicate {s}")
ax.axhline(0, color="k", lw=0.8)
ax.axvline(t_stable + 1, color="gray", ls=":", label="WSD decay starts")
ax.set(xlabel="update", ylabel="L_WSD − L_cosine (nats/token)", title="WSD (linear decay) against cosine, same world, stream and init")
ax.legend(fontsize=8)
tracking.log_figure(fig, "wsd_minus_cosine")
plt.show()

# %% [markdown]
# ## The river-valley bigram toy (Wen et al. 2024), a demonstration
# A bigram language where most tokens have one deterministic successor (their loss only falls as the logit
# margin grows: the *river*, a flat direction) and the rest a uniform one (a finite optimum that SGD noise keeps
# the iterate oscillating around: the *hill*). Minibatch SGD on the logit table under the three schedules;
# the exact population loss splits into the two parts (`schedule_laws.river_valley_bigram`).

# %%
toy = {}
toy_kw = {"constant": ("constant", {}), "cosine": ("cosine", {"final_frac": 0.0}), "wsd": ("wsd", {"decay_frac": wsd_decay, "decay_shape": "linear", "final_frac": 0.0})}
for s in seeds:
    for n, (sch, kw) in toy_kw.items():
        toy[(s, n)] = sl.river_valley_bigram(sch, steps=toy_steps, lr=toy_lr, vocab=toy_vocab, det_frac=toy_det_frac, batch_size=toy_batch, seed=s,
                                             init_std=toy_init_std, log_every=max(toy_steps // 200, 1), schedule_kwargs=kw)
fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
for i, n in enumerate(toy_kw):
    r = toy[(seeds[0], n)]
    for ax, y in zip(axes, (r["river"] + r["hill"], r["river"], r["hill"])):
        ax.plot(r["step"], y, color=f"C{i}", label=n)
for ax, lab in zip(axes, ("excess loss over the Bayes loss = river + hill", "river: deterministic rows' loss", "hill: stochastic rows' excess over log V")):
    ax.set(xlabel="SGD step", ylabel=f"{lab.split(':')[0]} (nats)", title=lab, yscale="log")
    ax.legend(fontsize=8)
tracking.log_figure(fig, "river_valley_toy")
plt.show()
i_st = int(np.searchsorted(toy[(seeds[0], "wsd")]["step"], int(round((1 - wsd_decay) * toy_steps))))
toy_hill_gap = np.array([toy[(s, "wsd")]["hill"][i_st] - toy[(s, "cosine")]["hill"][i_st] for s in seeds])
toy_hill_removed = np.array([1 - toy[(s, "wsd")]["hill"][-1] / toy[(s, "wsd")]["hill"][i_st] for s in seeds])
toy_river_gain = np.array([toy[(s, "cosine")]["river"][-1] - toy[(s, "wsd")]["river"][-1] for s in seeds])
toy_final_gap = np.array([toy[(s, "cosine")]["loss"][-1] - toy[(s, "wsd")]["loss"][-1] for s in seeds])
print(f"toy, at the end of WSD's stable phase: hill WSD − cosine {np.round(toy_hill_gap, 4).tolist()}; WSD's decay removes {np.round(100 * toy_hill_removed, 0).tolist()}% "
      f"of its hill; at the end river cosine − WSD {np.round(toy_river_gain, 4).tolist()}, total loss cosine − WSD {np.round(toy_final_gap, 4).tolist()}")

# %% [markdown]
# ## Claims (rules and guards from the introduction, fixed before the run)

# %%
mpl_rows = tab[tab.law == "mpl"].set_index("seed")
pow_rows = tab[tab.law == "power"].set_index("seed")
mom_rows = tab[tab.law == "momentum"].set_index("seed")
mre = mpl_rows["heldout_mre_%"].to_numpy() / 100
ratio = pow_rows["heldout_mre_%"].to_numpy() / mpl_rows["heldout_mre_%"].to_numpy()
def at(name: str, t: int) -> np.ndarray:  # the loss of run `name` after update t, per replicate
    return np.array([np.interp(t, raw[name][j]["t"], raw[name][j]["loss"]) for j in range(len(seeds))])


gain = (at("constant", T - 1) - at("cosine", T - 1)) / at("cosine", T - 1)
stable_gap = at("wsd_linear", t_stable) - at("cosine", t_stable)
final_gap = at("cosine", T - 1) - at("wsd_linear", T - 1)
final_gap_exp = at("cosine", T - 1) - at("wsd_exp", T - 1)
final_gap_long = at("cosine_long", T2 - 1) - at("wsd_linear_long", T2 - 1)
decay_drop = at("wsd_linear", t_stable) - at("wsd_linear", T - 1)
mpl_gap = np.array([fits[j]["mpl"].predict(curves[j]["cosine"].lrs, np.array([T - 1]))[0] - fits[j]["mpl"].predict(curves[j]["wsd_linear"].lrs, np.array([T - 1]))[0]
                    for j in range(len(seeds))])
sd_gap = float(np.std(final_gap, ddof=1)) if len(seeds) > 1 else float("nan")
g_effect = replicate.progress_reached(float(gain.mean()), 2 * mre_max, lower_is_better=False, what="annealing gain (constant − cosine)/cosine at T", name="schedule_effect",
                                      fix="a longer run or a higher peak LR, so that annealing moves the loss by more than the error allowed")
def prof_note(s: int) -> str:  # the profile's verdict on the exponents, for the boundary guard's detail
    return "; ".join(f"{n} profile: worst grid value fits {100 * prof_rise[(n, s)]:.1f}% worse" for n in ("beta", "gamma"))


g_fits = [replicate.Guard(f"mpl_fit_not_at_boundary_seed{s}", not fits[j]["mpl"].flags, f"{'; '.join(fits[j]['mpl'].flags) or 'inside the box'} ({prof_note(s)})",
                          "fitting curves that pin G's shape (a pilot with 2x longer curves and a 4x validation set did not)")
          for j, s in enumerate(seeds)]
g_noise = replicate.progress_reached(float(decay_drop.mean()), noise_factor * sd_gap if np.isfinite(sd_gap) else 0.0, lower_is_better=False,
                                     what=f"WSD decay drop vs {noise_factor:g} × sd of paired final gaps", name="decay_drop_vs_noise", fix="more replicates or a longer run")
per_curve = mpl_rows[[c for c in mpl_rows.columns if c.endswith(" %") and c not in ("fit_mre_%", "heldout_mre_%")]].mean()
print(f"held-out MRE (MPL) per replicate {np.round(100 * mre, 3).tolist()}%; per curve (mean over replicates) {per_curve.round(3).to_dict()}; "
      f"power / MPL {np.round(ratio, 2).tolist()}; annealing gain {np.round(100 * gain, 2).tolist()}%; WSD − cosine at t = {t_stable + 1}: "
      f"{np.round(stable_gap, 4).tolist()}; cosine − WSD at T: linear {np.round(final_gap, 4).tolist()}, exp {np.round(final_gap_exp, 4).tolist()}, "
      f"2× budget {np.round(final_gap_long, 4).tolist()}; the MPL fit predicts cosine − WSD {np.round(mpl_gap, 4).tolist()}")

replicate.record(
    "mpl_predicts_heldout",
    statement=f"The multi-power law fitted on constant + cosine + two-stage runs predicts held-out schedules (WSD linear/exp, 2× cosine, 2× WSD, the constant's 2nd half) "
              f"with a mean relative error below {100 * mre_max:g}%",
    paper="Luo et al. 2025 (official repository's tables)", paper_value="held-out PredE 0.110 / 0.142 / 0.168% (25M / 100M / 400M); per curve 0.04-0.28%",
    values=mre, outcome=replicate.mean_ci_rule(mre, mre_max, "below"), guards=[g_effect, *g_fits],
    measured=f"{100 * mre.mean():.3f}% (per replicate {np.round(100 * mre, 3).tolist()}%; worst point {mpl_rows['worst_%'].max():.2f}%)",
    diagnosis=replicate.Diagnosis(
        f"per held-out curve the error is {per_curve.round(3).to_dict()}%; the MPL's own fit curves miss by {mpl_rows['fit_mre_%'].round(3).tolist()}% and "
        f"refitted on all eight curves by {all_fit['in_sample_mre_%'].round(3).tolist()}%, so {'the form itself' if all_fit['in_sample_mre_%'].min() > 100 * mre_max else 'the extrapolation'} "
        f"is what misses at this scale", "the MPL refitted on all eight curves (in-sample)"),
)
replicate.record(
    "mpl_beats_power_law",
    statement=f"The multi-power law's held-out error is at least {beat_ratio:g}× smaller than an S1-only power law's",
    paper="Luo et al. 2025 (vs the constant-LR power law; notes' plan N5)", paper_value="the S1-only law cannot express an annealing drop",
    values=ratio, outcome=replicate.mean_ci_rule(ratio, beat_ratio, "above"), guards=[g_effect, *g_fits],
    measured=f"power / MPL {ratio.mean():.2f} (per replicate {np.round(ratio, 2).tolist()})",
    diagnosis=replicate.Diagnosis(
        f"the power law's held-out error is {pow_rows['heldout_mre_%'].round(3).tolist()}% against the MPL's {mpl_rows['heldout_mre_%'].round(3).tolist()}%; "
        f"the annealing gain it cannot express is only {100 * gain.mean():.2f}% of the loss", "the MPL refitted on all eight curves (in-sample)"),
)
mom_ratio = mom_rows["heldout_mre_%"].to_numpy() / mpl_rows["heldout_mre_%"].to_numpy()
replicate.record(
    "momentum_law_vs_mpl",
    statement="Tissue et al.'s momentum law (λ fixed) against the MPL on the same held-out curves (ratio of errors; no verdict)",
    paper="Luo et al. 2025 compare against Tissue et al. 2024", paper_value="MPL more accurate than the momentum law",
    values=mom_ratio, outcome=replicate.mean_ci_rule(mom_ratio, 1.0, "above"), kind="exploratory",
    measured=f"momentum / MPL {mom_ratio.mean():.2f} (per replicate {np.round(mom_ratio, 2).tolist()})",
)
replicate.record(
    "mpl_heldout_over_profiles",
    statement="How much the held-out error depends on the unpinned exponents: the largest held-out MRE over the β and γ profile fits (no verdict)",
    paper="Luo et al. 2025 (one fitted β, γ per model size)", paper_value="β ≈ 0.58-0.60, γ ≈ 0.63-0.66 at 25M-400M",
    values=prof.groupby("seed")["heldout_mre_%"].max().to_numpy() / 100, outcome=replicate.mean_ci_rule(prof.groupby("seed")["heldout_mre_%"].max().to_numpy() / 100, mre_max, "below"),
    kind="exploratory", measured=f"held-out MRE over the profile fits {prof['heldout_mre_%'].min():.3f}-{prof['heldout_mre_%'].max():.3f}% "
                                 f"(free fits {np.round(100 * mre, 3).tolist()}%)",
)
replicate.record(
    "wsd_stable_above_cosine",
    statement="During WSD's stable phase its loss is above cosine's (same world, stream and init), at the last stable step",
    paper="Wen et al. 2024 (Fig. 1), Hägele et al. 2024", paper_value="the loss remains elevated during the stable phase",
    values=stable_gap, outcome=replicate.mean_ci_rule(stable_gap, 0.0, "above"), guards=[g_effect],
    measured=f"L_WSD − L_cos = {stable_gap.mean():+.4f} (per replicate {np.round(stable_gap, 4).tolist()})",
    diagnosis=replicate.Diagnosis(f"at that step constant − cosine is {np.round(at('constant', t_stable) - at('cosine', t_stable), 4).tolist()}", "the constant run"),
)
replicate.record(
    "wsd_ends_below_cosine",
    statement="WSD's decay phase drops its loss below cosine's at the end of the run",
    paper="Wen et al. 2024; Luo et al. 2025 (Fig. 1: WSD ends below cosine)", paper_value="the loss sharply declines during the decay phase, below cosine",
    values=final_gap, outcome=replicate.mean_ci_rule(final_gap, 0.0, "above"), guards=[g_effect, g_noise],
    measured=f"L_cos − L_WSD at T = {final_gap.mean():+.4f} (per replicate {np.round(final_gap, 4).tolist()}); WSD's decay drop {decay_drop.mean():.4f}",
    diagnosis=replicate.Diagnosis(
        f"WSD's decay drops {np.round(decay_drop, 4).tolist()} nats, but cosine − WSD at T is {np.round(final_gap, 4).tolist()} (linear) and "
        f"{np.round(final_gap_exp, 4).tolist()} (exponential decay); with a 2× budget it is {np.round(final_gap_long, 4).tolist()}. The fitted MPL itself predicts "
        f"{np.round(mpl_gap, 4).tolist()}: at this scale the LR area cosine gives up is worth about as much as the longer anneal it gets",
        "the exponential-decay WSD run, the 2× budget pair (cosine_long vs wsd_linear_long) and the MPL's prediction"),
)
replicate.record(
    "wsd_vs_cosine_at_2x_budget",
    statement="The same comparison at a 2× budget (cosine_long vs wsd_linear_long; no verdict): does WSD still end below cosine?",
    paper="Hägele et al. 2024: WSD with a 20% cooldown matches cosine across budgets", paper_value="WSD ≈ or below cosine at every budget",
    values=final_gap_long, outcome=replicate.mean_ci_rule(final_gap_long, 0.0, "above"), kind="exploratory",
    measured=f"L_cos − L_WSD at 2T = {final_gap_long.mean():+.4f} (per replicate {np.round(final_gap_long, 4).tolist()})",
)
replicate.record(
    "river_valley_toy",
    statement="Bigram toy: at the end of WSD's stable phase the hill (oscillation) part of the loss is above cosine's, and WSD's decay removes most of it",
    paper="Wen et al. 2024 (bigram toy, data heterogeneity)", paper_value="stable phase: progress along the river, oscillation across the hills; decay removes the oscillation",
    values=toy_hill_gap, outcome=replicate.all_of(replicate.mean_ci_rule(toy_hill_gap, 0.0, "above"), replicate.mean_ci_rule(toy_hill_removed, 0.5, "above")),
    kind="demonstration",
    measured=f"hill gap {toy_hill_gap.mean():+.4f}; removed by the decay {100 * toy_hill_removed.mean():.0f}%; final total loss cosine − WSD {toy_final_gap.mean():+.4f}",
)

# %% [markdown]
# ## Discussion

# %%
wall, cpu = time.time() - t_start, time.process_time() - c_start
p0 = fits[0]["mpl"].params
print(f"""The MPL fitted on each replicate's constant, cosine and two-stage curves predicts the five held-out curves with a mean relative error of
{100 * mre.mean():.3f}% (per replicate {np.round(100 * mre, 3).tolist()}%; the paper's level 0.04-0.28% per curve at 25M-400M, our bar {100 * mre_max:g}%), against
{pow_rows['heldout_mre_%'].mean():.3f}% for the S1-only power law and {mom_rows['heldout_mre_%'].mean():.3f}% for the momentum law. The hardest curve is
{per_curve.idxmax()} ({per_curve.max():.3f}%). First replicate's fit: L0 = {p0['L0']:.3f} (Bayes loss {H:.3f}), A = {p0['A']:.3f}, alpha = {p0['alpha']:.3f},
B = {p0['B']:.3g}, C = {p0['C']:.3g}, beta = {p0['beta']:.3f}, gamma = {p0['gamma']:.3f} (the paper's 100M: alpha 0.45, beta 0.60, gamma 0.66);
fit flags per replicate: {[', '.join(f['mpl'].flags) or 'none' for f in fits]} (beta -> 0 with B·beta finite is the limit G(x) -> beta·log(1 + C·x):
three short, noisy fitting curves do not pin down G's shape, which the not-at-boundary guard reports). The profiles say how weakly: holding β
anywhere on {profile_beta} costs at most {100 * prof_rise['beta'].max():.1f}% of the objective (per replicate {np.round(100 * prof_rise['beta'].to_numpy(), 1).tolist()}%),
holding γ anywhere on {profile_gamma} at most {100 * prof_rise['gamma'].max():.1f}% ({np.round(100 * prof_rise['gamma'].to_numpy(), 1).tolist()}%), while dropping the
annealing term altogether (the S1-only power law) raises the objective by {np.round([100 * (f['power'].objective / f['mpl'].objective - 1) for f in fits], 0).tolist()}%
on the same curves; the held-out error of the profile fits spans {prof['heldout_mre_%'].min():.3f}-{prof['heldout_mre_%'].max():.3f}%. {int((prof.objective_ratio < 1).sum())} profile
fit(s) land below the free fit's objective (by at most {100 * max(0.0, 1 - prof.objective_ratio.min()):.2f}%): a slightly better optimum the free fit's five starts missed.
WSD sits {stable_gap.mean():+.4f} nats above cosine at the end of its stable phase and its decay drops {decay_drop.mean():.4f}; at the end it is
{final_gap.mean():+.4f} below cosine (positive = below; exponential decay {final_gap_exp.mean():+.4f}, 2x budget {final_gap_long.mean():+.4f}).
The annealing gain of cosine over constant is {100 * gain.mean():.2f}% of the loss. In the bigram toy the hill part under WSD's stable phase is
{toy_hill_gap.mean():+.4f} nats above cosine's and the decay removes {100 * toy_hill_removed.mean():.0f}% of it, while the river part ends
{toy_river_gain.mean():+.4f} lower under WSD than under cosine.
Run time {wall:.0f} s wall, {cpu:.0f} s CPU.""")
tracking.log_metrics({"heldout_mre": float(mre.mean()), "power_over_mpl": float(ratio.mean()), "wall_s": wall, "cpu_s": cpu})
