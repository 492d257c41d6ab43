"""The book's one epoch loop for classifiers: shuffled mini-batches, a per-batch loss made of named terms,
an optional backward hook, per-epoch evaluation and selection of the best-validation epoch.

Every classifier trainer (`train.classify.train_classifier`, `distillation.train.train_student`) is this
loop with its own `batch_loss` (and, for DHKD's gradient projection, its own `backward`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lossbook.data.classification import Split
from lossbook.optim import make_optimizer
from lossbook.optim.schedules import SCHEDULES, lr_multiplier
from lossbook.tracking import MetricLogger

BatchLoss = Callable[[nn.Module, Tensor, Tensor, Tensor, int], tuple[dict[str, Tensor], Tensor]]
"""(model, x_batch, y_batch, batch_indices, epoch) -> ({term name: scalar}, logits used for train accuracy)."""
Backward = Callable[[Mapping[str, Tensor], Sequence[Tensor]], None]
"""(terms, trainable params) -> None; sets `p.grad` (default: `sum(terms).backward()`)."""


@dataclass
class Fit:
    """Per-epoch curves (`train_loss`, `train_acc`, `val_loss`, `val_acc`, with `eval_test` also `test_loss`,
    `test_acc`, plus whatever `epoch_callback` returned), the first epoch with the best validation accuracy
    (1-based) and the model's state there. The model itself is left at its final weights."""

    curves: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1
    best_state: dict[str, Tensor] | None = None
    seconds: float = 0.0

    def at_best(self, key: str) -> float:
        """`curves[key]` at the best-validation epoch (NaN before any epoch)."""
        return self.curves[key][self.best_epoch - 1] if self.best_epoch >= 1 else float("nan")

    @property
    def best_val_acc(self) -> float:
        return self.at_best("val_acc") if self.best_epoch >= 1 else -1.0

    @property
    def test_acc(self) -> float:
        """Test accuracy at the validation-selected epoch."""
        return self.at_best("test_acc")

    @property
    def final_test_acc(self) -> float:
        return self.curves["test_acc"][-1] if self.curves.get("test_acc") else float("nan")


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 1024, device: str | torch.device = "cpu") -> Tensor:
    """Logits for `x` in eval mode, batched; returned on CPU."""
    was = model.training
    model.eval()
    out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model: nn.Module, x: Tensor, y: Tensor, device: str | torch.device = "cpu") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (x, y)."""
    logits = predict_logits(model, x, device=device)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def cross_entropy_batch(model: nn.Module, x: Tensor, y: Tensor, idx: Tensor, epoch: int) -> tuple[dict[str, Tensor], Tensor]:
    """The default `batch_loss`: {"ce": CE(model(x), y)}."""
    logits = model(x)
    return {"ce": F.cross_entropy(logits, y)}, logits


def fit(
    model: nn.Module,
    split: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = True,
    batch_loss: BatchLoss = cross_entropy_batch,
    backward: Backward | None = None,
    epoch_callback: Callable[[int, nn.Module], dict[str, float]] | None = None,
    eval_test: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    logger: MetricLogger | None = None,
    progress: bool = True,
    desc: str = "epochs",
    schedule: str | None = None,
    schedule_unit: str = "step",
    warmup: int = 0,
    final_frac: float | None = None,
) -> Fit:
    """Minimise Σ_terms `batch_loss(...)` over `epochs` passes of `split.x_train` in shuffled batches.

    The batch order comes from a generator seeded with `seed` (same seed, same run). After each epoch the
    model is evaluated on val (and test with `eval_test`); metrics go to `logger` with step = epoch.
    `momentum`/`nesterov` reach the optimizer factory (SGD and RMSprop use them; Adam ignores them).
    A NaN/inf batch loss stops the run through the logger's guard (`MetricLogger.check_finite`), after
    the last finite metrics are logged.

    `schedule` (None: the LR stays `lr`, the optimizer is never touched, so a run without it is bitwise the
    run it always was) is one of `optim.schedules.SCHEDULES`: before every optimizer step the LR of each
    parameter group is set to ``lr · lr_multiplier(schedule, t, total, warmup, final_frac)``, with t the
    step index (``schedule_unit="step"``, total = epochs · batches per epoch) or the epoch index
    (``"epoch"``, total = epochs; the LR is constant within an epoch). `warmup` counts in the same unit.
    The LR used in each epoch's last step is recorded in ``curves["lr"]`` (only with a schedule).
    """
    if schedule is not None and schedule not in SCHEDULES:
        raise ValueError(f"schedule must be None or one of {SCHEDULES}, got {schedule!r}")
    if schedule_unit not in ("step", "epoch"):
        raise ValueError(f"schedule_unit must be 'step' or 'epoch', got {schedule_unit!r}")
    t0 = time.time()
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)
    guard = logger if logger is not None else MetricLogger(to_run=False)
    g = torch.Generator().manual_seed(seed)
    res = Fit()
    n = len(split.y_train)
    best = -1.0
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch if schedule_unit == "step" else epochs
    base_lrs = [grp["lr"] for grp in opt.param_groups]
    step = 0
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=g)
        tot, correct = 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = split.x_train[idx].to(device), split.y_train[idx].to(device)
            terms, logits = batch_loss(model, xb, yb, idx, epoch)
            loss = sum(terms.values())
            loss_val = loss.item()
            guard.check_finite(epoch, where=f"epoch {epoch}, batch {i // batch_size}", train_loss=loss_val)
            opt.zero_grad(set_to_none=True)
            if backward is None:
                loss.backward()
            else:
                backward(terms, params)
            if schedule is not None:
                t = step if schedule_unit == "step" else epoch - 1
                mult = lr_multiplier(schedule, t, total, warmup, final_frac)
                for grp, base in zip(opt.param_groups, base_lrs, strict=True):
                    grp["lr"] = base * mult
            opt.step()
            step += 1
            tot += loss_val * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        row = {"train_loss": tot / n, "train_acc": correct / n}
        if schedule is not None:
            row["lr"] = opt.param_groups[0]["lr"]
        row["val_loss"], row["val_acc"] = evaluate(model, split.x_val, split.y_val, device)
        if eval_test:
            row["test_loss"], row["test_acc"] = evaluate(model, split.x_test, split.y_test, device)
        if epoch_callback is not None:
            row.update({k: float(v) for k, v in epoch_callback(epoch, model).items()})
        for k, v in row.items():
            res.curves.setdefault(k, []).append(v)
        if row["val_acc"] > best:
            best, res.best_epoch = row["val_acc"], epoch
            res.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        if logger is not None:
            logger.log(epoch, **row)
        bar.set_postfix(train_loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}")
    if logger is not None:
        logger.flush()
    res.seconds = time.time() - t0
    return res
