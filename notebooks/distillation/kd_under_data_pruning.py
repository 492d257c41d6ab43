# %% [markdown]
# # Knowledge distillation under data pruning: KD on the kept subset, random vs EL2N pruning, and the KD weight
# **Paper:** Ben-Baruch, Botach, Kviatkovsky, Aggarwal, Medioni (ICML 2025; arXiv 2403.07854), "Distilling the Knowledge in Data Pruning".
# **Claim:** training on a pruned subset with KD from a teacher trained on the complete data improves accuracy at every pruning fraction; with KD, random pruning is comparable or superior to score-based pruning; the optimal KD weight grows as the kept fraction falls.
#
# The paper trains a student on a pruned subset of the training set (kept fraction f) with
# L = (1 − α)·CE + α·KD, KD being the T²-scaled KL to the soft predictions of a teacher trained on the complete
# data. Its abstract (the text quoted here; the paper's tables and hyper-parameters could not be retrieved for
# this book, so no per-fraction number is quoted) states: "By integrating KD into training, we demonstrate
# significant improvement across datasets, pruning methods, and on all pruning fractions"; "using KD, simple
# random pruning is comparable or superior to sophisticated pruning methods across all pruning regimes. On
# ImageNet for example, we achieve superior accuracy despite training on a random subset of only 50% of the
# data"; "a crucial connection between the pruning factor and the optimal knowledge distillation weight. This
# helps mitigate the impact of samples with noisy labels and low-quality images retained by typical pruning
# algorithms"; "when using lower pruning fractions, larger teachers lead to accuracy degradation, while
# surprisingly, employing teachers with a smaller capacity than the student's may improve results". It motivates
# KD on pruned data theoretically through **self-distillation** (teacher and student of one architecture); its
# experiments (CIFAR-10/100, SVHN, ImageNet) build on the DeepCore framework.
#
# **Protocol, fixed before the run** (`lossbook.distillation.pruning`, `lossbook.replicate`):
# * **Replicates.** Each seed is one replicate: a fresh MNIST-1D draw (`data_seed = seed`; its own train,
#   validation and test signals), its own validation split, its own teacher, its own EL2N score models, its own
#   random subset and its own student initialisation, shared by every cell of that replicate (paired design).
# * **Teacher.** Self-distillation, the paper's theoretical setting: the teacher is the student's architecture (an
#   MLP 40 → `teacher_hidden` → `teacher_hidden` → 10) trained with CE on the replicate's **complete** training
#   split (Adam, cosine schedule, best-validation weights). Its logits on the kept examples are the KD targets.
# * **Pruning.** Kept fractions `fractions`; `random` keeps the first round(f·n) of one permutation; `el2n` keeps the
#   round(f·n) examples with the highest EL2N score ‖softmax(f(x)) − e_y‖₂ (Paul et al. 2021), averaged over
#   `el2n_models` student-architecture models trained with CE for `el2n_epochs` epochs (Paul et al.: epoch 20 of
#   200, 10 runs). EL2N keeps the **hardest** examples at every fraction, as Paul et al. and the paper's quoted
#   "samples with noisy labels and low-quality images retained by typical pruning algorithms" do. Subsets are
#   nested in f and not stratified by class (Paul et al. do not stratify). Ablation: `el2n_easy` keeps the lowest
#   scores (Sorscher et al. 2022's choice when little data is kept) at the fractions `easy_fractions`.
# * **Students.** Every (pruning method, fraction, α in `alphas`) cell trains for the same `epochs` epochs (Adam,
#   cosine to `final_lr_frac` of the peak): a smaller subset gets proportionally fewer steps, as in DeepCore. All
#   cells of one fraction train as one stacked model (`distillation.stacked`; each run equals its one-at-a-time
#   run to float rounding, `tests/distillation/test_pruning.py`). Test accuracy is read at each run's
#   best-validation epoch; the validation split is never pruned.
# * **Selection.** "KD" at a fraction is the α > 0 of the grid with the best validation accuracy, per replicate;
#   α* (for the KD-weight claim and the random-vs-EL2N comparison) is selected on validation over the whole grid,
#   α = 0 included. Test is never used to select.
# * **Rules** (95% Student-t CIs over replicates of paired differences, `replicate`):
#   1. `kd_helps_f<pct>`: acc(KD) − acc(CE) on the same subset above 0, for random and for EL2N pruning (`all_of`;
#      at f = 1 both are the full set).
#   2. `random_vs_el2n_with_kd_f<pct>` ("comparable or superior"): acc(random, α*) − acc(EL2N, α*) inside
#      [−`margin_pp`, +∞) (`mean_within_rule`; margin 1 pp, written before the run).
#   3. `alpha_star_grows_as_fraction_falls`: per replicate the Spearman correlation between f and α*(f) (random
#      pruning; 0 when α* is constant) has a mean below 0.
#   4. `kd_on_half_random_beats_full_ce` (the abstract's ImageNet sentence): acc(random f = 0.5, α*) − acc(full data,
#      CE) above 0.
#   Guards: every run a claim reads has its best validation epoch before the last 10% of the budget
#   (`converged`). At the fractions in `budget_fractions` the claims read the cells retrained for `budget_factor`×
#   the epochs (a one-replicate pilot had best epochs up to 92 of 100 at f = 0.1, where 100 epochs are only 500
#   steps) and carry `settled`: the mean difference has the same sign at the main budget (the budget ablation).
# * **Teacher-width arm** (the paper's last finding): teachers of widths `teacher_widths` besides `teacher_hidden`,
#   at the fractions `width_fractions`, random pruning, the KD pick over `width_alphas` (the same sub-grid for the
#   main teacher); recorded as exploratory rows (3 teacher widths at 2 fractions only), and the ablation the f = 1
#   diagnosis reads. `full` runs it at every fraction.

# %% tags=["parameters"]
mlflow_run_id = ""  # injected by the runner; empty when run by hand -> the notebook starts its own run
profile = "interactive"  # injected by the runner (smoke | default | full)
dataset = "mnist1d"  # generated data set: "mnist1d" | "digits"
num_samples = 10000  # MNIST-1D signals per draw (80% train of which 20% validation, 20% test); in [1, inf)
n_train = 0  # 0: the whole training split; a positive value caps it (smoke profile); in [0, inf)
seeds = [0, 1, 2]  # replicates: each seed draws its data, validation split, teacher, EL2N models, random subset and student init; in [0, inf)
student_hidden = 128  # MLP student 40 -> hidden -> hidden -> 10; in [1, inf)
teacher_hidden = 128  # main teacher: the student's architecture (self-distillation) at this width; in [1, inf)
teacher_epochs = 100  # teacher budget on the complete training split (Adam, cosine, best-validation weights); in [1, inf)
teacher_lr = 1.0e-3  # teacher Adam peak LR; > 0
fractions = [1.0, 0.5, 0.25, 0.1]  # kept fractions f of the training split (the grid); in (0, 1]
prunes = ["random", "el2n"]  # pruning methods of the main grid: random | el2n (hardest kept) | el2n_easy (easiest kept)
alphas = [0.0, 0.25, 0.5, 0.75, 1.0]  # KD weight grid, L = (1 − α)·CE + α·T²·KL (α = 0: CE alone); in [0, 1]
T = 4.0  # KD temperature; > 0
epochs = 100  # student epochs at every fraction (cosine over the whole budget); in [1, inf)
lr = 1.0e-3  # student Adam peak LR, every cell; > 0
final_lr_frac = 0.0  # the cosine ends at this fraction of the peak LR; in [0, 1]
batch_size = 128  # training mini-batch size; in [1, inf)
el2n_models = 4  # EL2N score models per replicate (averaged); in [1, inf)
el2n_epochs = 10  # CE epochs of each score model on the complete training split (early training); in [1, inf)
el2n_lr = 1.0e-3  # score models' constant Adam LR; > 0
margin_pp = 1.0  # random vs EL2N with KD: "comparable or superior" = random − EL2N ≥ −margin (points); in [0, inf)
easy_fractions = [0.25, 0.1]  # ablation: EL2N keeping the easiest examples at these fractions; in (0, 1)
budget_fractions = [0.1]  # ablation: the cells of these fractions retrained for budget_factor × epochs; in (0, 1]
budget_factor = 2  # epoch multiplier of the budget ablation; in [2, inf)
teacher_widths = [32, 256]  # teacher-width arm: MLP teachers of these widths besides teacher_hidden; in [1, inf)
width_fractions = [1.0, 0.1]  # fractions the teacher-width arm runs at (random pruning); in (0, 1]
width_alphas = [0.5, 1.0]  # KD weights the teacher-width arm runs (a sub-grid of alphas; its KD pick is over these); in (0, 1]
threads = 1  # torch intra-op CPU threads; 1 is fastest for these small stacked MLPs, 0 keeps the torch default; in [0, inf)
device = "auto"  # "auto" | "cpu" | "cuda" | "mps"

# %%
from lossbook import tracking

tracking.attach(mlflow_run_id, "kd_under_data_pruning", globals())

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from lossbook import plotting, replicate, repro
from lossbook.distillation import pruning
from lossbook.distillation import replicates as rep
from lossbook.models.mlp import MLP

plotting.setup()
dev = repro.get_device(device)
repro.set_threads(threads)
t_start = time.time()
train_kw = {"batch_size": batch_size, "schedule": "cosine", "final_frac": final_lr_frac, "device": dev}
teacher_cfg = {"arch": "mlp", "epochs": teacher_epochs, "lr": teacher_lr, "weight_decay": 0.0, "optimizer": "adam", "schedule": "cosine"}
small = [f for f in fractions if f < 1]
f_min = min(fractions)
widths = sorted({teacher_hidden, *teacher_widths})
print(f"device {dev}; replicates {seeds}; fractions {fractions}; α grid {alphas}; T = {T:g}; {epochs} epochs per student")

# %% [markdown]
# ## Replicates, teachers and EL2N scores
# One teacher per replicate and width, cached by its full config (data draw included). The teacher's accuracy
# on its own training split and its softness (p(target) at T = 1 and T) say how much beyond the label KD can pass.

# %%
reps = {s: rep.make_replicate(dataset, s, num_samples=num_samples, n_train=n_train or None, device=dev,
                              teacher={**teacher_cfg, "arch_kwargs": {"hidden": [teacher_hidden, teacher_hidden]}}) for s in seeds}
splits = {s: r.split for s, r in reps.items()}
teachers = {(s, "main"): r.teacher_train_logits for s, r in reps.items()}
teacher_info = {(s, teacher_hidden): r.teacher for s, r in reps.items()}
for w in teacher_widths:
    for s in seeds:
        t_ = rep.make_replicate(dataset, s, num_samples=num_samples, n_train=n_train or None, device=dev,
                                teacher={**teacher_cfg, "arch_kwargs": {"hidden": [w, w]}}).teacher
        teachers[(s, str(w))], teacher_info[(s, w)] = t_["logits"]["train"], t_
teacher_tab = pd.DataFrame([{"seed": s, "width": w, "test_acc": t_["acc"]["test"], "val_acc": t_["acc"]["val"], "best_epoch": t_["best_epoch"],
                             **rep.teacher_softness(t_["logits"]["train"], splits[s].y_train, (1.0, T))} for (s, w), t_ in teacher_info.items()])
tracking.log_dict(teacher_tab.to_dict(orient="records"), "tables/teachers.json")
print("split sizes:", splits[seeds[0]].sizes())
display(teacher_tab.groupby("width").mean(numeric_only=True).drop(columns="seed").round(4))


# %%
def make_student() -> MLP:
    return MLP(splits[seeds[0]].input_shape[0], splits[seeds[0]].n_classes, hidden=(student_hidden, student_hidden))


t0 = time.time()
scores = dict(zip(seeds, pruning.el2n_scores([splits[s] for s in seeds], seeds, make_model=make_student, n_models=el2n_models,
                                             epochs=el2n_epochs, lr=el2n_lr, batch_size=batch_size, device=dev), strict=True))
keep_cache = {}


def keep(s: int, prune: str, f: float):
    if (s, prune, f) not in keep_cache:
        keep_cache[(s, prune, f)] = pruning.keep_indices(len(splits[s].y_train), f, prune, seed=s, scores=scores[s])
    return keep_cache[(s, prune, f)]


profile_rows = [{"seed": s, "prune": p, "fraction": f, **pruning.subset_profile(keep(s, p, f), splits[s].y_train, teachers[(s, "main")], scores[s],
                                                                               splits[s].n_classes)}
                for s in seeds for f in fractions for p in dict.fromkeys([*prunes, *(["el2n_easy"] if f in easy_fractions else [])])]
subsets = pd.DataFrame(profile_rows).groupby(["prune", "fraction"]).mean(numeric_only=True).drop(columns="seed")
tracking.log_dict(pd.DataFrame(profile_rows).to_dict(orient="records"), "tables/kept_subsets.json")
print(f"EL2N scores: {time.time() - t0:.0f} s; kept subsets (means over replicates):")
display(subsets.round(3))

# %% [markdown]
# ## The grid: every (pruning method, kept fraction, α) on every replicate
# One stacked model per fraction. Then the ablations: EL2N keeping the easiest examples, the budget ablation
# (the smallest fractions' cells at `budget_factor`× the epochs) and the teacher-width arm.

# %%
t0 = time.time()
cells = pruning.grid_cells(prunes, fractions, alphas)
df, results = pruning.run_pruned_grid(seeds, splits, cells, keep, teachers, make_student=make_student, epochs=epochs, lr=lr, T=T, **train_kw)
t_main = time.time() - t0
easy_cells = pruning.grid_cells(["el2n_easy"], easy_fractions, alphas)
budget_cells = pruning.grid_cells(prunes, budget_fractions, alphas, tag=f"_E{budget_factor * epochs}")
width_cells = [c for w in teacher_widths for c in pruning.grid_cells(["random"], width_fractions, width_alphas, teacher=str(w))]
extra = [pruning.run_pruned_grid(seeds, splits, cs, keep, teachers, make_student=make_student, epochs=e, lr=lr, T=T, log_prefix=pre, **train_kw)
         for cs, e, pre in ((easy_cells, epochs, "easy/"), (budget_cells, budget_factor * epochs, "budget/"), (width_cells, epochs, "width/")) if cs]
for d_, r_ in extra:
    df = pd.concat([df, d_], ignore_index=True)
    results.update(r_)
t_all = time.time() - t0
tracking.log_dict(df.to_dict(orient="records"), "tables/runs.json")
print(f"{len(df)} student runs: main grid {t_main:.0f} s, with the ablations {t_all:.0f} s")

# %% [markdown]
# ## Selection on validation and the per-fraction table
# Per replicate and cell family: CE (α = 0), "KD" (the best α > 0 on validation) and α* (the best α of the
# whole grid on validation). Mean ± 95% t-CI over replicates of the test accuracy at the selected run.


# %%
def sel(prune: str, f: float, grid=tuple(alphas), teacher: str = "main", tag: str = "") -> pd.DataFrame:
    return pruning.select_per_replicate(df, [pruning.Cell(prune, f, a, teacher if a > 0 else "main", tag).name for a in grid])


kd_grid = tuple(a for a in alphas if a > 0)
long_tag = f"_E{budget_factor * epochs}"
claim_tag = {f: (long_tag if f in budget_fractions else "") for f in fractions}  # the runs each fraction's claims read
claim_epochs = {f: (budget_factor * epochs if f in budget_fractions else epochs) for f in fractions}
all_prunes = [*prunes, "el2n_easy"]
table_rows = []
for p in all_prunes:
    for f in fractions:
        if (p == "el2n_easy" and f not in easy_fractions) or (f == 1 and p != prunes[0]):
            continue
        t_, e_ = claim_tag[f] if p != "el2n_easy" else "", claim_epochs[f] if p != "el2n_easy" else epochs
        ce, kd, star = sel(p, f, (0.0,), tag=t_), sel(p, f, kd_grid, tag=t_), sel(p, f, tag=t_)
        be = df[(df.prune == ("full" if f == 1 else p)) & (df.fraction == f) & (df.epochs == e_) & (df.teacher == "main")].best_epoch
        table_rows.append({"prune": "full" if f == 1 else p, "fraction": f, "CE test (%)": 100 * ce.test_acc.mean(), "KD test (%)": 100 * kd.test_acc.mean(),
                           "KD − CE (pp)": rep.format_outcome(replicate.mean_ci_rule(kd.test_acc - ce.test_acc, 0.0, "above")),
                           "α* (per replicate)": star.alpha.tolist(), "α* test (%)": 100 * star.test_acc.mean(), "CE train acc": ce.train_acc.mean(),
                           "KD train acc": kd.train_acc.mean(), "best epochs": f"{be.min()}–{be.max()} / {e_}"})
table = pd.DataFrame(table_rows).set_index(["prune", "fraction"])
tracking.log_dict(table.reset_index().to_dict(orient="records"), "tables/fraction_table.json")
display(table.round(3))

# %% [markdown]
# ## Figures
# Left: test accuracy against the kept fraction, CE and KD (best α > 0 on validation) per pruning method, with
# the teacher and the full-data CE student for reference. Right: validation accuracy against α at each fraction
# (random pruning; means over replicates) — where the curve peaks is α*.

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
for i, p in enumerate(all_prunes):
    fs = [f for f in fractions if (f in easy_fractions if p == "el2n_easy" else True)]
    for kind, grid, ls in (("CE", (0.0,), "--"), ("KD", kd_grid, "-")):
        v = np.array([[sel(p, f, grid).test_acc.mean(), rep.t_halfwidth(sel(p, f, grid).test_acc)] for f in fs])
        axes[0].errorbar(fs, 100 * v[:, 0], yerr=100 * np.nan_to_num(v[:, 1]), fmt="o" + ls, color=f"C{i}", capsize=3, ms=4, label=f"{p}, {kind}")
axes[0].axhline(100 * teacher_tab[teacher_tab.width == teacher_hidden].test_acc.mean(), color="k", lw=0.8, ls=":", label="teacher (all data)")
axes[0].set(xscale="log", xlabel="kept fraction f", ylabel="test accuracy (%)", title=f"KD on the kept subset ({epochs} epochs; mean ± 95% CI)")
axes[0].set_xticks(fractions, [f"{f:g}" for f in fractions])
axes[0].legend(fontsize=7)
for p, ax in zip(prunes[:2], axes[1:], strict=False):
    for i, f in enumerate(fractions):
        v = [df[df.method == pruning.Cell(p, f, a).name].best_val_acc.mean() for a in alphas]
        ax.plot(alphas, 100 * np.array(v), "o-", color=f"C{i}", ms=4, label=f"f = {f:g}")
    ax.set(xlabel="KD weight α", ylabel="best validation accuracy (%)", title=f"validation accuracy vs α ({p} pruning)")
    ax.legend(fontsize=7)
tracking.log_figure(fig, "accuracy_vs_fraction_and_alpha")
plt.show()

# %% [markdown]
# **The budget ablation.** Mean test-accuracy curves (over replicates) of CE and of each replicate's KD pick at the
# fractions in `budget_fractions`, at the main budget and at `budget_factor`× it (complete cosine runs of each length).

# %%
fig, axes = plt.subplots(1, max(1, len(budget_fractions)), figsize=(6 * max(1, len(budget_fractions)), 4), squeeze=False)
for ax, f in zip(axes[0], budget_fractions, strict=False):
    for p, tag, ls in [(p, t, ls) for p in prunes for t, ls in (("", "-"), (f"_E{budget_factor * epochs}", "--"))]:
        for grid, lw in (((0.0,), 0.8), (kd_grid, 1.8)):
            names = sel(p, f, grid, tag=tag).method
            ax.plot(100 * np.mean([results[(n, s)].curves["test_acc"] for s, n in names.items()], 0), ls, lw=lw, color=f"C{prunes.index(p)}",
                    label=f"{p} {'CE' if grid == (0.0,) else 'KD'} {'E' if not tag else tag[1:]}")
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"f = {f:g}: main budget (solid) and ×{budget_factor} (dashed)")
    ax.legend(fontsize=7)
tracking.log_figure(fig, "budget_ablation")
plt.show()

# %% [markdown]
# **The teacher-width arm.** Test accuracy of the KD pick (best α > 0 on validation) per teacher width, at the
# fractions in `width_fractions` (random pruning), against CE on the same subset.

# %%
width_rows = [{"fraction": f, "width": w, "KD test (%)": 100 * sel("random", f, tuple(width_alphas), teacher="main" if w == teacher_hidden else str(w)).test_acc.mean(),
               "CE test (%)": 100 * sel("random", f, (0.0,)).test_acc.mean(), "teacher test (%)": 100 * teacher_tab[teacher_tab.width == w].test_acc.mean()}
              for f in width_fractions for w in widths]
width_tab = pd.DataFrame(width_rows).set_index(["fraction", "width"])
tracking.log_dict(width_tab.reset_index().to_dict(orient="records"), "tables/teacher_widths.json")
display(width_tab.round(2))
fig, ax = plt.subplots(figsize=(6, 4))
for i, f in enumerate(width_fractions):
    g = width_tab.loc[f]
    ax.plot(g.index, g["KD test (%)"] - g["CE test (%)"], "o-", color=f"C{i}", label=f"f = {f:g}")
ax.axhline(0, color="k", lw=0.8)
ax.axvline(student_hidden, color="gray", lw=0.8, ls=":", label="student width")
ax.set(xscale="log", xlabel="teacher MLP width", ylabel="KD − CE test accuracy (pp)", title="KD gain by teacher width (random pruning)")
ax.legend(fontsize=8)
tracking.log_figure(fig, "teacher_width")
plt.show()

# %% [markdown]
# ## Claims
# Rules, guards and margins as written in the introduction.

# %%
PAPER = "Ben-Baruch et al. 2025 (ICML; arXiv 2403.07854), abstract"
verdicts = {}


def names_at(f: float, ps=tuple(prunes)) -> list[str]:
    return [pruning.Cell(p, f, a, tag=claim_tag[f]).name for p in ps for a in alphas]


def gain(p: str, f: float, tag: str | None = None) -> np.ndarray:  # KD pick − CE per replicate; tag None: the runs the claims read
    t_ = claim_tag[f] if tag is None else tag
    return (sel(p, f, kd_grid, tag=t_).test_acc - sel(p, f, (0.0,), tag=t_).test_acc).to_numpy()


def width_gain(f: float, w: int) -> np.ndarray:  # main-budget runs, KD pick over width_alphas
    return (sel("random", f, tuple(width_alphas), teacher="main" if w == teacher_hidden else str(w)).test_acc - sel("random", f, (0.0,)).test_acc).to_numpy()


for f in fractions:
    ps = prunes[:1] if f == 1 else prunes
    outs = {p: replicate.mean_ci_rule(gain(p, f), 0.0, "above") for p in ps}
    guards = [pruning.converged_cells_guard(results, names_at(f, ps), seeds)]
    if f in budget_fractions:
        guards += [pruning.same_sign_guard(gain(p, f, ""), gain(p, f, long_tag), budgets=(epochs, budget_factor * epochs), name=f"settled_{p}") for p in ps]
    wf = [w for w in widths if f in width_fractions]
    t_ = claim_tag[f]
    diag = replicate.Diagnosis(
        f"at f = {f:g} the KD pick trains to {100 * sel(ps[0], f, kd_grid, tag=t_).train_acc.mean():.1f}% train accuracy vs {100 * sel(ps[0], f, (0.0,), tag=t_).train_acc.mean():.1f}% "
        f"for CE; the teacher ({teacher_hidden} wide, self-distillation) has {100 * teacher_tab[teacher_tab.width == teacher_hidden].test_acc.mean():.1f}% test accuracy "
        f"vs CE's {100 * sel(ps[0], f, (0.0,), tag=t_).test_acc.mean():.1f}% here" + (f"; KD (α in {width_alphas}) − CE by teacher width: " + ", ".join(f"{w}: {100 * width_gain(f, w).mean():+.2f} pp" for w in wf) if wf else "")
        + (f"; at {epochs} epochs: " + ", ".join(f"{p} {100 * gain(p, f, '').mean():+.2f} pp" for p in ps) if f in budget_fractions else ""),
        "the teacher-width arm (teachers " + ", ".join(map(str, widths)) + f" wide at f in {width_fractions}), the budget ablation at f in {budget_fractions} "
        "and the α grid (every α's accuracy in tables/runs.json)")
    verdicts[f"kd_helps_f{round(100 * f)}"] = replicate.record(
        f"kd_helps_f{round(100 * f)}", statement=f"KD (best α > 0 on validation) beats CE on the same kept subset at f = {f:g} ({' and '.join(ps)} pruning)",
        paper=PAPER, paper_value="significant improvement across datasets, pruning methods, and on all pruning fractions", values=gain(ps[0], f),
        outcome=replicate.all_of(*outs.values()), guards=guards, diagnosis=diag,
        measured="; ".join(f"{p}: KD − CE {rep.format_outcome(o)} (n = {o.n})" for p, o in outs.items()),
        details={p: gain(p, f).tolist() for p in ps})

for f in small:
    t_ = claim_tag[f]
    d = (sel("random", f, tag=t_).test_acc - sel("el2n", f, tag=t_).test_acc).to_numpy()
    d_ce = (sel("random", f, (0.0,), tag=t_).test_acc - sel("el2n", f, (0.0,), tag=t_).test_acc).to_numpy()
    out = replicate.mean_within_rule(d, -margin_pp / 100, float("inf"))
    guards = [pruning.converged_cells_guard(results, names_at(f), seeds)]
    if f in budget_fractions:
        guards.append(pruning.same_sign_guard((sel("random", f).test_acc - sel("el2n", f).test_acc).to_numpy() + margin_pp / 100, d + margin_pp / 100,
                                              budgets=(epochs, budget_factor * epochs), name="settled_vs_margin"))
    easy = f" EL2N keeping the easiest: random − el2n_easy {100 * (sel('random', f).test_acc - sel('el2n_easy', f).test_acc).mean():+.2f} pp at {epochs} epochs;" if f in easy_fractions else ""
    prof = subsets.loc[("el2n", f)]
    verdicts[f"random_vs_el2n_with_kd_f{round(100 * f)}"] = replicate.record(
        f"random_vs_el2n_with_kd_f{round(100 * f)}", statement=f"With KD (α* on validation), random pruning is comparable or superior to EL2N pruning at f = {f:g}: "
        f"acc(random) − acc(EL2N) ≥ −{margin_pp:g} pp", paper=PAPER, paper_value="using KD, simple random pruning is comparable or superior to sophisticated pruning methods across all pruning regimes",
        values=d, outcome=out, guards=guards,
        diagnosis=replicate.Diagnosis(f"without KD random − EL2N is {100 * d_ce.mean():+.2f} pp;{easy} the EL2N subset at f = {f:g} holds examples the teacher gets "
                                      f"{100 * prof.teacher_acc_on_kept:.1f}% right (class balance min share × C = {prof.min_class_share_x_C:.2f})",
                                      "the CE contrast (α = 0 cells), the kept-subset profile and the EL2N-easiest ablation"),
        measured=f"random − EL2N with KD {rep.format_outcome(out)}; without KD {100 * d_ce.mean():+.2f} pp (n = {out.n})", details={"without_kd": d_ce.tolist()})

astar = {p: pd.DataFrame({f: sel(p, f, tag=claim_tag[f]).alpha for f in fractions}) for p in prunes}
rho = {p: np.array([pruning.rank_trend(fractions, astar[p].loc[s, fractions].to_numpy()) for s in seeds]) for p in prunes}
out = replicate.mean_ci_rule(rho["random"], 0.0, "below")
verdicts["alpha_star_grows_as_fraction_falls"] = replicate.record(
    "alpha_star_grows_as_fraction_falls", statement="The validation-selected KD weight α* grows as the kept fraction falls (random pruning): Spearman ρ(f, α*) < 0",
    paper=PAPER, paper_value="a crucial connection between the pruning factor and the optimal knowledge distillation weight", values=rho["random"], outcome=out,
    guards=[pruning.converged_cells_guard(results, [n for f in fractions for n in names_at(f, ("random",))], seeds)]
    + [pruning.same_sign_guard([pruning.rank_trend(fractions, [sel("random", f).alpha[s] for f in fractions]) for s in seeds], rho["random"],
                               budgets=(epochs, budget_factor * epochs), name="settled")] * bool(budget_fractions),
    diagnosis=replicate.Diagnosis(f"α* per replicate (rows) and fraction {fractions}: {astar['random'].to_numpy().tolist()}; under EL2N pruning "
                                  f"{astar['el2n'].to_numpy().tolist() if 'el2n' in astar else 'not run'} (ρ {rho.get('el2n', np.array([np.nan])).round(2).tolist()})",
                                  "the same selection under EL2N pruning and the validation-accuracy-vs-α curves (figure accuracy_vs_fraction_and_alpha)"),
    measured=f"ρ per replicate {rho['random'].round(2).tolist()}: mean {out.statistic:+.2f} [{out.ci.low:+.2f}, {out.ci.high:+.2f}] (n = {out.n}); "
             f"mean α* by fraction {dict(zip(fractions, astar['random'].mean().round(2).tolist(), strict=True))}",
    details={"alpha_star_random": astar["random"].to_numpy().tolist(), "rho_el2n": rho.get("el2n", np.array([])).tolist()})

if 0.5 in fractions and 1.0 in fractions:
    d = (sel("random", 0.5, tag=claim_tag[0.5]).test_acc - sel("random", 1.0, (0.0,), tag=claim_tag[1.0]).test_acc).to_numpy()
    out = replicate.mean_ci_rule(d, 0.0, "above")
    verdicts["kd_on_half_random_beats_full_ce"] = replicate.record(
        "kd_on_half_random_beats_full_ce", statement="KD (α* on validation) on a random half of the training set beats CE on all of it",
        paper=PAPER, paper_value="On ImageNet, superior accuracy despite training on a random subset of only 50% of the data", values=d, outcome=out,
        guards=[pruning.converged_cells_guard(results, names_at(0.5, ("random",)) + [pruning.Cell("random", 1.0, 0.0, tag=claim_tag[1.0]).name], seeds)],
        diagnosis=replicate.Diagnosis(f"CE loses {100 * (sel('random', 1.0, (0.0,), tag=claim_tag[1.0]).test_acc - sel('random', 0.5, (0.0,), tag=claim_tag[0.5]).test_acc).mean():.2f} pp from all data to half; "
                                      f"KD at f = 0.5 recovers {100 * gain('random', 0.5).mean():+.2f} pp of it; KD at f = 1 changes CE by {100 * gain('random', 1.0).mean():+.2f} pp",
                                      "the α grid at f = 0.5 and f = 1 and the teacher-width arm at f = 1"),
        measured=f"{rep.format_outcome(out)} (n = {out.n})")

for f in width_fractions:
    for w in [w for w in widths if w != teacher_hidden]:
        d = width_gain(f, w) - width_gain(f, teacher_hidden)
        verdicts[f"teacher_width_{w}_vs_{teacher_hidden}_f{round(100 * f)}"] = replicate.record(
            f"teacher_width_{w}_vs_{teacher_hidden}_f{round(100 * f)}", statement=f"KD from a {w}-wide vs the {teacher_hidden}-wide (student-sized) MLP teacher at f = {f:g} (random pruning)",
            paper=PAPER, paper_value="at lower pruning fractions larger teachers degrade accuracy; teachers smaller than the student may improve results",
            values=d, outcome=replicate.mean_ci_rule(d, 0.0, "above"), kind="exploratory",
            measured=f"{100 * d.mean():+.2f} pp ({', '.join(f'{100 * v:+.2f}' for v in d)})")

# %% [markdown]
# ## Results

# %%
for k, v in verdicts.items():
    print(f"{k:40s} passed={v.get('passed')!s:5s} {v.get('measured')}  {v.get('why') or ''}")
wall = time.time() - t_start
print(f"wall time: {wall:.0f} s (student grid {t_main:.0f} s, with ablations {t_all:.0f} s)")
tracking.log_metrics({"wall_seconds": wall, "grid_seconds": t_all})

# %% [markdown]
# ## Discussion
# The numbers this discussion rests on, from this run:

# %%
tm = teacher_tab[teacher_tab.width == teacher_hidden]
print(f"teachers ({teacher_hidden}-wide MLPs on all {splits[seeds[0]].sizes()['train']} training signals): test {100 * tm.test_acc.min():.1f}–{100 * tm.test_acc.max():.1f}%, "
      f"train accuracy {100 * tm.accuracy.min():.1f}–{100 * tm.accuracy.max():.1f}%, train p(target) at T = 1 {tm['p(target) T=1'].mean():.3f}, at T = {T:g} {tm[f'p(target) T={T:g}'].mean():.3f}")
for (p, f), r in table.iterrows():
    print(f"{p:9s} f = {f:<4g} CE {r['CE test (%)']:.2f}%  KD {r['KD test (%)']:.2f}%  KD − CE {r['KD − CE (pp)']}  α* {r['α* (per replicate)']}  "
          f"train acc CE {100 * r['CE train acc']:.1f}% / KD {100 * r['KD train acc']:.1f}%  best epochs {r['best epochs']}")
for f in small:
    pr, pe = subsets.loc[("random", f)], subsets.loc[("el2n", f)]
    print(f"kept at f = {f:g}: teacher right on {100 * pr.teacher_acc_on_kept:.1f}% of the random and {100 * pe.teacher_acc_on_kept:.1f}% of the EL2N subset; "
          f"EL2N class balance (min share × C) {pe.min_class_share_x_C:.2f}, mean EL2N {pr.mean_el2n:.3f} vs {pe.mean_el2n:.3f}")
print(f"mean α* by fraction (random): {dict(zip(fractions, astar['random'].mean().round(2).tolist(), strict=True))}; (EL2N): "
      f"{dict(zip(fractions, astar[prunes[-1]].mean().round(2).tolist(), strict=True))}")
for f in width_fractions:
    print(f"teacher width at f = {f:g}: " + ", ".join(f"{w}: KD − CE {100 * width_gain(f, w).mean():+.2f} pp (teacher test {width_tab.loc[(f, w), 'teacher test (%)']:.1f}%)" for w in widths))
for f in budget_fractions:
    print(f"budget at f = {f:g}: KD − CE " + ", ".join(f"{p} {100 * gain(p, f, '').mean():+.2f} pp at {epochs} / {100 * gain(p, f, long_tag).mean():+.2f} pp at {budget_factor * epochs}" for p in prunes))

# %% [markdown]
# * **What KD adds on a subset.** The teacher saw every training signal; on the kept ones its soft labels carry
#   what it learnt from the pruned rest (for a self-distilled teacher: a smoother version of the function the
#   student would fit on all the data). The printed table shows how the KD − CE gain changes with the kept
#   fraction, and the train accuracies show KD's regularisation (the KD student fits its subset less tightly).
# * **Random vs EL2N.** EL2N keeps the examples early models find hardest; the kept-subset lines show how often the
#   teacher itself is wrong on them and how unbalanced the classes become at small fractions — the "noisy
#   labels and low-quality" samples the paper blames. The comparison is read with and without KD, and against
#   EL2N keeping the easiest examples (Sorscher et al.'s end for small fractions).
# * **The KD weight.** α* is chosen on validation per replicate and fraction, so its trend carries the noise of
#   a five-point grid and a 1,600-signal validation split; the validation-vs-α figure shows how flat the curves
#   are where the selection is unstable.
# * **Teacher width.** Exploratory at this scale (two fractions, three widths); the printed line says whether a
#   narrower teacher than the student helps more at the smallest fraction than at f = 1.
# * **Scale.** CIFAR/ImageNet ResNets in DeepCore in the paper; MLPs on MNIST-1D here, where an MLP is a weak
#   model (the CNN-vs-MLP gap of `kd_classics`), the same number of epochs at every fraction, and no augmentation.
