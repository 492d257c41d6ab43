"""Scaling-law fits: analytic gradient, planted-surface recovery, the default-tolerance stall, parabolas, allocation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime, minimize

from lossbook.scaling import fit as F

TRUE = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def _surface(noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e8, 1e11, 8))
    N, D = N.ravel(), D.ravel()
    L = TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]
    return N, D, L * np.exp(rng.normal(0, noise, L.shape))


def test_analytic_gradient_matches_finite_differences():
    N, D, L = _surface()
    logx, logy = np.column_stack([np.log(N), np.log(D)]), np.log(L)
    for th in ([0.5, 6.0, 7.6, 0.3, 0.4], [0.0, 5.0, 9.0, 0.6, 0.5]):
        th = np.array(th)
        _, g = F.lse_objective(th, logx, logy)
        num = approx_fprime(th, lambda t: F.lse_objective(t, logx, logy)[0], 1e-7)
        np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-9)


def test_huber_closed_form():
    r = np.array([-0.1, -1e-3, 0.0, 5e-4, 0.02])
    d = 1e-3
    np.testing.assert_allclose(F.huber(r, d), [d * (0.1 - d / 2), 0.5e-6, 0.0, 0.5 * 25e-8, d * (0.02 - d / 2)])


def test_planted_surface_recovered_with_noise():
    N, D, L = _surface(noise=0.005)
    fit = F.fit_chinchilla(N, D, L, n_starts=16)
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.02)
    assert fit.beta == pytest.approx(TRUE["beta"], abs=0.02)
    assert fit.E == pytest.approx(TRUE["E"], rel=0.02)
    assert fit.a == pytest.approx(TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]), abs=0.02)
    # noiseless: exact recovery
    N, D, L = _surface(noise=0.0)
    exact = F.fit_chinchilla(N, D, L, n_starts=8)
    for k, v in TRUE.items():
        assert getattr(exact, k) == pytest.approx(v, rel=1e-4), k


def test_bootstrap_over_runs_covers_truth():
    N, D, L = _surface(noise=0.005, seed=1)
    runs = np.repeat(np.arange(16), 4)  # 4 rows per "run"
    fit = F.fit_chinchilla(N, D, L, groups=runs, n_boot=15, seed=0, n_starts=8)
    for k in ("alpha", "beta", "E"):
        lo, hi = fit.ci[k]
        assert lo <= getattr(fit, k) <= hi
    assert fit.ci["alpha"][0] < TRUE["alpha"] + 0.03 and fit.ci["alpha"][1] > TRUE["alpha"] - 0.03


def test_scipy_default_tolerances_stall_where_tight_ones_do_not():
    N, D, L = _surface(noise=0.005)
    logx, logy = np.column_stack([np.log(N), np.log(D)]), np.log(L)
    opt = F.fit_chinchilla(N, D, L, n_starts=8).objective
    init = np.array([0.0, 5.0, 5.0, 0.5, 0.5])  # a grid point of Epoch's init grid
    stalled = minimize(F.lse_objective, init, args=(logx, logy, 1e-3), jac=True, method="L-BFGS-B")
    tight = minimize(F.lse_objective, init, args=(logx, logy, 1e-3), jac=True, method="L-BFGS-B", options=F.TIGHT)
    assert stalled.fun > opt * 1.01  # stopped early: objective 2% above the optimum
    assert abs(np.exp(stalled.x[1]) - 408.7) > 20  # and A is visibly off
    assert tight.fun == pytest.approx(opt, rel=1e-9)


def test_multistart_needed_single_hoffmann_like_start_is_trapped():
    N, D, L = _surface(noise=0.005)
    logx, logy = np.column_stack([np.log(N), np.log(D)]), np.log(L)
    fit = F.fit_chinchilla(N, D, L, n_starts=16)
    single = minimize(F.lse_objective, np.array([0.5, 6.0, 7.6, 0.34, 0.28]), args=(logx, logy, 1e-3), jac=True, method="L-BFGS-B", options=F.TIGHT)
    assert single.fun > 10 * fit.objective
    assert 0 < fit.law.frac_at_optimum < 1


def test_power_law_fit_and_r2():
    rng = np.random.default_rng(0)
    x = np.geomspace(1e4, 1e7, 12)
    y = 2.0 + 30.0 * x**-0.3
    fit = F.fit_power_law(x, y * np.exp(rng.normal(0, 0.002, x.shape)), n_boot=20, n_starts=8)
    assert fit.alpha == pytest.approx(0.3, abs=0.03) and fit.E == pytest.approx(2.0, rel=0.02)
    assert fit.r2 > 0.99
    assert fit.ci["E"][0] <= fit.E <= fit.ci["E"][1]
    exact = F.fit_power_law(x, y, n_starts=8)
    assert exact.alpha == pytest.approx(0.3, rel=1e-4) and exact.A == pytest.approx(30.0, rel=1e-3)
    assert F.r_squared(y, y) == 1.0


def test_isoflop_parabola_and_approach2():
    rng = np.random.default_rng(0)
    budgets, Ns, Ls = [], [], []
    for C in (1e15, 1e16, 1e17, 1e18):
        n_star = 0.1 * C**0.5
        for n in n_star * np.geomspace(0.2, 5, 7):
            budgets.append(C)
            Ns.append(n)
            Ls.append(3.0 + 0.05 * np.log(n / n_star) ** 2 + rng.normal(0, 1e-4))
    p = F.fit_parabola(Ns[:7], Ls[:7])
    assert p.x_opt == pytest.approx(0.1 * 1e15**0.5, rel=0.02) and p.y_opt == pytest.approx(3.0, abs=1e-3)
    res = F.isoflop_approach(budgets, Ns, Ls)
    assert res["a"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="no minimum"):
        F.fit_parabola([1, 10, 100], [1.0, 2.0, 1.0])


def test_optimal_allocation_closed_form_and_minimum():
    A, B, al, be = 406.4, 410.7, 0.34, 0.28
    C = 5.76e23
    n, d = F.optimal_allocation(C, A, B, al, be)
    assert 6 * n * d == pytest.approx(C, rel=1e-9)
    # numerically the minimum along the isoFLOP line
    ns = n * np.geomspace(0.5, 2, 2001)
    loss = A / ns**al + B / (C / 6 / ns) ** be
    assert ns[np.argmin(loss)] == pytest.approx(n, rel=1e-3)


def test_envelope_approach_recovers_exponent():
    # curves L(N, C) = E + A/N^α + B/(C/6N)^β; the envelope argmin over a dense N grid follows N_opt ∝ C^a
    A, B, al, be = 400.0, 2000.0, 0.34, 0.37
    curves = []
    for n in np.geomspace(1e6, 1e9, 40):
        f = np.geomspace(6 * n * 1e6, 6 * n * 1e11, 60)
        curves.append((n, f, 1.8 + A / n**al + B / (f / (6 * n)) ** be))
    res = F.envelope_approach(curves, n_points=12)
    assert res["a"] == pytest.approx(be / (al + be), abs=0.05)


def test_effective_data_and_r_star_recovery():
    from lossbook.scaling.repetition import effective_data, fit_r_star

    U = 1e6
    assert effective_data(U, U, 15.4) == pytest.approx(U)  # one epoch: all fresh
    assert effective_data(U, 1e12, 15.4) == pytest.approx(U * 16.4, rel=1e-6)  # saturates at U(1 + R*)
    eps = 1e-6 * U  # second epoch is worth exp(-1/R*) of fresh data
    assert (effective_data(U, 2 * U + eps, 15.4) - effective_data(U, 2 * U, 15.4)) / eps == pytest.approx(np.exp(-1 / 15.4), rel=1e-4)
    base = (1.5, 300.0, 0.3)
    D = 64e6
    epochs = np.array([2, 4, 8, 16, 32, 64])
    Us = D / epochs
    L = base[0] + base[1] * effective_data(Us, D, 7.0) ** -base[2]
    res = fit_r_star([base] * len(epochs), Us, [D] * len(epochs), L)
    assert res["r_star"] == pytest.approx(7.0, rel=1e-3) and not res["at_bound"]


# ------------------------------------------------------------------ fits that say when they fail (issue 16)
def test_huber_likelihood_objective_matches_a_direct_scipy_computation():
    from scipy.integrate import quad
    from scipy.special import huber as sp_huber
    from scipy.special import logsumexp

    N, D, L = _surface(noise=0.01, seed=3)
    logx, logy = np.column_stack([np.log(N), np.log(D)]), np.log(L)
    delta = 1e-3
    Z = 2 * (quad(lambda u: np.exp(-sp_huber(delta, u)), 0, delta)[0] + quad(lambda u: np.exp(-sp_huber(delta, u)), delta, np.inf, limit=200)[0])
    assert F.huber_log_norm(delta) == pytest.approx(np.log(Z), rel=1e-7)
    for th in ([0.5, 6.0, 7.6, 0.3, 0.4, np.log(2e-3)], [0.6, 6.2, 7.1, 0.35, 0.36, np.log(3e-6)]):
        th = np.array(th)
        pred = logsumexp(np.column_stack([np.full(len(N), th[0]), th[1] - th[3] * logx[:, 0], th[2] - th[4] * logx[:, 1]]), axis=1)
        sigma = np.exp(th[5])
        direct = np.sum(sp_huber(delta, (pred - logy) / sigma)) + len(N) * np.log(sigma * Z)
        val, g = F.huber_nll_objective(th, logx, logy, delta)
        assert val == pytest.approx(direct, rel=1e-9)
        num = approx_fprime(th, lambda t: F.huber_nll_objective(t, logx, logy, delta)[0], 1e-8)
        np.testing.assert_allclose(g, num, rtol=1e-3, atol=1e-3)


def test_huber_likelihood_fit_recovers_planted_surface_and_its_optimum():
    N, D, L = _surface(noise=0.005, seed=2)
    fit = F.fit_chinchilla(N, D, L, n_starts=6, n_data_starts=2, objective="huber_likelihood")
    assert fit.law.objective_name == "huber_likelihood" and fit.law.scale > 0
    for k in ("alpha", "beta"):
        assert getattr(fit, k) == pytest.approx(TRUE[k], abs=0.02)
    assert fit.E == pytest.approx(TRUE["E"], rel=0.02) and fit.flags == []
    # a local optimum of the NLL: no single start does better, and the fitted scale is the profile optimum
    logx, logy = np.column_stack([np.log(N), np.log(D)]), np.log(L)
    th = np.append(fit.law.theta, np.log(fit.law.scale))
    for s in (-0.05, 0.05):
        assert F.huber_nll_objective(th + np.r_[0, 0, 0, 0, 0, s], logx, logy)[0] > fit.objective
    with pytest.raises(ValueError, match="objective"):
        F.fit_chinchilla(N, D, L, n_starts=2, objective="mse")


def test_boundary_flagged_on_saturating_curve_and_pure_power_law():
    N = np.geomspace(1e3, 1e5, 10)
    sat = 3.63 + 0.8 * np.maximum(0, 1 - np.sqrt(N / 2e5))  # reaches its entropy at a finite N (the Markov-table case)
    f = F.fit_power_law(N, sat)
    assert any(s.startswith("E near 0") for s in f.flags)
    assert not all(g.passed for g in F.fit_guards(f))
    tr = F.residual_trend(N, sat, f.predict)
    assert tr["p_curvature"] < 0.01  # the shape test sees the bend
    pure = F.fit_power_law(N, 5 * N**-0.1)  # no irreducible term at all: E goes to its boundary
    assert any(s.startswith("E near 0") for s in pure.flags)


def test_interior_fit_has_no_flags_no_trend_and_predicts_the_largest_size():
    rng = np.random.default_rng(5)
    N = np.geomspace(1e3, 1e6, 12)
    y = (2.0 + 30.0 * N**-0.3) * np.exp(rng.normal(0, 0.001, N.shape))
    f = F.fit_power_law(N, y)
    assert f.flags == [] and all(g.passed for g in F.fit_guards(f))
    tr = F.residual_trend(N, y, f.predict)
    assert tr["p_slope"] > 0.05 and tr["p_curvature"] > 0.05
    ho = F.holdout_largest(N, y)
    assert ho["x"] == N.max() and ho["rel_err"] < 0.005
    assert F.boundary_flags(2.0, {"alpha": 3.5}, 2.5) == ["alpha = 3.5 outside (0.01, 3)"]
    assert F.boundary_flags(2.49, {"alpha": 0.3}, 2.5)[0].startswith("E near min L")


def test_data_derived_starts_reach_an_E_above_the_published_grid():
    # E = 3.63 (the old Markov source's entropy) lies above Epoch's e-grid cap e^1 = 2.72
    E, A, B, al, be = 3.63, 300.0, 900.0, 0.4, 0.3
    N, D = np.meshgrid(np.geomspace(1e3, 1e6, 7), np.geomspace(1e5, 1e8, 7))
    N, D = N.ravel(), D.ravel()
    L = E + A / N**al + B / D**be
    ev = np.exp(F.data_e_values(np.log(L)))
    assert ev.max() < L.min() and ev.max() > 0.98 * L.min() and ev.max() > np.e
    fit = F.fit_chinchilla(N, D, L, n_starts=8)
    assert fit.E == pytest.approx(E, rel=1e-4) and fit.alpha == pytest.approx(al, rel=1e-3)
    plain = F.fit_chinchilla(N, D, L, n_starts=8, n_data_starts=0)
    assert fit.objective <= plain.objective * (1 + 1e-9)  # extra starts never make the fit worse


@pytest.mark.skipif(not __import__("os").environ.get("LOSSBOOK_EPOCH_CSV"), reason="set LOSSBOOK_EPOCH_CSV to Epoch's data/svg_extracted_data.csv (not shipped: no license)")
def test_published_chinchilla_points_give_the_replications_numbers_with_either_objective():
    import os

    import pandas as pd

    df = pd.read_csv(os.environ["LOSSBOOK_EPOCH_CSV"])
    df = df[df["loss"] < np.sort(df["loss"])[-5]]  # the replication drops the five highest losses
    N, L = df["Model Size"].to_numpy(), df["loss"].to_numpy()
    D = df["Training FLOP"].to_numpy() / (6 * N)
    h = F.fit_chinchilla(N, D, L)
    assert (h.alpha, h.beta, h.E) == pytest.approx((0.3473, 0.3672, 1.8172), abs=2e-4)
    lik = F.fit_chinchilla(N, D, L, objective="huber_likelihood")  # the replication's headline estimator
    assert (lik.A, lik.B) == pytest.approx((482.01, 2085.43), rel=1e-3)
    assert (lik.E, lik.alpha, lik.beta) == pytest.approx((1.81686, 0.34781, 0.36585), abs=2e-5)
    assert lik.objective == pytest.approx(-879.7731, abs=1e-3)
