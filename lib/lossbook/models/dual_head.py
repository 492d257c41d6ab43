"""A student with an auxiliary head on the same penultimate features (Dual-Head KD).

Yang et al. (2024), "Dual-Head Knowledge Distillation", arXiv 2411.08937 (``penghui-yang/DHKD``,
``models/classifier.py``): the main head ``fc`` is trained with cross-entropy and evaluated; a second head
``fc2`` on the same pooled feature takes the logit-level distillation loss. The auxiliary head is linear, or
with ``nonlinear=True`` ``Linear(d, 200) → Dropout(0.1) → BatchNorm → ReLU → Linear(200, C)``.
"""

from __future__ import annotations

import torch
from torch import nn


class DualHeadStudent(nn.Module):
    """Wrap a lossbook classifier (``forward(x, return_features=True)``, ``.head``) and add ``aux_head``.

    ``forward(x)`` returns the main head's logits (so evaluation code sees an ordinary classifier);
    ``forward_both(x)`` returns ``(main_logits, aux_logits, features)``.
    """

    def __init__(self, backbone: nn.Module, n_classes: int, nonlinear: bool = False, aux_hidden: int = 200) -> None:
        super().__init__()
        self.backbone = backbone
        d = backbone.head.in_features
        if nonlinear:
            self.aux_head: nn.Module = nn.Sequential(
                nn.Linear(d, aux_hidden), nn.Dropout(0.1), nn.BatchNorm1d(aux_hidden), nn.ReLU(), nn.Linear(aux_hidden, n_classes)
            )
        else:
            self.aux_head = nn.Linear(d, n_classes)

    @property
    def head(self) -> nn.Linear:
        return self.backbone.head

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, feats = self.backbone(x, return_features=True)
        return logits, self.aux_head(feats), feats

    def forward(self, x: torch.Tensor, return_features: bool = False):
        logits, feats = self.backbone(x, return_features=True)
        return (logits, feats) if return_features else logits

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the feature extractor (everything but the two heads)."""
        head_ids = {id(p) for p in self.backbone.head.parameters()}
        return [p for p in self.backbone.parameters() if id(p) not in head_ids]
