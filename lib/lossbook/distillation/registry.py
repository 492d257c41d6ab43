"""Every distillation loss by name, in one call shape: ``KD_LOSSES[kind](z_s, z_t, y, spec, reduction)``.

``spec`` is the trainer's ``distillation.train.LossSpec`` (it carries T, DKD's α/β); label smoothing is
not here: it has no teacher (``distillation.losses.label_smoothing_loss``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from lossbook import registry
from lossbook.distillation import losses as D

KDLoss = Callable[[Tensor, Tensor, Tensor, Any, str], Tensor]

KD_LOSSES: dict[str, KDLoss] = {
    "kd": lambda zs, zt, y, spec, reduction="mean": D.kd_loss(zs, zt, spec.T, reduction),
    "dkd": lambda zs, zt, y, spec, reduction="mean": D.dkd_loss(zs, zt, y, spec.alpha, spec.beta, spec.T, reduction),
    "dist": lambda zs, zt, y, spec, reduction="mean": D.dist_loss(zs, zt, tau=spec.T, reduction=reduction),
    "binary_kl": lambda zs, zt, y, spec, reduction="mean": D.binary_kl(zs, zt, spec.T, reduction),
    "binary_kl_norm": lambda zs, zt, y, spec, reduction="mean": D.binary_kl_norm(zs, zt, spec.T, reduction),
}


def get_kd_loss(kind: str) -> KDLoss:
    """The distillation loss called `kind`; KeyError naming the valid ones otherwise."""
    return registry.lookup(KD_LOSSES, kind, "distillation loss")
