"""Every train-time calibration loss by name (a literal dict over `calibration.losses`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lossbook import registry
from lossbook.calibration import losses as L
from lossbook.train.losses import label_smoothing_loss

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": L.cross_entropy,
    "focal": L.focal_loss,
    "flsd53": L.flsd53_loss,
    "label_smoothing": label_smoothing_loss,
    "brier": L.brier_loss,
    "squentropy": L.squentropy_loss,
    "comp_sum": L.comp_sum_loss,
    "gce": L.gce_loss,
    "z_loss": L.z_loss,
}
"""Name -> loss function `(logits, targets, *, reduction, **hyperparameters)`."""


def get_loss(name: str, **hyperparameters: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called `name` with its hyper-parameters bound, as `(logits, targets) -> mean loss`."""
    fn = registry.lookup(LOSSES, name, "calibration loss")

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return fn(logits, targets, reduction="mean", **hyperparameters)

    loss.__name__ = name
    return loss
