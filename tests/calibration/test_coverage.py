"""Tests for lossbook.calibration.coverage: the direct coverage loss and the pass@k estimators."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossbook.calibration import coverage


def _naive_loss(logits: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    p = torch.softmax(logits, -1).gather(1, y[:, None]).squeeze(1)
    return (-torch.log(1 - (1 - p) ** n)).mean()


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_coverage_loss_matches_direct_formula_and_its_gradient(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (12,), generator=g)
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    a, b = coverage.coverage_loss(z1, y, n), _naive_loss(z2, y, n)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    a.backward()
    b.backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-13)


def test_n_equal_one_is_cross_entropy() -> None:
    z = torch.randn(20, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.arange(20) % 7
    assert coverage.coverage_loss(z, y, 1).item() == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-12)


def test_gradient_is_ce_gradient_times_coverage_weight() -> None:
    z = torch.randn(9, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    y = torch.arange(9) % 4
    n = 8
    zc = z.clone().requires_grad_(True)
    coverage.coverage_loss(zc, y, n, reduction="sum").backward()
    p = torch.softmax(z, -1)
    ce_grad = p - F.one_hot(y, 4).double()
    w = coverage.coverage_weight(p.gather(1, y[:, None]).squeeze(1), n)
    torch.testing.assert_close(zc.grad, w[:, None] * ce_grad, rtol=1e-10, atol=1e-13)
    # F_N -> 1 as p -> 0 and -> 0 as p -> 1
    assert coverage.coverage_weight(torch.tensor([1e-12]), n).item() == pytest.approx(1.0, abs=1e-9)
    assert coverage.coverage_weight(torch.tensor([1 - 1e-6]), n).item() < 1e-30


def test_log_space_form_is_stable_at_both_ends() -> None:
    n = 16
    # p -> 0: log(1 - (1-p)^N) ~ log(N p)
    lp = torch.tensor([-200.0, -50.0], dtype=torch.float64)
    torch.testing.assert_close(coverage.log_pass_at_n(lp, n), math.log(n) + lp, rtol=1e-10, atol=0)
    # p -> 1: log(1 - q^N) = -q^N to relative 1e-40 when q = 1 - p = -expm1(log p) is ~1e-3 or less
    lp = torch.tensor([-1e-3, -1e-8], dtype=torch.float64)
    torch.testing.assert_close(coverage.log_pass_at_n(lp, n), -((-torch.expm1(lp)) ** n), rtol=1e-12, atol=0)
    naive = torch.log(1 - (1 - lp.exp()) ** n)
    assert (naive == 0).all()  # the naive formula rounds these to 0 (log 1)
    # huge logit margins in float32: finite loss and gradient, where the naive formula is not
    for margin in (1e-4, 30.0, 200.0, 1e4):
        z = torch.tensor([[margin, 0.0, 0.0], [-margin, 0.0, 0.0]], requires_grad=True)
        loss = coverage.coverage_loss(z, torch.tensor([0, 0]), 16)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # the wrong example at margin 1e4 costs -log(16 p) with log p = -1e4 - log 2
    assert loss.item() == pytest.approx(0.5 * (1e4 + math.log(2) - math.log(16)), rel=1e-6)


def test_expected_pass_at_k_matches_closed_form_and_sampling() -> None:
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    got = coverage.expected_pass_at_k(p, [1, 3, 10])
    for k in (1, 3, 10):
        assert got[k] == pytest.approx(float(np.mean(1 - (1 - p) ** k)), rel=1e-12)
    rng = np.random.default_rng(0)
    hits = (rng.random((200_000, 3, 5)) < p).any(1).mean()  # k = 3 independent draws per item
    assert hits == pytest.approx(got[3], abs=0.005)


def test_pass_at_k_curves_agree_with_softmax() -> None:
    z = torch.randn(30, 6, generator=torch.Generator().manual_seed(3))
    y = torch.arange(30) % 6
    p = torch.softmax(z.double() / 2.0, -1)[torch.arange(30), y].numpy()
    got = coverage.pass_at_k_curves(z, y, [1, 4], temperature=2.0)
    assert got[1] == pytest.approx(p.mean(), rel=1e-10)
    assert got[4] == pytest.approx(np.mean(1 - (1 - p) ** 4), rel=1e-10)
    front = coverage.temperature_frontier(z, y, [1, 4], [1.0, 2.0])
    assert front[4][1] == pytest.approx(got[4], rel=1e-12)
    assert coverage.pass_at_n_at_matched_pass_at_1(np.array([0.2, 0.4]), np.array([0.9, 0.7]), 0.3) == pytest.approx(0.8)


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_unbiased_pass_at_k_equals_enumeration_over_subsets(n: int) -> None:
    for c in range(n + 1):
        samples = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert coverage.pass_at_k_unbiased(n, c, k) == pytest.approx(brute, abs=1e-12)
            assert coverage.pass_at_k_unbiased(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    got = coverage.pass_at_k_unbiased(n, np.arange(n + 1), 1)
    np.testing.assert_allclose(got, np.arange(n + 1) / n, atol=1e-12)


def test_unbiased_pass_at_k_is_unbiased_and_stable() -> None:
    rng = np.random.default_rng(1)
    p, n, k = 0.07, 50, 10
    cs = rng.binomial(n, p, size=100_000)
    est = coverage.pass_at_k_unbiased(n, cs, k).mean()
    assert est == pytest.approx(1 - (1 - p) ** k, abs=0.003)
    # large n: no overflow (math.comb ratios would be huge integers), agrees with the exact ratio
    assert coverage.pass_at_k_unbiased(2000, 3, 100) == pytest.approx(1 - math.comb(1997, 100) / math.comb(2000, 100), rel=1e-9)
    with pytest.raises(ValueError):
        coverage.pass_at_k_unbiased(5, 6, 1)


def test_batch_loss_kinds() -> None:
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.arange(8) % 3
    terms, z = coverage.coverage_batch_loss("coverage", 4)(model, x, y, torch.arange(8), 1)
    assert set(terms) == {"coverage"} and terms["coverage"].item() == pytest.approx(coverage.coverage_loss(z, y, 4).item())
    terms, _ = coverage.coverage_batch_loss("ce")(model, x, y, torch.arange(8), 1)
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(model(x), y).item())
    with pytest.raises(ValueError):
        coverage.coverage_batch_loss("focal")


def test_pass_at_k_callback_reads_both_splits_and_the_temperature_control() -> None:
    from lossbook.calibration.posthoc import fit_temperature
    from lossbook.data.classification import Split

    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, 3, generator=g)
    y = torch.arange(40) % 3
    split = Split(x, y, x[:20], y[:20], x[20:], y[20:], 3, (3,), "toy")
    model = torch.nn.Linear(3, 3)
    out = coverage.pass_at_k_callback(split, [1, 4], temperature_scaled=True)(1, model)
    with torch.no_grad():
        zv, zt = model(x[:20]), model(x[20:])
    t = fit_temperature(zv, y[:20])
    assert out["T"] == pytest.approx(t)
    assert out["test_pass_at_4"] == pytest.approx(coverage.pass_at_k_curves(zt, y[20:], [4])[4], rel=1e-6)
    assert out["ts_val_pass_at_1"] == pytest.approx(coverage.pass_at_k_curves(zv, y[:20], [1], t)[1], rel=1e-6)
    assert "T" not in coverage.pass_at_k_callback(split, [1])(1, model)
