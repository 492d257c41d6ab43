"""Post-hoc calibrators: temperature recovery, accuracy invariance, optimality of the fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lossbook import calibration as C
from lossbook.metrics import calibration as M


def _planted(t_true: float, n: int = 20000, c: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits z_true ~ N(0, 2^2), labels ~ softmax(z_true); the model reports z_true * t_true, so T* = t_true."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return z * t_true, y


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_planted_temperature(t_true: float) -> None:
    z, y = _planted(t_true)
    t = C.fit_temperature(z, y)
    assert t == pytest.approx(t_true, rel=0.05)


def test_fit_temperature_is_the_nll_minimum_on_a_grid() -> None:
    z, y = _planted(1.7, n=3000, seed=1)
    t = C.fit_temperature(z, y)
    grid = np.exp(np.linspace(np.log(0.3), np.log(8), 400))
    curve = C.nll_curve(z, y, grid)
    assert C.nll_at_temperature(z, y, t) <= curve.min() + 1e-9
    assert abs(np.log(grid[curve.argmin()]) - np.log(t)) < 0.02


def test_temperature_scaling_keeps_accuracy_and_reduces_ece() -> None:
    z, y = _planted(3.0, n=5000, seed=2)
    t = C.fit_temperature(z, y)
    before = torch.softmax(z, 1)
    after = C.apply_temperature(z, t)
    assert torch.equal(before.argmax(1), after.argmax(1))
    assert M.ece(after, y) < 0.5 * M.ece(before, y)
    assert M.nll(after, y) < M.nll(before, y)


def test_nll_at_temperature_matches_torch() -> None:
    z, y = _planted(1.0, n=500, seed=3)
    for t in (0.5, 1.0, 4.0):
        ref = torch.nn.functional.cross_entropy(z / t, y).item()
        assert C.nll_at_temperature(z, y, t) == pytest.approx(ref, rel=1e-10)


def test_fit_temperature_hits_bound_on_separable_data() -> None:
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0]] * 10)
    y = torch.tensor([0, 1] * 10)
    t = C.fit_temperature(z, y, bounds=(0.05, 20.0))
    # the NLL keeps falling as T -> 0 and is flat (~e^-2/T) near the bound: T* ends up near it
    assert t < 0.1
    assert C.nll_at_temperature(z, y, t) < 1e-8


def test_fit_temperature_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        C.fit_temperature(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError):
        C.fit_temperature(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def test_ece_grid_temperature_is_close_to_planted() -> None:
    z, y = _planted(2.0, n=8000, seed=4)
    assert C.fit_temperature_ece_grid(z, y) == pytest.approx(2.0, abs=0.3)
