"""The correctness-aware calibration experiment: the cached base model and the per-calibrator evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from lossbook import cache
from lossbook.calibration import correctness_aware as CA
from lossbook.calibration import metrics as cm
from lossbook.calibration import posthoc

BASE = {"epochs": 2, "lr": 3e-3, "batch_size": 64, "n_train": 200}


def test_cached_base_model_builds_once_then_loads_the_same_weights(capsys: pytest.CaptureFixture[str]) -> None:
    b1 = CA.cached_base_model("digits", "mlp", 5, **BASE)
    m1, split = b1.model, b1.split
    assert "cache miss: ca_base_model" in capsys.readouterr().out
    b2 = CA.cached_base_model("digits", "mlp", 5, **BASE)
    m2, split2 = b2.model, b2.split
    assert "cache hit: ca_base_model" in capsys.readouterr().out
    assert b1.train_acc == b2.train_acc and 0 <= b1.train_acc <= 1
    assert not m1.training and not m2.training
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(split.y_val, split2.y_val) and len(split.y_train) == 200
    # the key is the one the notebook always used (n_train 0 = all), so existing caches stay valid
    cfg = {"dataset": "digits", "arch": "mlp", "seed": 5, "epochs": 2, "lr": 3e-3, "batch_size": 64,
           "n_train": 200, "loss": "ce", "weight_decay": 0.0}
    assert (cache.cache_dir() / "ca_base_model" / f"{cache.config_hash(cfg)}.pt").exists()
    # a fresh data draw is another key (and another data set)
    b3 = CA.cached_base_model("digits", "mlp", 5, data_seed=1, **BASE)
    assert (cache.cache_dir() / "ca_base_model" / f"{cache.config_hash({**cfg, 'data_seed': 1})}.pt").exists()
    assert not torch.equal(b3.split.x_test, split.x_test)


def test_evaluate_calibrated_counts_narrow_misses_and_auroc() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]])
    labels = torch.tensor([0, 1, 0, 0, 1])  # correct, wrong, wrong, correct, correct
    p_true_ts = np.array([0.95, 0.45, 0.2, 0.5, 0.85])  # narrow misses in [0.3, 0.5]: only sample 1
    r = CA.evaluate_calibrated(probs, labels, p_true_ts, narrow_low=0.3, narrow_high=0.5, n_bins=5)
    conf, correct = probs.max(1), probs.argmax(1) == labels.numpy()
    assert r["narrow_n"] == 1 and r["narrow_conf_sum"] == pytest.approx(0.6)
    assert r["wrong_conf"] == pytest.approx((0.6 + 0.7) / 2)
    assert r["correct_n"] == 3 and r["correct_conf_sum"] == pytest.approx(0.9 + 0.55 + 0.8)
    assert r["auroc"] == pytest.approx(roc_auc_score(correct, conf))
    assert np.array_equal(r["argmax"], probs.argmax(1))
    assert {k: r[k] for k in cm.summary_metrics(probs, labels, 5)} == cm.summary_metrics(probs, labels, 5)


def test_evaluate_calibrated_without_mistakes_has_no_auroc_and_no_wrong_confidence() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    r = CA.evaluate_calibrated(probs, torch.tensor([0, 1]), np.array([0.9, 0.8]))
    assert math.isnan(r["auroc"]) and math.isnan(r["wrong_conf"]) and r["narrow_n"] == 0 and r["acc"] == 1.0


def test_unweighted_ca_objective_is_ca_loss_with_unit_weights() -> None:
    """At accuracy 1/2 the balanced weights are all equal, so the two objectives coincide; elsewhere they differ,
    and the unweighted one is the plain mean squared error of confidence against correctness."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 5, generator=g, dtype=torch.float64)
    feats = torch.rand(40, 3, generator=g, dtype=torch.float64)
    cal = CA.UnweightedCACalibrator(steps=1).fit(z, feats, torch.zeros(40, dtype=torch.long))
    conf = torch.softmax(z / cal.net(feats)[:, None], 1).max(1).values
    half = torch.arange(40) % 2 == 0
    unweighted = cal._objective(z, feats, z.argmax(1), half)
    assert unweighted.item() == pytest.approx(((conf - half.double()) ** 2).mean().item())
    assert unweighted.item() == pytest.approx(posthoc.ca_loss(conf, half).item())
    skew = torch.arange(40) % 4 != 0  # accuracy 3/4: the balanced weights differ from 1
    assert cal._objective(z, feats, z.argmax(1), skew).item() != pytest.approx(posthoc.ca_loss(conf, skew).item())


def test_balanced_optimum_minimises_the_weighted_squared_error() -> None:
    c = np.linspace(0, 1, 200001)
    for r, a in ((0.8, 0.8), (0.6, 0.85), (0.95, 0.7), (0.3, 0.5)):
        loss = (1 - a) * r * (1 - c) ** 2 + a * (1 - r) * c**2
        assert CA.balanced_optimum(r, a) == pytest.approx(c[np.argmin(loss)], abs=1e-5)
    assert CA.balanced_optimum(0.83, 0.83) == pytest.approx(0.5)
    assert np.allclose(CA.balanced_optimum(np.array([0.5, 0.9]), 0.5), [0.5, 0.9])  # at A = 1/2 the weights are equal: c* = r
