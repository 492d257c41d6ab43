"""K independent MLP classifiers evaluated as one module: every layer is a batched matmul over a leading model axis.

Model k computes exactly what ``models.mlp.MLP`` (optionally wrapped in ``models.dual_head.DualHeadStudent``)
computes with its own weights: ``h_k ← relu(h_k W_k + b_k)`` per hidden layer and ``z_k = h_k W_head,k +
b_head,k``, here as ``torch.baddbmm`` over the stacked weights ``W ∈ R^{K × d_in × d_out}``. The models share no
parameter, so the gradient of ``Σ_k L_k`` in model k's slice is the gradient of ``L_k`` alone, and any
elementwise optimiser (SGD, Adam) updates each slice exactly as it would update model k on its own.

Inputs are ``(K, B, d)``: model k sees its own batch ``x[k]`` (its own data draw and batch order). The
auxiliary head of DHKD (Yang et al. 2024, arXiv 2411.08937) is ``"linear"`` or ``"nonlinear"``
(``Linear → Dropout → BatchNorm → ReLU → Linear``, the released ``fc2``); the stacked BatchNorm normalises
each model's batch with that model's statistics (``F.batch_norm`` on the (B, K·h) view). Dropout masks come
from torch's global generator, so a stacked run with dropout matches a one-at-a-time run in distribution,
not draw for draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StackedMLP"]


def _linear_params(k: int, d_in: int, d_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    return nn.Parameter(torch.zeros(k, d_in, d_out)), nn.Parameter(torch.zeros(k, 1, d_out))


class StackedMLP(nn.Module):
    """K MLPs ``in_dim → hidden… → n_classes`` (ReLU, no dropout in the body), optionally each with DHKD's
    auxiliary head on its penultimate features (``aux`` in {None, "linear", "nonlinear"}).

    ``forward(x)`` maps ``(K, B, in_dim)`` to logits ``(K, B, n_classes)``; ``forward_both(x)`` returns
    ``(main logits, aux logits or None, features)``. Build one from trained or freshly initialised modules
    with :meth:`from_models`; :meth:`state_dict_of` gives model k's weights under the keys of the module it
    came from (``MLP`` or ``DualHeadStudent``), so it loads back with ``load_state_dict``.
    """

    def __init__(self, k: int, in_dim: int, n_classes: int, hidden: Sequence[int] = (256, 256), aux: str | None = None,
                 aux_hidden: int = 200, aux_dropout: float = 0.1) -> None:
        super().__init__()
        if aux not in (None, "linear", "nonlinear"):
            raise ValueError(f"aux must be None, 'linear' or 'nonlinear', got {aux!r}")
        self.k, self.n_classes, self.hidden, self.aux, self.aux_dropout = k, n_classes, tuple(hidden), aux, aux_dropout
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        d = in_dim
        for h in self.hidden:
            w, b = _linear_params(k, d, h)
            self.weights.append(w)
            self.biases.append(b)
            d = h
        self.feature_dim = d
        self.head_w, self.head_b = _linear_params(k, d, n_classes)
        if aux == "linear":
            self.aux_w, self.aux_b = _linear_params(k, d, n_classes)
        elif aux == "nonlinear":
            self.aux1_w, self.aux1_b = _linear_params(k, d, aux_hidden)
            self.bn_w, self.bn_b = nn.Parameter(torch.ones(k * aux_hidden)), nn.Parameter(torch.zeros(k * aux_hidden))
            self.register_buffer("bn_mean", torch.zeros(k * aux_hidden))
            self.register_buffer("bn_var", torch.ones(k * aux_hidden))
            self.register_buffer("bn_count", torch.zeros(k, dtype=torch.long))
            self.aux2_w, self.aux2_b = _linear_params(k, aux_hidden, n_classes)
            self.aux_hidden = aux_hidden

    # ---- forward -------------------------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(K, B, feature_dim)`` of ``x`` ``(K, B, …)`` (trailing dims flattened)."""
        h = x.flatten(2)
        for w, b in zip(self.weights, self.biases, strict=True):
            h = torch.baddbmm(b, h, w).relu()
        return h

    def _aux(self, f: Tensor) -> Tensor | None:
        if self.aux == "linear":
            return torch.baddbmm(self.aux_b, f, self.aux_w)
        if self.aux == "nonlinear":
            h = torch.baddbmm(self.aux1_b, f, self.aux1_w)
            h = F.dropout(h, self.aux_dropout, self.training)
            kk, bsz, hh = h.shape
            flat = h.transpose(0, 1).reshape(bsz, kk * hh)  # column j·h + i is unit i of model j
            flat = F.batch_norm(flat, self.bn_mean, self.bn_var, self.bn_w, self.bn_b, self.training, 0.1, 1e-5)
            if self.training:
                self.bn_count += 1
            h = flat.reshape(bsz, kk, hh).transpose(0, 1).relu()
            return torch.baddbmm(self.aux2_b, h, self.aux2_w)
        return None

    def forward_both(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        f = self.features(x)
        return torch.baddbmm(self.head_b, f, self.head_w), self._aux(f), f

    def forward(self, x: Tensor, return_features: bool = False):
        f = self.features(x)
        z = torch.baddbmm(self.head_b, f, self.head_w)
        return (z, f) if return_features else z

    # ---- parameter groups --------------------------------------------------------------------------
    def head_parameters(self) -> list[nn.Parameter]:
        """The main (evaluated) linear classifier of every model."""
        return [self.head_w, self.head_b]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The shared trunk of every model (all hidden layers; no head)."""
        return [*self.weights, *self.biases]

    # ---- conversion ----------------------------------------------------------------------------------
    def _slots(self) -> list[tuple[str, str, Tensor, bool]]:
        """(prefix key of the source module, which, stacked tensor, is a linear weight) for every parameter."""
        out = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out += [(f"body.{3 * i}.weight", "w", w, True), (f"body.{3 * i}.bias", "b", b, False)]
        out += [("head.weight", "w", self.head_w, True), ("head.bias", "b", self.head_b, False)]
        return out

    def _aux_slots(self) -> list[tuple[str, Tensor, str]]:
        if self.aux == "linear":
            return [("aux_head.weight", self.aux_w, "w"), ("aux_head.bias", self.aux_b, "b")]
        if self.aux == "nonlinear":
            return [("aux_head.0.weight", self.aux1_w, "w"), ("aux_head.0.bias", self.aux1_b, "b"),
                    ("aux_head.2.weight", self.bn_w, "v"), ("aux_head.2.bias", self.bn_b, "v"),
                    ("aux_head.2.running_mean", self.bn_mean, "v"), ("aux_head.2.running_var", self.bn_var, "v"),
                    ("aux_head.4.weight", self.aux2_w, "w"), ("aux_head.4.bias", self.aux2_b, "b")]
        return []

    @classmethod
    def from_models(cls, models: Sequence[nn.Module]) -> StackedMLP:
        """Stack ``MLP``s (dropout 0) or ``DualHeadStudent``s wrapping them; weights are copied, not shared."""
        from lossbook.models.dual_head import DualHeadStudent

        m0 = models[0]
        dual = isinstance(m0, DualHeadStudent)
        mlp0 = m0.backbone if dual else m0
        lins = [m for m in mlp0.body if isinstance(m, nn.Linear)]
        if any(isinstance(m, nn.Dropout) and m.p > 0 for m in mlp0.body):
            raise ValueError("StackedMLP stacks MLPs without dropout in the body")
        aux = None
        if dual:
            aux = "nonlinear" if isinstance(m0.aux_head, nn.Sequential) else "linear"
        kw = {}
        if aux == "nonlinear":
            kw = {"aux_hidden": m0.aux_head[0].out_features, "aux_dropout": m0.aux_head[1].p}
        out = cls(len(models), lins[0].in_features, mlp0.head.out_features, [m.out_features for m in lins], aux=aux, **kw)
        states = [(m.backbone.state_dict(), m.state_dict()) if dual else (m.state_dict(), None) for m in models]
        with torch.no_grad():
            for key, which, t, _ in out._slots():
                for j, (sd, _) in enumerate(states):
                    t[j] = sd[key].t() if which == "w" else sd[key].view(1, -1)
            for key, t, which in out._aux_slots():
                for j, (_, full) in enumerate(states):
                    v = full[key]
                    if which == "w":
                        t[j] = v.t()
                    elif which == "b":
                        t[j] = v.view(1, -1)
                    else:
                        t.view(len(models), -1)[j] = v
            if aux == "nonlinear":
                out.bn_count.copy_(torch.stack([s[1]["aux_head.2.num_batches_tracked"] for s in states]))
        return out

    def state_dict_of(self, j: int) -> dict[str, Tensor]:
        """Model j's weights (CPU copies) under the keys of ``MLP`` (``aux`` None) or ``DualHeadStudent``."""
        pre = "" if self.aux is None else "backbone."
        sd: dict[str, Tensor] = {}
        with torch.no_grad():
            for key, which, t, _ in self._slots():
                v = t[j].t() if which == "w" else t[j].view(-1)
                sd[pre + key] = v.detach().cpu().clone().contiguous()
            for key, t, which in self._aux_slots():
                v = t[j].t() if which == "w" else t[j].view(-1) if which == "b" else t.view(self.k, -1)[j]
                sd[key] = v.detach().cpu().clone().contiguous()
            if self.aux == "nonlinear":
                sd["aux_head.2.num_batches_tracked"] = self.bn_count[j].detach().cpu().clone()
        return sd
