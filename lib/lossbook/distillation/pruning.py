"""Knowledge distillation on a pruned training set: EL2N scores, nested subsets, the (subset × KD weight) grid.

Ben-Baruch, Botach, Kviatkovsky, Aggarwal, Medioni (ICML 2025, arXiv 2403.07854), "Distilling the Knowledge in
Data Pruning": a student trained on a pruned subset ``S ⊂ D`` (kept fraction ``f = |S|/|D|``) minimises

    L = (1 − α) · CE(z_s, y) + α · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)),

with the teacher ``z_t`` trained on the complete ``D``. The paper's findings: KD helps at every fraction; with KD,
random pruning is comparable or superior to score-based pruning; the best α grows as ``f`` falls.

* ``el2n``: the EL2N score of Paul, Ganguli, Dziugaite (NeurIPS 2021), ``E_m ‖softmax(f_m(x)) − e_y‖₂`` averaged
  over a few models ``f_m`` early in training; ``el2n_scores`` trains those models (stacked) and scores.
* ``keep_indices``: the kept subset of each pruning method (``random``, ``el2n`` keeps the highest scores — the
  hardest examples, as Paul et al. and the paper do —, ``el2n_easy`` the lowest, Sorscher et al. 2022's end for
  small fractions). ``round(f·n)`` indices; subsets of one method and seed are nested in ``f``.
* ``run_pruned_grid``: every (replicate, cell) student of one kept fraction as one stacked model
  (``distillation.stacked``), the same initial student per replicate (paired design).
* ``select_per_replicate``, ``rank_trend``, ``converged_cells_guard``, ``subset_profile``: what the claims read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps
from torch import Tensor, nn

from lossbook import replicate, repro
from lossbook.data.classification import Split
from lossbook.distillation.stacked import StackedJob, train_stacked
from lossbook.distillation.train import LossSpec
from lossbook.tracking import MetricLogger
from lossbook.train.loop import Fit

PRUNE_METHODS = ("random", "el2n", "el2n_easy")
_PRUNE_STREAM = 0x5052554E  # "PRUN": the random subset's numpy stream, independent of every torch generator


def el2n(logits: Tensor, y: Tensor) -> Tensor:
    """EL2N (Paul et al. 2021, eq. 2): ``(1/M) Σ_m ‖softmax(z_m(x_i)) − onehot(y_i)‖₂`` per example.

    ``logits``: ``(n, C)`` (one model) or ``(M, n, C)`` (M models, averaged); ``y``: ``(n,)``. Returns ``(n,)``
    in float64, each value in ``[0, √2]``."""
    z = logits.double()
    if z.dim() == 2:
        z = z[None]
    e = torch.nn.functional.one_hot(y, z.shape[-1]).double()
    return (torch.softmax(z, -1) - e[None]).norm(dim=-1).mean(0)


def scorer_seed(seed: int, m: int) -> int:
    """Initialisation and batch-order seed of EL2N score model ``m`` of replicate ``seed`` (never a student's)."""
    return 1000 * (seed + 1) + 500 + m


def el2n_scores(
    splits: Sequence[Split],
    seeds: Sequence[int],
    *,
    make_model: Callable[[], nn.Module],
    n_models: int,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> list[Tensor]:
    """Per split, the EL2N score of every training example: ``n_models`` models (``make_model()`` after
    ``repro.seed_everything(scorer_seed(seed, m))``) trained with CE at a constant LR for ``epochs`` epochs on the
    complete training split (Paul et al. score at epoch 20 of 200, averaged over 10 runs), all splits and models as
    one stacked model (``distillation.stacked.train_stacked``); scores from the final (early-training) weights."""
    jobs = []
    for split, s in zip(splits, seeds, strict=True):
        for m in range(n_models):
            repro.seed_everything(scorer_seed(s, m))
            jobs.append(StackedJob(split, LossSpec("ce"), None, scorer_seed(s, m), make_model()))
    _, model = train_stacked(jobs, epochs=epochs, lr=lr, batch_size=batch_size, device=device)
    model.eval()
    with torch.no_grad():
        x = torch.stack([j.split.x_train for j in jobs]).to(device)
        z = torch.cat([model(x[:, i : i + 1024]) for i in range(0, x.shape[1], 1024)], 1).cpu()
    return [el2n(z[i * n_models : (i + 1) * n_models], sp.y_train) for i, sp in enumerate(splits)]


def n_keep(n: int, fraction: float) -> int:
    """``round(f·n)`` (Python's round, half to even), at least 1; ``fraction`` in (0, 1]."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, int(round(fraction * n)))


def keep_indices(n: int, fraction: float, method: str, *, seed: int, scores: Tensor | None = None) -> Tensor:
    """The sorted indices of the kept ``round(f·n)`` of ``n`` training examples.

    ``random``: the first ``k`` of one permutation drawn from ``numpy.random.default_rng([seed, PRUN])``;
    ``el2n``: the ``k`` highest ``scores`` (hardest kept; ties broken by the lower index); ``el2n_easy``: the ``k``
    lowest. For one method and seed the subsets are nested: a smaller fraction keeps a subset of a larger one's."""
    if method not in PRUNE_METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {PRUNE_METHODS}")
    k = n_keep(n, fraction)
    if method == "random":
        order = torch.as_tensor(np.random.default_rng([seed, _PRUNE_STREAM]).permutation(n))
    else:
        if scores is None or len(scores) != n:
            raise ValueError(f"{method} pruning needs one score per training example ({n})")
        s = scores.double()
        order = torch.sort(-s if method == "el2n" else s, stable=True).indices
    return torch.sort(order[:k]).values


def subset_split(split: Split, idx: Tensor) -> Split:
    """``split`` with its training set restricted to ``idx`` (validation and test unchanged)."""
    return replace(split, x_train=split.x_train[idx], y_train=split.y_train[idx])


def kd_spec(alpha: float, T: float) -> LossSpec:
    """The paper's loss ``(1 − α)·CE + α·T²·KL`` as a ``LossSpec`` (α = 0: plain CE, no teacher)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return LossSpec("ce") if alpha == 0 else LossSpec("kd", ce_weight=1.0 - alpha, kd_weight=alpha, T=T)


@dataclass(frozen=True)
class Cell:
    """One student setting: pruning method, kept fraction, KD weight α, teacher key and a name tag.
    At ``fraction == 1`` every pruning method keeps everything, so the method is recorded as ``full``."""

    prune: str
    fraction: float
    alpha: float
    teacher: str = "main"
    tag: str = ""

    @property
    def method(self) -> str:
        return "full" if self.fraction == 1 else self.prune

    @property
    def name(self) -> str:
        t = "" if self.teacher == "main" or self.alpha == 0 else f"_t{self.teacher}"
        return f"{self.method}_f{self.fraction:g}_a{self.alpha:g}{t}{self.tag}"


def grid_cells(prunes: Sequence[str], fractions: Sequence[float], alphas: Sequence[float], *, teacher: str = "main",
               tag: str = "") -> list[Cell]:
    """Every (pruning method, fraction, α), with the ``fraction == 1`` cells (all methods alike) kept once."""
    cells = {Cell(p, f, a, teacher, tag).name: Cell(p, f, a, teacher, tag) for f in fractions for p in prunes for a in alphas}
    return list(cells.values())


def run_pruned_grid(
    seeds: Sequence[int],
    splits: Mapping[int, Split],
    cells: Sequence[Cell],
    keep: Callable[[int, str, float], Tensor],
    teachers: Mapping[tuple[int, str], Tensor],
    *,
    make_student: Callable[[], nn.Module],
    epochs: int,
    lr: float,
    T: float,
    log_prefix: str = "",
    progress: bool = True,
    **kw,
) -> tuple[pd.DataFrame, dict[tuple[str, int], Fit]]:
    """Train every (seed, cell): the student of replicate ``seed`` starts from ``make_student()`` after
    ``repro.seed_everything(seed)`` (one initialisation per replicate, shared by every cell), trains on
    ``subset_split(splits[seed], keep(seed, prune, f))`` with teacher logits ``teachers[(seed, teacher)][idx]`` and
    ``kd_spec(α, T)``. All cells of one kept fraction (equal subset sizes) train as one stacked model; ``kw``:
    batch_size, schedule, final_frac, device, optimizer, weight_decay (``train_stacked``). Returns one row per
    run and the ``Fit``s keyed by ``(cell.name, seed)`` (``distillation.replicates.paired_diffs`` reads the rows)."""
    rows, results = [], {}
    for f in dict.fromkeys(c.fraction for c in cells):
        group = [c for c in cells if c.fraction == f]
        jobs, keys = [], []
        for s in seeds:
            repro.seed_everything(s)
            init = make_student()
            for c in group:
                idx = keep(s, c.prune, f)
                zt = teachers[(s, c.teacher)][idx] if c.alpha > 0 else None
                logger = MetricLogger(prefix=f"{log_prefix}{c.name}/seed{s}/", every=500)
                jobs.append(StackedJob(subset_split(splits[s], idx), kd_spec(c.alpha, T), zt, s, init, logger))
                keys.append((c, s, len(idx)))
        fits, _ = train_stacked(jobs, epochs=epochs, lr=lr, progress=progress, **kw)
        for (c, s, k), fit in zip(keys, fits, strict=True):
            results[(c.name, s)] = fit
            rows.append({"method": c.name, "seed": s, "prune": c.method, "fraction": f, "alpha": c.alpha, "teacher": c.teacher,
                         "n_kept": k, "test_acc": fit.test_acc, "final_test_acc": fit.final_test_acc, "best_val_acc": fit.best_val_acc,
                         "train_acc": fit.at_best("train_acc"), "best_epoch": fit.best_epoch, "epochs": epochs, "stacked": len(jobs)})
    return pd.DataFrame(rows), results


def select_per_replicate(df: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Per seed, the run among ``names`` with the highest best-validation accuracy (never test; ties: the first
    name in ``names``): columns seed, method, alpha, test_acc, best_val_acc, train_acc, best_epoch."""
    d = df[df["method"].isin(list(names))].copy()
    d["order"] = d["method"].map({n: i for i, n in enumerate(names)})
    d = d.sort_values(["seed", "best_val_acc", "order"], ascending=[True, False, True])
    return d.groupby("seed", sort=True).head(1).drop(columns="order").set_index("seed")


def rank_trend(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Spearman's rank correlation between the kept fractions and a per-fraction value (e.g. the selected α);
    0 when either is constant (no trend to rank). −1: the value rises strictly as the fraction falls."""
    f, v = np.asarray(fractions, dtype=float), np.asarray(values, dtype=float)
    if f.size < 2 or np.ptp(f) == 0 or np.ptp(v) == 0:
        return 0.0
    return float(sps.spearmanr(f, v).statistic)


def converged_cells_guard(results: Mapping[tuple[str, int], Fit], names: Sequence[str], seeds: Sequence[int], *,
                          last_frac: float = 0.1, name: str = "converged") -> replicate.Guard:
    """``replicate.converged`` on the validation-accuracy curve of every run (name, seed): passes only if every
    run's best epoch lies before the last ``last_frac`` of its budget; the detail counts and names the others."""
    bad, n_ep = [], 0
    for nm in names:
        for s in seeds:
            curve = results[(nm, s)].curves["val_acc"]
            n_ep = len(curve)
            if not replicate.converged(curve, last_frac=last_frac).passed:
                bad.append(f"{nm}/seed{s}@{results[(nm, s)].best_epoch}")
    cut = n_ep - max(1, math.ceil(last_frac * n_ep))
    total = len(names) * len(seeds)
    detail = f"{total - len(bad)} of {total} runs have their best val epoch <= {cut} of {n_ep}" + (f"; late: {', '.join(bad[:6])}" if bad else "")
    return replicate.Guard(name, not bad, detail, "" if not bad else f"a longer budget (e.g. {2 * n_ep} epochs) for {len(bad)} runs")


def subset_profile(idx: Tensor, y: Tensor, teacher_logits: Tensor, scores: Tensor, n_classes: int) -> dict[str, float]:
    """What a kept subset holds: its size, the teacher's accuracy on it (its training examples the teacher still
    gets wrong: ambiguous or mislabelled-looking signals), mean EL2N, the smallest class share × C (1: balanced)
    and the normalised class entropy ``H(counts)/log C``."""
    yk = y[idx]
    counts = torch.bincount(yk, minlength=n_classes).double()
    p = counts / counts.sum()
    h = float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(n_classes))
    return {"n_kept": int(len(idx)), "teacher_acc_on_kept": float((teacher_logits[idx].argmax(1) == yk).double().mean()),
            "mean_el2n": float(scores[idx].mean()), "min_class_share_x_C": float(p.min() * n_classes), "class_entropy": h}


def same_sign_guard(short: Sequence[float], long: Sequence[float], *, budgets: tuple[int, int], name: str = "settled") -> replicate.Guard:
    """The budget check of a paired-difference claim: the mean difference over replicates has the same (non-zero)
    sign at the longer budget ``budgets[1]`` as at the claim's budget ``budgets[0]``; a flip means the verdict
    still depends on the number of epochs."""
    a, b = float(np.mean(short)), float(np.mean(long))
    ok = bool(np.sign(a) == np.sign(b) and a != 0)
    detail = f"mean difference {100 * a:+.2f} pp at {budgets[0]} epochs, {100 * b:+.2f} pp at {budgets[1]}"
    return replicate.Guard(name, ok, detail, "" if ok else f"a budget past {budgets[1]} epochs, where the sign settles")
