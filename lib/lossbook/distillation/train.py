"""Distillation trainer: a cached teacher, a student, a loss spec; multi-seed runs and paired comparisons.

* ``get_teacher`` trains a classifier with ``lossbook.train.classify.train_classifier``, keeps its
  best-validation weights and its logits on train/val/test, and caches all of it under
  ``runs/cache/teacher/<config hash>.pt`` (``lossbook.cache``).
* ``train_student`` trains a student on ``LossSpec`` (CE, LS, KD, DKD, DIST, BinaryKL, BinaryKL-Norm, on the
  main head or on an auxiliary head, optionally with DHKD's gradient alignment), evaluates train/val/test
  after each epoch, logs them through ``tracking.MetricLogger`` and selects the epoch by validation accuracy.
* ``run_methods`` runs every method on every seed with the same initialisation per seed (paired design);
  ``summarize`` gives mean ± std and ``compare`` the paired bootstrap CI of a difference (``lossbook.stats``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lossbook import cache, repro
from lossbook.data.classification import Split
from lossbook.distillation import losses as D
from lossbook.distillation.registry import KD_LOSSES, get_kd_loss
from lossbook.stats import BootstrapCI, mean_std, verdict_greater
from lossbook.tracking import MetricLogger
from lossbook.train.classify import train_classifier
from lossbook.train.loop import Fit, fit, predict_logits
from lossbook.train.losses import label_smoothing_loss

KD_KINDS = tuple(KD_LOSSES)


@dataclass(frozen=True)
class LossSpec:
    """What the student minimises.

    ``kind``: "ce" (cross-entropy alone), "ls" (label smoothing ``eps``), or a KD loss in ``KD_KINDS``, giving
    ``ce_weight · CE(z_main, y) + w(epoch) · kd_weight · L_kd(z_kd, z_teacher)`` with ``w = min(epoch / warmup, 1)``
    (DKD's warm-up; 1 when ``warmup_epochs = 0``). ``z_kd`` is the main head's logits, or the auxiliary head's
    when ``aux_head`` (DHKD). ``ga`` projects the KD gradient off the CE gradient when they conflict
    (``distillation.project_conflicting``). ``T`` is the temperature (DIST's τ); ``alpha``/``beta`` are DKD's
    TCKD/NCKD weights.
    """

    kind: str = "ce"
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    T: float = 4.0
    alpha: float = 1.0
    beta: float = 8.0
    eps: float = 0.1
    warmup_epochs: int = 0
    aux_head: bool = False
    ga: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("ce", "ls", *KD_KINDS):
            raise ValueError(f"unknown loss kind {self.kind!r}; choose ce, ls or one of {KD_KINDS}")

    @property
    def needs_teacher(self) -> bool:
        return self.kind in KD_KINDS


def loss_terms(spec: LossSpec, z_main: torch.Tensor, z_aux: torch.Tensor | None, z_t: torch.Tensor | None, y: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
    """The weighted terms of ``spec``'s loss on one batch: ``{"ce": ..., "kd": ...}`` (their sum is the loss)."""
    if spec.kind == "ls":
        return {"ce": spec.ce_weight * label_smoothing_loss(z_main, y, spec.eps)}
    terms: dict[str, torch.Tensor] = {}
    if spec.ce_weight:
        terms["ce"] = spec.ce_weight * F.cross_entropy(z_main, y)
    if spec.kind == "ce":
        return terms
    if z_t is None:
        raise ValueError(f"loss {spec.kind!r} needs teacher logits")
    zk = z_main
    if spec.aux_head:
        if z_aux is None:
            raise ValueError("aux_head=True needs a student with an auxiliary head (models.dual_head.DualHeadStudent)")
        zk = z_aux
    w = spec.kd_weight * (min(epoch / spec.warmup_epochs, 1.0) if spec.warmup_epochs else 1.0)
    kd = get_kd_loss(spec.kind)(zk, z_t, y, spec)
    terms["kd"] = w * kd
    return terms


def backward_terms(terms: Mapping[str, torch.Tensor], params: Sequence[torch.Tensor], ga: bool = False) -> None:
    """Set ``p.grad`` for the summed loss; with ``ga`` and both "ce" and "kd" present, DHKD's gradient alignment:
    the KD gradient is projected off the CE gradient when their dot product is negative, then the two are summed."""
    if ga and "ce" in terms and "kd" in terms:
        flat = [D.flat_grads(terms["ce"], params), D.flat_grads(terms["kd"], params, retain_graph=False)]
        merged = D.project_conflicting(flat)
        off = 0
        for p in params:
            p.grad = merged[off : off + p.numel()].view_as(p).clone()
            off += p.numel()
    else:
        sum(terms.values()).backward()


def _forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    if hasattr(model, "forward_both"):
        z, za, _ = model.forward_both(x)
        return z, za
    return model(x), None


def train_student(
    model: nn.Module,
    split: Split,
    spec: LossSpec,
    *,
    teacher_logits: torch.Tensor | None,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    seed: int = 0,
    device: str | torch.device = "cpu",
    logger: MetricLogger | None = None,
    progress: bool = False,
    schedule: str | None = None,
    final_frac: float | None = None,
) -> Fit:
    """Train ``model`` on ``spec`` with teacher logits on ``split.x_train`` (row i ↔ example i); select on val.

    `train.loop.fit` with ``loss_terms`` as the batch loss and, for ``spec.ga``, ``backward_terms`` as the
    backward hook. Each epoch logs ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``test_loss``,
    ``test_acc`` (step = epoch) to ``logger``; the returned ``Fit.test_acc`` is the test accuracy at the
    first epoch with the best validation accuracy. A non-finite loss raises ``NonFiniteLossError`` after
    logging the last finite values. ``schedule`` (e.g. "cosine", per step; None: constant LR) and
    ``final_frac`` go to ``fit`` (``optim.schedules.lr_multiplier``).
    """
    if spec.needs_teacher and (teacher_logits is None or len(teacher_logits) != len(split.y_train)):
        raise ValueError(f"loss {spec.kind!r} needs teacher logits for each of the {len(split.y_train)} training examples")

    def batch_loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int):
        zt = teacher_logits[idx].to(x.device) if teacher_logits is not None else None
        z, za = _forward(m, x)
        return loss_terms(spec, z, za, zt, y, epoch), z

    return fit(
        model, split, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
        batch_loss=batch_loss, backward=(lambda terms, params: backward_terms(terms, params, ga=True)) if spec.ga else None,
        eval_test=True, seed=seed, device=device, logger=logger, progress=progress, desc="student",
        schedule=schedule, final_frac=final_frac,
    )


def get_teacher(
    split: Split,
    data_config: Mapping[str, Any],
    *,
    arch: str = "cnn1d",
    arch_kwargs: Mapping[str, Any] | None = None,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    schedule: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    refresh: bool = False,
) -> dict[str, Any]:
    """A trained teacher, cached by config hash: ``{"state_dict", "logits": {train, val, test}, "acc": {...}, "config"}``.

    ``data_config`` must describe ``split`` completely (dataset, seeds, sizes): it is part of the cache key, so a
    different split can never reuse a teacher. The teacher keeps its best-validation weights. ``optimizer``
    ("sgd" runs with Nesterov momentum 0.9, the papers' teachers) and ``schedule`` (e.g. "cosine", per step)
    enter the cache key only when they differ from the defaults (Adam, no schedule), so older keys still hit.
    """
    from lossbook.models import build_classifier

    cfg = {
        "data": dict(data_config), "arch": arch, "arch_kwargs": dict(arch_kwargs or {}), "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "weight_decay": weight_decay, "seed": seed, "version": 1,
    }
    if optimizer != "adam":
        cfg["optimizer"] = optimizer
    if schedule is not None:
        cfg["schedule"] = schedule

    def build() -> dict[str, Any]:
        repro.seed_everything(seed)
        model = build_classifier(arch, split.input_shape, split.n_classes, **cfg["arch_kwargs"])
        hist = train_classifier(
            model, split, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, optimizer=optimizer,
            device=device, seed=seed, progress=progress,
        ) if schedule is None else fit(
            model, split, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, optimizer=optimizer,
            device=device, seed=seed, progress=progress, schedule=schedule, desc="teacher",
        )
        model.load_state_dict(hist.best_state)
        logits = {k: predict_logits(model, getattr(split, f"x_{k}"), device=device) for k in ("train", "val", "test")}
        acc = {k: (logits[k].argmax(1) == getattr(split, f"y_{k}")).float().mean().item() for k in logits}
        return {"state_dict": model.cpu().state_dict(), "logits": logits, "acc": acc, "config": cfg, "best_epoch": hist.best_epoch}

    out = cache.cached("teacher", cfg, build, refresh=refresh)
    if out["logits"]["train"].shape[0] != len(split.y_train):
        raise ValueError("cached teacher does not match this split (train size differs); check data_config")
    return out


def run_methods(
    split: Split,
    methods: Mapping[str, LossSpec],
    *,
    make_student: Callable[[], nn.Module],
    teacher_logits: torch.Tensor | None,
    seeds: Sequence[int],
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    device: str | torch.device = "cpu",
    log_prefix: str = "",
    progress: bool = True,
    keep_models: bool = False,
    schedule: str | None = None,
    final_frac: float | None = None,
) -> tuple[pd.DataFrame, dict[tuple[str, int], Fit], dict[tuple[str, int], nn.Module]]:
    """Train every (method, seed); the same seed gives every method the same initial student and batch order.

    Metrics go to the active MLflow run with prefix ``{log_prefix}{method}/seed{seed}/``. Returns a DataFrame
    (method, seed, test_acc [val-selected], final_test_acc, best_val_acc, train_acc [at the selected epoch],
    best_epoch, epochs, seconds), the per-run `Fit`s, and (with ``keep_models``) the trained students at their
    final weights. ``schedule``/``final_frac``: the LR schedule of every run (``train_student``).
    """
    bad = [m for m in methods if not re.fullmatch(r"[A-Za-z0-9_.\- :]+", m)]
    if bad:
        raise ValueError(f"method names become MLflow metric names; use letters, digits, _ . - : and spaces: {bad}")
    rows, results, models = [], {}, {}
    jobs = [(m, s) for s in seeds for m in methods]
    for name, seed in tqdm(jobs, desc="runs", disable=not progress):
        repro.seed_everything(seed)
        model = make_student()
        logger = MetricLogger(prefix=f"{log_prefix}{name}/seed{seed}/", every=500)
        r = train_student(
            model, split, methods[name], teacher_logits=teacher_logits, epochs=epochs, lr=lr, batch_size=batch_size,
            weight_decay=weight_decay, optimizer=optimizer, seed=seed, device=device, logger=logger,
            schedule=schedule, final_frac=final_frac,
        )
        results[(name, seed)] = r
        if keep_models:
            models[(name, seed)] = model
        rows.append({"method": name, "seed": seed, "test_acc": r.test_acc, "final_test_acc": r.final_test_acc,
                     "best_val_acc": r.best_val_acc, "train_acc": r.at_best("train_acc"), "best_epoch": r.best_epoch,
                     "epochs": epochs, "seconds": r.seconds, **{f"spec.{k}": v for k, v in asdict(methods[name]).items()}})
    return pd.DataFrame(rows), results, models


def summarize(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per method: mean, std (ddof 1) and n of ``metric`` across seeds, in the order methods first appear."""
    out = []
    for m in dict.fromkeys(df["method"]):
        v = df.loc[df["method"] == m, metric].to_numpy()
        mu, sd = mean_std(v)
        out.append({"method": m, "mean": mu, "std": sd, "n": len(v), "mean ± std": f"{100 * mu:.2f} ± {100 * sd:.2f}"})
    return pd.DataFrame(out).set_index("method")


def compare(df: pd.DataFrame, a: str, b: str, metric: str = "test_acc", **kw) -> tuple[bool | None, BootstrapCI]:
    """Pre-set rule "a > b": paired (by seed) bootstrap 95% CI of mean(a − b) above 0 → True, below → False, else None."""
    pa = df[df["method"] == a].set_index("seed")[metric]
    pb = df[df["method"] == b].set_index("seed")[metric]
    common = sorted(set(pa.index) & set(pb.index))
    return verdict_greater(pa.loc[common].to_numpy(), pb.loc[common].to_numpy(), **kw)


def loss_gradient_cosines(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    teacher_logits: torch.Tensor,
    kd_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    groups: Mapping[str, Sequence[nn.Parameter]],
) -> dict[str, float]:
    """Cosine between the gradients of CE(z, y) and ``kd_fn(z, z_t)`` (both on the main head's logits z), per group.

    ``cos = ⟨∇_θ CE, ∇_θ L_kd⟩ / (‖∇_θ CE‖ ‖∇_θ L_kd‖)`` over the parameters θ of each group (e.g. the classifier
    head vs the backbone), on the batch (x, y), in eval mode. DHKD (Yang et al. 2024, arXiv 2411.08937) argues
    it is negative on the classifier weights and not on the backbone once the features collapse.
    """
    was = model.training
    model.eval()
    z = model(x)
    ce = F.cross_entropy(z, y)
    kd = kd_fn(z, teacher_logits)
    out = {}
    for name, ps in groups.items():
        ps = list(ps)
        g1, g2 = D.flat_grads(ce, ps), D.flat_grads(kd, ps)
        out[name] = float(g1.dot(g2) / (g1.norm() * g2.norm()).clamp_min(1e-30))
    model.train(was)
    return out


def linear_probe(
    f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor, *,
    weight_decay: float = 1e-4, steps: int = 300, lr: float = 1e-2, seed: int = 0,
) -> float:
    """Test accuracy of a softmax-regression probe trained on frozen, standardised features (full-batch Adam).

    Features are standardised with the training mean/std; the probe minimises mean CE + ``weight_decay``·‖W‖².
    """
    from lossbook.distillation.theory import fit_softmax_regression

    mu, sd = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    probe = fit_softmax_regression((f_train - mu) / sd, F.one_hot(y_train, n_classes).float(), weight_decay=weight_decay, steps=steps, lr=lr, seed=seed)
    with torch.no_grad():
        return (probe((f_test - mu) / sd).argmax(1) == y_test).float().mean().item()


def head_diagnostics(
    model: nn.Module, split: Split, teacher_logits: torch.Tensor, kd_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
    probe_steps: int = 300, seed: int = 0,
) -> dict[str, float]:
    """DHKD's mechanism checks on one trained single-head student (``model.head`` and ``model.body``):
    ``cos head`` / ``cos backbone`` (``loss_gradient_cosines`` of CE vs ``kd_fn`` on the whole training set),
    ``own head`` (its test accuracy at these weights) and ``linear probe`` (``linear_probe`` on its frozen
    penultimate features: a fresh softmax head). Yang et al. (2024), arXiv 2411.08937, §3."""
    groups = {"head": list(model.head.parameters()), "backbone": list(model.body.parameters())}
    cos = loss_gradient_cosines(model, split.x_train, split.y_train, teacher_logits, kd_fn, groups)
    was = model.training
    model.eval()
    with torch.no_grad():
        f_tr, f_te = model(split.x_train, return_features=True)[1], model(split.x_test, return_features=True)[1]
        own = (model(split.x_test).argmax(1) == split.y_test).float().mean().item()
    model.train(was)
    probe = linear_probe(f_tr, split.y_train, f_te, split.y_test, steps=probe_steps, seed=seed)
    return {"cos head": cos["head"], "cos backbone": cos["backbone"], "own head": own, "linear probe": probe}
