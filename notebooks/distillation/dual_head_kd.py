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
# is checked on its direction and ordering only. Here: MNIST-1D, the 1-D CNN teacher shared with `kd_classics`
# (same cache entry), an MLP student, every method on the same seeds.

# %% tags=["parameters"]
mlflow_run_id = ""
profile = "interactive"
dataset = "mnist1d"
num_samples = 10000
n_train = 0
seeds = [0, 1, 2, 3, 4]
teacher_arch = "cnn1d"
teacher_channels = 32
teacher_epochs = 40
teacher_lr = 1.0e-2
student_hidden = 256
epochs = 30
lr = 1.0e-3
batch_size = 128
binary_kl_T = 2.0
ce_weight = 1.0
binary_kl_weight = 1.0
kd_T = 4.0
kd_ce_weight = 0.1
kd_weight = 0.9
probe_steps = 300
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default
device = "auto"

# %%
from lossbook import tracking

tracking.attach(mlflow_run_id, "dual_head_kd", globals())

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from lossbook import claims, plotting, repro, stats
from lossbook.data.classification import load_dataset
from lossbook.distillation import losses as D
from lossbook.distillation import train as distill
from lossbook.models.dual_head import DualHeadStudent
from lossbook.models.mlp import MLP
from lossbook.stats import paired_bootstrap_ci

plotting.setup()
dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.time()
split = load_dataset(dataset, seed=0, num_samples=num_samples, n_train=n_train or None)
data_config = {"name": dataset, "split_seed": 0, "num_samples": num_samples, "n_train": n_train, "val_fraction": 0.2}
teacher = distill.get_teacher(
    split, data_config, arch=teacher_arch, arch_kwargs={"channels": teacher_channels}, epochs=teacher_epochs,
    lr=teacher_lr, seed=0, device=dev,
)
zt_train = teacher["logits"]["train"]
print(split.sizes(), "teacher accuracy:", {k: round(v, 4) for k, v in teacher["acc"].items()})
tracking.log_metrics({f"teacher/{k}_acc": v for k, v in teacher["acc"].items()})

# %% [markdown]
# ## Setup
# Student MLP 40 → 256 → 256 → 10 (Adam, `epochs` epochs), test accuracy of the main head at the best-validation
# epoch. Methods:
# * `ce`: cross-entropy alone; `binary_kl`: BinaryKL alone (T = 2), on the single head;
# * `ce_binary_kl_one_head`: CE + BinaryKL on the same linear head (weights 1 and 1, the paper's `-r 1 -a 1`);
# * `kd`: 0.1·CE + 0.9·T²·KL, T = 4 (as in `kd_classics`);
# * `dhkd`: CE on the main head + BinaryKL-Norm (T = 2) on an auxiliary head, with the released CIFAR options
#   (nonlinear auxiliary head, gradient alignment); ablations: `dhkd_linear` (linear head, no GA) and
#   `dhkd_linear_ga` (linear head, GA).
#
# **Rules (fixed before the runs).** Differences are decided by the paired (by seed) bootstrap 95% CI of the
# mean difference: above 0 → "higher", below 0 → "lower", else no decision.
# 1. *Ordering:* reproduced if CE+BinaryKL (one head) is lower than both CE and BinaryKL alone; not reproduced if
#    it is higher than either; otherwise inconclusive.
# 2. *DHKD:* reproduced if `dhkd` is higher than both CE and KD; not reproduced if lower than either; else inconclusive.
# 3. *Gradient conflict:* at the final weights of the one-head CE+BinaryKL students, the cosine between the CE and
#    BinaryKL gradients (whole training set) has a bootstrap CI (over seeds) below 0 on the head weights and not
#    below 0 on the backbone → reproduced; head CI above 0 or backbone CI below 0 → not reproduced; else inconclusive.
# 4. *Linear probe:* a softmax probe on the frozen features of the one-head CE+BinaryKL students beats their own
#    head (CI above 0) and is not lower than a probe on the CE students' features → reproduced; the probe lower
#    than the head, or lower than the CE probe → not reproduced; else inconclusive.

# %%
def make_plain() -> MLP:
    return MLP(split.input_shape[0], split.n_classes, hidden=(student_hidden, student_hidden))


def make_dual(nonlinear: bool) -> DualHeadStudent:
    return DualHeadStudent(make_plain(), split.n_classes, nonlinear=nonlinear)


plain_methods = {
    "ce": distill.LossSpec("ce"),
    "binary_kl": distill.LossSpec("binary_kl", ce_weight=0.0, kd_weight=binary_kl_weight, T=binary_kl_T),
    "ce_binary_kl_one_head": distill.LossSpec("binary_kl", ce_weight=ce_weight, kd_weight=binary_kl_weight, T=binary_kl_T),
    "kd": distill.LossSpec("kd", ce_weight=kd_ce_weight, kd_weight=kd_weight, T=kd_T),
}
dual_methods = {
    "dhkd": (True, distill.LossSpec("binary_kl_norm", ce_weight=ce_weight, kd_weight=binary_kl_weight, T=binary_kl_T, aux_head=True, ga=True)),
    "dhkd_linear": (False, distill.LossSpec("binary_kl_norm", ce_weight=ce_weight, kd_weight=binary_kl_weight, T=binary_kl_T, aux_head=True)),
    "dhkd_linear_ga": (False, distill.LossSpec("binary_kl_norm", ce_weight=ce_weight, kd_weight=binary_kl_weight, T=binary_kl_T, aux_head=True, ga=True)),
}

# %% [markdown]
# ## Runs

# %%
common = dict(teacher_logits=zt_train, seeds=seeds, epochs=epochs, lr=lr, batch_size=batch_size, device=dev)
df, results, models = distill.run_methods(split, plain_methods, make_student=make_plain, keep_models=True, **common)
for name, (nonlinear, spec) in dual_methods.items():
    d, r, m = distill.run_methods(split, {name: spec}, make_student=lambda nl=nonlinear: make_dual(nl), keep_models=True, **common)
    df = pd.concat([df, d], ignore_index=True)
    results.update(r)
    models.update(m)
summary = distill.summarize(df)
tracking.log_metrics({f"test_acc/{m}": r["mean"] for m, r in summary.iterrows()})
tracking.log_dict(df.drop(columns=[c for c in df.columns if c.startswith("spec.")]).to_dict(orient="records"), "results/dual_head_runs.json")
summary


# %%
def ci_of(a: str, b: str):
    return distill.compare(df, a, b)


pairs = [("ce_binary_kl_one_head", "ce"), ("ce_binary_kl_one_head", "binary_kl"), ("dhkd", "ce"), ("dhkd", "kd"),
         ("dhkd_linear", "ce"), ("dhkd_linear_ga", "ce"), ("binary_kl", "ce"), ("kd", "ce")]
cis = {(a, b): ci_of(a, b)[1] for a, b in pairs}
pd.DataFrame([{"A": a, "B": b, "A − B (pp)": 100 * c.diff, "CI low": 100 * c.low, "CI high": 100 * c.high} for (a, b), c in cis.items()])

# %% [markdown]
# ## Gradient conflict and the linear probe

# %%
one = "ce_binary_kl_one_head"
cos_rows = []
for s in seeds:
    for name in (one, "ce"):
        m = models[(name, s)]
        groups = {"head": list(m.head.parameters()), "backbone": list(m.body.parameters())}
        c = distill.loss_gradient_cosines(m, split.x_train, split.y_train, zt_train, lambda z, t: D.binary_kl(z, t, binary_kl_T), groups)
        cos_rows.append({"model": name, "seed": s, **c})
cos_df = pd.DataFrame(cos_rows)
one_cos = cos_df[cos_df.model == one].sort_values("seed")
ci_head = paired_bootstrap_ci(one_cos["head"].to_numpy(), np.zeros(len(one_cos)))
ci_back = paired_bootstrap_ci(one_cos["backbone"].to_numpy(), np.zeros(len(one_cos)))

probe_rows = []
for s in seeds:
    for name in (one, "ce", "binary_kl"):
        m = models[(name, s)]
        m.eval()
        with torch.no_grad():
            f_tr = m(split.x_train, return_features=True)[1]
            f_te = m(split.x_test, return_features=True)[1]
            own = (m(split.x_test).argmax(1) == split.y_test).float().mean().item()
        probe = distill.linear_probe(f_tr, split.y_train, f_te, split.y_test, steps=probe_steps, seed=s)
        probe_rows.append({"model": name, "seed": s, "own head (final)": own, "linear probe": probe})
probe_df = pd.DataFrame(probe_rows)
p_one = probe_df[probe_df.model == one].sort_values("seed")
p_ce = probe_df[probe_df.model == "ce"].sort_values("seed")
ci_gain = paired_bootstrap_ci(p_one["linear probe"].to_numpy(), p_one["own head (final)"].to_numpy())
ci_vs_ce = paired_bootstrap_ci(p_one["linear probe"].to_numpy(), p_ce["linear probe"].to_numpy())
display_tab = pd.concat([cos_df.groupby("model")[["head", "backbone"]].mean().add_prefix("cos "),
                         probe_df.groupby("model")[["own head (final)", "linear probe"]].mean()], axis=1)
display_tab

# %% [markdown]
# ## Figures

# %%
fig = plotting.mean_std_bars({m: 100 * df.loc[df.method == m, "test_acc"].to_numpy() for m in summary.index},
                             ylabel="test accuracy (%)", title=f"MLP student on {dataset} (teacher {100 * teacher['acc']['test']:.1f}%)")
fig.axes[0].axhline(100 * teacher["acc"]["test"], color="k", ls="--", lw=1)
fig.axes[0].set_ylim(100 * df["test_acc"].min() - 5, 100 * teacher["acc"]["test"] + 2)
tracking.log_figure(fig, "accuracy_by_method")

ep = np.arange(1, epochs + 1)
fig = plotting.curves({m: (ep, 100 * np.mean([results[(m, s)].curves["val_acc"] for s in seeds], 0)) for m in summary.index},
                      xlabel="epoch", ylabel="validation accuracy (%)", title="mean over seeds")
tracking.log_figure(fig, "val_curves")

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for i, name in enumerate((one, "ce")):
    sub = cos_df[cos_df.model == name]
    axes[0].scatter(np.full(len(sub), i - 0.1), sub["head"], color="C0", label="head" if i == 0 else None)
    axes[0].scatter(np.full(len(sub), i + 0.1), sub["backbone"], color="C1", label="backbone" if i == 0 else None)
axes[0].axhline(0, color="k", lw=0.8)
axes[0].set_xticks([0, 1], [one, "ce"])
axes[0].set(ylabel="cos(∇CE, ∇BinaryKL)", title="gradient agreement at the final weights")
axes[0].legend()
w = 0.35
names = [one, "ce", "binary_kl"]
g = probe_df.groupby("model")
axes[1].bar(np.arange(3) - w / 2, [100 * g.get_group(n)["own head (final)"].mean() for n in names], w, label="own head")
axes[1].bar(np.arange(3) + w / 2, [100 * g.get_group(n)["linear probe"].mean() for n in names], w, label="linear probe on frozen features")
axes[1].set_xticks(range(3), names, rotation=15)
axes[1].set(ylabel="test accuracy (%)", ylim=(100 * probe_df[["own head (final)", "linear probe"]].min().min() - 5, None), title="is the backbone what collapsed?")
axes[1].legend()
tracking.log_figure(fig, "gradient_cosine_and_probe")

# %% [markdown]
# ## Claims

# %%
acc = summary["mean ± std"].to_dict()
a1, a2 = cis[(one, "ce")], cis[(one, "binary_kl")]
claims.record(
    "one_head_worse_than_both",
    statement="CE + BinaryKL on one linear head is worse than CE alone and than BinaryKL alone",
    paper="Yang et al. 2024 (DHKD), Fig. 1", paper_value="CE+BinaryKL < min(CE, BinaryKL) (CIFAR-100; table not retrieved)",
    measured=f"one head {acc[one]}, CE {acc['ce']}, BinaryKL {acc['binary_kl']}; vs CE {stats.format_ci(a1)}, vs BinaryKL {stats.format_ci(a2)}",
    threshold="both paired CIs below 0 → reproduced; either above 0 → not reproduced; else inconclusive",
    passed=claims.decide(reproduced=a1.high < 0 and a2.high < 0, refuted=a1.low > 0 or a2.low > 0),
)
b1, b2 = cis[("dhkd", "ce")], cis[("dhkd", "kd")]
claims.record(
    "dhkd_beats_ce_and_kd",
    statement="DHKD (CE on the main head, BinaryKL-Norm on an auxiliary head) beats CE and KD",
    paper="Yang et al. 2024 (DHKD)", paper_value="DHKD > KD > CE (CIFAR-100 / ImageNet; table not retrieved)",
    measured=f"DHKD {acc['dhkd']}, CE {acc['ce']}, KD {acc['kd']}; vs CE {stats.format_ci(b1)}, vs KD {stats.format_ci(b2)}",
    threshold="both paired CIs above 0 → reproduced; either below 0 → not reproduced; else inconclusive",
    passed=claims.decide(reproduced=b1.low > 0 and b2.low > 0, refuted=b1.high < 0 or b2.high < 0),
)
claims.record(
    "gradient_conflict_in_head_only",
    statement="At the end of one-head CE+BinaryKL training the two losses' gradients conflict on the classifier weights, not on the backbone",
    paper="Yang et al. 2024 (DHKD), §3", paper_value="cos < 0 on the linear classifier, ≥ 0 on the backbone",
    measured=f"cos head {ci_head.diff:+.3f} [{ci_head.low:+.3f}, {ci_head.high:+.3f}], backbone {ci_back.diff:+.3f} [{ci_back.low:+.3f}, {ci_back.high:+.3f}]",
    threshold="head CI below 0 and backbone CI not below 0 → reproduced; head CI above 0 or backbone CI below 0 → not reproduced; else inconclusive",
    passed=claims.decide(reproduced=ci_head.high < 0 and ci_back.high >= 0, refuted=ci_head.low > 0 or ci_back.high < 0),
)
claims.record(
    "backbone_not_collapsed",
    statement="A linear probe on the frozen features of the one-head CE+BinaryKL student recovers accuracy its own head lost",
    paper="Yang et al. 2024 (DHKD)", paper_value="the backbone trained with CE+BinaryKL is not worse; the head is what fails",
    measured=f"probe − own head {stats.format_ci(ci_gain)}; probe(one head) − probe(CE) {stats.format_ci(ci_vs_ce)}",
    threshold="probe − head CI above 0 and probe vs CE-probe CI not below 0 → reproduced; either below 0 → not reproduced; else inconclusive",
    passed=claims.decide(reproduced=ci_gain.low > 0 and ci_vs_ce.high >= 0, refuted=ci_gain.high < 0 or ci_vs_ce.high < 0),
)
print(summary[["mean ± std", "n"]].to_string())
print(f"wall time: {time.time() - t_start:.0f} s")
tracking.log_metrics({"wall_seconds": time.time() - t_start})

# %% [markdown]
# ## Discussion
# * **What the default run showed** (MNIST-1D, MLP student, 5 seeds, the cached CNN teacher at 95.8%). CE +
#   BinaryKL on one head was worse than CE alone (−3.5 points), as the paper says, but better than BinaryKL alone,
#   so the full ordering "worse than either" did not reproduce: at this scale BinaryKL alone is the weakest
#   method (like KD, it suffers from the large gap between the CNN teacher and the MLP student; see
#   `kd_classics`). DHKD with the released CIFAR options (nonlinear auxiliary head + gradient alignment) beat CE
#   (+1.1 points) and KD (+5.9). The ablations matter: with a *linear* auxiliary head DHKD fell ~7 points below
#   CE, with or without gradient alignment — the nonlinear head is what keeps the BinaryKL-Norm signal from
#   distorting the shared features.
# * **Mechanism.** At the final weights of the one-head students the CE and BinaryKL gradients point in
#   opposite directions on the classifier (mean cosine ≈ −0.36) and agree on the backbone (≈ +0.40), the
#   pattern the paper describes; a fresh linear probe on their frozen features recovers ~3 points over their own
#   head and matches a probe on the CE features, so the backbone is not what failed.
# * **Sensitivity to the teacher — read the verdicts with this in mind.** All seeds share one teacher. During
#   development a teacher with the *same* configuration was trained with two CPU threads instead of one
#   (different floating-point reductions) and came out at 96.15% instead of 95.8%. With it, the head cosine was
#   *positive* (+0.27, CI [+0.17, +0.38]; "not reproduced") and DHKD − CE was +1.2 points with a CI of
#   [−0.1, +2.5] ("inconclusive"); the ordering and probe verdicts were the same. The gradient-conflict claim
#   and the DHKD-vs-CE margin therefore depend on the particular teacher, a source of variance the seed-paired
#   CIs do not cover. Training one teacher per seed would fold it in (future work; the `full` profile is the
#   place for it).
# * **Scale and setting.** The paper trains ResNets on CIFAR-100 and ImageNet for hundreds of epochs, close to
#   neural collapse; our students end at ~80% (one head), ~84% (DHKD) and ~93% (CE) training accuracy. Loss
#   weights and the temperature are the released defaults (`-r 1 -a 1 --BinaryKL_T 2`), not tuned.
# * **Verdicts** come from paired bootstrap CIs over seeds; a claim whose CI spans 0 is reported inconclusive.
