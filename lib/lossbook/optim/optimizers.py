"""The book's one optimizer factory. Every trainer calls `make_optimizer`; the choices that differ between
families (SGD's momentum, nanoGPT's no-decay-on-gains rule, AdamW's betas) are passed by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def make_optimizer(
    params: nn.Module | Iterable[nn.Parameter],
    name: str,
    lr: float,
    *,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    decay_matrices_only: bool = False,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """``name`` ∈ {adam, adamw, sgd, rmsprop} over the trainable ``params`` (a module or an iterable).

    ``momentum`` (and ``nesterov``) apply to SGD and RMSprop, ``betas`` to Adam/AdamW. With
    ``decay_matrices_only`` the weight decay acts on ≥ 2-D tensors (matrices, embeddings) and not on gains and
    biases (nanoGPT's two groups, in that order). ``fused`` is passed to Adam/AdamW when set.
    """
    ps = [p for p in (params.parameters() if isinstance(params, nn.Module) else params) if p.requires_grad]
    groups: list[Any] = ps
    if decay_matrices_only:
        groups = [
            {"params": [p for p in ps if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0},
        ]
    fused_kw: dict[str, Any] = {} if fused is None else {"fused": fused}
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, weight_decay=weight_decay, **fused_kw)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay, **fused_kw)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
