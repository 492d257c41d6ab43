"""lossbook.models: MLP, 1-D CNN and tiny GPT; classifiers expose penultimate features and `.head`."""

from __future__ import annotations

import math

from torch import nn


def build_classifier(name: str, input_shape: tuple[int, ...], n_classes: int, **kw) -> nn.Module:
    """`name` in {"mlp", "cnn1d"}; `input_shape` without the batch dimension (e.g. (40,) for MNIST-1D)."""
    from lossbook.models.cnn1d import CNN1D
    from lossbook.models.mlp import MLP

    if name == "mlp":
        return MLP(math.prod(input_shape), n_classes, **kw)
    if name == "cnn1d":
        return CNN1D(input_shape[-1], n_classes, **kw)
    raise ValueError(f"unknown classifier {name!r}; choose 'mlp' or 'cnn1d'.")
