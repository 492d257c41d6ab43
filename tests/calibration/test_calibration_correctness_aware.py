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

BASE = {"epochs": 2, "lr": 3e-3, "batch_size": 64, "n_train": 200}


def test_cached_base_model_builds_once_then_loads_the_same_weights(capsys: pytest.CaptureFixture[str]) -> None:
    m1, split = CA.cached_base_model("digits", "mlp", 5, **BASE)
    assert "cache miss: ca_base_model" in capsys.readouterr().out
    m2, split2 = CA.cached_base_model("digits", "mlp", 5, **BASE)
    assert "cache hit: ca_base_model" in capsys.readouterr().out
    assert not m1.training and not m2.training
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(split.y_val, split2.y_val) and len(split.y_train) == 200
    # the key is the one the notebook always used (n_train 0 = all), so existing caches stay valid
    cfg = {"dataset": "digits", "arch": "mlp", "seed": 5, "epochs": 2, "lr": 3e-3, "batch_size": 64,
           "n_train": 200, "loss": "ce", "weight_decay": 0.0}
    assert (cache.cache_dir() / "ca_base_model" / f"{cache.config_hash(cfg)}.pt").exists()


def test_evaluate_calibrated_counts_narrow_misses_and_auroc() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]])
    labels = torch.tensor([0, 1, 0, 0, 1])  # correct, wrong, wrong, correct, correct
    p_true_ts = np.array([0.95, 0.45, 0.2, 0.5, 0.85])  # narrow misses in [0.3, 0.5]: only sample 1
    r = CA.evaluate_calibrated(probs, labels, p_true_ts, narrow_low=0.3, narrow_high=0.5, n_bins=5)
    conf, correct = probs.max(1), probs.argmax(1) == labels.numpy()
    assert r["narrow_n"] == 1 and r["narrow_conf_sum"] == pytest.approx(0.6)
    assert r["wrong_conf"] == pytest.approx((0.6 + 0.7) / 2)
    assert r["auroc"] == pytest.approx(roc_auc_score(correct, conf))
    assert np.array_equal(r["argmax"], probs.argmax(1))
    assert {k: r[k] for k in cm.summary_metrics(probs, labels, 5)} == cm.summary_metrics(probs, labels, 5)


def test_evaluate_calibrated_without_mistakes_has_no_auroc_and_no_wrong_confidence() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    r = CA.evaluate_calibrated(probs, torch.tensor([0, 1]), np.array([0.9, 0.8]))
    assert math.isnan(r["auroc"]) and math.isnan(r["wrong_conf"]) and r["narrow_n"] == 0 and r["acc"] == 1.0
