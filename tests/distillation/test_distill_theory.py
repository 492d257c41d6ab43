"""Closed-form self-distillation: KRR (Borup & Andersen) and ridge (Das & Sanghavi)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from lossbook.distillation import theory as dt


def _sklearn_krr_pred(X, target, x_eval, gamma, lam):
    from sklearn.kernel_ridge import KernelRidge

    return KernelRidge(alpha=lam, kernel="rbf", gamma=gamma).fit(X, target).predict(x_eval)


def test_rbf_kernel_matches_sklearn():
    from sklearn.metrics.pairwise import rbf_kernel

    a, b = np.random.default_rng(0).normal(size=(5, 2)), np.random.default_rng(1).normal(size=(3, 2))
    assert np.allclose(dt.rbf_kernel(a, b, 0.7), rbf_kernel(a, b, gamma=0.7))


def test_step_one_is_krr_and_steps_chain():
    X, y = dt.make_toy_like(seed=3)
    r = dt.krr_self_distillation(X, y, alpha=0.3, steps=3)
    assert np.allclose(r.preds[0], _sklearn_krr_pred(X, y, r.x_eval, 80.0, 0.2), atol=1e-8)
    # step 2 = KRR on α y + (1 − α) f1(X)
    t2 = 0.3 * y + 0.7 * r.train_fits[0]
    assert np.allclose(r.preds[1], _sklearn_krr_pred(X, t2, r.x_eval, 80.0, 0.2), atol=1e-8)


@pytest.mark.parametrize("alpha", [0.2, 0.35, 0.8])
def test_limit_is_krr_with_lambda_over_alpha(alpha):
    X, y = dt.make_toy_like(seed=1)
    r = dt.krr_self_distillation(X, y, alpha=alpha, steps=400)
    assert np.allclose(r.preds[-1], r.limit, atol=1e-7)
    assert np.allclose(r.limit, _sklearn_krr_pred(X, y, r.x_eval, 80.0, 0.2 / alpha), atol=1e-8)


def test_alpha_zero_collapses_to_zero():
    X, y = dt.make_toy_like(seed=2)
    r = dt.krr_self_distillation(X, y, alpha=0.0, steps=3000)
    assert np.abs(r.limit).max() == 0.0
    assert np.abs(r.preds[-1]).max() < 1e-2 * np.abs(r.preds[0]).max()


def test_b_recursion_matches_fits_in_eigenbasis():
    X, y = dt.make_toy_like(seed=4)
    alpha, steps = 0.35, 5
    r = dt.krr_self_distillation(X, y, alpha=alpha, steps=steps)
    K = dt.rbf_kernel(X, X, 80.0)
    d, V = np.linalg.eigh(K)
    order = np.argsort(d)[::-1]
    V = V[:, order]
    B, B_lim = dt.b_diagonals(X, alpha=alpha, steps=steps)
    for t in range(steps):
        assert np.allclose(V @ np.diag(B[t]) @ V.T @ y, r.train_fits[t], atol=1e-8)
    # the diagonals shrink monotonically towards the limit, small eigenvalues fastest
    assert np.all(np.diff(B, axis=0) <= 1e-12) and np.all(B[-1] >= B_lim - 1e-12)
    rel = B[-1] / B[0]
    assert rel[-1] <= rel[0]


def test_load_borup_toy_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="borup_data_path"):
        dt.load_borup_toy(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    np.savetxt(bad, np.zeros(5))
    with pytest.raises(ValueError, match="11"):
        dt.load_borup_toy(bad)
    ok = tmp_path / "ok.txt"
    np.savetxt(ok, np.arange(11.0))
    X, y = dt.load_borup_toy(ok)
    assert X.shape == (11, 1) and y.shape == (11, 1) and np.allclose(X.ravel(), np.arange(0, 1.1, 0.1))


@pytest.mark.skipif(not os.environ.get("LOSSBOOK_BORUP_TOY"), reason="set LOSSBOOK_BORUP_TOY to the authors' 11 y-values")
def test_borup_paper_numbers():  # pragma: no cover - needs user-supplied data
    X, y = dt.load_borup_toy(os.environ["LOSSBOOK_BORUP_TOY"])
    r0 = dt.krr_self_distillation(X, y, alpha=0.0, steps=6)
    r35 = dt.krr_self_distillation(X, y, alpha=0.35, steps=6)
    assert [round(m, 5) for m in r0.mse] == [0.16477, 0.15076, 0.14915, 0.15561, 0.16735, 0.18251]
    assert round(r0.mse_limit, 5) == 0.49505
    assert [round(m, 5) for m in r35.mse] == [0.16477, 0.15424, 0.15089, 0.14983, 0.14954, 0.14948]
    assert round(r35.mse_limit, 5) == 0.14959


def test_ridge_student_closed_form_and_optimal_xi():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8))
    th = rng.normal(size=8)
    y = X @ th + 2.0 * rng.normal(size=40)
    lam = 3.0
    th_t, th_s1 = dt.ridge_self_distill(X, y, lam, 1.0)
    assert np.allclose(th_s1, dt.ridge(X, X @ th_t, lam))  # ξ = 1: fit the teacher's predictions
    assert np.allclose(dt.ridge_self_distill(X, y, lam, 0.0)[1], th_t)  # ξ = 0: the teacher again
    # the closed-form ξ* is the minimiser of the (quadratic) error over a fine grid
    xis = np.linspace(-3, 5, 4001)
    errs = [np.sum((dt.ridge_self_distill(X, y, lam, x)[1] - th) ** 2) for x in xis]
    assert abs(xis[int(np.argmin(errs))] - dt.optimal_xi(X, y, lam, th)) < 3e-3


def test_optimal_xi_grows_with_noise():
    xis = np.linspace(-1, 4, 51)
    lo = np.median(dt.ridge_xi_curve(n=50, d=20, sigma=0.1, lam=1.0, xis=xis, n_draws=30)[1])
    hi = np.median(dt.ridge_xi_curve(n=50, d=20, sigma=2.0, lam=1.0, xis=xis, n_draws=30)[1])
    assert hi > 1.0 > lo


def test_label_noise_and_targets():
    y = torch.arange(10).repeat(200)
    yn = dt.symmetric_label_noise(y, 0.3, 10, seed=0)
    frac = (yn != y).float().mean().item()
    assert 0.27 < frac < 0.33 and yn.min() >= 0 and yn.max() <= 9
    assert torch.equal(dt.symmetric_label_noise(y, 0.0, 10), y)
    p = torch.softmax(torch.randn(5, 4), 1)
    yy = torch.tensor([0, 1, 2, 3, 0])
    q = dt.self_distill_targets(p, yy, 2.0)
    assert torch.allclose(q.sum(1), torch.ones(5))
    neg = q.gather(1, yy[:, None]).squeeze(1) < 0
    assert torch.equal(neg, p.gather(1, yy[:, None]).squeeze(1) < 0.5)  # q_y < 0  ⇔  p_T,y < 1 − 1/ξ


def test_softmax_regression_negative_targets_stay_finite():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 5, generator=g)
    y = torch.randint(0, 3, (100,), generator=g)
    q = dt.self_distill_targets(torch.full((100, 3), 1 / 3), y, 3.0)  # strongly negative label entries
    lin = dt.fit_softmax_regression(x, q, weight_decay=1e-2, steps=300)
    assert torch.isfinite(lin.weight).all() and lin.weight.abs().max() < 1e3
