"""EnsLoss (Wang & Dai 2024, arXiv 2409.00908): a fresh random *calibrated* loss derivative per SGD batch.

Binary classification with labels y ∈ {−1, +1}, score f(x) and margin z = y·f(x). A margin loss φ is
classification-calibrated when it is convex and φ'(0) < 0 (Bartlett, Jordan & McAuliffe 2006); SGD only
ever sees φ', so EnsLoss samples the derivative directly, subject to the derivative form of those
conditions: φ' non-decreasing in z (convexity), φ'(z) < 0 at z = 0 (calibration; here everywhere), and
bounded, φ' ∈ [−1, 0). Following the paper's official code (github.com/statmlben/ensLoss, `losses.py`):

1. append z = 0 to the batch's B margins; draw B + 1 values g_j = −BC⁻¹(ε_j), ε_j ~ N(0, 1), the
   inverse Box-Cox transform with λ = 0, BC⁻¹(ε) = exp(ε) (λ ≠ 0: max(1 + λε, 0)^{1/λ});
2. clip at −1 (g ← max(g, −1)) and assign the sorted values to the margins by rank, the smallest value to
   the smallest margin, so that the derivative is non-decreasing in z;
3. "superlinear tail": for z > 1, g ← g / z; finally g ← g − 10⁻⁶ (strictly negative).

The update is θ ← θ − η · (1/B) Σ_i g_i ∂z_i/∂θ: `EnsLossGrad`, a custom autograd function whose backward
returns exactly the sampled derivative (times the upstream gradient, over B), its forward value being the
linear surrogate (1/B) Σ g_i z_i (only a number to log: EnsLoss has no loss value of its own).

The fixed calibrated margin losses compared with it: logistic log(1 + e^{−z}) (= BCE), hinge max(0, 1 − z)
and exponential e^{−z}. A classifier here has two logits; f = logit₁ − logit₀ (so arg-max and f > 0 agree
and cross-entropy on the two logits is the logistic loss of the margin).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats as sps
from torch import Tensor, nn

from lossbook import registry
from lossbook.data.classification import Split, load_dataset


def logistic_loss(z: Tensor) -> Tensor:
    """φ(z) = log(1 + e^{−z}) = softplus(−z); φ'(z) = −σ(−z). Per-sample, no reduction."""
    return F.softplus(-z)


def hinge_loss(z: Tensor) -> Tensor:
    """φ(z) = max(0, 1 − z); φ'(z) = −1[z < 1]. Per-sample, no reduction."""
    return torch.relu(1.0 - z)


def exponential_loss(z: Tensor) -> Tensor:
    """φ(z) = e^{−z}; φ'(z) = −e^{−z}. Per-sample, no reduction."""
    return torch.exp(-z)


FIXED_LOSSES: dict[str, Callable[[Tensor], Tensor]] = {
    "bce": logistic_loss,
    "hinge": hinge_loss,
    "exponential": exponential_loss,
}
"""Fixed calibrated margin losses by name: z -> per-sample φ(z)."""

LOSS_NAMES = ("ensloss", *FIXED_LOSSES)


def inverse_box_cox(e: Tensor, lam: float = 0.0) -> Tensor:
    """BC⁻¹_λ(e) = exp(e) for λ = 0, else max(1 + λe, 0)^{1/λ} (non-negative)."""
    if lam == 0.0:
        return torch.exp(e)
    return torch.clamp(1.0 + lam * e, min=0.0) ** (1.0 / lam)


def sample_derivative(z: Tensor, generator: torch.Generator | None = None, lam: float = 0.0,
                      tail: bool = True, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """One random calibrated loss derivative evaluated at the margins `z` (shape (B,)), and at z = 0.

    Returns (g, g0): g[i] = φ'(z_i), g0 = φ'(0), with φ' non-decreasing over {z_i} ∪ {0}, values in
    [−1 − eps, −eps] and g0 < 0 (the steps in the module docstring; `tail` toggles g/z for z > 1).
    """
    zd = z.detach().flatten()
    s = torch.cat([zd, zd.new_zeros(1)])
    e = torch.randn(s.numel(), generator=generator, dtype=s.dtype)
    vals = torch.sort(torch.clamp(-inverse_box_cox(e, lam), min=-1.0)).values
    g = torch.empty_like(s)
    g[torch.argsort(s, stable=True)] = vals
    if tail:
        big = s > 1.0
        g[big] = g[big] / s[big]
    g = g - eps
    return g[:-1].reshape(z.shape), g[-1]


class EnsLossGrad(torch.autograd.Function):
    """forward(z, g) = (1/B) Σ g_i z_i with g a constant; backward: ∂/∂z_i = g_i / B (g gets no gradient)."""

    @staticmethod
    def forward(ctx, z: Tensor, g: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(g)
        return (g * z).mean()

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (g,) = ctx.saved_tensors
        return grad_out * g / g.numel(), None


def binary_score(logits: Tensor) -> Tensor:
    """f = logit₁ − logit₀ for a two-logit classifier (class 1 is the '+1' label)."""
    return logits[:, 1] - logits[:, 0]


def margins(logits: Tensor, y: Tensor) -> Tensor:
    """z = y± · f with y± = 2y − 1 ∈ {−1, +1} for integer labels y ∈ {0, 1}."""
    return (2.0 * y.to(logits.dtype) - 1.0) * binary_score(logits)


def ensloss(logits: Tensor, y: Tensor, generator: torch.Generator | None = None, **kw) -> Tensor:
    """The EnsLoss batch objective: a fresh sampled derivative (`sample_derivative`) applied via `EnsLossGrad`."""
    z = margins(logits, y)
    g, _ = sample_derivative(z, generator, **kw)
    return EnsLossGrad.apply(z, g.to(z.dtype))


def margin_loss(name: str, logits: Tensor, y: Tensor) -> Tensor:
    """Mean fixed margin loss `name` ∈ FIXED_LOSSES of a two-logit classifier's margins."""
    return registry.lookup(FIXED_LOSSES, name, "margin loss")(margins(logits, y)).mean()


def batch_loss_for(name: str, seed: int = 0) -> Callable[[nn.Module, Tensor, Tensor, Tensor, int], tuple[dict[str, Tensor], Tensor]]:
    """A `train.loop.fit` batch loss for `name` ∈ LOSS_NAMES; EnsLoss draws from a generator seeded by `seed`."""
    if name == "ensloss":
        gen = torch.Generator().manual_seed(10_007 + seed)
        return lambda model, x, y, idx, epoch: ({name: ensloss(logits := model(x), y, gen)}, logits)
    registry.lookup(FIXED_LOSSES, name, "margin loss")
    return lambda model, x, y, idx, epoch: ({name: margin_loss(name, logits := model(x), y)}, logits)


def pair_split(split: Split, a: int, b: int) -> Split:
    """The binary task 'class a (label 0) vs class b (label 1)' of a multi-class split."""
    parts = []
    for x, y in ((split.x_train, split.y_train), (split.x_val, split.y_val), (split.x_test, split.y_test)):
        keep = (y == a) | (y == b)
        parts += [x[keep], (y[keep] == b).long()]
    return Split(*parts, n_classes=2, input_shape=split.input_shape, name=f"{split.name}:{a}v{b}")


def sign_test_k(n: int, alpha: float = 0.05) -> int:
    """Smallest k with P(Bin(n, ½) ≥ k) ≤ alpha: the one-sided sign test's rejection count (n + 1 if none)."""
    ks = [k for k in range(n + 1) if sps.binom.sf(k - 1, n, 0.5) <= alpha]
    return ks[0] if ks else n + 1


def best_minus_final(curve: list[float] | np.ndarray) -> float:
    """max over epochs minus the final value of a test-accuracy curve (≥ 0): how much a run decayed."""
    c = np.asarray(curve, dtype=float)
    return float(c.max() - c[-1])


def train_pair(dataset: str, a: int, b: int, loss: str, seed: int, *, epochs: int, lr: float, batch_size: int,
               hidden: tuple[int, ...] = (256, 256), optimizer: str = "adam", weight_decay: float = 0.0,
               n_train: int | None = None, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train a two-logit MLP on the binary task `a` vs `b` of `dataset` with margin loss `loss` (LOSS_NAMES).

    `seed` is the replicate: it draws the data set (`data_seed = seed`), the validation split, the init, the
    batch order and EnsLoss's derivatives. Returns the per-epoch curves and the summary row: final and
    validation-selected test accuracy, final train accuracy, best-epoch test accuracy and decay (max − final).
    """
    from lossbook import repro
    from lossbook.models import build_classifier
    from lossbook.train.loop import fit

    split = pair_split(load_dataset(dataset, seed=seed, data_seed=seed, n_train=n_train), a, b)
    repro.seed_everything(seed)
    model = build_classifier("mlp", split.input_shape, 2, hidden=tuple(hidden))
    res = fit(model, split, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
              batch_loss=batch_loss_for(loss, seed), eval_test=True, seed=seed, device=device, progress=False)
    c = res.curves
    row = {"dataset": dataset, "pair": f"{dataset}:{a}v{b}", "loss": loss, "seed": seed, "train_acc": c["train_acc"][-1],
           "final_test_acc": c["test_acc"][-1], "selected_test_acc": res.test_acc, "final_val_acc": c["val_acc"][-1],
           "selected_val_acc": res.best_val_acc, "best_epoch": res.best_epoch, "max_test_acc": max(c["test_acc"]),
           "decay": best_minus_final(c["test_acc"]), "seconds": res.seconds, "n_train": len(split.y_train), "n_test": len(split.y_test)}
    return {"row": row, "curves": {k: list(v) for k, v in c.items()}}


def versus_best_fixed(df: pd.DataFrame, at: str = "final") -> pd.DataFrame:
    """Per (pair, seed): EnsLoss test accuracy minus that of the fixed loss a practitioner would pick, the one
    with the highest validation accuracy at the same point (`at` = "final" epoch or validation-"selected"
    epoch; ties go to the first of FIXED_LOSSES). Columns pair, seed, best_fixed, diff."""
    out = []
    for (pair, seed), d in df.groupby(["pair", "seed"], sort=False):
        fixed = d[d["loss"] != "ensloss"].set_index("loss").loc[[n for n in FIXED_LOSSES if n in set(d["loss"])]]
        pick = fixed[f"{at}_val_acc"].idxmax()
        ens = float(d.loc[d["loss"] == "ensloss", f"{at}_test_acc"].iloc[0])
        out.append({"pair": pair, "seed": seed, "best_fixed": pick, "diff": ens - float(fixed.loc[pick, f"{at}_test_acc"])})
    return pd.DataFrame(out)


def parse_pair(spec: str) -> tuple[str, int, int]:
    """'dataset:AvB' -> (dataset, A, B), e.g. 'mnist1d:3v8' -> ('mnist1d', 3, 8)."""
    ds, _, ab = spec.partition(":")
    a, sep, b = ab.partition("v")
    if not (ds and sep and a.isdigit() and b.isdigit()) or a == b:
        raise ValueError(f"a pair is 'dataset:AvB' with two different class indices, got {spec!r}")
    return ds, int(a), int(b)
