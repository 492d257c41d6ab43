"""Post-hoc calibrators: temperature recovery, accuracy invariance, optimality of the fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook.calibration import metrics as M
from lossbook.calibration import posthoc as C


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


# ---------------------------------------------------------------- vector / matrix scaling, binning, isotonic
def test_vector_scaling_recovers_planted_per_class_map() -> None:
    z, y = _planted(1.0, n=20000, c=4, seed=5)
    w_true = torch.tensor([2.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    b_true = torch.tensor([0.3, -0.2, 0.0, 0.1], dtype=torch.float64)
    observed = (z - b_true) / w_true  # vector scaling w * observed + b = z recovers the truth
    vs = C.VectorScaler().fit(observed, y)
    # softmax is invariant to adding a constant to b: compare b up to its mean
    assert torch.allclose(vs.weight, w_true, rtol=0.08)
    assert torch.allclose(vs.bias - vs.bias.mean(), b_true - b_true.mean(), atol=0.08)


def test_nested_scalers_fit_validation_nll_at_least_as_well() -> None:
    z, y = _planted(2.0, n=2000, c=5, seed=6)
    nlls = [M.nll(cal.fit(z, y).predict_proba(z), y) for cal in (C.TemperatureScaler(), C.VectorScaler(), C.MatrixScaler())]
    assert nlls[0] >= nlls[1] - 1e-7 >= nlls[2] - 2e-7


def test_matrix_scaling_overfits_a_small_validation_set() -> None:
    # C = 20 classes, 100 validation samples: 420 parameters vs 1 for temperature scaling
    z_val, y_val = _planted(2.0, n=100, c=20, seed=7)
    z_test, y_test = _planted(2.0, n=5000, c=20, seed=8)
    ts = C.TemperatureScaler().fit(z_val, y_val)
    ms = C.MatrixScaler().fit(z_val, y_val)
    assert M.nll(ms.predict_proba(z_val), y_val) < M.nll(ts.predict_proba(z_val), y_val)
    assert M.nll(ms.predict_proba(z_test), y_test) > M.nll(ts.predict_proba(z_test), y_test)


def test_histogram_binning_outputs_bin_frequencies() -> None:
    # all samples share the same logits: one bin per class; frequencies 0.5 / 0.3 / 0.2
    z = torch.tensor([[2.0, 0.0, -1.0]] * 10)
    y = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    hb = C.HistogramBinning(n_bins=10).fit(z, y)
    assert torch.allclose(torch.tensor(hb.predict_proba(z[:1])), torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64))


@pytest.mark.parametrize("cls", [C.HistogramBinning, C.IsotonicCalibrator])
def test_binning_calibrators_fix_overconfidence_out_of_sample(cls: type) -> None:
    z_val, y_val = _planted(3.0, n=6000, c=3, seed=9)
    z_test, y_test = _planted(3.0, n=6000, c=3, seed=10)
    cal = cls().fit(z_val, y_val)
    p = cal.predict_proba(z_test)
    assert p.shape == (6000, 3) and abs(p.sum(1) - 1).max() < 1e-9 and p.min() >= 0
    assert M.ece(p, y_test) < 0.5 * M.ece(torch.softmax(z_test, 1), y_test)


def test_isotonic_map_is_monotone() -> None:
    z, y = _planted(2.0, n=3000, c=3, seed=11)
    iso = C.IsotonicCalibrator().fit(z, y)
    grid = torch.linspace(0.001, 0.999, 200).double()
    for m in iso.models:
        assert (np.diff(m.predict(grid.numpy())) >= -1e-12).all()


def test_unfitted_calibrators_raise() -> None:
    for cls in (C.VectorScaler, C.MatrixScaler, C.HistogramBinning, C.IsotonicCalibrator):
        with pytest.raises(RuntimeError, match="not fitted"):
            cls().predict_proba(torch.zeros(2, 3))


# ---------------------------------------------------------------- correctness-aware per-sample temperature
def test_ca_loss_hand_computed() -> None:
    conf = torch.tensor([0.9, 0.8, 0.6, 0.7])
    correct = torch.tensor([True, True, True, False])
    # acc = 0.75: weights 0.25 (correct) and 0.75 (wrong)
    num = 0.25 * (0.1**2 + 0.2**2 + 0.4**2) + 0.75 * 0.7**2
    assert C.ca_loss(conf, correct).item() == pytest.approx(num / (0.25 * 3 + 0.75))


def _ca_problem(seed: int = 0, n: int = 3000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over-confident logits plus a feature that flags likely mistakes (what the views provide)."""
    z, y = _planted(3.0, n=n, c=5, seed=seed)
    wrong = (z.argmax(1) != y).double()
    g = torch.Generator().manual_seed(seed + 100)
    flag = wrong + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    feats = torch.stack([torch.softmax(z, 1).max(1).values, flag], 1)
    return z, feats, y


@pytest.mark.parametrize("loss", ["ca", "ce", "mse"])
def test_per_sample_calibrator_keeps_accuracy(loss: str) -> None:
    z, f, y = _ca_problem()
    cal = C.PerSampleCalibrator(loss=loss, steps=150, seed=0).fit(z, f, y)
    p = cal.predict_proba(z, f)
    assert torch.equal(torch.as_tensor(p).argmax(1), z.argmax(1))
    t = cal.temperatures(f)
    assert (t >= 0.1).all() and (t <= 10).all()
    assert cal.history[-1] < cal.history[0]


def test_ca_calibrator_lowers_confidence_of_mistakes() -> None:
    z, f, y = _ca_problem(seed=1)
    cal = C.PerSampleCalibrator(loss="ca", steps=300, seed=0).fit(z, f, y)
    t = cal.temperatures(f)
    wrong = z.argmax(1) != y
    assert t[wrong].mean() > 1.5 * t[~wrong].mean()
    z2, f2, y2 = _ca_problem(seed=2)
    p = cal.predict_proba(z2, f2)
    assert M.ece(p, y2) < 0.5 * M.ece(torch.softmax(z2, 1), y2)


def test_signal_views_and_corruption() -> None:
    x = torch.randn(8, 40, generator=torch.Generator().manual_seed(0))
    assert torch.equal(C.signal_view(C.signal_view(x, "flip"), "flip"), x)
    assert torch.equal(C.signal_view(x, "shift"), torch.roll(x, 3, dims=-1))
    assert torch.allclose(C.signal_view(x, "scale"), 1.3 * x)
    assert torch.equal(C.signal_view(x, "noise", seed=1), C.signal_view(x, "noise", seed=1))
    with pytest.raises(ValueError):
        C.signal_view(x, "rotate")
    a, b = C.corrupt_signals(x, 1.0, seed=3), C.corrupt_signals(x, 1.0, seed=3)
    assert torch.equal(a, b) and a.shape == x.shape and not torch.allclose(a, x)
    assert torch.allclose(C.corrupt_signals(x, 0.0, seed=3), x)


def test_view_features_shapes() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 10))
    x = torch.randn(32, 40)
    z, f = C.view_features(model, x, ("shift", "noise", "flip"), k=4)
    assert z.shape == (32, 10) and f.shape == (32, 12)
    z0, f0 = C.view_features(model, x, (), k=4)
    assert f0.shape == (32, 4)
    assert torch.allclose(f0[:, 0], torch.softmax(z0, 1).max(1).values)
