"""Tests for lossbook.alignment.ranking (Chen et al. 2024): ranking accuracy, idealized accuracy, Thm 4.1."""

from __future__ import annotations

import math

import pytest
import torch

from lossbook.alignment import ranking as rk


def test_ranking_accuracy_raw_and_normalised() -> None:
    c = torch.tensor([-2.0, -10.0, -3.0, -4.0])
    r = torch.tensor([-3.0, -6.0, -3.0, -8.0])
    lc, lr = torch.tensor([1.0, 10.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 1.0, 8.0])
    assert rk.ranking_accuracy(c, r) == pytest.approx(2 / 4)  # tie counts as wrong
    # normalised: -2 > -3, -1 > -2, tie, -2 < -1
    assert rk.ranking_accuracy(c, r, lc, lr, normalized=True) == pytest.approx(2 / 4)
    assert rk.ranking_correct(c, r, lc, lr, normalized=True).tolist() == [True, True, False, False]
    with pytest.raises(ValueError):
        rk.ranking_accuracy(c, r, normalized=True)


def test_idealized_closed_form() -> None:
    # π_ref ratio 1/e (y1 less likely), α = 0.75 -> log(α/(1-α)) = log 3; β = 1: log ratio = -1 + log 3 > 0
    lr_ = rk.idealized_log_ratio(torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([0.75]), beta=1.0)
    assert float(lr_[0]) == pytest.approx(-1 + math.log(3))
    acc = rk.idealized_ranking_accuracy(torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([0.75]), betas=[0.5, 1.0, 5.0])
    # β = 5: -1 + log(3)/5 < 0 -> the optimum keeps the reference's wrong ranking
    assert acc == {0.5: 1.0, 1.0: 1.0, 5.0: 0.0}


def test_idealized_small_beta_recovers_annotators_and_ties() -> None:
    g = torch.Generator().manual_seed(0)
    n = 500
    ref1, ref2 = torch.randn(n, generator=g) * 5, torch.randn(n, generator=g) * 5
    alpha = torch.rand(n, generator=g) * 0.8 + 0.1
    alpha[:10] = 0.5  # annotator ties: π* ties only if π_ref ties
    acc = rk.idealized_ranking_accuracy(ref1, ref2, alpha, betas=[0.001, 1000.0])
    # tiny β: the annotators' ranking dominates; only the human ties (|α/(1−α) − 1| < 0.05) are missed
    human_tie = ((alpha / (1 - alpha)) - 1).abs() < rk.TIE_BAND
    assert acc[0.001] == pytest.approx(1 - float(human_tie.double().mean()), abs=1e-9)
    # huge β: π* ≈ π_ref, so idealized accuracy ≈ the reference's agreement with the annotators
    ref_agree = float(((ref1 > ref2) == (alpha > 0.5))[10:].double().mean()) * (n - 10) / n
    assert acc[1000.0] == pytest.approx(ref_agree, abs=0.03)
    ok = rk.idealized_ranking_correct(ref1[:10], ref1[:10], alpha[:10], beta=1.0)
    assert bool(ok.all())  # tie == tie


def _thm_inputs(seed: int, n: int = 2000) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rc, rr = -torch.rand(n, generator=g) * 30, -torch.rand(n, generator=g) * 30
    c, r = rc + torch.randn(n, generator=g) * 3, rr + torch.randn(n, generator=g) * 3
    return [c, r, rc, rr]


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0, 5.0])
def test_thm41_holds_on_constructed_pairs(beta: float) -> None:
    c, r, rc, rr = _thm_inputs(int(beta * 100))
    out = rk.thm41_check(c, r, rc, rr, beta)
    assert bool(out["agree"].all())
    assert 0.2 < float(out["ranked"].double().mean()) < 0.8  # both outcomes occur: the test can fail
    # at the boundary: a policy with Δ = c exactly sits on the bound and is a tie
    d = rk.thm41_check(torch.tensor([-5.0]), torch.tensor([-5.0]), torch.tensor([-7.0]), torch.tensor([-4.0]), beta)
    assert float(d["dpo_loss"][0]) == pytest.approx(float(d["bound"][0]))
    assert bool(d["tie"][0])


def test_thm41_detects_a_wrong_bound() -> None:
    """A wrong bound (−log σ(−βc), sign flipped) disagrees on many pairs: the check is not vacuous."""
    c, r, rc, rr = _thm_inputs(7)
    out = rk.thm41_check(c, r, rc, rr, 1.0)
    wrong = out["dpo_loss"] < torch.nn.functional.softplus(1.0 * out["c"])  # −log σ(−βc) instead of −log σ(βc)
    assert float((wrong == out["ranked"]).double().mean()) < 0.95


def test_flip_rates_by_margin() -> None:
    rc = torch.tensor([-5.0, -5.0, -5.0, -5.0, -1.0])
    rr = torch.tensor([-4.0, -4.5, -1.0, -2.0, -5.0])  # c = 1, 0.5, 4, 3, -4 (last: reference already right)
    c = torch.tensor([-1.0, -3.0, -3.0, -3.0, -1.0])
    r = torch.tensor([-2.0, -2.0, -2.0, -4.0, -9.0])
    bins = rk.flip_rates_by_margin(rc, rr, c, r, [0.0, 2.0, 10.0])
    assert [b["n"] for b in bins] == [2, 2]
    assert bins[0]["flipped"] == pytest.approx(0.5) and bins[1]["flipped"] == pytest.approx(0.5)
    assert math.isnan(rk.flip_rates_by_margin(rc, rr, c, r, [20.0, 30.0])[0]["flipped"])


def test_idealized_logprob_quotient_is_the_official_code_raw_branch() -> None:
    # y1 more likely (−2 vs −4): likelihood ratio e^2, the code's quotient −2/−4 = 0.5 (inverted); α = 0.75, β = 1
    c, r, a = torch.tensor([-2.0]), torch.tensor([-4.0]), torch.tensor([0.75])
    assert float(rk.idealized_log_ratio(c, r, a, 1.0)[0]) == pytest.approx(2 + math.log(3))
    assert float(rk.idealized_log_ratio(c, r, a, 1.0, definition="logprob_quotient")[0]) == pytest.approx(math.log(0.5) + math.log(3))
    # code: posterior = (a1/a2)**(1/β) * (lp1/lp2), ranked with the tie band; β = 5: 3**0.2 * 0.5 = 0.62 -> y2 preferred (wrong)
    assert float(3 ** 0.2 * 0.5) < 1 - rk.TIE_BAND
    acc = rk.idealized_ranking_accuracy(c, r, a, [1.0, 5.0], definition="logprob_quotient")
    assert acc == {1.0: 1.0, 5.0: 0.0}
    assert rk.idealized_ranking_accuracy(c, r, a, [5.0]) == {5.0: 1.0}  # the likelihood ratio keeps the right order
    with pytest.raises(ValueError, match="definition"):
        rk.idealized_log_ratio(c, r, a, 1.0, definition="ratio")


def test_ranking_summary_counts_flips_by_tercile() -> None:
    # 6 misranked pairs (c = 1..6) and 2 right ones; the model flips the three with the smallest c
    rc = torch.tensor([-1.0, -2, -3, -4, -5, -6, -1, -1])
    rr = torch.tensor([0.0, 0, 0, 0, 0, 0, -5, -5])
    c = torch.tensor([0.5, 0.5, 0.5, -7, -7, -7, -1, -1])
    r = torch.zeros(8)
    lens = torch.ones(8)
    s = rk.ranking_summary(c, r, rc, rr, lens, lens, 0.1)
    assert s["n_misranked"] == 6 and s["flip_rate"] == pytest.approx(0.5)
    assert s["flip_bottom"] == 1.0 and s["flip_top"] == 0.0 and s["thm41_agree"] == 1.0
    assert s["raw"] == pytest.approx(3 / 8)  # the 3 flipped; the 2 reference-right pairs are now wrong (−1 < 0)
