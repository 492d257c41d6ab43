"""lossbook.distillation.transfer_limits: the four tabular students of Zhao & Zhu (2024) against hand-computed
closed forms, their losses' minimisers by numerical optimisation, the Monte Carlo simulator against exact
expectations, the bias of the naive partial-label CE, the paper's instances and determinism by seed."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import optimize, stats

from lossbook.distillation import transfer_limits as tl

PI = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
COUNTS = np.array([[2, 0, 1], [0, 0, 0]])


def test_students_on_a_hand_computed_table() -> None:
    u = np.full(3, 1 / 3)
    np.testing.assert_allclose(tl.ce_sgl(COUNTS), [[2 / 3, 0, 1 / 3], u])
    np.testing.assert_allclose(tl.ce_ptl(COUNTS, PI), [[1.0 / 1.2, 0, 0.2 / 1.2], u])  # ∝ 2·0.5, 0, 1·0.2
    np.testing.assert_allclose(tl.sel_ptl(COUNTS, PI), [[0.5, 0.3, 0.2], u])  # the one unseen label takes the missing 0.3
    np.testing.assert_allclose(tl.ce_ful(COUNTS, PI), [PI[0], u])
    # two unseen labels share the missing mass equally
    np.testing.assert_allclose(tl.sel_ptl(np.array([[1, 0, 0]]), PI[:1]), [[0.5, 0.25, 0.25]])
    # risk: ρ-weighted TV; the unseen second input costs TV(Uniform, π*(·|1)) = 0.6 − 1/3
    inst = tl.Instance(np.array([0.25, 0.75]), PI)
    tv_row0 = 0.5 * (abs(2 / 3 - 0.5) + 0.3 + abs(1 / 3 - 0.2))
    assert tl.tv_risk(tl.ce_sgl(COUNTS), inst) == pytest.approx(0.25 * tv_row0 + 0.75 * (0.6 - 1 / 3))
    assert tl.tv_risk(tl.ce_ful(COUNTS, PI), inst) == pytest.approx(0.75 * (0.6 - 1 / 3))


def test_students_broadcast_over_repeats() -> None:
    c = np.stack([COUNTS, COUNTS[::-1]])
    for m in tl.LEARNERS:
        batched = tl.estimate(m, c, PI)
        np.testing.assert_allclose(batched[0], tl.estimate(m, COUNTS, PI))
        np.testing.assert_allclose(batched.sum(-1), 1.0)
    with pytest.raises(ValueError, match="unknown learner"):
        tl.estimate("kd", COUNTS, PI)


def _softmax_minimiser(loss, counts: np.ndarray, pi_star: np.ndarray, seed: int) -> np.ndarray:
    A = counts.shape[-1]
    z0 = np.random.default_rng(seed).normal(size=A)

    def f(z: np.ndarray) -> float:
        p = np.exp(z - z.max())
        return loss((p / p.sum())[None], counts[None], pi_star[None])

    z = optimize.minimize(f, z0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000}).x
    p = np.exp(z - z.max())
    return p / p.sum()


def test_sel_minimiser_matches_teacher_on_seen_labels() -> None:
    """Eq. 4.7: every minimiser of the empirical SEL loss equals π* on the labels seen with s; ours attains 0."""
    pi = np.array([0.45, 0.25, 0.2, 0.1])
    counts = np.array([3, 1, 0, 2])
    assert tl.sel_ptl_loss(tl.sel_ptl(counts[None], pi[None]), counts[None], pi[None]) == pytest.approx(0.0, abs=1e-15)
    for seed in range(3):
        p = _softmax_minimiser(tl.sel_ptl_loss, counts, pi, seed)
        np.testing.assert_allclose(p[counts > 0], pi[counts > 0], atol=1e-4)
    # a student off π* on a seen label has a positive loss
    assert tl.sel_ptl_loss(np.array([[0.4, 0.3, 0.2, 0.1]]), counts[None], pi[None]) > 1e-3


def test_ce_ptl_minimiser_is_the_closed_form() -> None:
    """Eq. 4.3: argmin of −Σ N π* log π over the simplex is ∝ N·π* (checked by optimisation)."""
    pi = np.array([0.5, 0.3, 0.15, 0.05])
    counts = np.array([4, 2, 1, 3])
    p = _softmax_minimiser(tl.ce_ptl_loss, counts, pi, 0)
    np.testing.assert_allclose(p, tl.ce_ptl(counts[None], pi[None])[0], atol=1e-4)
    # and eq. 4.4: the same thing written through the hard-label MLE
    mle = tl.ce_sgl(counts[None])[0]
    np.testing.assert_allclose(tl.ce_ptl(counts[None], pi[None])[0], pi * mle / (pi * mle).sum())


def test_mle_is_unbiased_by_monte_carlo() -> None:
    """With |S| = 1 the hard-label MLE N(a)/n is unbiased: its Monte Carlo mean is within 4 SE of π*."""
    inst = tl.Instance(np.array([1.0]), np.array([[0.6, 0.25, 0.1, 0.05]]))
    c = tl.sample_counts(inst, 20, 40000, np.random.default_rng(0))
    est = tl.ce_sgl(c)[:, 0]
    se = est.std(0, ddof=1) / math.sqrt(len(est))
    assert np.all(np.abs(est.mean(0) - inst.pi_star[0]) < 4 * se)


def test_ce_ptl_is_biased_and_sel_is_consistent() -> None:
    """Lemma 4.2: at large n the naive CE tends to π*²/Σπ*² (≠ π*); SEL and the MLE tend to π*."""
    pi = np.array([[0.55, 0.25, 0.15, 0.05]])
    inst = tl.Instance(np.array([1.0]), pi)
    c = tl.sample_counts(inst, 200000, 20, np.random.default_rng(1))
    lim = tl.ce_ptl_limit(pi)
    np.testing.assert_allclose(lim, pi**2 / (pi**2).sum())
    np.testing.assert_allclose(tl.ce_ptl(c, pi).mean(0), lim, atol=3e-3)
    assert tl.tv(lim, pi)[0] > 0.15
    np.testing.assert_allclose(tl.sel_ptl(c, pi).mean(0), pi, atol=1e-12)  # every label seen: exact
    np.testing.assert_allclose(tl.ce_sgl(c).mean(0), pi, atol=3e-3)
    # Thm 4.3's exceptions: uniform and Dirac teachers leave CE_ptl unbiased
    for q in (np.full((1, 4), 0.25), np.array([[0.0, 1.0, 0.0, 0.0]])):
        np.testing.assert_allclose(tl.ce_ptl_limit(q), q)


def test_simulated_mle_risk_matches_exact_binomial_expectation() -> None:
    """|S| = 1, |A| = 2: E TV of the MLE = Σ_k Binom(n, p)(k) |k/n − p|; the simulator agrees within 4 SE."""
    p, n = 0.3, 15
    exact = sum(stats.binom.pmf(k, n, p) * abs(k / n - p) for k in range(n + 1))
    inst = tl.Instance(np.array([1.0]), np.array([[p, 1 - p]]))
    r = tl.mc_risks(inst, n, 40000, np.random.default_rng(2), ["ce_sgl"])["ce_sgl"]
    assert abs(r.mean() - exact) < 4 * r.std(ddof=1) / math.sqrt(r.size)


def test_sel_risk_matches_exact_enumeration() -> None:
    """|S| = 1, |A| = 3, n = 4: E TV of SEL by enumerating every count vector (multinomial weights)."""
    pi = np.array([0.6, 0.3, 0.1])
    n, exact = 4, 0.0
    for k in itertools.product(range(n + 1), repeat=3):
        if sum(k) != n:
            continue
        w = stats.multinomial.pmf(k, n, pi)
        seen = np.array(k) > 0
        miss = 1 - pi[seen].sum()
        est = np.where(seen, pi, miss / max((~seen).sum(), 1))
        exact += w * 0.5 * np.abs(est - pi).sum()
    inst = tl.Instance(np.array([1.0]), pi[None])
    r = tl.mc_risks(inst, n, 60000, np.random.default_rng(3), ["sel_ptl"])["sel_ptl"]
    assert abs(r.mean() - exact) < 4 * r.std(ddof=1) / math.sqrt(r.size)


def test_soft_label_risk_matches_missing_mass_identity() -> None:
    inst = tl.instance3(10, 7, 50, np.random.default_rng(4))
    r = tl.mc_risks(inst, 50, 20000, np.random.default_rng(5), ["ce_ful"])["ce_ful"]
    exact = tl.expected_risk_ce_ful(inst, 50)
    assert exact > 0 and abs(r.mean() - exact) < 4 * r.std(ddof=1) / math.sqrt(r.size)


@pytest.mark.parametrize("S, A, n", [(4, 6, 1000), (5, 7, 500)])
def test_instances_are_the_papers(S: int, A: int, n: int) -> None:
    rng = np.random.default_rng(0)
    i1 = tl.instance1(S, A, n, rng)
    Ae = A - A % 2
    eps = 0.25 * math.sqrt(S * Ae / n)
    np.testing.assert_allclose(i1.pi_star.sum(1), 1.0)
    np.testing.assert_allclose(np.sort(np.unique(np.round(i1.pi_star[:, :Ae], 12))), np.round([(1 - eps) / Ae, (1 + eps) / Ae], 12))
    i2 = tl.instance2(S, A, n, rng)
    Ao = A - (1 - A % 2)
    vals = np.sort(i2.pi_star, 1)
    np.testing.assert_allclose(i2.pi_star.sum(1), 1.0)
    assert np.allclose(vals[:, -1], 1 - S * (Ao - 1) / 2 / (n + 1)) and np.allclose(vals[:, -(Ao - 1) // 2 - 1:-1], S / (n + 1))
    assert (i2.pi_star == 0).sum(1).tolist() == [A - (Ao - 1) // 2 - 1] * S
    i3 = tl.instance3(S, A, n, rng)
    assert i3.rho.sum() == pytest.approx(1.0) and np.isclose(i3.rho, 1 / (n + 1)).sum() == S - 1
    i0 = tl.instance0(S, A)
    np.testing.assert_allclose(i0.pi_star.max(1), 0.5 + 0.5 / A)
    with pytest.raises(ValueError, match="instance2/3 need"):
        tl.instance2(S, 101, 10)


def test_fit_loglog_recovers_a_power_law() -> None:
    x = np.array([10.0, 100.0, 1000.0])
    f = tl.fit_loglog(x, 3.0 * x**-0.5)
    assert f.slope == pytest.approx(-0.5) and math.exp(f.intercept) == pytest.approx(3.0) and f.r2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        tl.fit_loglog(x, [1.0, 0.0, 1.0])


def test_curves_are_deterministic_by_seed_and_differ_across_seeds() -> None:
    a = tl.n_curve("instance2", 5, 7, [100, 1000], 600, seed=3)
    b = tl.n_curve("instance2", 5, 7, [100, 1000], 600, seed=3)
    c = tl.n_curve("instance2", 5, 7, [100, 1000], 600, seed=4)
    for m in tl.LEARNERS:
        np.testing.assert_array_equal(a.risks[m], b.risks[m])
    assert not np.array_equal(a.risks["sel_ptl"], c.risks["sel_ptl"])
    lo, hi = tl.bootstrap_slope(a, "sel_ptl", n_boot=50, seed=0)
    assert (lo, hi) == tl.bootstrap_slope(b, "sel_ptl", n_boot=50, seed=0) and lo <= tl.fit_loglog(a.x, a.mean("sel_ptl")).slope <= hi


def test_minimax_rates_on_small_grids() -> None:
    """The three headline exponents on a small grid (a regression check of the whole pipeline)."""
    grid = [1000, 10000, 100000]
    for inst, learner, A, th in (("instance1", "ce_sgl", 10, -0.5), ("instance2", "sel_ptl", 11, -1.0), ("instance3", "ce_ful", 11, -1.0)):
        sl, r2 = tl.replicate_fits([tl.n_curve(inst, 10, A, grid, 300, seed=0)], learner)
        assert abs(sl[0] - th) < 0.06 and r2[0] > 0.99, (inst, sl, r2)


def test_exact_match_has_zero_risk_not_roundoff() -> None:
    """SEL with every positive-mass label seen reproduces π* exactly; float residue of the missing mass is 0 risk."""
    pi = np.array([[0.1, 0.7, 0.2, 0.0]])
    inst = tl.Instance(np.array([1.0]), pi)
    assert tl.tv_risk(tl.sel_ptl(np.array([[3, 5, 1, 0]]), pi), inst) == 0.0
    assert tl.tv_risk(tl.sel_ptl(np.array([[3, 5, 0, 0]]), pi), inst) == pytest.approx(0.1)  # 0.2 split over labels 2 and 3
