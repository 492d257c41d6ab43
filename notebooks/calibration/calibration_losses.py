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
# # Train-time losses and calibration: focal, FLSD-53, Brier, label smoothing, squentropy, comp-sum
# **Paper:** Mukhoti et al. (2020), "Calibrating Deep Neural Networks using Focal Loss", NeurIPS; Müller, Kornblith, Hinton (2019), "When Does Label Smoothing Help?"; Hui, Belkin, Wright (2023), "Cut your Losses with Squentropy"; Mao, Mohri, Zhong (2023), comp-sum losses; Zhang & Sabuncu (2018), GCE.
# **Claim:** focal loss, FLSD-53 and Brier give lower ECE than cross-entropy before temperature scaling with T* near 1 (CIFAR-10 ResNet-50: CE 4.35% -> 1.35% after TS with T = 2.5; FLSD-53 1.55% -> 0.95%, T = 1.1); label smoothing needs T* < 1; under label noise GCE beats CE on accuracy.
#
# Mukhoti et al. argue that cross-entropy keeps pushing the true-class probability to 1 after the
# sample is classified correctly, growing the logit norm and hence over-confidence; focal loss
# −(1 − p_y)^γ log p_y down-weights such samples and behaves like CE with an entropy bonus, so its nets
# need little post-hoc correction (T* ≈ 1). Brier loss is bounded and proper and behaves similarly.
# Label smoothing makes nets *under*-confident after the fact (Müller et al.; Mukhoti report T = 0.9
# for LS-0.05). Squentropy (CE + mean squared wrong-class logit) is claimed to improve accuracy and
# calibration with CE's hyper-parameters. The comp-sum family Φ_τ interpolates sum-exponential (τ = 0),
# CE (τ = 1), GCE (1 < τ < 2) and MAE (τ = 2); bounded members (GCE, MAE) are robust to label noise.
#
# **Here.** MNIST-1D (4,000 generated signals, 1,000 test), the 1-D CNN from `lossbook.models`, Adam,
# same learning rate, batch size and epochs for every loss (no per-loss tuning: the point of
# "plug-and-play" claims), 5 seeds. A second arm trains CE, GCE (q = 0.7) and MAE on training labels
# with 30% symmetric noise (validation and test labels stay clean). T* is fitted on validation NLL.
#
# **Claims, thresholds fixed before running** (differences are paired over seeds and judged by the
# 95% bootstrap CI of the mean difference: above 0 = reproduced, containing 0 = inconclusive):
# 1. focal (γ = 3), FLSD-53 and Brier each have lower pre-TS ECE (15 equal-width bins) than CE;
# 2. their fitted T* is near 1: mean T* in [0.8, 1.3] for each;
# 3. CE's T* > 1 in every seed;
# 4. label smoothing (α = 0.05) gives T* < 1 in every seed;
# 5. under 30% symmetric label noise GCE has higher test accuracy than CE;
# 6. squentropy has lower pre-TS ECE than CE (reported honestly either way).

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
dataset = "mnist1d"  # "mnist1d" | "digits"
architecture = "cnn1d"  # classifier from lossbook.models ("mlp" | "cnn1d")
seeds = [0, 1, 2, 3, 4]  # one run per (loss, seed): the seed draws the validation split, init, batch order and label noise
epochs = 25  # training epochs, the same for every loss; in [1, inf)
lr = 3.0e-3  # Adam learning rate, the same for every loss (no per-loss tuning); > 0
batch_size = 128  # training mini-batch size; in [1, inf)
n_train = 0  # 0 means the whole training split; in [0, inf)
losses = ["ce", "label_smoothing", "brier", "focal", "flsd53", "squentropy", "gce", "mae", "z_loss"]  # clean-label arm; names of LOSS_SPECS
noise_losses = ["ce", "gce", "mae"]  # label-noise arm; names of LOSS_SPECS
noise_rate = 0.3  # fraction of training labels replaced by another class in the noise arm; in [0, 1)
n_bins = 15  # ECE bins (equal-width and equal-mass); in [1, inf)
n_boot = 10000  # bootstrap resamples of each paired-difference CI; in [1, inf)
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
device = "auto"  # "auto" | "cpu" | "cuda" | "mps"

# %%
from lossbook import claims, plotting, repro, stats, tracking

tracking.attach(mlflow_run_id, "calibration_losses", globals())
plotting.setup()

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from tqdm.auto import tqdm

from lossbook.calibration.experiments import loss_calibration_run
from lossbook.calibration.registry import get_loss

dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.time()
# name -> (registry loss, hyper-parameters): one place that fixes every loss's settings
LOSS_SPECS = {
    "ce": ("ce", {}),
    "label_smoothing": ("label_smoothing", {"eps": 0.05}),
    "brier": ("brier", {}),
    "focal": ("focal", {"gamma": 3.0}),
    "flsd53": ("flsd53", {}),
    "squentropy": ("squentropy", {}),
    "sum_exp": ("comp_sum", {"tau": 0.0}),
    "gce": ("gce", {"q": 0.7}),
    "mae": ("comp_sum", {"tau": 2.0}),
    "z_loss": ("z_loss", {"a": 1.0, "b": 2.0}),
}
unknown = sorted(set(losses + noise_losses) - set(LOSS_SPECS))
if unknown:
    raise ValueError(f"unknown loss names {unknown}; choose from {sorted(LOSS_SPECS)}")
print(f"{len(losses)} losses x {len(seeds)} seeds (clean) + {len(noise_losses)} x {len(seeds)} (noise {noise_rate:.0%})")


# %% [markdown]
# ## Runs
# Each run (`lossbook.calibration.experiments.loss_calibration_run`): seed everything, train, take the
# final model's validation and test logits, fit T* on validation NLL, and record test metrics
# (`metrics.summary_metrics`) before and after temperature scaling.

# %%
jobs = [(name, s, False) for name in losses for s in seeds] + [(name, s, True) for name in noise_losses for s in seeds]
rows = []
for name, seed, noisy in tqdm(jobs, desc="runs"):
    arm, (reg_name, hp) = ("noisy" if noisy else "clean"), LOSS_SPECS[name]
    res = loss_calibration_run(
        dataset, architecture, get_loss(reg_name, **hp), seed, epochs=epochs, lr=lr, batch_size=batch_size,
        n_train=n_train or None, label_noise=noise_rate if noisy else None, n_bins=n_bins, device=dev,
        logger=tracking.MetricLogger(prefix=f"{arm}/{name}/seed{seed}/"),
    )
    tracking.log_metrics({f"{arm}/{name}/seed{seed}/{k}": float(v) for k, v in res.items()})
    rows.append({"arm": arm, "loss": name, "seed": seed, **res})
df = pd.DataFrame(rows)
tracking.log_dict(df.to_dict(orient="records"), "tables/runs.json")
print(f"{len(jobs)} runs in {time.time() - t_start:.0f}s")

# %% [markdown]
# ## Results (test split, mean ± std over seeds; accuracy and calibration errors in %)

# %%
cols = ["acc_before", "ece_before", "ece_q_before", "cw_ece_before", "nll_before", "T", "ece_after", "ece_q_after", "nll_after", "train_acc"]
pct = {"acc_before", "ece_before", "ece_q_before", "cw_ece_before", "ece_after", "ece_q_after", "train_acc"}


def table(d: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for name, g in d.groupby("loss", sort=False):
        out[name] = {c + (" (%)" if c in pct else ""): f"{(100 if c in pct else 1) * g[c].mean():.2f} ± {(100 if c in pct else 1) * g[c].std(ddof=1) if len(g) > 1 else 0:.2f}" for c in cols}
    return pd.DataFrame(out).T


clean, noisy = df[df.arm == "clean"], df[df.arm == "noisy"]
print("clean labels")
display(table(clean))
tracking.log_dict(table(clean).to_dict(), "tables/clean_summary.json")
if len(noisy):
    print(f"{noise_rate:.0%} symmetric label noise on the training labels")
    display(table(noisy))
    tracking.log_dict(table(noisy).to_dict(), "tables/noisy_summary.json")

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
order = list(dict.fromkeys(clean.loss))
x = np.arange(len(order))
g = clean.groupby("loss", sort=False)
axes[0].bar(x - 0.2, 100 * g.ece_before.mean()[order], 0.4, yerr=100 * g.ece_before.std()[order], capsize=3, label="before TS")
axes[0].bar(x + 0.2, 100 * g.ece_after.mean()[order], 0.4, yerr=100 * g.ece_after.std()[order], capsize=3, label="after TS")
axes[0].set_ylabel(f"test ECE, {n_bins} equal-width bins (%)")
axes[0].legend()
for i, name in enumerate(order):
    axes[1].scatter(np.full((clean.loss == name).sum(), i), clean[clean.loss == name]["T"], color="k", s=12)
axes[1].bar(x, g["T"].mean()[order], alpha=0.5)
axes[1].axhline(1.0, color="C3", ls="--", lw=1)
axes[1].set_yscale("log")
axes[1].set_ylabel("fitted temperature T* (log scale)")
axes[2].bar(x, 100 * g.acc_before.mean()[order], yerr=100 * g.acc_before.std()[order], capsize=3)
axes[2].set_ylim(max(0, 100 * clean.acc_before.min() - 10), 100)
axes[2].set_ylabel("test accuracy (%)")
for ax in axes:
    ax.set_xticks(x, order, rotation=35, ha="right")
tracking.log_figure(fig, "losses_ece_temperature_accuracy")
plt.show()

if len(noisy):
    fig = plotting.mean_std_bars({n: 100 * noisy[noisy.loss == n].acc_before.to_numpy() for n in noise_losses},
                                 ylabel="test accuracy (%)", title=f"{noise_rate:.0%} symmetric label noise")
    tracking.log_figure(fig, "noise_accuracy")
    plt.show()

# %% [markdown]
# ## Claims

# %%
def paired(d: pd.DataFrame, a: str, b: str, col: str) -> np.ndarray:
    """Per-seed difference col[a] - col[b] (same seeds, same data split)."""
    da, db = d[d.loss == a].set_index("seed")[col], d[d.loss == b].set_index("seed")[col]
    return (da - db).loc[sorted(set(da.index) & set(db.index))].to_numpy()


def verdict(lo: float, hi: float) -> bool | None:
    return claims.decide(reproduced=lo > 0, refuted=hi < 0)


checks = {}
for name in ("focal", "flsd53", "brier"):
    if name in losses and "ce" in losses:
        m, lo, hi = stats.mean_ci(paired(clean, "ce", name, "ece_before"), n_boot=n_boot).astuple()
        checks[name] = (m, lo, hi)
if checks:
    vs = [verdict(lo, hi) for _, lo, hi in checks.values()]
    claims.record(
        "focal_brier_lower_ece_than_ce",
        statement="focal loss, FLSD-53 and Brier loss give lower pre-TS ECE than cross-entropy",
        paper="Mukhoti et al. 2020",
        paper_value="CIFAR-10 ResNet-50 ECE: CE 4.35%, FLSD-53 1.55%, FL-3 1.48%, Brier 1.82%",
        measured="; ".join(f"CE − {k}: {100 * m:.2f} pp [{100 * lo:.2f}, {100 * hi:.2f}]" for k, (m, lo, hi) in checks.items()),
        threshold="for each loss, 95% bootstrap CI of the mean per-seed ECE difference (CE − loss) above 0",
        passed=False if any(v is False for v in vs) else (True if all(vs) else None),
    )
    tmeans = {k: clean[clean.loss == k]["T"].mean() for k in checks}
    claims.record(
        "focal_brier_temperature_near_one",
        statement="focal, FLSD-53 and Brier nets need little post-hoc correction: T* near 1",
        paper="Mukhoti et al. 2020",
        paper_value="T = 1.1 (FL-3, FLSD-53) vs 2.5 for CE (CIFAR-10 ResNet-50)",
        measured="; ".join(f"{k}: T* = {clean[clean.loss == k]['T'].mean():.2f} ± {clean[clean.loss == k]['T'].std():.2f}" for k in checks),
        threshold="mean T* in [0.8, 1.3] for each of the three",
        passed=bool(all(0.8 <= t <= 1.3 for t in tmeans.values())),
    )
if "ce" in losses:
    tce = clean[clean.loss == "ce"]["T"]
    claims.record(
        "ce_temperature_above_one",
        statement="the CE-trained net is over-confident: T* > 1",
        paper="Guo et al. 2017; Mukhoti et al. 2020",
        paper_value="T = 2.5 (CIFAR-10 ResNet-50, CE)",
        measured=f"T* = {tce.mean():.2f} ± {tce.std():.2f}",
        threshold="T* > 1 in every seed",
        passed=bool((tce > 1).all()),
    )
if "label_smoothing" in losses:
    tls = clean[clean.loss == "label_smoothing"]["T"]
    claims.record(
        "label_smoothing_temperature_below_one",
        statement="label smoothing (alpha = 0.05) makes the net under-confident: T* < 1",
        paper="Müller et al. 2019; Mukhoti et al. 2020",
        paper_value="T = 0.9 for LS-0.05 (CIFAR-10 ResNet-50, Mukhoti et al.)",
        measured=f"T* = {tls.mean():.2f} ± {tls.std():.2f}",
        threshold="T* < 1 in every seed",
        passed=bool((tls < 1).all()),
    )
if {"ce", "gce"} <= set(noise_losses) and len(noisy):
    m, lo, hi = stats.mean_ci(paired(noisy, "gce", "ce", "acc_before"), n_boot=n_boot).astuple()
    claims.record(
        "gce_beats_ce_under_label_noise",
        statement=f"under {noise_rate:.0%} symmetric label noise GCE reaches higher test accuracy than CE",
        paper="Zhang & Sabuncu 2018; Mao et al. 2023 (comp-sum, tau in (1, 2))",
        paper_value="GCE more robust than CE under symmetric noise",
        measured=f"acc GCE − CE = {100 * m:.2f} pp [{100 * lo:.2f}, {100 * hi:.2f}]",
        threshold="95% bootstrap CI of the mean per-seed accuracy difference (GCE − CE) above 0",
        passed=verdict(lo, hi),
    )
if {"ce", "squentropy"} <= set(losses):
    m, lo, hi = stats.mean_ci(paired(clean, "ce", "squentropy", "ece_before"), n_boot=n_boot).astuple()
    am, alo, ahi = stats.mean_ci(paired(clean, "squentropy", "ce", "acc_before"), n_boot=n_boot).astuple()
    claims.record(
        "squentropy_lower_ece_than_ce",
        statement="squentropy gives lower ECE than CE with the same hyper-parameters",
        paper="Hui, Belkin, Wright 2023",
        paper_value="better ECE than CE (numbers not retrieved here)",
        measured=f"ECE CE − squentropy = {100 * m:.2f} pp [{100 * lo:.2f}, {100 * hi:.2f}]; accuracy squentropy − CE = {100 * am:.2f} pp [{100 * alo:.2f}, {100 * ahi:.2f}]",
        threshold="95% bootstrap CI of the mean per-seed ECE difference (CE − squentropy) above 0",
        passed=verdict(lo, hi),
    )
tracking.log_metrics({"wall_time_s": time.time() - t_start})
print(f"wall time {time.time() - t_start:.0f}s")

# %% [markdown]
# ## Discussion
# * **Scale and schedule.** Mukhoti et al. train ResNet-50 for 350 epochs with SGD and a step
#   schedule on CIFAR; we train a small 1-D CNN for a few dozen epochs with Adam, so CE's
#   over-confidence is milder here and differences between losses are a few ECE points at most.
#   1,000 test samples put the plug-in ECE's noise floor at ~2% (see `calibration_metrics`).
# * **One set of hyper-parameters for all losses.** Bounded losses (MAE, GCE, Brier) learn more slowly
#   with Adam at this learning rate; MAE in particular is known to underfit clean data (Zhang &
#   Sabuncu 2018), which shows as lower accuracy rather than as a calibration effect.
# * **Z-loss** outputs are not probabilities (the loss is scale-invariant, so the logit scale is free):
#   its softmax is nearly flat and needs T* of order 0.01–0.1; compare its post-TS ECE, not its pre-TS ECE.
# * **Where to look beyond the claims.** Accuracy differs a lot between losses under one shared set of
#   hyper-parameters (table above): a lower ECE that comes with lower accuracy (focal/FLSD-53 here) is
#   not the same achievement as one at equal accuracy, and temperature scaling brings every loss to a
#   similar post-TS ECE. Squentropy's accuracy, in particular, is worth reading next to its ECE.
# * **Label noise arm**: only the training labels are corrupted; T* is fitted on clean validation labels.
