# %% [markdown]
# # Dual-head KD: a logit-level loss and cross-entropy fight over one linear head, and a second head ends the fight
# **Paper:** Yang et al. (2024), "Dual-Head Knowledge Distillation: Enhancing Logits Utilization with an Auxiliary Head", arXiv 2411.08937.
# **Claim:** adding the logit-level BinaryKL loss to cross-entropy on the *same* linear head trains worse than either loss alone; moving it to an auxiliary head (DHKD) beats both CE and KD; the two losses' gradients conflict on the classifier weights, not on the backbone.
#
# BinaryKL applies a per-class sigmoid to the logits and matches teacher and student class by class (a
# Bernoulli KL for each class, × T²); BinaryKL-Norm matches σ((z_s − z_t)/T) to ½, which is exactly
# T²·Σ log cosh((z_s − z_t)/(2T)), a bounded-gradient logit-matching loss (unit-tested). The paper observes that
# CE + BinaryKL on one linear classifier is worse than either loss alone and explains it by a gradient conflict
# in the classifier under neural collapse, with the backbone unaffected; its fix (DHKD) trains the main head with
# CE and a second head, on the same features, with BinaryKL-Norm, optionally with PCGrad-style gradient
# alignment (`--ga`). The paper's tables were not retrieved for this book (see the research notes), so the claim
# is checked on its direction and ordering only.
#
# **Protocol, fixed before the run** — the one of `kd_classics` (same replicates, same teachers: the teacher
# cache entries are shared): each seed is a replicate with a fresh MNIST-1D draw, its own CNN teacher (SGD +
# Nesterov, lr 0.05, weight decay 5e-4, cosine, no augmentation) and its own student initialisation; every
# method of a replicate distils from that teacher from the same initial MLP student. Students: Adam with a
# cosine schedule over `epochs`; guard `replicate.converged` on every run's validation curve; a budget sweep
# (on `budget_seeds`) shows test accuracy vs the epoch budget, and the ordering claims carry the guard
# `settled` (the mean paired difference has the same sign at half the budget as at the full budget). The budget
# is 400 epochs, as in `kd_classics` (at 200 the KD and BinaryKL students were still improving near the end of
# the budget). Three replicates at `default` (the GA methods cost two backward passes per batch) to fit the CPU
# budget. The runs of one architecture and budget train at once as one stacked model (`distillation.stacked`;
# each run equals its one-at-a-time run to float rounding, except the dropout masks of the nonlinear auxiliary
# head, drawn differently from the same distribution), cut into `workers` stacks that train in parallel
# processes, one per CPU core (bitwise the same runs as one stack, the auxiliary head's dropout masks aside). Rules are 95% Student-t CIs over replicates of paired differences:
# 1. *Ordering:* CE+BinaryKL (one head) − CE and − BinaryKL both below 0 → reproduced; either above 0 → not
#    reproduced; otherwise inconclusive.
# 2. *DHKD* (released CIFAR options: nonlinear auxiliary head, gradient alignment): DHKD − CE and DHKD − KD both
#    above 0 → reproduced; either below 0 → not reproduced. Ablations: linear auxiliary head with and without GA.
# 3. *Gradient conflict along training:* every `grad_every` epochs the cosine between the CE and BinaryKL
#    gradients (batch means over `grad_examples` training signals) on the main head and on the trunk; per
#    replicate its mean over the window `conflict_window` of the budget (after the early transient and while the
#    cosine LR is still above half its peak: at the end of a converged run the two gradients of the summed loss
#    cancel, which drives their cosine to −1 on every parameter group whatever the mechanism). Head below 0 and
#    backbone above 0 → reproduced; head above 0 or backbone below 0 → not reproduced. Ablation: the same
#    cosines along training of the CE, BinaryKL and KD students, and the DHKD students' trunk cosine.
# 4. *Linear probe:* a fresh softmax probe on the frozen features of the one-head students beats their own
#    head (CI above 0) and is not more than 1 point below a probe on the CE students' features (CI of the
#    difference above −0.01) → reproduced; either the other way → not reproduced.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
dataset = "mnist1d"  # generated data set: "mnist1d" | "digits"
num_samples = 10000  # MNIST-1D signals per draw (80% train of which 20% validation, 20% test); in [1, inf)
n_train = 0  # 0: the whole training split; a positive value caps it (smoke profile); in [0, inf)
seeds = [0, 1, 2]  # replicates: each seed draws its data set, validation split, teacher and student init; in [0, inf)
fresh_data = True  # each replicate draws its own MNIST-1D data set (its data seed is its seed), False shares the canonical draw
teacher_arch = "cnn1d"  # teacher classifier from lossbook.models (as in kd_classics: shared cache entries)
teacher_channels = 32  # teacher CNN width (channels per conv layer); in [1, inf)
teacher_epochs = 60  # teacher budget, cosine schedule; in [1, inf)
teacher_optimizer = "sgd"  # the papers' teachers: SGD with Nesterov momentum 0.9
teacher_lr = 5.0e-2  # teacher peak LR (the papers' CIFAR 0.05); > 0
teacher_weight_decay = 5.0e-4  # the papers' CIFAR weight decay; in [0, inf)
student_hidden = 256  # MLP student: 40 -> hidden -> hidden -> 10; in [1, inf)
epochs = 400  # student budget per run (cosine over the whole budget, as in kd_classics); in [1, inf)
lr = 1.0e-3  # student Adam peak LR, every method; > 0
final_lr_frac = 0.0  # the cosine ends at this fraction of the peak LR; in [0, 1]
batch_size = 128  # training mini-batch size; in [1, inf)
budgets = [100, 200, 400]  # epoch budgets of the accuracy-vs-budget sweep (complete cosine runs; include `epochs`); in [1, inf)
budget_seeds = [0]  # replicates the budget sweep runs on (a subset of seeds); in [0, inf)
binary_kl_T = 2.0  # BinaryKL / BinaryKL-Norm temperature (released default); > 0
ce_weight = 1.0  # CE weight (the released -r 1); in [0, inf)
binary_kl_weight = 1.0  # BinaryKL weight (the released -a 1); in [0, inf)
kd_T = 4.0  # KD baseline temperature (as in kd_classics); > 0
kd_ce_weight = 0.1  # KD baseline: weight of CE; in [0, inf)
kd_weight = 0.9  # KD baseline: weight of T²·KL; in [0, inf)
probe_margin = 0.01  # claim 4: the one-head probe may be at most this far below the CE probe; in [0, 1]
probe_steps = 300  # full-batch Adam steps of each linear probe; in [1, inf)
grad_every = 10  # the CE/BinaryKL gradient cosines are measured at epoch 1 and every this many epochs; in [1, inf)
grad_examples = 2048  # training signals per replicate the gradient cosines are batch means over; in [1, inf)
conflict_window = [0.25, 0.5]  # claim 3 reads the cosines averaged over this fraction of the budget (after the transient, LR >= half its peak); in [0, 1]
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
device = "auto"  # "auto" | "cpu" | "cuda" | "mps"
stacked = True  # train the runs of one budget and architecture as one stacked model (distillation.stacked; needed for the cosines along training)
workers = 2  # processes each stack is split over (the second core; bitwise the same runs, see distillation.stacked); in [1, inf)

# %%
from lossbook import tracking

tracking.attach(mlflow_run_id, "dual_head_kd", globals())

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from lossbook import plotting, replicate, repro
from lossbook.distillation import losses as D
from lossbook.distillation import plots as dplots
from lossbook.distillation import replicates as rep
from lossbook.distillation import stacked as S
from lossbook.distillation import train as distill
from lossbook.models.dual_head import DualHeadStudent
from lossbook.models.mlp import MLP

plotting.setup()
dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.time()
teacher_cfg = {"arch": teacher_arch, "arch_kwargs": {"channels": teacher_channels}, "epochs": teacher_epochs, "lr": teacher_lr,
               "weight_decay": teacher_weight_decay, "optimizer": teacher_optimizer, "schedule": "cosine"}
train_kw = {"lr": lr, "batch_size": batch_size, "schedule": "cosine", "final_frac": final_lr_frac, "device": dev, "stacked": stacked, "workers": workers}
replicates = [rep.make_replicate(dataset, s, fresh_data=fresh_data, num_samples=num_samples, n_train=n_train or None,
                                 teacher=teacher_cfg, device=dev) for s in seeds]
teachers = pd.DataFrame([{"seed": r.seed, "test_acc": r.teacher["acc"]["test"], **rep.teacher_softness(r.teacher_train_logits, r.split.y_train, (1.0, binary_kl_T))}
                         for r in replicates]).set_index("seed")
tracking.log_dict(teachers.reset_index().to_dict(orient="records"), "tables/teachers.json")
print("split sizes:", replicates[0].split.sizes(), "device:", dev)
display(teachers.round(4))


# %%
def make_plain() -> MLP:
    return MLP(replicates[0].split.input_shape[0], replicates[0].split.n_classes, hidden=(student_hidden, student_hidden))


def make_dual(nonlinear: bool) -> DualHeadStudent:
    return DualHeadStudent(make_plain(), replicates[0].split.n_classes, nonlinear=nonlinear)


bkl = {"kd_weight": binary_kl_weight, "T": binary_kl_T}
plain_methods = {
    "ce": distill.LossSpec("ce"),
    "binary_kl": distill.LossSpec("binary_kl", ce_weight=0.0, **bkl),
    "ce_binary_kl_one_head": distill.LossSpec("binary_kl", ce_weight=ce_weight, **bkl),
    "kd": distill.LossSpec("kd", ce_weight=kd_ce_weight, kd_weight=kd_weight, T=kd_T),
}
dual_methods = {
    "dhkd": (True, distill.LossSpec("binary_kl_norm", ce_weight=ce_weight, aux_head=True, ga=True, **bkl)),
    "dhkd_linear": (False, distill.LossSpec("binary_kl_norm", ce_weight=ce_weight, aux_head=True, **bkl)),
    "dhkd_linear_ga": (False, distill.LossSpec("binary_kl_norm", ce_weight=ce_weight, aux_head=True, ga=True, **bkl)),
}

# %% [markdown]
# ## Runs

# %%
models: dict = {}
cos_cb = {"plain": S.cosine_callback(plain_methods["binary_kl"], every=grad_every, n=grad_examples),
          "dual": S.cosine_callback(dual_methods["dhkd_linear"][1], every=grad_every, n=grad_examples)}  # CE (main head) vs BinaryKL(-Norm)
df, results = rep.run_replicates(replicates, plain_methods, make_student=make_plain, epochs=epochs, models=models, epoch_callback=cos_cb["plain"], **train_kw)
for nonlinear in (True, False):
    group = {n: spec for n, (nl, spec) in dual_methods.items() if nl == nonlinear}
    d, r = rep.run_replicates(replicates, group, make_student=lambda nl=nonlinear: make_dual(nl), epochs=epochs, epoch_callback=cos_cb["dual"], **train_kw)
    df = pd.concat([df, d], ignore_index=True)
    results.update(r)
table = rep.method_table(df)
tracking.log_metrics({f"test_acc/{m}": r["mean"] for m, r in table.iterrows()})
tracking.log_dict(df.drop(columns=[c for c in df.columns if c.startswith("spec.")]).to_dict(orient="records"), "results/dual_head_runs.json")
display(table[["test_acc (%)", "n", "train_acc", "best epoch / budget"]])

# %% [markdown]
# ## Accuracy vs epoch budget
# Complete cosine runs of each budget on the replicates in `budget_seeds` (the budget `epochs` reuses the
# main runs); test accuracy and train accuracy at the best-validation epoch.

# %%
sweep_plain = ["ce", "binary_kl", "ce_binary_kl_one_head", "kd"]
bdf = rep.budget_sweep([r for r in replicates if r.seed in budget_seeds], lambda e: {m: plain_methods[m] for m in sweep_plain}, budgets,
                       done=df, make_student=make_plain, **train_kw)
bdf = pd.concat([bdf, rep.budget_sweep([r for r in replicates if r.seed in budget_seeds], lambda e: {"dhkd": dual_methods["dhkd"][1]}, budgets,
                                       done=df, make_student=lambda: make_dual(True), **train_kw)], ignore_index=True)
tracking.log_dict(bdf.drop(columns=[c for c in bdf.columns if c.startswith("spec.")]).to_dict(orient="records"), "results/budget_sweep.json")
for metric in ("test_acc", "train_acc"):
    fig = dplots.budget_curves(bdf, [*sweep_plain, "dhkd"], metric=metric, teacher_acc=teachers["test_acc"].mean() if metric == "test_acc" else None)
    tracking.log_figure(fig, f"{metric}_vs_budget")
    plt.show()
one = "ce_binary_kl_one_head"
gap_pairs = [(one, "ce"), (one, "binary_kl"), ("dhkd", "ce"), ("dhkd", "kd")]
budget_gap = {(a, b): {e: 100 * rep.paired_diffs(bdf[bdf.epochs == e], a, b).mean() for e in budgets} for a, b in gap_pairs}
display(pd.DataFrame({f"{a} − {b} (pp)": g for (a, b), g in budget_gap.items()}).rename_axis("budget").round(2))
fig = dplots.mean_curves(results, [*plain_methods, *dual_methods], seeds)
tracking.log_figure(fig, "curves_at_budget")
plt.show()

# %% [markdown]
# ## Gradient agreement along training
# Every `grad_every` epochs, at the current weights of every student, the cosine between the gradients of CE (main
# head) and of BinaryKL (main head; for the DHKD students BinaryKL-Norm on the auxiliary head), batch means over
# `grad_examples` training signals, on the main linear head and on the trunk (`distillation.stacked.gradient_cosines`).
# For the one-head CE+BinaryKL students this is the paper's conflict; for the CE, BinaryKL and KD students (never
# trained on that sum) it is the reference; for DHKD the trunk cosine says whether the two heads' losses agree on the
# shared features. The shaded band is the pre-registered window of claim 3.

# %%
ep = np.arange(1, epochs + 1)
meas = [e - 1 for e in ep if e == 1 or e % grad_every == 0]
win_idx = [i for i in meas if conflict_window[0] * epochs <= i + 1 <= conflict_window[1] * epochs]
cos_names = [one, "ce", "binary_kl", "kd", "dhkd"]
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, g in zip(axes, ("head", "backbone"), strict=True):
    for i, m in enumerate(cos_names):
        c = np.array([results[(m, s)].curves[f"cos_{g}"] for s in seeds])[:, meas]
        if not np.all(np.isnan(c)):
            ax.plot(ep[meas], c.mean(0), "o-", ms=2, color=f"C{i}", label=m)
    ax.axhline(0, color="k", lw=0.8)
    ax.axvspan(conflict_window[0] * epochs, conflict_window[1] * epochs, color="0.9")
    ax.set(xlabel="epoch", ylabel="cos(∇CE, ∇BinaryKL)", title=f"{g}: mean over replicates")
axes[0].legend(fontsize=8)
tracking.log_figure(fig, "gradient_cosine_along_training")
plt.show()
cos_win = pd.DataFrame([{"model": m, "seed": s, **{f"cos {g} (window)": float(np.nanmean(np.array(results[(m, s)].curves[f"cos_{g}"])[win_idx])) if win_idx else float("nan")
                                                   for g in ("head", "backbone")},
                         **{f"cos {g} (last)": results[(m, s)].curves[f"cos_{g}"][meas[-1]] for g in ("head", "backbone")}}
                        for m in cos_names for s in seeds])
tracking.log_dict(cos_win.to_dict(orient="records"), "tables/gradient_cosines.json")
display(cos_win.groupby("model").mean(numeric_only=True).drop(columns="seed").round(3))

# %% [markdown]
# ## Gradient conflict and the linear probe
# At the final weights of the one-head CE+BinaryKL students and, as the ablation, of the CE and BinaryKL students: the
# cosines on the whole training set (for comparison with the window means above) and the linear probes of claim 4.

# %%
diag_rows = [{"model": name, "seed": r.seed, **distill.head_diagnostics(models[(name, r.seed)], r.split, r.teacher_train_logits,
                                                                          lambda z, t: D.binary_kl(z, t, binary_kl_T), probe_steps=probe_steps, seed=r.seed)}
             for r in replicates for name in (one, "ce", "binary_kl")]
hd = pd.DataFrame(diag_rows)
display(hd.groupby("model")[["cos head", "cos backbone", "own head", "linear probe"]].agg(["mean", "std"]).round(4))
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for i, name in enumerate((one, "ce")):
    sub = hd[hd.model == name]
    axes[0].scatter(np.full(len(sub), i - 0.1), sub["cos head"], color="C0", label="head" if i == 0 else None)
    axes[0].scatter(np.full(len(sub), i + 0.1), sub["cos backbone"], color="C1", label="backbone" if i == 0 else None)
axes[0].axhline(0, color="k", lw=0.8)
axes[0].set_xticks([0, 1], [one, "ce"])
axes[0].set(ylabel="cos(∇CE, ∇BinaryKL)", title="gradient agreement at the final weights")
axes[0].legend()
names, w = [one, "ce", "binary_kl"], 0.35
g = hd.groupby("model")
axes[1].bar(np.arange(3) - w / 2, [100 * g.get_group(n)["own head"].mean() for n in names], w, label="own head")
axes[1].bar(np.arange(3) + w / 2, [100 * g.get_group(n)["linear probe"].mean() for n in names], w, label="linear probe on frozen features")
axes[1].set_xticks(range(3), names, rotation=15)
axes[1].set(ylabel="test accuracy (%)", ylim=(100 * hd[["own head", "linear probe"]].min().min() - 5, None), title="is the backbone what collapsed?")
axes[1].legend()
tracking.log_figure(fig, "gradient_cosine_and_probe")
plt.show()

# %% [markdown]
# ## Claims

# %%
tab = table.to_dict(orient="index")
acc = {m: tab[m]["test_acc (%)"] for m in tab}
conv = {m: rep.converged_guard(results, m, seeds) for m in tab}
ablation_budget = "the accuracy-vs-budget sweep (budgets, budget_seeds) and the train accuracies of the method table"
sweep_txt = {p: ", ".join(f"{v:+.2f} pp at {e}" for e, v in budget_gap[p].items()) for p in gap_pairs}
d1, d2 = rep.paired_diffs(df, one, "ce"), rep.paired_diffs(df, one, "binary_kl")
o1, o2 = replicate.mean_ci_rule(d1, 0.0, "below"), replicate.mean_ci_rule(d2, 0.0, "below")
fmt = rep.format_outcome
replicate.record(
    "one_head_worse_than_both", statement="CE + BinaryKL on one linear head is worse than CE alone and than BinaryKL alone",
    paper="Yang et al. 2024 (DHKD), Fig. 1", paper_value="CE+BinaryKL < min(CE, BinaryKL) (CIFAR-100; table not retrieved)",
    values=d1, outcome=replicate.all_of(o1, o2),
    guards=[conv[one], conv["ce"], conv["binary_kl"], rep.settled_guard(bdf, one, "ce", epochs), rep.settled_guard(bdf, one, "binary_kl", epochs)],
    measured=f"one head {acc[one]}, CE {acc['ce']}, BinaryKL {acc['binary_kl']}; vs CE {fmt(o1)}, vs BinaryKL {fmt(o2)} (n = {o1.n})",
    diagnosis=replicate.Diagnosis(
        f"train accuracy at the selected epoch: one head {100 * tab[one]['train_acc']:.1f}%, CE {100 * tab['ce']['train_acc']:.1f}%, "
        f"BinaryKL {100 * tab['binary_kl']['train_acc']:.1f}%; budget sweep, one head − CE: {sweep_txt[(one, 'ce')]}; "
        f"one head − BinaryKL: {sweep_txt[(one, 'binary_kl')]}", ablation_budget),
)
d3, d4 = rep.paired_diffs(df, "dhkd", "ce"), rep.paired_diffs(df, "dhkd", "kd")
o3, o4 = replicate.mean_ci_rule(d3, 0.0, "above"), replicate.mean_ci_rule(d4, 0.0, "above")
lin = {m: replicate.mean_ci_rule(rep.paired_diffs(df, m, "ce"), 0.0, "above") for m in ("dhkd_linear", "dhkd_linear_ga")}
replicate.record(
    "dhkd_beats_ce_and_kd", statement="DHKD (CE on the main head, BinaryKL-Norm on a nonlinear auxiliary head, GA) beats CE and KD",
    paper="Yang et al. 2024 (DHKD)", paper_value="DHKD > KD > CE (CIFAR-100 / ImageNet; table not retrieved)",
    values=d3, outcome=replicate.all_of(o3, o4),
    guards=[conv["dhkd"], conv["ce"], conv["kd"], rep.settled_guard(bdf, "dhkd", "ce", epochs), rep.settled_guard(bdf, "dhkd", "kd", epochs)],
    measured=f"DHKD {acc['dhkd']}, CE {acc['ce']}, KD {acc['kd']}; vs CE {fmt(o3)}, vs KD {fmt(o4)} (n = {o3.n})",
    diagnosis=replicate.Diagnosis(
        f"ablations vs CE: linear auxiliary head {fmt(lin['dhkd_linear'])}, linear + GA {fmt(lin['dhkd_linear_ga'])}; "
        f"budget sweep, DHKD − CE: {sweep_txt[('dhkd', 'ce')]}; DHKD − KD: {sweep_txt[('dhkd', 'kd')]}",
        "dhkd_linear / dhkd_linear_ga runs and " + ablation_budget),
)
c1 = cos_win[cos_win.model == one].sort_values("seed")
cce = cos_win[cos_win.model == "ce"].sort_values("seed")
cdh = cos_win[cos_win.model == "dhkd"].sort_values("seed")
oh, ob = replicate.mean_ci_rule(c1["cos head (window)"], 0.0, "below"), replicate.mean_ci_rule(c1["cos backbone (window)"], 0.0, "above")
replicate.record(
    "gradient_conflict_in_head_only",
    statement="Along one-head CE+BinaryKL training the two losses' gradients conflict on the classifier weights, not on the backbone",
    paper="Yang et al. 2024 (DHKD), §3", paper_value="cos < 0 on the linear classifier, ≥ 0 on the backbone",
    values=c1["cos head (window)"].to_numpy(), outcome=replicate.all_of(oh, ob),
    guards=[conv[one], replicate.progress_reached(len(win_idx), 2, lower_is_better=False, what="gradient checkpoints in the window", name="window_measured",
                                                  fix="a smaller grad_every or a wider conflict_window")],
    measured=f"mean over epochs {conflict_window[0] * epochs:g}–{conflict_window[1] * epochs:g}: cos head {rep.format_outcome(oh, 1.0, '', 3)}, "
             f"backbone {rep.format_outcome(ob, 1.0, '', 3)} (n = {oh.n})",
    diagnosis=replicate.Diagnosis(
        f"reference cosines in the same window: CE students head {cce['cos head (window)'].mean():+.3f}, backbone {cce['cos backbone (window)'].mean():+.3f}; "
        f"DHKD trunk (CE via the main head vs BinaryKL-Norm via the auxiliary head) {cdh['cos backbone (window)'].mean():+.3f}; one-head students at the "
        f"last checkpoint: head {c1['cos head (last)'].mean():+.3f}, backbone {c1['cos backbone (last)'].mean():+.3f}",
        "the cosines along training of the CE, BinaryKL, KD and DHKD students (figure above)"),
)
h1, hce = hd[hd.model == one].sort_values("seed"), hd[hd.model == "ce"].sort_values("seed")
g1 = (h1["linear probe"] - h1["own head"]).to_numpy()
g2 = (h1["linear probe"].to_numpy() - hce["linear probe"].to_numpy())
og1, og2 = replicate.mean_ci_rule(g1, 0.0, "above"), replicate.mean_ci_rule(g2, -probe_margin, "above")
replicate.record(
    "backbone_not_collapsed", statement="A linear probe on the frozen features of the one-head CE+BinaryKL student recovers accuracy its own head lost",
    paper="Yang et al. 2024 (DHKD)", paper_value="the backbone trained with CE+BinaryKL is not worse; the head is what fails",
    values=g1, outcome=replicate.all_of(og1, og2), guards=[conv[one], conv["ce"]],
    measured=f"probe − own head {fmt(og1)}; probe(one head) − probe(CE) {fmt(og2)} (n = {og1.n})",
    diagnosis=replicate.Diagnosis(
        f"probe on BinaryKL-only features {100 * hd[hd.model == 'binary_kl']['linear probe'].mean():.2f}% vs its own head "
        f"{100 * hd[hd.model == 'binary_kl']['own head'].mean():.2f}%", "the probes on the CE and BinaryKL students' features"),
)
show = table[["test_acc (%)", "n", "train_acc", "best epoch / budget"]].copy()
show["train_acc"] = (100 * show["train_acc"]).round(2)
print(show.to_string())
tracking.log_dict(show.reset_index().to_dict(orient="records"), "tables/method_table.json")
wall = time.time() - t_start
print(f"wall time: {wall:.0f} s")
tracking.log_metrics({"wall_seconds": wall})

# %% [markdown]
# ## Discussion
# The numbers this discussion rests on, from this run:

# %%
print(f"teachers: test accuracy {100 * teachers.test_acc.min():.1f}–{100 * teachers.test_acc.max():.1f}%, train p(target) at T=1 "
      f"{teachers['p(target) T=1'].min():.3f}–{teachers['p(target) T=1'].max():.3f}; train logit spread {teachers['logit spread'].min():.1f}–{teachers['logit spread'].max():.1f}")
for m in table.index:
    print(f"{m:22s} test {table.loc[m, 'test_acc (%)']:>15s}  train@selected {100 * table.loc[m, 'train_acc']:6.2f}%  best epochs {table.loc[m, 'best epoch / budget']}")
for (a, b), s_ in sweep_txt.items():
    print(f"{a} − {b} by budget: {s_}")
print(hd.groupby("model")[["cos head", "cos backbone", "own head", "linear probe"]].mean().round(4).to_string())
cw = cos_win.groupby("model").mean(numeric_only=True)
print(f"gradient cosines, mean over epochs {conflict_window[0] * epochs:g}–{conflict_window[1] * epochs:g} (last checkpoint in brackets):")
for m in cos_names:
    print(f"  {m:22s} head {cw.loc[m, 'cos head (window)']:+.3f} ({cw.loc[m, 'cos head (last)']:+.3f})   backbone "
          f"{cw.loc[m, 'cos backbone (window)']:+.3f} ({cw.loc[m, 'cos backbone (last)']:+.3f})")

# %% [markdown]
# * **Operating point.** Every student trains to the end of a cosine schedule; the converged guards say per
#   claim whether each run's best validation epoch came before the last 10% of the budget, and the budget
#   figure shows whether the orderings move with the number of epochs (the previous version of this notebook
#   read them off 30 epochs of constant-LR Adam, with the BinaryKL students still climbing).
# * **Mechanism.** The paper's explanation of the one-head failure is a gradient conflict in the classifier with
#   the backbone unaffected. The cosines along training (figure and printed window means) are that measurement:
#   for the one-head students the head and trunk cosines in the window are what claim 3 judges, the CE, BinaryKL
#   and KD students (trained on other losses) show what the same two gradients do at weights that never
#   balanced them, and the DHKD trunk cosine says whether the two heads' losses pull the shared features the same
#   way. The last-checkpoint values in brackets show the stationarity effect: once a run on CE + BinaryKL has
#   converged the two gradients cancel and both cosines sit near −1, on the head and the trunk alike, which is why
#   the claim is read in a window of the budget and not at the final weights.
# * **Teachers.** One teacher per replicate (shared with `kd_classics`), so the CIs include the teacher-to-teacher
#   variance that made the one-teacher verdicts of the previous version depend on the particular teacher.
# * **Scale and setting.** ResNets on CIFAR-100 and ImageNet for hundreds of epochs in the paper; an MLP student
#   and a 1-D CNN teacher on MNIST-1D here. Loss weights and the temperature are the released defaults
#   (`-r 1 -a 1 --BinaryKL_T 2`), not tuned.
