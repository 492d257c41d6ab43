"""Train K students at once as one ``models.stacked_mlp.StackedMLP``: the same runs as ``train.train_student``
one at a time, with every layer a batched matmul over the models.

Each job is one (split, loss spec, teacher logits, seed, initial student): model k draws its batches from its
own split with a generator seeded with its own seed (the order ``train.loop.fit`` uses), takes its own loss
and is evaluated and selected on its own validation split. The summed loss ``Σ_k L_k`` has, in model k's
slice of the stacked weights, the gradient of ``L_k`` alone, and Adam/SGD are elementwise, so each model
follows its one-at-a-time trajectory up to floating-point rounding (``tests/distillation/test_stacked.py``).
Jobs with equal loss specs are evaluated as one flattened batch (:func:`stacked_loss_terms`), so the loss
costs a few calls per distinct spec rather than per model. DHKD's gradient alignment (``spec.ga``) projects
each model's KD gradient off its own CE gradient (``losses.project_conflicting``, per model).

Differences from ``train.loop.fit``: a non-finite loss is detected at the end of the epoch (not the batch);
the dropout of a nonlinear auxiliary head draws its masks differently (same distribution).

``workers`` > 1 uses the other CPU cores: the jobs are cut into that many contiguous chunks, each trained as its
own stacked model in its own (spawned, reused) process at the caller's torch thread count. Model k's arithmetic
does not involve the other models, so every job gives the same curves, best epoch and weights as in one stack
(``tests/distillation/test_stacked.py``), except, again, the dropout masks of a nonlinear auxiliary head. Processes
rather than intra-op threads: the students are small matmuls, and two threads on a busy machine wait on each other
(``benchmarks/stacked_students.py --workers``).
"""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lossbook.data.classification import Split
from lossbook.distillation.registry import get_kd_loss
from lossbook.distillation.train import LossSpec
from lossbook.models.stacked_mlp import StackedMLP
from lossbook.optim import make_optimizer
from lossbook.optim.schedules import SCHEDULES, lr_multiplier
from lossbook.tracking import MetricLogger
from lossbook.train.loop import Fit
from lossbook.train.losses import label_smoothing_loss

__all__ = ["StackedJob", "stacked_loss_terms", "train_stacked"]


@dataclass
class StackedJob:
    """One student run: its data, loss, teacher logits on ``split.x_train`` (row i ↔ example i), batch-order seed
    and initial module (``MLP`` or ``DualHeadStudent``; it is copied, not trained)."""

    split: Split
    spec: LossSpec
    teacher_logits: Tensor | None
    seed: int
    init: nn.Module
    logger: MetricLogger | None = None


def _pearson(a: Tensor, b: Tensor, dim: int, eps: float = 1e-8) -> Tensor:
    a, b = a - a.mean(dim, keepdim=True), b - b.mean(dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


def _dist_per_model(zs: Tensor, zt: Tensor, tau: float) -> Tensor:
    """DIST (``losses.dist_loss``, β = γ = 1) of each model's batch: ``zs``, ``zt`` (G, B, C) -> (G,)."""
    ps, pt = F.softmax(zs / tau, -1), F.softmax(zt / tau, -1)
    inter = (1.0 - _pearson(ps, pt, -1)).mean(1)
    intra = 1.0 - _pearson(ps, pt, 1).mean(1)
    return tau**2 * (inter + intra)


def stacked_loss_terms(spec: LossSpec, z: Tensor, za: Tensor | None, zt: Tensor | None, y: Tensor, epoch: int) -> dict[str, Tensor]:
    """``train.loss_terms`` for G models sharing ``spec``: logits (G, B, C), labels (G, B) -> ``{term: (G,)}``, the
    batch mean of each model's term (the same weights, temperature and warm-up as ``loss_terms``)."""
    g, b, c = z.shape
    flat = z.reshape(g * b, c)
    yf = y.reshape(g * b)

    def per_model(v: Tensor) -> Tensor:
        return v.view(g, b).mean(1)

    if spec.kind == "ls":
        return {"ce": spec.ce_weight * per_model(label_smoothing_loss(flat, yf, spec.eps, reduction="none"))}
    terms: dict[str, Tensor] = {}
    if spec.ce_weight:
        terms["ce"] = spec.ce_weight * per_model(F.cross_entropy(flat, yf, reduction="none"))
    if spec.kind == "ce":
        return terms
    if zt is None:
        raise ValueError(f"loss {spec.kind!r} needs teacher logits")
    zk = z
    if spec.aux_head:
        if za is None:
            raise ValueError("aux_head=True needs a stacked student with an auxiliary head")
        zk = za
    w = spec.kd_weight * (min(epoch / spec.warmup_epochs, 1.0) if spec.warmup_epochs else 1.0)
    if spec.kind == "dist":
        kd = _dist_per_model(zk, zt, spec.T)
    else:
        kd = per_model(get_kd_loss(spec.kind)(zk.reshape(g * b, c), zt.reshape(g * b, c), yf, spec, "none"))
    terms["kd"] = w * kd
    return terms


def _aligned_grads(ce: Tensor, kd: Tensor, params: Sequence[Tensor], ga_mask: Tensor) -> None:
    """Set ``p.grad``: per model, the CE gradient plus the KD gradient, the latter projected off the CE gradient
    where ``ga_mask`` holds and their dot product is negative (``losses.project_conflicting`` per model)."""
    gc = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
    gk = torch.autograd.grad(kd, params, allow_unused=True)
    gc = [torch.zeros_like(p) if g is None else g for g, p in zip(gc, params, strict=True)]
    gk = [torch.zeros_like(p) if g is None else g for g, p in zip(gk, params, strict=True)]
    k = ga_mask.numel()

    def per_model(t: Tensor) -> Tensor:  # stacked tensors lead with K; BatchNorm vectors are (K·h,)
        return t.reshape(k, -1)

    dot = sum(per_model(a * b).sum(1) for a, b in zip(gc, gk, strict=True))
    n2 = sum(per_model(a * a).sum(1) for a in gc)
    coef = torch.where(ga_mask & (dot < 0) & (n2 > 0), dot / n2.clamp_min(1e-30), torch.zeros_like(dot))
    for p, a, b in zip(params, gc, gk, strict=True):
        p.grad = a + b - (coef.view(k, 1) * per_model(a)).view_as(a)


@torch.no_grad()
def _evaluate(model: StackedMLP, x: Tensor, y: Tensor, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per model (mean CE, accuracy) on its own (x[k], y[k]), (K, n, ·), in eval mode."""
    was = model.training
    model.eval()
    z = torch.cat([model(x[:, i : i + chunk]).float() for i in range(0, x.shape[1], chunk)], 1)
    model.train(was)
    k, n, c = z.shape
    ce = F.cross_entropy(z.reshape(k * n, c), y.reshape(k * n), reduction="none").view(k, n).mean(1)
    acc = (z.argmax(-1) == y).float().mean(1)
    return ce.tolist(), acc.tolist()


def train_stacked(
    jobs: Sequence[StackedJob],
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    device: str | torch.device = "cpu",
    schedule: str | None = None,
    final_frac: float | None = None,
    epoch_callback: Callable[[int, StackedMLP, Tensor, Tensor, Tensor], Sequence[Mapping[str, float]]] | None = None,
    progress: bool = False,
    workers: int = 1,
) -> tuple[list[Fit], StackedMLP]:
    """Train every job for ``epochs`` as one stacked model; return one ``Fit`` per job (curves train_loss,
    train_acc, [lr], val_loss, val_acc, test_loss, test_acc; best epoch by validation accuracy and the weights
    there, under the keys of the job's module) and the stacked model at its final weights.

    All jobs need splits of equal sizes (their data may differ) and modules of one architecture. The LR
    schedule is ``train.loop.fit``'s per step (``lr · lr_multiplier(schedule, t, total, 0, final_frac)``).
    ``epoch_callback(epoch, model, x_train, y_train, teacher_train)`` (stacked (K, n, ·) tensors) returns one
    dict of extra per-epoch curve values per job. ``progress``: a tqdm bar over the epochs.

    ``workers`` > 1: the jobs in that many contiguous chunks, one stacked model per chunk, each in its own process
    (the module docstring); ``epoch_callback`` must then be picklable (e.g. :func:`cosine_callback`'s), it sees each
    chunk's model, and the jobs' loggers receive the same rows once the chunks are done.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and len(jobs) > 1:
        return _train_chunks(jobs, workers, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, optimizer=optimizer,
                             device=device, schedule=schedule, final_frac=final_frac, epoch_callback=epoch_callback)
    if schedule is not None and schedule not in SCHEDULES:
        raise ValueError(f"schedule must be None or one of {SCHEDULES}, got {schedule!r}")
    sizes = {(len(j.split.y_train), len(j.split.y_val), len(j.split.y_test)) for j in jobs}
    if len(sizes) != 1:
        raise ValueError(f"stacked jobs need splits of equal sizes, got {sorted(sizes)}")
    for j in jobs:
        if j.spec.needs_teacher and (j.teacher_logits is None or len(j.teacher_logits) != len(j.split.y_train)):
            raise ValueError(f"loss {j.spec.kind!r} needs teacher logits for each of the {len(j.split.y_train)} training examples")
    t0 = time.time()
    k = len(jobs)
    model = StackedMLP.from_models([j.init for j in jobs]).to(device)
    xs = {s: torch.stack([getattr(j.split, f"x_{s}") for j in jobs]).to(device) for s in ("train", "val", "test")}
    ys = {s: torch.stack([getattr(j.split, f"y_{s}") for j in jobs]).to(device) for s in ("train", "val", "test")}
    c = jobs[0].split.n_classes
    zt_all = torch.stack([j.teacher_logits if j.teacher_logits is not None else torch.zeros(len(j.split.y_train), c) for j in jobs]).to(device)
    groups: dict[LossSpec, list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault(j.spec, []).append(i)
    group_idx = {s: torch.tensor(ix, device=device) for s, ix in groups.items()}
    ga_mask = torch.tensor([j.spec.ga for j in jobs], device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, weight_decay=weight_decay, momentum=0.9, nesterov=True)  # fit's defaults
    gens = [torch.Generator().manual_seed(j.seed) for j in jobs]
    n = xs["train"].shape[1]
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    base_lrs = [grp["lr"] for grp in opt.param_groups]
    rows_k = torch.arange(k, device=device)[:, None]
    fits = [Fit() for _ in jobs]
    best = [-1.0] * k
    step = 0
    for epoch in tqdm(range(1, epochs + 1), desc=f"{k} stacked students", disable=not progress, leave=False):
        model.train()
        perm = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
        tot = torch.zeros(k, device=device)
        correct = torch.zeros(k, device=device)
        for i in range(0, n, batch_size):
            idx = perm[:, i : i + batch_size]
            xb, yb, ztb = xs["train"][rows_k, idx], ys["train"][rows_k, idx], zt_all[rows_k, idx]
            z, za, _ = model.forward_both(xb)
            per = torch.zeros(k, device=device)
            ce_sum, kd_sum = z.new_zeros(()), z.new_zeros(())
            for spec, gi in group_idx.items():
                terms = stacked_loss_terms(spec, z[gi], None if za is None else za[gi], ztb[gi], yb[gi], epoch)
                for name, v in terms.items():
                    per = per.index_add(0, gi, v.detach())
                    if name == "ce":
                        ce_sum = ce_sum + v.sum()
                    else:
                        kd_sum = kd_sum + v.sum()
            opt.zero_grad(set_to_none=True)
            if bool(ga_mask.any()):
                _aligned_grads(ce_sum, kd_sum, params, ga_mask)
            else:
                (ce_sum + kd_sum).backward()
            if schedule is not None:
                mult = lr_multiplier(schedule, step, total, 0, final_frac)
                for grp, base in zip(opt.param_groups, base_lrs, strict=True):
                    grp["lr"] = base * mult
            opt.step()
            step += 1
            tot += per * idx.shape[1]
            correct += (z.detach().argmax(-1) == yb).sum(1)
        train_loss, train_acc = (tot / n).tolist(), (correct / n).tolist()
        val = _evaluate(model, xs["val"], ys["val"])
        test = _evaluate(model, xs["test"], ys["test"])
        extra = list(epoch_callback(epoch, model, xs["train"], ys["train"], zt_all)) if epoch_callback is not None else [{}] * k
        for j in range(k):
            row = {"train_loss": train_loss[j], "train_acc": train_acc[j]}
            if schedule is not None:
                row["lr"] = opt.param_groups[0]["lr"]
            row.update(val_loss=val[0][j], val_acc=val[1][j], test_loss=test[0][j], test_acc=test[1][j])
            row.update({kk: float(v) for kk, v in extra[j].items()})
            for kk, v in row.items():
                fits[j].curves.setdefault(kk, []).append(v)
            if row["val_acc"] > best[j]:
                best[j], fits[j].best_epoch = row["val_acc"], epoch
                fits[j].best_state = model.state_dict_of(j)
            if jobs[j].logger is not None:
                jobs[j].logger.log(epoch, **row)
        bad = [j for j in range(k) if not torch.isfinite(torch.tensor(train_loss[j]))]
        if bad:
            for j in bad:
                guard = jobs[j].logger if jobs[j].logger is not None else MetricLogger(to_run=False)
                guard.check_finite(epoch, where=f"epoch {epoch} (stacked job {j})", train_loss=train_loss[j])
    for j in jobs:
        if j.logger is not None:
            j.logger.flush()
    secs = (time.time() - t0) / k
    for f in fits:
        f.seconds = secs
    return fits, model


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """A spawned process pool of ``workers`` processes, kept for the next call (imports are paid once)."""
    if workers not in _POOLS:
        _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint)
    return _POOLS[workers]


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C (and a kernel's interrupt/shutdown signal to its process group) to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train_chunk(payload: bytes) -> bytes:
    """Worker side of :func:`_train_chunks`: ``train_stacked`` on one chunk at the caller's threads and RNG state."""
    jobs, kw, threads, rng = pickle.loads(payload)
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)
    return pickle.dumps(train_stacked(jobs, **kw))


def _train_chunks(jobs: Sequence[StackedJob], workers: int, **kw) -> tuple[list[Fit], StackedMLP]:
    """``train_stacked`` on ``workers`` contiguous chunks of ``jobs`` in parallel processes; the jobs' loggers get
    each epoch's row afterwards, and the returned model stacks every job's final weights (in job order)."""
    n = min(workers, len(jobs))
    bounds = [round(i * len(jobs) / n) for i in range(n + 1)]
    chunks = [list(jobs[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    payloads = [pickle.dumps(([replace(j, logger=None) for j in c], kw, threads, rng)) for c in chunks]
    try:
        outs = [pickle.loads(b) for b in _pool(workers).map(_train_chunk, payloads)]
    except Exception:
        _POOLS.pop(workers, None)  # a broken pool is not reused
        raise
    fits = [f for fs, _ in outs for f in fs]
    finals = []
    for c, (_, model) in zip(chunks, outs, strict=True):
        for i, j in enumerate(c):
            m = copy.deepcopy(j.init)
            m.load_state_dict(model.state_dict_of(i))
            finals.append(m)
    for j, f in zip(jobs, fits, strict=True):
        if j.logger is not None:
            for e in range(len(f.curves["val_acc"])):
                j.logger.log(e + 1, **{k: v[e] for k, v in f.curves.items()})
            j.logger.flush()
    return fits, StackedMLP.from_models(finals).to(kw["device"])


def gradient_cosines(model: StackedMLP, x: Tensor, y: Tensor, zt: Tensor, spec: LossSpec, n: int = 2048) -> list[dict[str, float]]:
    """Per model, the cosine between the gradients of CE(main head) and of ``spec``'s distillation loss (on the
    auxiliary head when ``spec.aux_head``), each a batch mean over the first ``n`` examples of that model's
    ``x``/``y``/``zt`` (K, N, ·), at the current weights in eval mode, on two parameter groups:

        cos_g = ⟨∇_g CE, ∇_g L_kd⟩ / (‖∇_g CE‖ ‖∇_g L_kd‖),  g ∈ {head (main linear classifier), backbone (trunk)}.

    DHKD (Yang et al. 2024, arXiv 2411.08937, §3) argues that on one shared linear head the two conflict on the
    head (cos < 0) and not on the backbone. Returns ``[{"cos_head": …, "cos_backbone": …}, …]`` (the head
    cosine is NaN when the KD term does not reach the main head)."""
    was = model.training
    model.eval()
    x, y, zt = x[:, :n], y[:, :n], zt[:, :n]
    k, m, c = zt.shape
    z, za, _ = model.forward_both(x)
    ce = F.cross_entropy(z.reshape(k * m, c), y.reshape(k * m), reduction="none").view(k, m).mean(1).sum()
    zk = za if spec.aux_head else z
    kd = get_kd_loss(spec.kind)(zk.reshape(k * m, c), zt.reshape(k * m, c), y.reshape(k * m), spec, "none").view(k, m).mean(1).sum()
    groups = {"head": model.head_parameters(), "backbone": model.backbone_parameters()}
    flat = [p for ps in groups.values() for p in ps]
    gc = torch.autograd.grad(ce, flat, retain_graph=True)
    gk = [torch.zeros_like(p) if g is None else g for g, p in zip(torch.autograd.grad(kd, flat, allow_unused=True), flat, strict=True)]
    model.train(was)
    out: dict[str, Tensor] = {}
    i = 0
    for name, ps in groups.items():
        a, b = gc[i : i + len(ps)], gk[i : i + len(ps)]
        i += len(ps)
        dot = sum((u * v).reshape(k, -1).sum(1) for u, v in zip(a, b, strict=True))
        na = sum((u * u).reshape(k, -1).sum(1) for u in a).sqrt()
        nb = sum((v * v).reshape(k, -1).sum(1) for v in b).sqrt()
        out[name] = torch.where(nb > 0, dot / (na * nb).clamp_min(1e-30), torch.full_like(dot, float("nan")))
    return [{f"cos_{g}": float(out[g][j]) for g in groups} for j in range(k)]


def cosine_callback(spec: LossSpec, every: int, n: int = 2048) -> Callable[[int, StackedMLP, Tensor, Tensor, Tensor], list[dict[str, float]]]:
    """An ``epoch_callback`` for :func:`train_stacked`: :func:`gradient_cosines` of CE vs ``spec``'s loss at epoch 1
    and every ``every`` epochs (NaN in between, so the curves stay one value per epoch)."""
    return _CosineCallback(spec, every, n)


@dataclass(frozen=True)
class _CosineCallback:
    """:func:`cosine_callback`'s callable, a picklable object so that ``train_stacked(workers=...)`` can ship it."""

    spec: LossSpec
    every: int
    n: int

    def __call__(self, epoch: int, model: StackedMLP, x: Tensor, y: Tensor, zt: Tensor) -> list[dict[str, float]]:
        if epoch == 1 or epoch % self.every == 0:
            return gradient_cosines(model, x, y, zt, self.spec, self.n)
        return [{"cos_head": float("nan"), "cos_backbone": float("nan")} for _ in range(model.k)]
