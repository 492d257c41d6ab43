"""Figures for the calibration family: reliability diagrams, metric-vs-epoch panels, NLL vs temperature.

Every function takes data (numpy arrays or `ReliabilityData`) and returns a matplotlib Figure; call
`lossbook.plotting.setup()` first for the book's theme.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from lossbook.calibration.metrics import ReliabilityData

__all__ = ["draw_reliability", "epoch_panels", "nll_vs_temperature", "reliability_grid"]


def draw_reliability(ax: plt.Axes, d: ReliabilityData, title: str = "", hist_ax: plt.Axes | None = None) -> None:
    """Reliability diagram on `ax`: accuracy per bin (bars), the gap to the bin's mean confidence (red
    hatched), the diagonal; optionally the share of samples per bin on `hist_ax`."""
    nz = d.count > 0
    if d.strategy == "uniform":
        left, width = d.lower, d.upper - d.lower
    else:  # equal-mass bins: draw each bin at its confidence range (min..max inside the bin)
        left = np.where(nz, d.lower, 0.0)
        width = np.where(nz, np.maximum(d.upper - d.lower, 0.01), 0.0)
    ax.bar(left[nz], d.acc[nz], width=width[nz], align="edge", color="C0", edgecolor="k", lw=0.5, label="accuracy")
    lo = np.minimum(d.acc[nz], d.conf[nz])
    ax.bar(left[nz], np.abs(d.gap[nz]), bottom=lo, width=width[nz], align="edge", color="C3", alpha=0.35,
           hatch="//", edgecolor="C3", lw=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("accuracy in bin")
    ax.text(0.04, 0.9, f"ECE = {100 * d.ece:.2f}%", transform=ax.transAxes, fontsize=10,
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    if title:
        ax.set_title(title)
    if hist_ax is not None:
        frac = d.count / max(d.count.sum(), 1)
        hist_ax.bar(left, frac, width=width, align="edge", color="C7", edgecolor="k", lw=0.5)
        hist_ax.set_xlim(0, 1)
        hist_ax.set_ylabel("share of samples")


def reliability_grid(
    panels: Mapping[str, Mapping[str, ReliabilityData]], *, suptitle: str = ""
) -> plt.Figure:
    """Rows = `panels` keys (e.g. model names); columns = each row's inner keys, in order (e.g. before, after).

    Each cell is a reliability diagram above a small histogram of the confidence distribution.
    """
    rows = list(panels)
    n_cols = max(len(v) for v in panels.values())
    fig = plt.figure(figsize=(4.2 * n_cols, 4.6 * len(rows)))
    gs = fig.add_gridspec(2 * len(rows), n_cols, height_ratios=[3, 1] * len(rows))
    for i, r in enumerate(rows):
        for j, c in enumerate(panels[r]):
            ax = fig.add_subplot(gs[2 * i, j])
            hax = fig.add_subplot(gs[2 * i + 1, j], sharex=ax)
            draw_reliability(ax, panels[r][c], title=f"{r}: {c}", hist_ax=hax)
            ax.set_xlabel("")
            hax.set_xlabel("confidence")
            if i == 0 and j == 0:
                ax.legend(loc="lower right", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def epoch_panels(
    metrics: Mapping[str, Mapping[str, np.ndarray]],
    *,
    ylabels: Mapping[str, str] | None = None,
    xlabel: str = "epoch",
    x: Sequence[float] | None = None,
    logy: Sequence[str] = (),
    hlines: Mapping[str, float] | None = None,
) -> plt.Figure:
    """One panel per metric; in each, one line per series (mean over seeds) with a ±1 std band.

    metrics[metric][series] is an array (n_seeds, n_points) over `x` (default: epochs 1..n_points; pass the
    checkpoint epochs of a budget curve). Metrics named in `logy` get a log y axis; `hlines[metric]` draws a
    dotted reference line (e.g. T = 1).
    """
    names = list(metrics)
    fig, axes = plt.subplots(1, len(names), figsize=(4.3 * len(names), 3.6), squeeze=False)
    for ax, m in zip(axes[0], names):
        for k, arr in metrics[m].items():
            a = np.asarray(arr, dtype=float)
            xs = np.arange(1, a.shape[1] + 1) if x is None else np.asarray(x, dtype=float)
            mu, sd = a.mean(0), a.std(0)
            (line,) = ax.plot(xs, mu, marker="o" if x is not None else None, ms=3, label=k)
            ax.fill_between(xs, mu - sd, mu + sd, color=line.get_color(), alpha=0.2)
        if m in logy:
            ax.set_yscale("log")
        if hlines and m in hlines:
            ax.axhline(hlines[m], color="k", lw=0.8, ls=":")
        ax.set_xlabel(xlabel)
        ax.set_ylabel((ylabels or {}).get(m, m))
        ax.legend(fontsize=8)
    return fig


def nll_vs_temperature(
    temperatures: np.ndarray,
    curves: Mapping[str, Sequence[np.ndarray]],
    fitted: Mapping[str, Sequence[float]],
    *,
    dashed: Mapping[str, Sequence[np.ndarray]] | None = None,
    ylabel: str = "NLL (nats per sample)",
) -> plt.Figure:
    """NLL as a function of T (log x axis), one thin line per seed and colour per series; the fitted
    T* of each seed marked with a dot; optional dashed curves (e.g. the test-split NLL)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, cs) in enumerate(curves.items()):
        color = f"C{i}"
        for s, c in enumerate(cs):
            ax.plot(temperatures, c, color=color, lw=1, alpha=0.8, label=f"{name} (validation)" if s == 0 else None)
            t = fitted[name][s]
            ax.plot([t], [np.interp(np.log(t), np.log(temperatures), c)], "o", color=color, ms=5,
                    label=f"{name}: fitted T*" if s == 0 else None)
        for s, c in enumerate((dashed or {}).get(name, [])):
            ax.plot(temperatures, c, color=color, lw=1, ls="--", alpha=0.6, label=f"{name} (test)" if s == 0 else None)
    ax.axvline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("temperature T (log scale)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return fig
