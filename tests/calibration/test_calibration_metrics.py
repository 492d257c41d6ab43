"""Calibration metrics: hand-computed cases, boundary cases, consistency, and parity with independent code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossbook import stats
from lossbook.calibration import metrics as M


def _binary_probs(q: np.ndarray) -> np.ndarray:
    return np.stack([1 - q, q], 1)


def _random_probs(rng: np.random.Generator, n: int, c: int, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(0, scale, (n, c))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = rng.integers(0, c, n)
    return p, y


def _reference_ece(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """Independent equal-width ECE: explicit loop over [lo, hi) bins (last bin closed), Guo's formula."""
    total = 0.0
    n = len(conf)
    edges = [i / n_bins for i in range(n_bins + 1)]
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        in_bin = [(c >= lo) and (c < hi or (b == n_bins - 1 and c <= hi)) for c in conf]
        m = np.array(in_bin)
        if m.sum() == 0:
            continue
        total += m.sum() / n * abs(correct[m].mean() - conf[m].mean())
    return total


# ---------------------------------------------------------------- hand-computed cases
def test_ece_hand_computed_two_bins() -> None:
    # confidences 0.6, 0.6, 0.9, 0.9; correct 1, 0, 1, 1; 10 bins -> bins 6 and 9
    # bin 6: acc 0.5 conf 0.6 -> 0.1 * 0.5; bin 9: acc 1.0 conf 0.9 -> 0.1 * 0.5 -> ECE 0.1
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9], [0.9, 0.1]])
    labels = np.array([0, 1, 1, 0])
    assert M.ece(probs, labels, n_bins=10) == pytest.approx(0.1, abs=1e-12)
    assert M.mce(probs, labels, n_bins=10) == pytest.approx(0.1, abs=1e-12)
    # one bin: |mean acc - mean conf| = |0.75 - 0.75| = 0: over- and under-confidence cancel
    assert M.ece(probs, labels, n_bins=1) == pytest.approx(0.0, abs=1e-12)
    assert M.balance_score(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_computed_three_class() -> None:
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33]])
    labels = np.array([0, 0, 2, 1])
    # conf .5 (right), .7 (wrong), .8 (right), .34 (wrong); 5 bins of width .2:
    # bin1 [.2,.4): .34 wrong -> |0-.34|*1/4; bin2 [.4,.6): .5 right -> .5/4; bin3 [.6,.8): .7 wrong -> .7/4;
    # bin4 [.8,1]: .8 right -> .2/4
    expected = (0.34 + 0.5 + 0.7 + 0.2) / 4
    assert M.ece(probs, labels, n_bins=5) == pytest.approx(expected, abs=1e-12)
    # equal mass with 2 bins: sorted conf .34(w) .5(r) | .7(w) .8(r) -> (|.5-.42| + |.5-.75|)/2
    assert M.ece(probs, labels, n_bins=2, strategy="quantile") == pytest.approx((0.08 + 0.25) / 2, abs=1e-12)


def test_brier_nll_closed_forms() -> None:
    c = 7
    probs = np.full((5, c), 1 / c)
    labels = np.arange(5) % c
    assert M.brier(probs, labels) == pytest.approx(1 - 1 / c)
    assert M.nll(probs, labels) == pytest.approx(math.log(c))
    onehot = np.eye(c)[labels]
    assert M.brier(onehot, labels) == 0.0
    assert M.brier(np.eye(c)[(labels + 1) % c], labels) == pytest.approx(2.0)
    z = torch.randn(50, c, generator=torch.Generator().manual_seed(0)) * 4
    y = torch.randint(0, c, (50,), generator=torch.Generator().manual_seed(1))
    ref = torch.nn.functional.cross_entropy(z.double(), y).item()
    assert M.nll(z, y, from_logits=True) == pytest.approx(ref, rel=1e-10)
    assert M.nll(torch.softmax(z.double(), 1), y) == pytest.approx(ref, rel=1e-8)


def test_balance_score_is_accuracy_minus_confidence() -> None:
    rng = np.random.default_rng(3)
    p, y = _random_probs(rng, 500, 4)
    acc = (p.argmax(1) == y).mean()
    assert M.balance_score(p, y) == pytest.approx(acc - p.max(1).mean())
    assert abs(M.balance_score(p, y)) <= M.ece(p, y) + 1e-12


# ---------------------------------------------------------------- boundary cases
def test_confidence_exactly_one_lands_in_last_bin() -> None:
    # torchmetrics #3510: c = 1.0 lands in a phantom bin. Here: all c = 1 and all correct -> ECE 0.
    probs = np.tile([1.0, 0.0, 0.0], (10, 1))
    labels = np.zeros(10, dtype=int)
    for strat in ("uniform", "quantile"):
        assert M.ece(probs, labels, strategy=strat) == 0.0
        d = M.reliability_diagram(probs, labels, strategy=strat)
        assert d.count.sum() == 10
    d = M.reliability_diagram(probs, labels, n_bins=15)
    assert d.count[-1] == 10
    labels[:3] = 1  # 3 confident mistakes -> ECE 0.3
    assert M.ece(probs, labels) == pytest.approx(0.3)


def test_confidence_exactly_zero_lands_in_first_bin() -> None:
    # focal_calibration bins with ceil(B c - 1): c = 0 -> bin -1. Here c = 0 is bin 0.
    conf = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    out = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    s = M.bin_stats(conf, out, n_bins=10)
    assert s.count[0] == 4 and s.count[-1] == 1 and s.count.sum() == 5
    assert M.calibration_error(conf, out, n_bins=10) == pytest.approx(4 / 5 * 0.25)
    # classwise: class-1 probability is 0 for some samples
    probs = _binary_probs(np.array([0.0, 0.0, 1.0, 1.0]))
    assert M.classwise_ece(probs, np.array([0, 0, 1, 1])) == 0.0


def test_exact_bin_edges_are_left_closed() -> None:
    # [b/B, (b+1)/B): 0.2 with 5 bins is in bin 1, 0.6 in bin 3
    s = M.bin_stats(np.array([0.2, 0.6, 0.19999]), np.zeros(3), n_bins=5)
    assert list(s.count) == [1, 1, 0, 1, 0]


def test_empty_bins_and_empty_input() -> None:
    probs = np.array([[0.95, 0.05]] * 4)
    labels = np.array([0, 0, 0, 1])
    d = M.reliability_diagram(probs, labels, n_bins=15)
    assert np.isnan(d.acc[:-1]).all() and d.count[:-1].sum() == 0
    assert d.ece == pytest.approx(abs(0.75 - 0.95))
    assert M.calibration_error(np.zeros(0), np.zeros(0)) == 0.0
    assert M.debiased_l2_ce(np.array([0.3]), np.array([1.0])) == 0.0  # no bin with >= 2 samples


def test_quantile_keeps_ties_together() -> None:
    conf = np.r_[np.full(80, 1.0), np.linspace(0.5, 0.9, 20)]
    out = np.r_[np.ones(70), np.zeros(10), np.ones(20)]
    s = M.bin_stats(conf, out, n_bins=10, strategy="quantile")
    tie_bin = s.conf == 1.0
    assert tie_bin.sum() == 1 and s.count[tie_bin][0] == 80
    assert s.count.sum() == 100


def test_quantile_bins_have_equal_mass_without_ties() -> None:
    rng = np.random.default_rng(0)
    s = M.bin_stats(rng.random(103), rng.random(103) < 0.5, n_bins=10, strategy="quantile")
    assert sorted(s.count.tolist()) == [10] * 7 + [11] * 3


def test_absent_classes_and_c_from_probs() -> None:
    # labels never contain class 2; C is read from probs, not max(label)+1
    probs = np.array([[0.6, 0.1, 0.3], [0.1, 0.6, 0.3], [0.7, 0.0, 0.3], [0.0, 0.7, 0.3]])
    labels = np.array([0, 1, 0, 1])
    all_ = M.classwise_ece(probs, labels, n_bins=10)
    present = M.classwise_ece(probs, labels, n_bins=10, classes="present")
    # class 2: p = 0.3 always, outcome 0 -> error 0.3; classes 0 and 1 each: per-class hand values
    k0 = M.calibration_error(probs[:, 0], (labels == 0).astype(float), 10)
    k1 = M.calibration_error(probs[:, 1], (labels == 1).astype(float), 10)
    assert all_ == pytest.approx((k0 + k1 + 0.3) / 3)
    assert present == pytest.approx((k0 + k1) / 2)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="logits"):
        M.ece(np.array([[3.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="labels must lie"):
        M.ece(np.array([[0.5, 0.5]]), np.array([2]))
    with pytest.raises(ValueError, match="\\(n, C\\)"):
        M.ece(np.array([0.5, 0.5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="strategy"):
        M.ece(np.array([[0.5, 0.5]]), np.array([0]), strategy="adaptive")


# ---------------------------------------------------------------- statistical behaviour
def test_perfectly_calibrated_ece_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    means = {}
    for n in (200, 2000, 20000):
        vals = []
        for _ in range(10):
            q = rng.random(n)
            y = (rng.random(n) < q).astype(int)
            vals.append(M.ece(_binary_probs(q), y))
        means[n] = float(np.mean(vals))
    assert means[200] > means[2000] > means[20000] > 0
    assert means[20000] < 0.01
    # plug-in ECE of a calibrated model scales ~ 1/sqrt(n): 100x more data, ~10x smaller (loose band)
    assert 4 < means[200] / means[20000] < 20


def test_debiased_l2_is_closer_to_zero_for_calibrated_predictions() -> None:
    rng = np.random.default_rng(1)
    plug, deb = [], []
    for _ in range(20):
        c = rng.random(500)
        o = (rng.random(500) < c).astype(float)
        plug.append(M.calibration_error(c, o, 15, "quantile", norm="l2"))
        deb.append(M.debiased_l2_ce(c, o, 15, "quantile"))
    assert np.mean(deb) < 0.5 * np.mean(plug)


def test_binned_estimates_are_the_four_estimators_and_debiasing_helps() -> None:
    """`binned_estimates` (calibration_metrics notebook, section 1) equals the separate estimator calls, and on a
    miscalibrated model (t = 0.5, true L2 CE known by quadrature) the debiased L2 is closer to the truth."""
    model, rng = M.temperature_model(0.5), np.random.default_rng(3)
    truth = model.true_ce(2)
    err_plug, err_deb = [], []
    for _ in range(10):
        s, y, _ = model.sample(300, rng)
        e = M.binned_estimates(s, y, 15)
        assert e == {"ece": M.calibration_error(s, y, 15, "uniform"), "ece_q": M.calibration_error(s, y, 15, "quantile"),
                     "l2_plugin": M.calibration_error(s, y, 15, "quantile", norm="l2"),
                     "l2_debiased": M.debiased_l2_ce(s, y, 15, "quantile")}
        err_plug.append(abs(e["l2_plugin"] - truth))
        err_deb.append(abs(e["l2_debiased"] - truth))
    assert np.mean(err_deb) < np.mean(err_plug)


def test_debiased_l2_recovers_a_known_miscalibration() -> None:
    # outcome ~ Bern(c^2): true L2 CE = sqrt(E[(c - c^2)^2]) with c ~ U(0,1) = sqrt(1/30)
    rng = np.random.default_rng(2)
    c = rng.random(200000)
    o = (rng.random(200000) < c**2).astype(float)
    truth = math.sqrt(1 / 30)
    assert M.debiased_l2_ce(c, o, 30, "quantile") == pytest.approx(truth, rel=0.03)


def test_temperature_detected_as_overconfidence() -> None:
    rng = np.random.default_rng(4)
    q = rng.random(5000)
    y = (rng.random(5000) < q).astype(int)
    sharp = 1 / (1 + np.exp(-3 * np.log(q / (1 - q))))  # logit * 3: over-confident
    assert M.ece(_binary_probs(sharp), y) > 0.1
    assert M.balance_score(_binary_probs(sharp), y) < -0.1


# ---------------------------------------------------------------- parity with independent implementations
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_loop_reference(n_bins: int) -> None:
    rng = np.random.default_rng(n_bins)
    for c in (2, 10):
        p, y = _random_probs(rng, 777, c)
        ref = _reference_ece(p.max(1), (p.argmax(1) == y).astype(float), n_bins)
        assert M.ece(p, y, n_bins) == pytest.approx(ref, abs=1e-12)


def test_ece_matches_torchmetrics() -> None:
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(7)
    for c, n_bins in ((3, 15), (10, 15), (10, 7)):
        p, y = _random_probs(rng, 1000, c)
        pt, yt = torch.tensor(p, dtype=torch.float64), torch.tensor(y)
        for norm in ("l1", "l2", "max"):
            ref = tmf.multiclass_calibration_error(pt, yt, num_classes=c, n_bins=n_bins, norm=norm).item()
            ours = M.calibration_error(p.max(1), (p.argmax(1) == y), n_bins, "uniform", norm)
            assert ours == pytest.approx(ref, abs=1e-6), (c, n_bins, norm)


def test_ece_matches_verified_calibration() -> None:
    cal = pytest.importorskip("calibration")
    rng = np.random.default_rng(8)
    p, y = _random_probs(rng, 1500, 5)
    assert M.ece(p, y, 15) == pytest.approx(cal.get_ece(p, y, num_bins=15), abs=1e-9)
    assert M.ece(p, y, 15, "quantile") == pytest.approx(cal.get_ece_em(p, y, num_bins=15), abs=1e-9)
    # marginal (classwise) L1 with equal-width bins
    ref = cal.lower_bound_scaling_ce(p, y, p=1, debias=False, num_bins=15, binning_scheme=cal.utils.get_equal_prob_bins)
    assert M.classwise_ece(p, y, 15) == pytest.approx(ref, abs=1e-9)
    # debiased L2, top-label, equal-mass (Kumar et al. 2019's estimator)
    ref = cal.lower_bound_scaling_ce(p, y, p=2, debias=True, num_bins=15, mode="top-label")
    assert M.top_label_debiased_l2(p, y, 15) == pytest.approx(ref, abs=1e-9)


def test_torch_and_numpy_inputs_agree() -> None:
    rng = np.random.default_rng(9)
    p, y = _random_probs(rng, 300, 4)
    for fn in (M.ece, M.classwise_ece, M.brier, M.nll, M.balance_score):
        assert fn(torch.tensor(p, dtype=torch.float32), torch.tensor(y)) == pytest.approx(fn(p, y), abs=1e-6)


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_ci_brackets_estimate_and_shrinks() -> None:
    rng = np.random.default_rng(10)
    widths = []
    for n in (300, 3000):
        p, y = _random_probs(rng, n, 3, scale=1.0)
        est, lo, hi = stats.bootstrap_ci(M.brier, p, y, n_boot=200, seed=0)
        assert lo <= est <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    est, lo, hi = stats.mean_ci(np.array([1.0, 2.0, 3.0, 4.0]), n_boot=2000).astuple()
    assert est == 2.5 and 1.0 <= lo < 2.5 < hi <= 4.0


def test_paired_bootstrap_diff_detects_a_real_difference() -> None:
    rng = np.random.default_rng(11)
    q = rng.random(3000)
    y = (rng.random(3000) < q).astype(int)
    good = _binary_probs(q)
    bad = _binary_probs(1 / (1 + np.exp(-4 * np.log(q / (1 - q)))))
    d, lo, hi = stats.paired_bootstrap_diff(M.ece, bad, good, y, n_boot=200)
    assert d > 0 and lo > 0


def test_summary_metrics_agree_with_individual_metrics() -> None:
    rng = np.random.default_rng(12)
    p, y = _random_probs(rng, 400, 5)
    s = M.summary_metrics(p, y)
    assert s["ece"] == M.ece(p, y) and s["ece_q"] == M.ece(p, y, strategy="quantile")
    assert s["cw_ece"] == M.classwise_ece(p, y) and s["nll"] == M.nll(p, y) and s["brier"] == M.brier(p, y)
    assert s["balance"] == pytest.approx(M.balance_score(p, y)) and s["acc"] - s["conf"] == pytest.approx(s["balance"])


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_synthetic_models_have_the_stated_true_error(t: float) -> None:
    m = M.temperature_model(t)
    rng = np.random.default_rng(13)
    s, y, q = m.sample(200000, rng)
    mc = float(np.mean(np.abs(q - s)))  # Monte Carlo of E|q - s|
    assert m.true_ce() == pytest.approx(mc, abs=2e-3)
    if t == 1.0:
        assert m.true_ce() < 1e-9
    assert M.calibration_error(s, y, 15) == pytest.approx(m.true_ce(), abs=0.01)


def test_offsetting_model_has_zero_balance_and_positive_ece() -> None:
    m = M.offsetting_model(0.1)
    assert m.true_ce() == pytest.approx(0.1, abs=1e-6)
    s, y, _ = m.sample(200000, np.random.default_rng(14))
    p = np.stack([1 - s, s], 1)
    assert abs(M.balance_score(p, y)) < 0.005 and M.ece(p, y) > 0.08
    o = M.oscillating_model(0.1, 5)
    s, y, _ = o.sample(200000, np.random.default_rng(15))
    assert M.calibration_error(s, y, 5) < 0.01 < 0.05 < M.calibration_error(s, y, 50)


def test_ece_floor_is_the_estimate_under_perfect_calibration() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, size=(4000, 5))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (rng.random(4000)[:, None] > np.cumsum(p, 1)).sum(1)  # labels drawn from p: calibrated by construction
    floor = M.ece_floor(p, 15, n_draws=50)
    assert 0 < floor < 0.05 and abs(M.ece(p, y, 15) - floor) < 3 * 0.01
    assert M.ece_floor(p[:500], 15, n_draws=50) > 1.5 * floor  # the bias shrinks with n (~1/sqrt(n))
    assert M.ece_floor(p, 15, "quantile", seed=1) == M.ece_floor(p, 15, "quantile", seed=1)


def test_balance_rule_pass_rates_expose_the_knife_edge() -> None:
    rates = M.balance_rule_pass_rates(M.offsetting_model(0.1, 0.75), n_samples=5000, n_replicates=5, n_sets=60, margin=0.02)
    assert rates["t_ci_within_margin"] >= 0.9  # true Balance is 0: the CI rule passes nearly always
    assert rates["per_draw_cut"] < 0.8  # "every draw |b| < 0.01" fails often on noise alone
    assert M.balance_rule_pass_rates(M.temperature_model(0.5), 2000, 5, 20, 0.02)["t_ci_within_margin"] == 0.0  # Balance far from 0
