"""Train a classifier on one loss: `train.loop.fit` with `loss_fn(logits, targets)` as the batch loss.

Logs per epoch (`train_loss`, `train_acc`, `val_loss`, `val_acc`, plus whatever `epoch_callback`
returns) through a `tracking.MetricLogger`; a NaN/inf training loss stops with NonFiniteLossError
after the last finite metrics are logged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lossbook.data.classification import Split
from lossbook.tracking import MetricLogger
from lossbook.train.loop import Fit, evaluate, fit, predict_logits

__all__ = ["Fit", "evaluate", "predict_logits", "train_classifier"]


def train_classifier(
    model: nn.Module,
    split: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    momentum: float = 0.9,
    nesterov: bool = True,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    logger: MetricLogger | None = None,
    epoch_callback: Callable[[int, nn.Module], dict[str, float]] | None = None,
    progress: bool = True,
) -> Fit:
    """Train `model` on split.x_train for `epochs`, validating after each epoch.

    loss_fn(logits, targets) -> scalar mean loss (default cross-entropy). SGD runs with Nesterov
    momentum 0.9 unless `momentum`/`nesterov` say otherwise. Batches are shuffled by a generator seeded
    with `seed`, so the same seed gives the same run. Metrics are logged with step = epoch (1-based).
    Returns a `Fit`; the model is left at its final (not best) weights.
    """
    loss_fn = loss_fn or F.cross_entropy

    def batch_loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int):
        logits = m(x)
        return {"loss": loss_fn(logits, y)}, logits

    return fit(
        model, split, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
        momentum=momentum, nesterov=nesterov, batch_loss=batch_loss, epoch_callback=epoch_callback, seed=seed,
        device=device, logger=logger, progress=progress,
    )
