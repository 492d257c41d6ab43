"""1-D convolutional classifier with BatchNorm after every convolution (the BN variant of `models.cnn1d`)."""

from __future__ import annotations

import torch
from torch import nn


class CNN1DBN(nn.Module):
    """Three [Conv1d(k=5, stride 2) -> BatchNorm1d -> ReLU] blocks, then Linear -> ReLU (features) -> head.

    The shape of `models.cnn1d.CNN1D` with a BatchNorm1d(c) after each convolution, as in the BN ResNets
    of the test-time-adaptation literature (BN on convolutional maps only: its statistics are taken over
    the batch *and* the length axis, so a test batch of one signal still has C·L' values per channel).
    Input (batch, length) or (batch, channels, length).
    """

    def __init__(self, in_len: int, n_classes: int, channels: int = 32, hidden: int = 128, in_channels: int = 1) -> None:
        super().__init__()
        c = channels
        layers: list[nn.Module] = []
        for cin in (in_channels, c, c):
            layers += [nn.Conv1d(cin, c, 5, stride=2, padding=2, bias=False), nn.BatchNorm1d(c), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        out_len = in_len
        for _ in range(3):
            out_len = (out_len + 2 * 2 - 5) // 2 + 1
        self.fc = nn.Sequential(nn.Linear(c * out_len, hidden), nn.ReLU())
        self.in_channels = in_channels
        self.feature_dim = hidden
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.dim() == 2:
            x = x.unsqueeze(1)
        f = self.fc(self.convs(x).flatten(1))
        logits = self.head(f)
        return (logits, f) if return_features else logits
