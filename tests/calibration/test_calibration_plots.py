"""The calibration family's figures: the panels the budget curve and the severity sweep are drawn with."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lossbook.calibration import plots as pcal


def test_epoch_panels_draw_the_mean_over_seeds_at_the_given_x() -> None:
    a = np.array([[1.0, 2.0, 4.0], [3.0, 2.0, 8.0]])
    fig = pcal.epoch_panels({"T": {"ce": a}, "ece": {"ce": 10 * a}}, x=[5, 25, 100], logy=("T",), hlines={"T": 1.0})
    ax_t, ax_e = fig.axes
    line = ax_t.get_lines()[0]
    assert np.array_equal(line.get_xdata(), [5.0, 25.0, 100.0]) and np.allclose(line.get_ydata(), [2.0, 2.0, 6.0])
    assert ax_t.get_yscale() == "log" and ax_e.get_yscale() == "linear"
    assert any(np.allclose(ln.get_ydata(), [1.0, 1.0]) for ln in ax_t.get_lines()[1:])  # the T = 1 reference
    plt.close(fig)


def test_epoch_panels_default_x_is_epochs_from_one() -> None:
    fig = pcal.epoch_panels({"test_err": {"mlp": np.zeros((2, 4))}})
    assert np.array_equal(fig.axes[0].get_lines()[0].get_xdata(), [1, 2, 3, 4])
    plt.close(fig)
