"""Classification training loop: mini-batch SGD/Adam, per-epoch validation, best-by-val-accuracy state.

Logs per epoch (`train_loss`, `train_acc`, `val_loss`, `val_acc`, plus whatever `epoch_callback`
returns) through a `tracking.MetricLogger`; a NaN/inf training loss stops with NonFiniteLossError
after the last finite metrics are logged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lossbook.data.classification import Split
from lossbook.tracking import MetricLogger, NonFiniteLossError


@dataclass
class History:
    """Per-epoch curves; `best_state` is the model's state_dict at the best validation accuracy."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """"adam" | "adamw" | "sgd" (momentum 0.9, nesterov) | "rmsprop"."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose adam, adamw, sgd or rmsprop.")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits for `x` in eval mode, batched; returned on CPU."""
    was = model.training
    model.eval()
    out = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str | torch.device = "cpu") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (x, y)."""
    logits = predict_logits(model, x, device=device)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train_classifier(
    model: nn.Module,
    split: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    logger: MetricLogger | None = None,
    epoch_callback: Callable[[int, nn.Module], dict[str, float]] | None = None,
    progress: bool = True,
) -> History:
    """Train `model` on split.x_train for `epochs`, validating after each epoch.

    loss_fn(logits, targets) -> scalar mean loss (default cross-entropy). Batches are shuffled by a
    generator seeded with `seed`, so the same seed gives the same run. Metrics are logged with
    step = epoch (1-based). Returns a History; the model is left at its final (not best) weights.
    """
    loss_fn = loss_fn or F.cross_entropy
    model.to(device)
    opt = make_optimizer(model.parameters(), optimizer, lr, weight_decay)
    g = torch.Generator().manual_seed(seed)
    hist = History()
    n = len(split.y_train)
    best = -1.0
    bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=g)
        tot, correct = 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = split.x_train[idx].to(device), split.y_train[idx].to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            if not torch.isfinite(loss):
                if logger is not None:
                    logger.log(epoch, loss=float(loss))
                raise NonFiniteLossError(f"non-finite training loss {loss.item()} at epoch {epoch}, batch {i // batch_size}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        row = {"train_loss": tot / n, "train_acc": correct / n}
        row["val_loss"], row["val_acc"] = evaluate(model, split.x_val, split.y_val, device)
        for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
            getattr(hist, k).append(row[k])
        if epoch_callback is not None:
            for k, v in epoch_callback(epoch, model).items():
                hist.extra.setdefault(k, []).append(float(v))
                row[k] = float(v)
        if row["val_acc"] > best:
            best, hist.best_epoch = row["val_acc"], epoch
            hist.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        if logger is not None:
            logger.log(epoch, loss=row["train_loss"], **row)
        bar.set_postfix(train_loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}")
    if logger is not None:
        logger.flush()
    return hist
