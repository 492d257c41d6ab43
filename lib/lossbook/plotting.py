"""One seaborn theme for the book; plot functions take data and return a Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def setup() -> None:
    """Apply the book's theme: seaborn whitegrid, colorblind palette, readable sizes."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "figure.autolayout": True})


def curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    logy: bool = False,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> plt.Figure:
    """Line plot of named (x, y) series, optional shaded (lo, hi) bands per name; labelled axes."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, y) in series.items():
        (line,) = ax.plot(x, y, label=name)
        if bands and name in bands:
            lo, hi = bands[name]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend()
    return fig


def mean_std_bars(
    values: Mapping[str, Sequence[float]], *, ylabel: str, title: str = ""
) -> plt.Figure:
    """Bar chart of the mean of each group with ±1 std error bars and the individual seeds as dots."""
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(values)), 4))
    names = list(values)
    for i, name in enumerate(names):
        v = np.asarray(values[name], dtype=float)
        ax.bar(i, v.mean(), yerr=v.std(ddof=1) if len(v) > 1 else 0, alpha=0.7, capsize=4)
        ax.scatter(np.full(len(v), i), v, color="k", s=10, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig
