"""Figures of the distillation family: accuracy against the epoch budget, mean validation curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lossbook.train.loop import Fit


def budget_curves(df: pd.DataFrame, methods: Sequence[str], metric: str = "test_acc", teacher_acc: float | None = None) -> Figure:
    """``metric`` (in %) at the validation-selected epoch against the epoch budget (log x), one line per
    method: mean over the replicates of each budget, error bars ± 1 std (none with one replicate); the mean
    teacher accuracy, if given, goes in the title."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(methods):
        g = df[df["method"] == m].groupby("epochs")[metric]
        mu, sd = 100 * g.mean(), 100 * g.std(ddof=1).fillna(0.0)
        ax.errorbar(mu.index, mu.to_numpy(), yerr=sd.to_numpy(), fmt="o-", capsize=3, color=f"C{i}", label=m)
    teacher = "" if teacher_acc is None else f" (teacher {100 * teacher_acc:.1f}%)"
    ax.set(xscale="log", xlabel="epoch budget (cosine schedule over the whole budget)", ylabel=f"{metric.replace('_', ' ')} (%)",
           title=f"{metric.replace('_', ' ')} at the best-validation epoch vs budget{teacher}")
    ax.minorticks_off()
    ax.set_xticks(sorted(df["epochs"].unique()), [str(e) for e in sorted(df["epochs"].unique())])
    ax.legend(fontsize=8, ncol=2)
    return fig


def mean_curves(results: Mapping[tuple[str, int], Fit], methods: Sequence[str], seeds: Sequence[int], keys: Sequence[str] = ("train_acc", "val_acc")) -> Figure:
    """One panel per curve key (in %), mean over ``seeds`` per method against the epoch."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        for i, m in enumerate(methods):
            c = 100 * np.mean([results[(m, s)].curves[k] for s in seeds], 0)
            ax.plot(np.arange(1, len(c) + 1), c, color=f"C{i}", label=m)
        ax.set(xlabel="epoch", ylabel=f"{k.replace('_', ' ')} (%)", title=f"{k.replace('_', ' ')}, mean over replicates")
    axes[0][0].legend(fontsize=8)
    return fig
