"""Distillation under the replication protocol: one teacher per replicate, methods trained to a budget, tables.

A *replicate* is one independent draw of everything a distillation result varies with: the data set
(``data_seed``, a fresh MNIST-1D draw when ``fresh_data``), the validation split, the teacher's
initialisation and batch order (``teacher seed = seed``) and the student's (``seed``). Every method of a
replicate distils from that replicate's teacher, from the same student initialisation and batch order
(the paired design), so a per-replicate difference ``acc_A − acc_B`` carries teacher and data variance
and the t-CI over replicates (``lossbook.replicate.mean_ci_rule``) is a CI over teachers.

* ``make_replicate``: the split and its cached teacher (``distillation.train.get_teacher``).
* ``teacher_softness``: how much the teacher leaves on the non-target classes at temperature T.
* ``run_replicates`` / ``budget_sweep``: every method on every replicate (at several epoch budgets).
* ``method_table``, ``paired_diffs``, ``converged_guard``, ``select_on_validation``: what the claims read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps
from torch import nn

from lossbook import replicate
from lossbook.data.classification import Split, load_dataset
from lossbook.distillation.train import LossSpec, get_teacher, run_methods
from lossbook.train.loop import Fit


@dataclass
class Replicate:
    """One replicate: its seed, data seed (None: the canonical draw), split and teacher (``get_teacher``'s dict)."""

    seed: int
    data_seed: int | None
    split: Split
    teacher: dict[str, Any]

    @property
    def teacher_train_logits(self) -> torch.Tensor:
        return self.teacher["logits"]["train"]


def make_replicate(
    dataset: str,
    seed: int,
    *,
    fresh_data: bool = True,
    num_samples: int = 10000,
    n_train: int | None = None,
    teacher: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> Replicate:
    """Replicate ``seed``: data ``load_dataset(dataset, seed=seed, data_seed=seed if fresh_data else None)`` and a
    teacher trained on its training split with ``teacher seed = seed`` (``teacher``: ``get_teacher`` keywords:
    arch, arch_kwargs, epochs, lr, weight_decay, optimizer, schedule). The teacher is cached by the full config."""
    data_seed = seed if fresh_data else None
    split = load_dataset(dataset, seed=seed, data_seed=data_seed, num_samples=num_samples, n_train=n_train)
    data_config = {"name": dataset, "split_seed": seed, "data_seed": data_seed, "num_samples": num_samples,
                   "n_train": n_train or 0, "val_fraction": 0.2}
    t = get_teacher(split, data_config, seed=seed, device=device, **dict(teacher or {}))
    return Replicate(seed, data_seed, split, t)


def teacher_softness(logits: torch.Tensor, y: torch.Tensor, temperatures: Sequence[float] = (1.0, 4.0)) -> dict[str, float]:
    """How soft a teacher is: per temperature T the mean ``p^T(target)`` (``p^T = softmax(z/T)``), the
    non-target mass ``1 − p^T(target)`` (what KD's "dark knowledge" lives in) and the entropy in nats; plus
    the mean per-example spread ``max_c z̄ − min_c z̄`` of the centred logits ``z̄ = z − mean_c z`` (KD at T
    approaches logit matching only for T well above it; Hinton et al. 2015 §2.1) and train accuracy."""
    z = logits.double()
    out: dict[str, float] = {"accuracy": float((z.argmax(1) == y).double().mean())}
    zc = z - z.mean(1, keepdim=True)
    out["logit spread"] = float((zc.max(1).values - zc.min(1).values).mean())
    for t in temperatures:
        p = torch.softmax(z / t, 1)
        pt = p.gather(1, y[:, None]).squeeze(1)
        out[f"p(target) T={t:g}"] = float(pt.mean())
        out[f"non-target mass T={t:g}"] = float(1 - pt.mean())
        out[f"entropy T={t:g}"] = float(-(p * p.clamp_min(1e-300).log()).sum(1).mean())
    return out


def run_replicates(
    replicates: Sequence[Replicate],
    methods: Mapping[str, LossSpec],
    *,
    make_student: Callable[[], nn.Module],
    epochs: int,
    lr: float,
    log_prefix: str = "",
    progress: bool = True,
    models: dict[tuple[str, int], nn.Module] | None = None,
    stacked: bool = False,
    epoch_callback: Callable[..., Any] | None = None,
    **kw: Any,
) -> tuple[pd.DataFrame, dict[tuple[str, int], Fit]]:
    """Every method on every replicate, each distilling from its replicate's teacher (``run_methods`` with
    ``seeds=[replicate.seed]``; ``kw``: batch_size, optimizer, weight_decay, schedule, final_frac, device).
    Returns the runs' rows (with ``data_seed``) and their ``Fit``s keyed by (method, seed); pass a dict as
    ``models`` to receive the trained students (final weights) under the same keys.

    ``stacked``: train all (method, replicate) runs at once as one ``StackedMLP``
    (``distillation.stacked.train_stacked``; the same initial student per replicate, made by ``make_student``
    after ``repro.seed_everything(seed)`` as ``run_methods`` does, the same batch orders); every student must
    be an MLP or a ``DualHeadStudent`` of one architecture. ``epoch_callback`` and ``workers`` (processes the
    stack is split over; the same runs, see ``train_stacked``) go to ``train_stacked``.
    """
    if epoch_callback is not None and not stacked:
        raise ValueError("epoch_callback needs stacked=True (the one-at-a-time path takes no callback)")
    if stacked:
        return _run_stacked(replicates, methods, make_student=make_student, epochs=epochs, lr=lr, log_prefix=log_prefix,
                            models=models, epoch_callback=epoch_callback, progress=progress, **kw)
    if kw.pop("workers", 1) > 1:
        raise ValueError("workers > 1 needs stacked=True (the one-at-a-time path runs in this process)")
    frames, results = [], {}
    for r in replicates:
        df, res, ms = run_methods(r.split, methods, make_student=make_student, teacher_logits=r.teacher_train_logits, seeds=[r.seed],
                                  epochs=epochs, lr=lr, log_prefix=log_prefix, progress=progress, keep_models=models is not None, **kw)
        frames.append(df.assign(data_seed=-1 if r.data_seed is None else r.data_seed))
        results.update(res)
        if models is not None:
            models.update(ms)
    return pd.concat(frames, ignore_index=True), results


def _run_stacked(replicates: Sequence[Replicate], methods: Mapping[str, LossSpec], *, make_student: Callable[[], nn.Module], epochs: int,
                 lr: float, log_prefix: str, models: dict | None, epoch_callback: Callable[..., Any] | None, progress: bool, **kw: Any
                 ) -> tuple[pd.DataFrame, dict[tuple[str, int], Fit]]:
    from lossbook import repro
    from lossbook.distillation.stacked import StackedJob, train_stacked
    from lossbook.tracking import MetricLogger

    keys, jobs = [], []
    for r in replicates:
        repro.seed_everything(r.seed)
        init = make_student()
        for name, spec in methods.items():
            keys.append((name, r))
            jobs.append(StackedJob(r.split, spec, r.teacher_train_logits, r.seed, init,
                                   MetricLogger(prefix=f"{log_prefix}{name}/seed{r.seed}/", every=500)))
    fits, final = train_stacked(jobs, epochs=epochs, lr=lr, epoch_callback=epoch_callback, progress=progress, **kw)
    rows, results = [], {}
    for j, ((name, r), f) in enumerate(zip(keys, fits, strict=True)):
        results[(name, r.seed)] = f
        if models is not None:
            m = make_student()
            m.load_state_dict(final.state_dict_of(j))
            models[(name, r.seed)] = m
        rows.append({"method": name, "seed": r.seed, "test_acc": f.test_acc, "final_test_acc": f.final_test_acc, "best_val_acc": f.best_val_acc,
                     "train_acc": f.at_best("train_acc"), "best_epoch": f.best_epoch, "epochs": epochs, "seconds": f.seconds, "stacked": len(jobs),
                     "data_seed": -1 if r.data_seed is None else r.data_seed, **{f"spec.{k}": v for k, v in asdict(methods[name]).items()}})
    return pd.DataFrame(rows), results


def budget_sweep(
    replicates: Sequence[Replicate],
    methods_for: Callable[[int], Mapping[str, LossSpec]],
    budgets: Sequence[int],
    *,
    done: pd.DataFrame | None = None,
    **kw: Any,
) -> pd.DataFrame:
    """Test accuracy against the epoch budget: ``run_replicates`` once per budget E with ``methods_for(E)`` (a
    schedule and any warm-up scale with E, so each budget is a complete run, not a truncated one). Rows of
    ``done`` (an earlier ``run_replicates`` frame) whose (method, seed, epochs) match are reused, not rerun; only
    rows of these ``replicates`` are returned, so every budget has the same replicates."""
    if done is not None:
        done = done[done["seed"].isin([r.seed for r in replicates])]
    frames = [] if done is None else [done]
    have = set() if done is None else set(zip(done["method"], done["seed"], done["epochs"], strict=True))
    for e in budgets:
        ms = {m: s for m, s in methods_for(e).items() if any((m, r.seed, e) not in have for r in replicates)}
        if ms:
            frames.append(run_replicates(replicates, ms, epochs=e, log_prefix=f"budget{e}/", **kw)[0])
    out = pd.concat(frames, ignore_index=True)
    return out[out["epochs"].isin(list(budgets))].reset_index(drop=True)


def t_halfwidth(values: Sequence[float] | np.ndarray, level: float = 0.95) -> float:
    """Half-width of the Student-t CI of the mean, ``t_{n−1,(1+level)/2} · s/√n`` (NaN for n < 2)."""
    v = np.asarray(values, dtype=float).ravel()
    return float(sps.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")


def method_table(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per method (first-appearance order): mean and 95% t-CI half-width of ``metric`` over replicates, mean
    train accuracy at the selected epoch, best epoch (mean, min, max) of the budget, n, and a text column."""
    rows = []
    for m in dict.fromkeys(df["method"]):
        d = df[df["method"] == m]
        v, h = d[metric].to_numpy(), t_halfwidth(d[metric])
        rows.append({"method": m, "mean": float(v.mean()), "ci95": h, "n": len(v), "train_acc": float(d["train_acc"].mean()),
                     "best_epoch_mean": float(d["best_epoch"].mean()), "best_epoch_min": int(d["best_epoch"].min()),
                     "best_epoch_max": int(d["best_epoch"].max()), "budget": int(d["epochs"].max()),
                     f"{metric} (%)": f"{100 * v.mean():.2f} ± {100 * h:.2f}",
                     "best epoch / budget": f"{d['best_epoch'].min()}–{d['best_epoch'].max()} / {d['epochs'].max()}"})
    return pd.DataFrame(rows).set_index("method")


def paired_diffs(df: pd.DataFrame, a: str, b: str, metric: str = "test_acc") -> np.ndarray:
    """Per replicate (matched on seed) ``metric[a] − metric[b]``, in seed order; KeyError if a seed lacks one."""
    pa = df[df["method"] == a].set_index("seed")[metric]
    pb = df[df["method"] == b].set_index("seed")[metric]
    if set(pa.index) != set(pb.index) or pa.empty:
        raise KeyError(f"paired_diffs: {a!r} has seeds {sorted(pa.index)}, {b!r} has {sorted(pb.index)}")
    seeds = sorted(pa.index)
    return (pa.loc[seeds] - pb.loc[seeds]).to_numpy(dtype=float)


def converged_guard(results: Mapping[tuple[str, int], Fit], method: str, seeds: Sequence[int], last_frac: float = 0.1) -> replicate.Guard:
    """``replicate.converged`` on the validation-accuracy curve of every run of ``method``: passes only if each
    run's best epoch lies before the last ``last_frac`` of its budget; the detail lists every best epoch."""
    gs = [replicate.converged(results[(method, s)].curves["val_acc"], last_frac=last_frac) for s in seeds]
    bad = [s for s, g in zip(seeds, gs, strict=True) if not g.passed]
    n = len(results[(method, seeds[0])].curves["val_acc"])
    best = [results[(method, s)].best_epoch for s in seeds]
    detail = f"{method}: best val epochs {best} of {n} (guard: <= {n - max(1, math.ceil(last_frac * n))})"
    return replicate.Guard(f"converged_{method}", not bad, detail, "" if not bad else f"seeds {bad}: {gs[seeds.index(bad[0])].fix}")


def select_on_validation(df: pd.DataFrame, candidates: Sequence[str]) -> str:
    """The candidate method with the highest mean best-validation accuracy over replicates (never test)."""
    means = {c: float(df.loc[df["method"] == c, "best_val_acc"].mean()) for c in candidates}
    return max(candidates, key=lambda c: means[c])


def kd_gradient_table(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperatures: Sequence[float]) -> pd.DataFrame:
    """Per temperature T: mean |T²-scaled KD gradient| ``T·(p_s^T − p_t^T)``, mean |unscaled KL gradient| (that
    divided by T²), and the relative distance ``‖g_T − g_∞‖/‖g_∞‖`` to the centred-logit limit
    ``g_∞ = (z̄_s − z̄_t)/C`` (Hinton et al. 2015 §2.1), on the given (e.g. test) logits in float64."""
    from lossbook.distillation.losses import kd_gradient

    zs, zt = student_logits.double(), teacher_logits.double()
    limit = ((zs - zs.mean(1, keepdim=True)) - (zt - zt.mean(1, keepdim=True))) / zs.shape[1]
    rows = []
    for t in temperatures:
        g = kd_gradient(zs, zt, float(t))
        rows.append({"T": float(t), "mean|T²-scaled grad|": g.abs().mean().item(), "mean|unscaled KL grad|": (g / t**2).abs().mean().item(),
                     "rel. distance to centred-logit grad": ((g - limit).norm() / limit.norm()).item()})
    return pd.DataFrame(rows).set_index("T")


def format_outcome(o: replicate.Outcome, scale: float = 100.0, unit: str = " pp", digits: int = 2) -> str:
    """``+1.23 pp [+0.45, +2.01]``: a rule's statistic and its CI, scaled (default: fractions as points)."""
    lo, hi = (o.ci.low, o.ci.high) if o.ci else (float("nan"), float("nan"))
    return f"{scale * o.statistic:+.{digits}f}{unit} [{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}]"


def settled_guard(budget_df: pd.DataFrame, a: str, b: str, budget: int, metric: str = "test_acc") -> replicate.Guard:
    """The ordering of ``a`` and ``b`` has settled by ``budget``: on the budget sweep's replicates the mean paired
    difference ``metric[a] − metric[b]`` has the same sign at half the budget (the largest swept budget ≤
    budget/2) as at ``budget``. A sign flip means the verdict still depends on the number of epochs."""
    es = sorted(int(e) for e in budget_df["epochs"].unique())
    half = max([e for e in es if e <= budget // 2], default=None)
    if half is None or budget not in es:
        return replicate.Guard(f"settled_{a}_vs_{b}", False, f"budget sweep lacks {budget} or a budget <= {budget // 2}: {es}",
                               f"sweep budgets including {budget // 2} and {budget}")
    g_half = float(paired_diffs(budget_df[budget_df["epochs"] == half], a, b, metric).mean())
    g_full = float(paired_diffs(budget_df[budget_df["epochs"] == budget], a, b, metric).mean())
    ok = np.sign(g_half) == np.sign(g_full) and g_full != 0
    return replicate.Guard(f"settled_{a}_vs_{b}", bool(ok), f"mean {a} − {b}: {100 * g_half:+.2f} pp at {half} epochs, {100 * g_full:+.2f} pp at {budget}",
                           "" if ok else f"a longer budget (e.g. {2 * budget} epochs): the ordering still changes with the budget")


def t2_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor, temperatures: Sequence[float]) -> pd.DataFrame:
    """Hinton et al. (2015) §2: "Since the magnitudes of the gradients produced by the soft targets scale as 1/T²
    it is important to multiply them by T² when using both hard and soft targets."  Measured in the student's
    parameters θ at its current weights (eval mode, batch means over ``x``), per temperature T:

    * ``|grad soft|``  = ‖∇_θ KL(p_t^T ‖ p_s^T)‖ (the soft-target term without T²; ∝ 1/T² once T ≫ the logits,
      from ∂KL/∂z_s = (p_s^T − p_t^T)/T ≈ (z̄_s − z̄_t)/(C·T²), their eq. 4),
    * ``|grad hard|``  = ‖∇_θ CE(z_s, y)‖ (independent of T),
    * ``rel. contribution`` = T²·|grad soft| / |grad hard| and ``rel. contribution unscaled`` = |grad soft| / |grad hard|.
    """
    from lossbook.distillation.losses import kd_loss

    was = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    z = model(x)
    hard = torch.cat([g.reshape(-1) for g in torch.autograd.grad(torch.nn.functional.cross_entropy(z, y), params, retain_graph=True)]).norm().item()
    rows = []
    for t in temperatures:
        kl = kd_loss(z, teacher_logits, float(t)) / float(t) ** 2  # KL alone: kd_loss carries the T² factor
        soft = torch.cat([g.reshape(-1) for g in torch.autograd.grad(kl, params, retain_graph=True)]).norm().item()
        rows.append({"T": float(t), "|grad soft|": soft, "|grad hard|": hard, "rel. contribution": t**2 * soft / hard,
                     "rel. contribution unscaled": soft / hard})
    model.train(was)
    return pd.DataFrame(rows).set_index("T")


def loglog_slope(t: Sequence[float] | np.ndarray, v: Sequence[float] | np.ndarray) -> float:
    """Least-squares slope of log v on log t (the exponent a of v ∝ t^a)."""
    return float(np.polyfit(np.log(np.asarray(t, float)), np.log(np.asarray(v, float)), 1)[0])
