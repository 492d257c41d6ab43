"""Multi-layer perceptron classifier exposing its penultimate features."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """x -> [Linear -> ReLU -> Dropout] x len(hidden) -> head. Inputs of any shape are flattened."""

    def __init__(self, in_dim: int, n_classes: int, hidden: tuple[int, ...] = (256, 256), dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        self.body = nn.Sequential(*layers)
        self.feature_dim = d
        self.head = nn.Linear(d, n_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        f = self.body(x.flatten(1))
        logits = self.head(f)
        return (logits, f) if return_features else logits
