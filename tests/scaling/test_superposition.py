"""The toy model of superposition (Liu, Liu & Gore 2025): forward, hand gradients, batched training, statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossbook.scaling import superposition as S


def test_feature_probs_normalised_power_law():
    for alpha, dens in [(0.0, 1.0), (0.5, 1.0), (1.5, 2.5)]:
        p = S.feature_probs(100, alpha, dens).double()
        assert float(p.sum()) == pytest.approx(dens, rel=1e-6)
        assert float(p[0] / p[1]) == pytest.approx(2.0**alpha, rel=1e-5)
        assert float(p[9] / p[99]) == pytest.approx(10.0**alpha, rel=1e-5)
    assert torch.all(S.feature_probs(50, 0.0) == S.feature_probs(50, 0.0)[0])


def test_forward_matches_hand_computation():
    # n = 3 features, m = 2: W rows (1,0), (0,1), (1,1); b = (0, -1, 0.5)
    W = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    b = torch.tensor([[0.0, -1.0, 0.5]])
    x = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 2.0]]])
    # x = e1: h = (1, 0), W h = (1, 0, 1) + b = (1, -1, 1.5) -> ReLU (1, 0, 1.5)
    # x = (0, .5, 2): h = (2, 2.5), W h = (2, 2.5, 4.5) + b = (2, 1.5, 5)
    want = torch.tensor([[[1.0, 0.0, 1.5], [2.0, 1.5, 5.0]]])
    assert torch.allclose(S.forward(x, W, b), want)
    mse = ((want - x) ** 2).mean()
    assert float(S.model_losses(x, W, b)[0]) == pytest.approx(float(mse))


def test_hand_gradients_match_autograd():
    g = torch.Generator().manual_seed(0)
    K, B, n, m = 3, 16, 20, 4
    p = torch.stack([S.feature_probs(n, a) for a in (0.5, 1.0, 1.5)]) * 3
    x = S.sample_features(torch.rand(K, B, n, generator=g), torch.rand(K, B, n, generator=g), p)
    W = torch.randn(K, n, m, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(K, n, generator=g, dtype=torch.float64).requires_grad_(True)
    x = x.double()
    ref = S.model_losses(x, W, b)
    ref.sum().backward()
    loss, dW, db = S.loss_and_grads(x, W.detach(), b.detach())
    assert torch.allclose(loss, ref.detach(), atol=1e-12)
    assert torch.allclose(dW, W.grad, atol=1e-10)
    assert torch.allclose(db, b.grad, atol=1e-10)
    assert float(dW.abs().max()) > 1e-3  # the check is not vacuous


def test_decay_step_shrinks_or_pulls_rows_to_unit_norm():
    W = torch.tensor([[[3.0, 4.0], [0.6, 0.8]], [[3.0, 4.0], [0.3, 0.4]]])  # row norms 5, 1 / 5, 0.5
    S.decay_step(W, torch.tensor([0.5, -1.0]), lr=0.1)
    # γ = 0.5: W (1 − 0.05)
    assert torch.allclose(W[0], torch.tensor([[2.85, 3.8], [0.57, 0.76]]))
    # γ = −1: W + η γ W (1 − 1/‖W‖): norm 5 -> 5 − 0.1·4 = 4.6; norm 0.5 -> 0.5 + 0.1·0.5 = 0.55
    assert float(W[1, 0].norm()) == pytest.approx(4.6, rel=1e-6)
    assert float(W[1, 1].norm()) == pytest.approx(0.55, rel=1e-6)
    U = torch.tensor([[[0.6, 0.8]]])
    S.decay_step(U, torch.tensor([-1.0]), lr=0.5)
    assert torch.allclose(U, torch.tensor([[[0.6, 0.8]]]), atol=1e-6)  # a unit row is a fixed point


def _train_one_by_hand(p, gamma, seed, m, steps, batch, lr=1e-2, warmup_frac=0.1, final_frac=0.05):
    """An independent one-model trainer: 2-D matmuls, autograd, torch.optim.Adam, the decay written out."""
    from lossbook.optim.schedules import lr_multiplier

    n = p.numel()
    W0, b0 = S.init_weights([seed], n, m)
    W, b = W0[0].clone().requires_grad_(True), b0[0].clone().requires_grad_(True)
    opt = torch.optim.Adam([W, b], lr=lr)
    gen = torch.Generator().manual_seed(10_000 + seed)
    losses = []
    for t in range(steps):
        u, v = torch.rand(batch, n, generator=gen), torch.rand(batch, n, generator=gen)
        x = (u < p).float() * 2 * v
        eta = lr * lr_multiplier("cosine", t, steps, int(round(warmup_frac * steps)), final_frac=final_frac)
        opt.param_groups[0]["lr"] = eta
        opt.zero_grad()
        loss = ((torch.relu(x @ W @ W.T + b) - x) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            if gamma >= 0:
                W.mul_(1 - eta * gamma)
            else:
                W.add_(eta * gamma * W * (1 - 1 / (W.norm(dim=1, keepdim=True) + 1e-8)))
        opt.step()
        losses.append(float(loss.detach()))
    return W.detach(), np.array(losses)


def test_batched_models_equal_separate_models():
    n, steps, batch = 24, 60, 32
    alphas, gammas, seeds = [0.5, 1.0, 1.5], [-1.0, 1.0, 0.0], [0, 1, 1]
    probs = torch.stack([S.feature_probs(n, a) for a in alphas])
    runs = S.train_toys(probs, gammas, seeds, [3, 5], steps=steps, batch=batch, n_windows=steps)
    for m in (3, 5):
        for k in range(3):
            W_ref, loss_ref = _train_one_by_hand(probs[k], gammas[k], seeds[k], m, steps, batch)
            np.testing.assert_allclose(runs[m].curve[:, k], loss_ref, rtol=1e-5, atol=1e-7)
            assert torch.allclose(runs[m].W[k], W_ref, atol=1e-5)
    assert not np.allclose(runs[3].curve[:, 0], runs[3].curve[:, 1])  # models did differ


def test_represented_fraction_and_overlap_on_known_matrices():
    W = torch.zeros(6, 4)
    W[:4] = torch.eye(4)
    W[4, 0] = 0.1  # below the 1/2 threshold: not represented
    assert float(S.represented_fraction(W)) == pytest.approx(4 / 6)
    assert S.mean_sq_overlap(W) == pytest.approx(0.0, abs=1e-12)
    th = 0.3
    V = torch.tensor([[2.0, 0.0], [3 * math.cos(th), 3 * math.sin(th)]])  # norms ignored: normalised first
    assert S.mean_sq_overlap(V) == pytest.approx(math.cos(th) ** 2, rel=1e-6)
    # random unit vectors in R^m: E[(u·v)²] = 1/m
    g = torch.Generator().manual_seed(1)
    m = 16
    R = torch.randn(2000, m, generator=g)
    assert S.mean_sq_overlap(R) == pytest.approx(1 / m, rel=0.03)
    assert math.isnan(S.mean_sq_overlap(torch.zeros(5, 3)))


def test_weak_loss_prediction_and_slope_fit():
    p = S.feature_probs(10, 1.0)
    want = (4 / 3) * float(p[3:].double().sum()) / 10
    assert S.weak_loss_prediction(p, 3) == pytest.approx(want, rel=1e-6)
    m = np.array([4.0, 8, 16, 32, 64])
    fit = S.loglog_slope(m, 3.0 * m**-0.7)
    assert fit.slope == pytest.approx(-0.7, abs=1e-10)
    assert fit.intercept == pytest.approx(math.log(3.0), abs=1e-10)
    assert fit.r2 == pytest.approx(1.0) and fit.stderr < 1e-8


def test_top_k_share():
    W = torch.zeros(8, 2)
    W[[0, 1, 2], 0] = 1.0
    assert S.top_k_share(W) == pytest.approx(1.0)
    W = torch.zeros(8, 2)
    W[[0, 5, 6, 7], 0] = 1.0  # k = 4, of the top 4 only feature 0 is kept
    assert S.top_k_share(W) == pytest.approx(0.25)
    assert math.isnan(S.top_k_share(torch.zeros(4, 2)))


def test_loglog_slope_skips_nonpositive_points():
    f = S.loglog_slope([1, 2, 4, 8], [1.0, 0.5, 0.0, 0.125])
    assert f.slope == pytest.approx(-1.0)
    assert math.isnan(S.loglog_slope([1, 2], [1.0, 0.0]).slope)
