"""Test-time batch statistics for BatchNorm models: source BN, test BN and their α-mix (α-BN).

You, Li, Zhao (2021), "Test-time Batch Statistics Calibration for Covariate Shift" (arXiv 2110.04065).
Every BatchNorm layer normalises with mixed statistics

    μ = α · μ_source + (1 − α) · μ_test,     σ² = α · σ²_source + (1 − α) · σ²_test,
    y = γ · (x − μ) / √(σ² + ε) + β,

where (μ_source, σ²_source) are the layer's running statistics from training and (μ_test, σ²_test) the
biased mean and variance of the current test batch over every axis but the channel one (what a train-mode
BN forward uses). **Here α weights the source**: α = 1 is source BN (`model.eval()`), α = 0 is test BN
(Nado et al. 2020's prediction-time BN, Schneider et al. 2020's adaptation). The reference implementation
used by the test-time-adaptation benchmarks (`AlphaBatchNorm`, after bethgelab's `robusta`) writes the same
mix as ``(1 − a)·src + a·test`` with default a = 0.1, i.e. α = 1 − a = 0.9 in this module's convention.

One implementation: `alpha_bn(model, alpha, group_size)` is a context manager that puts the model in eval
mode (so running statistics are never updated) and swaps each BN layer's forward for the mixed one; with
`group_size = b` the statistics of consecutive blocks of b samples are computed separately, which is exactly
a loop over test batches of size b, in one forward pass (the layers between BNs act per sample).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import pandas as pd
import torch
from torch import nn

from lossbook import replicate
from lossbook.calibration import metrics

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers that track running statistics (the ones α-BN acts on)."""
    return [m for m in model.modules() if isinstance(m, BN_TYPES) and m.track_running_stats]


def _normalise(bn: nn.modules.batchnorm._BatchNorm, xb: torch.Tensor, alpha: float) -> torch.Tensor:
    """(x − μ)/√(σ² + ε) for xb of shape (k, g, C, ...): k independent batches of g samples each."""
    dims = [1] + list(range(3, xb.dim()))
    mu = alpha * bn.running_mean + (1.0 - alpha) * xb.mean(dim=dims)  # (k, C)
    var = alpha * bn.running_var + (1.0 - alpha) * xb.var(dim=dims, unbiased=False)
    shape = (xb.shape[0], 1, xb.shape[2]) + (1,) * (xb.dim() - 3)
    return (xb - mu.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)


def mixed_bn_forward(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, alpha: float, group_size: int | None = None) -> torch.Tensor:
    """γ·(x − μ)/√(σ² + ε) + β with μ, σ² the α-mix of `bn`'s running statistics and the batch statistics.

    Batch statistics are per channel (axis 1) over the batch and all trailing axes, biased (÷n), computed per
    consecutive block of `group_size` samples (None: the whole input is one batch); a last, shorter block
    is its own batch, like a data loader's last batch.
    """
    n = x.shape[0]
    b = n if group_size is None else int(group_size)
    if b < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    k = n // b
    parts = [_normalise(bn, x[: k * b].reshape(k, b, *x.shape[1:]), alpha).reshape(k * b, *x.shape[1:])] if k else []
    if n > k * b:
        parts.append(_normalise(bn, x[k * b :].unsqueeze(0), alpha)[0])
    y = torch.cat(parts) if len(parts) > 1 else parts[0]
    if bn.affine:
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y


@contextlib.contextmanager
def alpha_bn(model: nn.Module, alpha: float, group_size: int | None = None) -> Iterator[nn.Module]:
    """Inside the block every BN layer of `model` normalises with α·source + (1 − α)·test-batch statistics
    (`mixed_bn_forward`); the model is in eval mode, running statistics are untouched, and the previous
    mode and forwards are restored on exit. α = 1 leaves the BN forwards as they are (exactly `model.eval()`).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    was = model.training
    model.eval()
    layers = bn_layers(model) if alpha < 1.0 else []
    for bn in layers:
        bn.forward = lambda x, bn=bn: mixed_bn_forward(bn, x, alpha, group_size)  # instance attribute shadows the method
    try:
        yield model
    finally:
        for bn in layers:
            del bn.forward
        model.train(was)


@torch.no_grad()
def predict_with_alpha(model: nn.Module, x: torch.Tensor, alpha: float, batch_size: int) -> torch.Tensor:
    """Logits of `x` fed in consecutive test batches of `batch_size`, each normalised by α-BN."""
    with alpha_bn(model, alpha, group_size=batch_size):
        return model(x).float().cpu()


def score(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, ECE (`n_bins` equal-width bins, `metrics.ece`) and NLL (`metrics.nll`) of logits against y."""
    p = torch.softmax(logits.double(), 1).numpy()
    yy = y.numpy()
    return {"acc": float((p.argmax(1) == yy).mean()), "ece": metrics.ece(p, yy, n_bins),
            "nll": metrics.nll(logits.double().numpy(), yy, from_logits=True)}


def alpha_grid_scores(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float], batch_sizes: Sequence[int], n_bins: int = 15
) -> list[dict[str, float]]:
    """One row {alpha, batch_size, acc, ece, nll} per (α, test batch size) on (x, y) (batches in the given order)."""
    return [{"alpha": float(a), "batch_size": int(b), **score(predict_with_alpha(model, x, float(a), int(b)), y, n_bins)}
            for b in batch_sizes for a in alphas]


def summary_table(rows: pd.DataFrame, by: Sequence[str], values: Sequence[str] = ("acc", "ece", "nll")) -> pd.DataFrame:
    """Per group of `by`: the mean over replicates of each column in `values` and its 95% Student-t CI
    (`replicate.mean_ci_rule`'s interval; the point when there is one replicate), as `<v>`, `<v>_lo`, `<v>_hi`."""
    out = []
    for key, d in rows.groupby(list(by), sort=True):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for v in values:
            ci = replicate.mean_ci_rule(d[v].to_numpy()).ci
            row |= {v: float(d[v].mean()), f"{v}_lo": ci.low, f"{v}_hi": ci.high}
        row["n"] = len(d)
        out.append(row)
    return pd.DataFrame(out)


def plot_vs_severity(table: pd.DataFrame, batch_sizes: Sequence[int], methods: Sequence[str],
                     metrics_: Sequence[tuple[str, str]] = (("acc", "accuracy"), ("ece", "ECE (15 bins)"), ("nll", "NLL (nats)"))):
    """One column per test batch size, one row per metric: the mean over replicates against severity for each
    method, with its 95% t-CI as a band. `table` is `summary_table(..., by=["method", "batch_size", "severity"])`."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics_), len(batch_sizes), figsize=(3.2 * len(batch_sizes), 2.6 * len(metrics_)),
                             sharex=True, sharey="row", squeeze=False)
    for j, b in enumerate(batch_sizes):
        for i, (m, label) in enumerate(metrics_):
            ax = axes[i, j]
            for meth in methods:
                d = table[(table.method == meth) & (table.batch_size == b)].sort_values("severity")
                ax.plot(d.severity, d[m], marker="o", ms=3, label=meth)
                ax.fill_between(d.severity, d[f"{m}_lo"], d[f"{m}_hi"], alpha=0.2)
            if i == 0:
                ax.set_title(f"test batch size {b}")
            if j == 0:
                ax.set_ylabel(label)
            if i == len(metrics_) - 1:
                ax.set_xlabel("corruption severity")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_vs_alpha(table: pd.DataFrame, batch_sizes: Sequence[int], alpha_rule: float, title: str = ""):
    """Accuracy against α (α = 1: source BN, α = 0: test BN), one line per test batch size with its 95% t-CI
    band; the pre-registered α as a dotted line. `table` is `summary_table(..., by=["batch_size", "alpha"])`."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for b in batch_sizes:
        d = table[table.batch_size == b].sort_values("alpha")
        ax.plot(d.alpha, d.acc, marker="o", ms=3, label=f"batch {b}")
        ax.fill_between(d.alpha, d.acc_lo, d.acc_hi, alpha=0.2)
    ax.axvline(alpha_rule, ls=":", c="k", lw=1, label=f"pre-registered α = {alpha_rule:g}")
    ax.set_xlabel("α (weight of the source statistics)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
