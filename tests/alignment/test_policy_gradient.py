"""Policy-gradient losses against exact expectations on a tiny categorical policy (enumeration, no sampling)."""

from __future__ import annotations

import itertools

import pytest
import torch

from lossbook.alignment import policy_gradient as pg

V = 4


def _policy(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(V, generator=g, dtype=torch.float64, requires_grad=True)
    ref_logits = torch.randn(V, generator=g, dtype=torch.float64)
    r = torch.rand(V, generator=g, dtype=torch.float64)
    return theta, torch.log_softmax(ref_logits, 0), r


def _grad(f: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(f, theta, retain_graph=True)[0]


def test_reinforce_expected_gradient_is_minus_grad_of_expected_reward() -> None:
    theta, _, r = _policy(1)
    logp = torch.log_softmax(theta, 0)
    p = logp.exp().detach()
    # E_{y∼π}[∇ loss(y)] by enumeration: a single-sample loss per action, weighted by π(y)
    expected = sum(p[y] * _grad(pg.reinforce_loss(logp[y : y + 1], r[y : y + 1], baseline=0.3), theta) for y in range(V))
    closed = _grad((torch.softmax(theta, 0) * r).sum(), theta)
    torch.testing.assert_close(expected, -closed)


def test_kl_penalised_reinforce_is_grad_of_regularised_objective() -> None:
    theta, ref_lp, r = _policy(2)
    beta = 0.7
    logp = torch.log_softmax(theta, 0)
    p = logp.exp().detach()
    expected = sum(p[y] * _grad(pg.reinforce_loss(logp[y : y + 1], pg.kl_penalised_rewards(r[y : y + 1], logp[y : y + 1], ref_lp[y : y + 1], beta)), theta)
                   for y in range(V))
    pi = torch.softmax(theta, 0)
    objective = (pi * r).sum() - beta * (pi * (torch.log(pi) - ref_lp)).sum()
    torch.testing.assert_close(expected, -_grad(objective, theta))


def _tuples(k: int):
    return itertools.product(range(V), repeat=k)


@pytest.mark.parametrize("k", [2, 3])
def test_rloo_is_unbiased_exact_over_all_sample_sets(k: int) -> None:
    theta, _, r = _policy(3)
    logp = torch.log_softmax(theta, 0)
    p = logp.exp().detach()
    expected = torch.zeros(V, dtype=torch.float64)
    for ys in _tuples(k):
        idx = torch.tensor(ys)
        w = torch.prod(p[idx])
        expected += w * _grad(pg.rloo_loss(logp[idx].view(1, k), r[idx].view(1, k)), theta)
    closed = _grad((torch.softmax(theta, 0) * r).sum(), theta)
    torch.testing.assert_close(expected, -closed)


def test_leave_one_out_baseline_has_zero_mean_contribution() -> None:
    """E[b_i·∇log π(y_i)] = 0 for b_i = mean of the other samples (independent of y_i), over all 3-sample sets."""
    theta, _, r = _policy(4)
    logp = torch.log_softmax(theta, 0)
    p = logp.exp().detach()
    k = 3
    total = torch.zeros(V, dtype=torch.float64)
    for ys in _tuples(k):
        idx = torch.tensor(ys)
        rr = r[idx]
        baseline = rr - pg.rloo_advantages(rr)  # = mean of the other samples
        total += torch.prod(p[idx]) * _grad((baseline * logp[idx]).sum(), theta)
    torch.testing.assert_close(total, torch.zeros(V, dtype=torch.float64))


def test_rloo_advantages_closed_form() -> None:
    rr = torch.tensor([[1.0, 2.0, 6.0]])
    torch.testing.assert_close(pg.rloo_advantages(rr), torch.tensor([[1.0 - 4.0, 2.0 - 3.5, 6.0 - 1.5]]))
    torch.testing.assert_close(pg.rloo_advantages(rr), 3 / 2 * (rr - rr.mean()))
    with pytest.raises(ValueError):
        pg.rloo_advantages(torch.ones(2, 1))


def test_batch_mean_baseline_biased_but_loo_not() -> None:
    """The book's REINFORCE arm uses the batch mean (incl. y_i): its expectation over 2-sample sets is (1 − 1/k)·∇J."""
    theta, _, r = _policy(5)
    logp = torch.log_softmax(theta, 0)
    p = logp.exp().detach()
    k = 2
    expected = torch.zeros(V, dtype=torch.float64)
    for ys in _tuples(k):
        idx = torch.tensor(ys)
        rr = r[idx]
        expected += torch.prod(p[idx]) * _grad(pg.reinforce_loss(logp[idx], rr, rr.mean()), theta)
    closed = _grad((torch.softmax(theta, 0) * r).sum(), theta)
    torch.testing.assert_close(expected, -(1 - 1 / k) * closed)


@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_kl_estimators_are_unbiased_on_a_categorical(kind: str) -> None:
    theta, ref_lp, _ = _policy(6)
    logp = torch.log_softmax(theta.detach(), 0)
    p = logp.exp()
    exact = (p * (logp - ref_lp)).sum()
    est = (p * pg.kl_estimate(logp, ref_lp, kind)).sum()
    torch.testing.assert_close(est, exact)
    assert exact > 0


def test_k3_nonnegative_and_k1_can_be_negative() -> None:
    theta, ref_lp, _ = _policy(7)
    logp = torch.log_softmax(theta.detach(), 0)
    assert (pg.kl_estimate(logp, ref_lp, "k3") >= 0).all()
    assert (pg.kl_estimate(logp, ref_lp, "k1") < 0).any()
    with pytest.raises(ValueError):
        pg.kl_estimate(logp, ref_lp, "k2")  # type: ignore[arg-type]
