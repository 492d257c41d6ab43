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
# # Train-time losses and calibration at convergence: focal, FLSD-53, Brier, label smoothing, squentropy, GCE, Z-loss
# **Paper:** Mukhoti et al. (2020), "Calibrating Deep Neural Networks using Focal Loss", NeurIPS; Müller, Kornblith, Hinton (2019), "When Does Label Smoothing Help?"; Hui, Belkin, Wright (2023), "Cut your Losses with Squentropy"; Zhang & Sabuncu (2018), GCE; de Brébisson & Vincent (2016), the Z-loss.
# **Claim:** focal loss, FLSD-53 and Brier give lower ECE than cross-entropy with T* near 1, and focal/FLSD-53 stay ahead after temperature scaling (CIFAR-10 ResNet-50: CE 4.35% -> 1.35% after TS with T = 2.5; FLSD-53 1.55% -> 0.95%, T = 1.1); label smoothing needs T* < 1; squentropy beats CE on accuracy and ECE; under label noise GCE beats CE; the Z-loss beats log-softmax on top-k.
#
# Mukhoti et al. argue that cross-entropy keeps pushing the true-class probability to 1 after the
# sample is classified correctly, growing the logit norm and hence over-confidence; focal loss
# −(1 − p_y)^γ log p_y down-weights such samples and behaves like CE with an entropy bonus, so its nets
# need little post-hoc correction (T* ≈ 1). Brier loss is bounded and proper and behaves similarly.
# Their CIFAR-10 table (`torrvision/focal_calibration` README, ECE % before → after TS (T)) reads, for
# ResNet-50 / ResNet-110 / WRN-26-10 / DenseNet-121: CE 4.35→1.35 (2.5), 4.41→1.09 (2.8), 3.23→0.92 (2.2),
# 4.52→1.31 (2.4); FL-3 1.48→1.42 (1.1), 1.55→1.02 (1.1), 1.69→0.97 (0.9), 1.32→1.26 (0.9); FLSD-53
# 1.55→0.95 (1.1), 1.87→1.07 (1.1), 1.56→0.84 (0.9), 1.22→1.22 (1); Brier 1.82→1.08 (1.1), 2.56→1.25 (1.2),
# 1.25→1.25 (1), 1.53→1.53 (1); LS-0.05 T = 0.9, 1, 0.8, 0.9 — and "focal loss broadly outperform[s] all
# other baselines ... both before and after temperature scaling". (After TS the gaps are tenths of a
# point and FL-3 is behind CE on two of the four nets.) Label smoothing makes nets *under*-confident
# (Müller et al.). Squentropy (CE + mean squared wrong-class logit) is claimed to improve accuracy and
# calibration with CE's hyper-parameters. GCE (1 − p_y^q)/q is robust to label noise (Zhang & Sabuncu).
# The Z-loss (softplus of the standardised true-class logit) "outperforms the log-softmax with respect
# to certain ranking scores, such as top-k scores" on word-level language modelling (its abstract).
#
# **Here.** MNIST-1D with the 1-D CNN from `lossbook.models`, Adam at one constant learning rate, one
# batch size and one epoch budget for every loss (no per-loss tuning: the point of "plug-and-play"
# claims), **trained to convergence** (the epoch budget is long enough for every claimed loss to fit the
# training set). **Replicates:** each of 5 seeds is an independent replicate: it draws its own MNIST-1D
# data set (`data_seed = seed`: new train, validation and test signals), its validation split, its
# initialisation, batch order and label noise. A second arm trains CE and GCE (q = 0.7) on training
# labels with 30% symmetric noise (validation and test labels stay clean). T* is fitted on validation
# NLL. At checkpoint epochs along each run we fit T* again and measure ECE: with a constant learning
# rate the checkpoint is the run a shorter budget would have given, so this is the **budget curve**.
# An ablation arm retrains CE, focal and FLSD-53 with weight decay (the paper trains with 5e-4; we do not).
#
# **ECE** (`lossbook.calibration.metrics`): 15 equal-width bins on the top-1 confidence. The bins are
# **left-closed**, [k/B, (k+1)/B) with the last one closed at 1, as in torchmetrics; Guo et al.'s
# definition is right-closed, ((k−1)/B, k/B]. The two differ only for confidences exactly on a bin edge.
#
# **Claims, rules fixed before running** (the replication protocol, `lossbook.replicate`: each statistic
# is a per-replicate paired difference or value, judged by the 95% Student-t CI of its mean over the 5
# replicates; all at the final epoch of the converged runs unless said otherwise):
# 1. focal (γ = 3), FLSD-53 and Brier each have lower pre-TS ECE than CE (CI of CE − loss above 0; one claim per loss);
# 2. their T* is near 1: the CI of mean T* inside [0.8, 1.3] (one claim per loss);
# 3. after temperature scaling focal and FLSD-53 still have lower ECE than CE (CI of CE − loss above 0; one claim each);
# 4. CE's T* > 1 (CI above 1);
# 5. label smoothing (α = 0.05) gives T* < 1 (CI below 1);
# 6. under 30% symmetric label noise GCE has higher test accuracy than CE at the final epoch, and
#    (primary) at each loss's validation-selected epoch (CI of GCE − CE above 0);
# 7. squentropy has lower pre-TS ECE than CE, and higher test accuracy (CI above 0, each);
# 8. the Z-loss has higher top-3 test accuracy than CE (CI of Z − CE above 0).
#
# **Guards**, read before the rules: every claimed loss converged — its mean train accuracy over the last
# 10% of epochs is ≥ 99% in every replicate (the regime where the paper's over-confidence argument
# applies; on noisy labels this would mean memorising the noise, so the noise arm instead requires that
# each loss's best validation epoch is not in the last 10% of the budget); no T* at its search bound.
# A "not reproduced" carries a diagnosis read off the budget curve, the weight-decay ablation or the
# estimator's floor, as each claim says.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
dataset = "mnist1d"  # "mnist1d" | "digits"
architecture = "cnn1d"  # classifier from lossbook.models ("mlp" | "cnn1d")
seeds = [0, 1, 2, 3, 4]  # replicates: one run per (loss, seed); the seed draws the data set (fresh_data), validation split, init, batch order and label noise
fresh_data = True  # each replicate draws its own data set (data_seed = seed); False: all share the canonical draw
epochs = 100  # training epochs, the same for every loss: long enough for each claimed loss to fit the training set; in [1, inf)
budget_epochs = [5, 10, 25, 50, 75, 100]  # checkpoints of the budget curve (T* and ECE refitted there; those past `epochs` are dropped, `epochs` is added); each in [1, inf)
old_budget = 25  # the budget of the notebook's first version, read off the budget curve (nearest checkpoint) in the diagnoses; in [1, inf)
lr = 3.0e-3  # Adam learning rate, constant, the same for every loss (no per-loss tuning); > 0
batch_size = 128  # training mini-batch size; in [1, inf)
n_train = 0  # 0 means the whole training split; in [0, inf)
losses = ["ce", "label_smoothing", "brier", "focal", "flsd53", "squentropy", "z_loss"]  # clean-label arm; names of LOSS_SPECS
noise_losses = ["ce", "gce"]  # label-noise arm; names of LOSS_SPECS
noise_rate = 0.3  # fraction of training labels replaced by another class in the noise arm; in [0, 1)
ablation_losses = ["ce", "focal", "flsd53"]  # weight-decay ablation arm (diagnosis of the T* claim); names of LOSS_SPECS
ablation_seeds = [0, 1, 2]  # replicates of the ablation arm (a subset of seeds)
ablation_weight_decay = 5.0e-4  # the paper's weight decay (Mukhoti et al. train with 5e-4); in [0, inf)
converged_acc = 0.99  # guard: mean train accuracy over the last 10% of epochs, every replicate; in [0, 1]
t_near_one = [0.8, 1.3]  # claim 2: the CI of mean T* must lie inside this interval (written before running)
topk = 3  # claim 8: the ranking score of the Z-loss claim (top-k test accuracy, k at most the number of classes); in [1, inf)
n_bins = 15  # ECE bins (equal-width and equal-mass); in [1, inf)
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
device = "auto"  # "auto" | "cpu" | "cuda" | "mps"

# %%
from lossbook import plotting, replicate, repro, stats, tracking

tracking.attach(mlflow_run_id, "calibration_losses", globals())
plotting.setup()

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from tqdm.auto import tqdm

from lossbook.calibration import plots as pcal
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
unknown = sorted(set(losses + noise_losses + ablation_losses) - set(LOSS_SPECS))
if unknown:
    raise ValueError(f"unknown loss names {unknown}; choose from {sorted(LOSS_SPECS)}")
checkpoints = sorted({e for e in budget_epochs if e <= epochs} | {epochs})
topks = sorted({1, 2, topk, 5})
print(f"{len(losses)} losses x {len(seeds)} replicates (clean) + {len(noise_losses)} x {len(seeds)} (noise {noise_rate:.0%}) "
      f"+ {len(ablation_losses)} x {len(ablation_seeds)} (weight decay {ablation_weight_decay:g}); {epochs} epochs, checkpoints {checkpoints}")

# %% [markdown]
# ## Runs
# Each run (`lossbook.calibration.experiments.loss_calibration_run`): seed everything, draw the data set,
# train for the budget (recording test accuracy and ECE every epoch, and T*/ECE before and after TS at
# each checkpoint), then fit T* on the final model's validation NLL and measure the test split
# (`metrics.summary_metrics`) before and after temperature scaling, its top-k accuracies and the test
# accuracy at the validation-selected epoch.

# %%
jobs = ([("clean", n, s) for n in losses for s in seeds] + [("noisy", n, s) for n in noise_losses for s in seeds]
        + [("weight_decay", n, s) for n in ablation_losses for s in ablation_seeds])
rows, budget_rows, curves = [], [], {}
for arm, name, seed in tqdm(jobs, desc="runs"):
    reg_name, hp = LOSS_SPECS[name]
    r = loss_calibration_run(
        dataset, architecture, get_loss(reg_name, **hp), seed, epochs=epochs, lr=lr, batch_size=batch_size,
        weight_decay=ablation_weight_decay if arm == "weight_decay" else 0.0, data_seed=seed if fresh_data else None,
        n_train=n_train or None, label_noise=noise_rate if arm == "noisy" else None, n_bins=n_bins,
        budget_epochs=checkpoints, topk=topks, device=dev, logger=tracking.MetricLogger(prefix=f"{arm}/{name}/seed{seed}/"),
    )
    tracking.log_metrics({f"{arm}/{name}/seed{seed}/{k}": float(v) for k, v in r.row.items()})
    rows.append({"arm": arm, "loss": name, "seed": seed, **r.row})
    budget_rows += [{"arm": arm, "loss": name, "seed": seed, **b} for b in r.budget]
    curves[arm, name, seed] = r.curves
df, budget = pd.DataFrame(rows), pd.DataFrame(budget_rows)
tracking.log_dict(df.to_dict(orient="records"), "tables/runs.json")
tracking.log_dict(budget.to_dict(orient="records"), "tables/budget.json")
print(f"{len(jobs)} runs in {time.time() - t_start:.0f}s")

# %% [markdown]
# ## Results at convergence (test split, mean ± std over replicates; accuracy and calibration errors in %)

# %%
cols = ["train_acc_tail", "acc_before", "sel_test_acc", f"top{topk}_acc", "ece_before", "ece_q_before", "cw_ece_before",
        "nll_before", "T", "ece_after", "ece_q_after", "ece_floor_after", "nll_after", "best_epoch"]
unitless = {"nll_before", "T", "nll_after", "best_epoch"}
summaries = {}
for arm, d in df.groupby("arm", sort=False):
    summaries[arm] = pd.DataFrame({name: {c + ("" if c in unitless else " (%)"): stats.format_mean_std(g[c], 1.0 if c in unitless else 100.0) for c in cols}
                                   for name, g in d.groupby("loss", sort=False)}).T
    print({"clean": "clean labels", "noisy": f"{noise_rate:.0%} symmetric label noise on the training labels",
           "weight_decay": f"ablation: weight decay {ablation_weight_decay:g}"}[arm])
    display(summaries[arm])
    tracking.log_dict(summaries[arm].to_dict(), f"tables/{arm}_summary.json")
clean, noisy, wd = (df[df.arm == a] for a in ("clean", "noisy", "weight_decay"))

# %% [markdown]
# ## Figures
# **At convergence**: ECE before/after TS, T* (one dot per replicate) and accuracy per loss.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
order = list(dict.fromkeys(clean.loss))
x = np.arange(len(order))
g = clean.groupby("loss", sort=False)
axes[0].bar(x - 0.2, 100 * g.ece_before.mean()[order], 0.4, yerr=100 * g.ece_before.std()[order], capsize=3, label="before TS")
axes[0].bar(x + 0.2, 100 * g.ece_after.mean()[order], 0.4, yerr=100 * g.ece_after.std()[order], capsize=3, label="after TS")
axes[0].plot(x + 0.2, 100 * g.ece_floor_after.mean()[order], "k_", ms=14, label="floor after TS")
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
fig.suptitle(f"{epochs} epochs, mean ± std over {len(seeds)} replicates")
tracking.log_figure(fig, "losses_ece_temperature_accuracy")
plt.show()

# %% [markdown]
# **The budget curve**: T* (log scale), ECE before and after TS and train accuracy at each checkpoint
# epoch, mean ± std over replicates. A verdict read at a short budget is read where this curve is.

# %%
bc = budget[budget.arm == "clean"]
panel = {m: {n: bc[bc.loss == n].pivot(index="seed", columns="epoch", values=m).to_numpy() for n in losses}
         for m in ("T", "ece_before", "ece_after", "train_acc")}
fig = pcal.epoch_panels(
    {m: {n: (1 if m == "T" else 100) * a for n, a in v.items()} for m, v in panel.items()}, x=checkpoints, logy=("T",), hlines={"T": 1.0},
    ylabels={"T": "fitted T* (log scale)", "ece_before": "test ECE before TS (%)", "ece_after": "test ECE after TS (%)", "train_acc": "train accuracy (%)"},
    xlabel="epoch budget",
)
tracking.log_figure(fig, "budget_curve")
plt.show()

# %% [markdown]
# **Label noise**: test accuracy per epoch (mean ± std), where memorising the noise shows as a fall
# after the validation-selected epoch.

# %%
if len(noisy):
    fig = pcal.epoch_panels(
        {k: {n: 100 * np.array([curves["noisy", n, s][k] for s in seeds]) for n in noise_losses} for k in ("train_acc", "test_acc")},
        ylabels={"train_acc": "train accuracy on noisy labels (%)", "test_acc": "test accuracy, clean labels (%)"},
    )
    tracking.log_figure(fig, "noise_accuracy_vs_epoch")
    plt.show()

# %% [markdown]
# ## Claims
# Rules and guards were written in the introduction before running and are not changed afterwards.

# %%
t_bounds = (1e-3, 1e3)  # posthoc.fit_temperature's search range
log_bounds = (float(np.log(t_bounds[0])), float(np.log(t_bounds[1])))  # the search is over log T, so the boundary guard reads log T*


def col(d: pd.DataFrame, name: str, c: str) -> pd.Series:
    return d[d.loss == name].set_index("seed")[c].sort_index()


def fitted(d: pd.DataFrame, names: list[str], tag: str = "") -> list[replicate.Guard]:
    acc = min(col(d, n, "train_acc_tail").min() for n in names)
    return [replicate.progress_reached(acc, converged_acc, lower_is_better=False, what=f"min tail train accuracy ({', '.join(names)})", name="converged" + tag,
                                       fix=f"a longer budget than {epochs} epochs")]


def at_budget(name: str, c: str, epoch: int) -> float:
    return float(bc[(bc.loss == name) & (bc.epoch == epoch)][c].mean())


early = min(checkpoints, key=lambda e: abs(e - old_budget))
trio = [n for n in ("focal", "flsd53", "brier") if n in losses]
paper_ece = {"focal": "FL-3 1.48%", "flsd53": "FLSD-53 1.55%", "brier": "Brier 1.82%"}
paper_t = {"focal": "FL-3 1.1 / 1.1 / 0.9 / 0.9", "flsd53": "FLSD-53 1.1 / 1.1 / 0.9 / 1", "brier": "Brier 1.1 / 1.2 / 1 / 1"}
paper_after = {"focal": "FL-3 1.42 / 1.02 / 0.97 / 1.26", "flsd53": "FLSD-53 0.95 / 1.07 / 0.84 / 1.22"}
t_all = clean[clean.loss.isin(trio)]["T"]
floor = float(clean.ece_floor_after.mean()) if len(clean) else float("nan")
for n in trio if "ce" in losses else []:
    d = (col(clean, "ce", "ece_before") - col(clean, n, "ece_before")).to_numpy()
    o = replicate.mean_ci_rule(d, 0.0, "above")
    replicate.record(
        f"lower_ece_than_ce_{n}",
        statement=f"{n} gives lower pre-TS ECE than cross-entropy", paper="Mukhoti et al. 2020",
        paper_value=f"CIFAR-10 ResNet-50 ECE: CE 4.35%, {paper_ece[n]}",
        values=d, outcome=o, guards=fitted(clean, ["ce", n]), measured=f"ECE CE − {n} = {stats.format_mean_std(d)} pp",
        diagnosis=replicate.Diagnosis(
            f"CE − {n} ECE along the budget curve: {100 * (at_budget('ce', 'ece_before', early) - at_budget(n, 'ece_before', early)):+.2f} pp at {early} epochs, "
            f"{100 * o.statistic:+.2f} pp at {epochs}", "budget curve (ECE before TS at every checkpoint epoch)"),
    )
    t = col(clean, n, "T").to_numpy()
    t_early, t_wd = at_budget(n, "T", early), (float(col(wd, n, "T").mean()) if n in ablation_losses and len(wd) else None)
    replicate.record(
        f"temperature_near_one_{n}",
        statement=f"{n} nets need little post-hoc correction: T* near 1", paper="Mukhoti et al. 2020",
        paper_value=f"T* on four CIFAR-10 nets: {paper_t[n]} (CE 2.5 / 2.8 / 2.2 / 2.4)",
        values=t, outcome=replicate.mean_within_rule(t, *t_near_one),
        guards=fitted(clean, [n]) + [replicate.not_at_boundary(np.log(t_all.min()), *log_bounds, what="min log T*"), replicate.not_at_boundary(np.log(t_all.max()), *log_bounds, what="max log T*")],
        measured=f"T* = {stats.format_mean_std(t, 1.0)} (CE {col(clean, 'ce', 'T').mean():.2f})",
        diagnosis=replicate.Diagnosis(
            f"T* along the budget curve: {t_early:.2f} at {early} epochs ({'inside' if t_near_one[0] <= t_early <= t_near_one[1] else 'outside'} "
            f"[{t_near_one[0]:g}, {t_near_one[1]:g}]) -> {t.mean():.2f} at {epochs}, with train accuracy {100 * at_budget(n, 'train_acc', early):.1f}% -> "
            f"{100 * col(clean, n, 'train_acc_tail').mean():.1f}%" + (f"; with the paper's weight decay (ablation) {t_wd:.2f}" if t_wd is not None else "")
            + ": once the net fits the training set its logits keep growing and T* rises", "budget curve (T* at every checkpoint epoch) and the weight-decay ablation arm"),
        details={"T_at_old_budget": t_early, "T_weight_decay": t_wd},
    )
    if n in paper_after:
        da = (col(clean, "ce", "ece_after") - col(clean, n, "ece_after")).to_numpy()
        replicate.record(
            f"lower_ece_than_ce_after_ts_{n}",
            statement=f"after temperature scaling, {n} nets still have lower ECE than cross-entropy nets", paper="Mukhoti et al. 2020",
            paper_value=f"CIFAR-10 ECE after TS, four nets: CE 1.35 / 1.09 / 0.92 / 1.31, {paper_after[n]}",
            values=da, outcome=replicate.mean_ci_rule(da, 0.0, "above"), guards=fitted(clean, ["ce", n]),
            measured=f"ECE after TS CE − {n} = {stats.format_mean_std(da)} pp (CE {100 * col(clean, 'ce', 'ece_after').mean():.2f}%, {n} {100 * col(clean, n, 'ece_after').mean():.2f}%)",
            diagnosis=replicate.Diagnosis(
                f"after TS both sit near the estimator's floor: CE {100 * col(clean, 'ce', 'ece_after').mean():.2f}%, {n} {100 * col(clean, n, 'ece_after').mean():.2f}%, "
                f"against a plug-in floor of {100 * floor:.2f}% for perfectly calibrated predictions at this test size; the paper's own after-TS gaps are tenths of a point",
                "ece_floor: the scaled predictions scored against labels drawn from themselves"),
        )
if "ce" in losses:
    tce = col(clean, "ce", "T").to_numpy()
    replicate.record(
        "ce_temperature_above_one",
        statement="the CE-trained net is over-confident: T* > 1",
        paper="Guo et al. 2017; Mukhoti et al. 2020", paper_value="T = 2.5 (CIFAR-10 ResNet-50, CE)",
        values=tce, outcome=replicate.mean_ci_rule(tce, 1.0, "above"),
        guards=fitted(clean, ["ce"]) + [replicate.not_at_boundary(np.log(tce.max()), *log_bounds, what="max log T*")],
        measured=f"T* = {stats.format_mean_std(tce, 1.0)}",
    )
if "label_smoothing" in losses:
    tls = col(clean, "label_smoothing", "T").to_numpy()
    ls_eps, n_cls = LOSS_SPECS["label_smoothing"][1]["eps"], int(clean.n_classes.iloc[0])
    replicate.record(
        "label_smoothing_temperature_below_one",
        statement="label smoothing (alpha = 0.05) makes the net under-confident: T* < 1",
        paper="Müller et al. 2019; Mukhoti et al. 2020", paper_value="T = 0.9 for LS-0.05 (CIFAR-10 ResNet-50; 0.8–1 on four nets)",
        values=tls, outcome=replicate.mean_ci_rule(tls, 1.0, "below"),
        guards=fitted(clean, ["label_smoothing"]) + [replicate.not_at_boundary(np.log(tls.min()), *log_bounds, what="min log T*")],
        measured=f"T* = {stats.format_mean_std(tls, 1.0)}",
        diagnosis=replicate.Diagnosis(
            f"label smoothing's T* is {at_budget('label_smoothing', 'T', early):.2f} at {early} epochs and {tls.mean():.2f} at {epochs} (budget curve); "
            f"its training optimum caps the confidence on training samples at 1 − ε(C − 1)/C = {100 * (1 - ls_eps * (n_cls - 1) / n_cls):.1f}% "
            f"(test accuracy {100 * col(clean, 'label_smoothing', 'acc_before').mean():.1f}%; Mukhoti's CIFAR-10 nets ~95%)",
            "budget curve (T* at every checkpoint epoch) and the test accuracy against the smoothed target"),
    )
if {"ce", "gce"} <= set(noise_losses) and len(noisy):
    mem = {n: 100 * (col(noisy, n, "sel_test_acc") - col(noisy, n, "acc_before")).mean() for n in ("ce", "gce")}
    noise_guards = [replicate.converged(np.mean([curves["noisy", n, s]["val_acc"] for s in seeds], 0), name=f"converged_{n}") for n in ("ce", "gce")]
    d_final = (col(noisy, "gce", "acc_before") - col(noisy, "ce", "acc_before")).to_numpy()
    d_sel = (col(noisy, "gce", "sel_test_acc") - col(noisy, "ce", "sel_test_acc")).to_numpy()
    diag = replicate.Diagnosis(
        f"GCE − CE is {100 * d_final.mean():.2f} pp at the final epoch but {100 * d_sel.mean():.2f} pp at the validation-selected epochs: "
        f"CE loses {mem['ce']:.2f} pp of test accuracy after its best validation epoch by memorising the noisy labels (GCE {mem['gce']:.2f} pp)",
        "the same runs read at the validation-selected epoch vs the final epoch (test accuracy per epoch figure)")
    replicate.record(
        "gce_beats_ce_under_label_noise",
        statement=f"under {noise_rate:.0%} symmetric label noise GCE reaches higher test accuracy than CE (final epoch)",
        paper="Zhang & Sabuncu 2018", paper_value="GCE more robust than CE under symmetric noise (CIFAR-10/100, FASHION-MNIST)",
        values=d_final, outcome=replicate.mean_ci_rule(d_final, 0.0, "above"), measured=f"acc GCE − CE = {stats.format_mean_std(d_final)} pp",
        diagnosis=diag,
    )
    replicate.record(
        "gce_beats_ce_under_label_noise_selected",
        statement=f"under {noise_rate:.0%} symmetric label noise GCE reaches higher test accuracy than CE, each read at its validation-selected epoch",
        paper="Zhang & Sabuncu 2018", paper_value="GCE more robust than CE under symmetric noise",
        values=d_sel, outcome=replicate.mean_ci_rule(d_sel, 0.0, "above"), guards=noise_guards,
        measured=f"acc GCE − CE = {stats.format_mean_std(d_sel)} pp (best epochs CE {col(noisy, 'ce', 'best_epoch').tolist()}, GCE {col(noisy, 'gce', 'best_epoch').tolist()})",
        diagnosis=diag,
    )
if {"ce", "squentropy"} <= set(losses):
    d_ece = (col(clean, "ce", "ece_before") - col(clean, "squentropy", "ece_before")).to_numpy()
    d_acc = (col(clean, "squentropy", "acc_before") - col(clean, "ce", "acc_before")).to_numpy()
    sq_diag = replicate.Diagnosis(
        f"CE − squentropy ECE is {100 * (at_budget('ce', 'ece_before', early) - at_budget('squentropy', 'ece_before', early)):.2f} pp at {early} epochs "
        f"and {100 * d_ece.mean():.2f} pp at {epochs} (budget curve)", "budget curve (ECE before TS at every checkpoint epoch)")
    replicate.record(
        "squentropy_lower_ece_than_ce",
        statement="squentropy gives lower ECE than CE with the same hyper-parameters",
        paper="Hui, Belkin, Wright 2023", paper_value="better ECE than CE (numbers not retrieved here)",
        values=d_ece, outcome=replicate.mean_ci_rule(d_ece, 0.0, "above"), guards=fitted(clean, ["ce", "squentropy"]),
        measured=f"ECE CE − squentropy = {stats.format_mean_std(d_ece)} pp", diagnosis=sq_diag,
    )
    replicate.record(
        "squentropy_higher_accuracy_than_ce",
        statement="squentropy gives higher test accuracy than CE with the same hyper-parameters",
        paper="Hui, Belkin, Wright 2023", paper_value="better accuracy than CE (numbers not retrieved here)",
        values=d_acc, outcome=replicate.mean_ci_rule(d_acc, 0.0, "above"), guards=fitted(clean, ["ce", "squentropy"]),
        measured=f"accuracy squentropy − CE = {stats.format_mean_std(d_acc)} pp",
        diagnosis=replicate.Diagnosis(
            f"squentropy − CE accuracy is {100 * (at_budget('squentropy', 'acc', early) - at_budget('ce', 'acc', early)):.2f} pp at {early} epochs "
            f"and {100 * d_acc.mean():.2f} pp at {epochs} (budget curve)", "budget curve (test accuracy at every checkpoint epoch)"),
    )
if {"ce", "z_loss"} <= set(losses):
    d_top = (col(clean, "z_loss", f"top{topk}_acc") - col(clean, "ce", f"top{topk}_acc")).to_numpy()
    d_top1 = (col(clean, "z_loss", "top1_acc") - col(clean, "ce", "top1_acc")).to_numpy()
    replicate.record(
        "z_loss_higher_topk_than_ce",
        statement=f"the Z-loss gives higher top-{topk} test accuracy than cross-entropy (log-softmax)",
        paper="de Brébisson & Vincent 2016", paper_value="outperforms the log-softmax on top-k scores (word-level language modelling; direction only)",
        values=d_top, outcome=replicate.mean_ci_rule(d_top, 0.0, "above"), guards=fitted(clean, ["ce", "z_loss"]),
        measured=f"top-{topk} Z − CE = {stats.format_mean_std(d_top)} pp (top-1: {stats.format_mean_std(d_top1)} pp)",
    )
tracking.log_metrics({"wall_time_s": time.time() - t_start})
print(f"wall time {time.time() - t_start:.0f}s")

# %% [markdown]
# ## Discussion
# The numbers this discussion rests on, from this run:

# %%
gm = clean.groupby("loss", sort=False)
for n in losses:
    print(f"{n:16s} tail train acc ≥ {100 * gm.train_acc_tail.min()[n]:.1f}%; test acc {100 * gm.acc_before.mean()[n]:.1f}%; "
          f"T* {at_budget(n, 'T', early):.2f} at {early} epochs -> {gm['T'].mean()[n]:.2f} at {epochs}; "
          f"ECE {100 * gm.ece_before.mean()[n]:.2f}% -> {100 * gm.ece_after.mean()[n]:.2f}% after TS (floor {100 * gm.ece_floor_after.mean()[n]:.2f}%)")
for n in ablation_losses:
    if len(wd):
        print(f"weight decay {ablation_weight_decay:g}, {n}: T* {col(wd, n, 'T').mean():.2f}, ECE {100 * col(wd, n, 'ece_before').mean():.2f}%, "
              f"test acc {100 * col(wd, n, 'acc_before').mean():.1f}% (without: T* {col(clean[clean.seed.isin(ablation_seeds)], n, 'T').mean():.2f})")
if len(noisy):
    for n in noise_losses:
        print(f"noise {noise_rate:.0%}, {n}: final train acc (noisy labels) {100 * col(noisy, n, 'train_acc').mean():.1f}%, "
              f"test acc at the selected epoch {100 * col(noisy, n, 'sel_test_acc').mean():.1f}% -> final {100 * col(noisy, n, 'acc_before').mean():.1f}%")

# %% [markdown]
# * **Budget.** The first version of this notebook stopped at 25 epochs, before several losses had fitted
#   the training set; the budget curve shows what that budget read. Claims here are read at convergence,
#   with the guard saying so; the printed T* at the old budget and at the final one is the difference.
# * **Scale and schedule.** Mukhoti et al. train ResNets for 350 epochs with SGD, a step schedule and
#   weight decay 5e-4 on CIFAR; we train a small 1-D CNN with Adam at a constant rate and no weight decay.
#   The weight-decay arm above shows how much of the T* gap that difference explains.
#   1,000 test samples put the plug-in ECE's floor at the printed floor values (see `calibration_metrics`):
#   after TS every loss sits near it, so after-TS differences of tenths of a point are not resolvable here.
# * **One set of hyper-parameters for all losses.** Bounded losses (GCE, MAE, Brier) learn more slowly
#   with Adam at this learning rate; MAE and GCE are left out of the clean arm's claims (run them with
#   `losses=[..., "gce", "mae"]`).
# * **Z-loss** outputs are not probabilities (the loss is scale-invariant, so the logit scale is free):
#   its softmax is nearly flat and needs T* far from 1; compare its post-TS ECE, not its pre-TS ECE. The
#   paper's top-k claim is about language modelling with tens of thousands of classes; with 10 classes
#   top-k saturates quickly, so the claim is read at top-3.
# * **Label noise arm**: only the training labels are corrupted; validation labels are clean, so the
#   validation-selected epoch is an optimistic early stop for CE (a noisy validation set would select
#   less well). The per-epoch test-accuracy figure shows CE's fall after that epoch.
