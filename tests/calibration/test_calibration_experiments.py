"""The calibration experiments the notebooks call: train one classifier, temperature-scale it, measure it.

Tiny runs on scikit-learn digits (an MLP, a few epochs, a few hundred training examples), so each takes
well under a second on one CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook.calibration import experiments as E
from lossbook.calibration import metrics as cm
from lossbook.calibration.registry import get_loss

TINY = {"epochs": 3, "lr": 3e-3, "batch_size": 64, "n_train": 300}


def test_seeded_split_and_model_is_repeatable_and_noise_touches_only_training_labels() -> None:
    s1, m1 = E.seeded_split_and_model("digits", "mlp", 3, n_train=300)
    s2, m2 = E.seeded_split_and_model("digits", "mlp", 3, n_train=300)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(s1.y_train, s2.y_train) and len(s1.y_train) == 300
    noisy, _ = E.seeded_split_and_model("digits", "mlp", 3, n_train=300, label_noise=0.3)
    flipped = (noisy.y_train != s1.y_train).float().mean().item()
    assert 0.2 < flipped < 0.4
    assert torch.equal(noisy.y_val, s1.y_val) and torch.equal(noisy.y_test, s1.y_test)
    _, m3 = E.seeded_split_and_model("digits", "mlp", 4, n_train=300)
    assert not torch.equal(next(iter(m1.state_dict().values())), next(iter(m3.state_dict().values())))


def test_epoch_test_metrics_are_the_test_split_error_nll_and_ece() -> None:
    split, model = E.seeded_split_and_model("digits", "mlp", 0, n_train=300)
    row = E.epoch_test_metrics(split, n_bins=10)(1, model)
    z = model.eval()(split.x_test).detach()
    p = E.probs_at(z)
    assert set(row) == {"test_err", "test_nll", "test_ece"}
    assert row["test_err"] == pytest.approx(1 - (z.argmax(1) == split.y_test).float().mean().item())
    assert row["test_nll"] == pytest.approx(cm.nll(p, split.y_test))
    assert row["test_ece"] == pytest.approx(cm.ece(p, split.y_test, 10))


def test_temperature_scaled_metrics_equal_the_metric_functions_bitwise() -> None:
    """`summary_metrics` (what the notebooks now call) gives exactly the numbers of the separate metric calls
    the temperature_scaling notebook used to make."""
    r = E.train_to_logits("digits", "mlp", 0, progress=False, **TINY)
    t, before, after = E.temperature_scaled_metrics(r.val_logits, r.split.y_val, r.test_logits, r.split.y_test, 15)
    assert t > 0
    y = r.split.y_test
    for temp, got in ((1.0, before), (t, after)):
        p = E.probs_at(r.test_logits, temp)
        c, a = cm.confidence_and_correct(p, y)
        want = {"acc": float(a.mean()), "conf": float(c.mean()), "ece": cm.ece(p, y, 15, "uniform"),
                "ece_q": cm.ece(p, y, 15, "quantile"), "cw_ece": cm.classwise_ece(p, y, 15), "nll": cm.nll(p, y),
                "brier": cm.brier(p, y), "balance": cm.balance_score(p, y)}
        assert got == want


def test_temperature_scaling_run_keeps_accuracy_and_is_bitwise_repeatable() -> None:
    r = E.temperature_scaling_run("digits", "mlp", 1, n_bins=15, progress=False, **TINY)
    row = r.row
    assert list(row) == ["arch", "seed", "data_seed", "T", "T_ece_grid", "train_acc", "same_argmax",
                         *[f"{k}_before" for k in E.TS_METRICS], *[f"{k}_after" for k in E.TS_METRICS],
                         "ece_floor_after", "ece_q_floor_after"]
    assert 0 < row["ece_floor_after"] < 1 and row["data_seed"] is None
    assert row["T"] > 0 and row["T_ece_grid"] > 0
    assert row["same_argmax"] and row["acc_before"] == row["acc_after"]
    assert row["nll_after"] <= row["nll_before"] + 0.05  # T* minimises the validation NLL; test NLL follows
    assert len(r.fit.curves["test_ece"]) == len(r.fit.curves["test_err"]) == TINY["epochs"]
    assert row["train_acc"] == r.fit.curves["train_acc"][-1]
    assert r.split_sizes["train"] == 300 and r.split_sizes["test"] == 360
    assert len(r.val_nll_curve) == len(r.test_nll_curve) == 121
    for d in (r.rel_before, r.rel_after, r.relq_before, r.relq_after):
        assert d.count.sum() == 360
    assert r.rel_before.ece == pytest.approx(row["ece_before"]) and r.relq_after.ece == pytest.approx(row["ece_q_after"])
    again = E.temperature_scaling_run("digits", "mlp", 1, n_bins=15, progress=False, **TINY)
    assert again.row == row and again.fit.curves == r.fit.curves
    assert np.array_equal(again.val_nll_curve, r.val_nll_curve)
    other = E.temperature_scaling_run("digits", "mlp", 2, n_bins=15, progress=False, **TINY)
    assert other.row["T"] != row["T"]


def test_loss_calibration_run_measures_any_loss_and_repeats() -> None:
    kw = {**TINY, "n_bins": 15}
    focal = E.loss_calibration_run("digits", "mlp", get_loss("focal", gamma=3.0), 0, **kw).row
    assert list(focal)[:3] == ["T", "train_acc", "train_acc_tail"] and {"ece_before", "ece_after", "balance_before"} <= set(focal)
    assert focal["T"] > 0 and focal["acc_before"] == focal["acc_after"]
    assert focal["balance_before"] == pytest.approx(focal["acc_before"] - focal["conf_before"])
    assert E.loss_calibration_run("digits", "mlp", get_loss("focal", gamma=3.0), 0, **kw).row == focal
    ce = E.loss_calibration_run("digits", "mlp", get_loss("ce"), 0, **kw).row
    assert ce != focal
    noisy = E.loss_calibration_run("digits", "mlp", get_loss("ce"), 0, label_noise=0.5, **kw).row
    assert noisy["train_acc"] < ce["train_acc"]


def test_loss_calibration_run_budget_checkpoint_is_the_shorter_run() -> None:
    """With a constant learning rate, the checkpoint at epoch e of a longer run is bitwise the run stopped at e;
    the last checkpoint is the final row; the selected epoch is the first best validation epoch."""
    kw = {"lr": 3e-3, "batch_size": 64, "n_train": 300, "n_bins": 15}
    long = E.loss_calibration_run("digits", "mlp", get_loss("ce"), 1, epochs=4, budget_epochs=[2, 4], topk=[1, 3], data_seed=2, **kw)
    short = E.loss_calibration_run("digits", "mlp", get_loss("ce"), 1, epochs=2, data_seed=2, **kw)
    assert [b["epoch"] for b in long.budget] == [2.0, 4.0]
    first, last = long.budget
    assert first["T"] == short.row["T"] and first["ece_before"] == short.row["ece_before"] and first["ece_after"] == short.row["ece_after"]
    assert first["train_acc"] == short.row["train_acc"] == long.curves["train_acc"][1]
    assert last["T"] == long.row["T"] and last["nll_after"] == long.row["nll_after"] and last["acc"] == long.row["acc_before"]
    val = np.array(long.curves["val_acc"])
    assert long.row["best_epoch"] == int(np.argmax(val)) + 1
    assert long.row["sel_test_acc"] == long.curves["test_acc"][long.row["best_epoch"] - 1]
    assert long.curves["test_acc"][-1] == pytest.approx(long.row["acc_before"])
    assert long.row["top1_acc"] == pytest.approx(long.row["acc_before"]) and long.row["top3_acc"] >= long.row["top1_acc"]
    assert long.row["train_acc_tail"] == long.curves["train_acc"][-1]  # the last 10% of 4 epochs is one epoch
    assert 0 < long.row["ece_floor_after"] < 1
    with pytest.raises(ValueError, match="budget_epochs"):
        E.loss_calibration_run("digits", "mlp", get_loss("ce"), 1, epochs=2, budget_epochs=[3], **kw)


def test_topk_accuracy_against_enumeration() -> None:
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(50, 6, generator=g), torch.randint(0, 6, (50,), generator=g)
    ranks = (z > z.gather(1, y[:, None])).sum(1)  # how many classes beat the true one (no ties in random floats)
    for k in range(1, 7):
        assert E.topk_accuracy(z, y, k) == pytest.approx(float((ranks < k).float().mean()))
    assert E.topk_accuracy(z, y, 1) == pytest.approx(float((z.argmax(1) == y).float().mean())) and E.topk_accuracy(z, y, 6) == 1.0
    with pytest.raises(ValueError):
        E.topk_accuracy(z, y, 7)
