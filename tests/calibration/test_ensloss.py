"""EnsLoss: fixed margin losses, the calibrated-derivative sampler and its custom backward."""

from __future__ import annotations

import pytest
import torch

from lossbook.calibration import ensloss as E
from lossbook.data.classification import Split


@pytest.mark.parametrize(
    "name, deriv",
    [
        ("bce", lambda z: -torch.sigmoid(-z)),
        ("hinge", lambda z: -(z < 1).double()),
        ("exponential", lambda z: -torch.exp(-z)),
    ],
)
def test_fixed_loss_gradients_match_closed_forms(name, deriv):
    z = torch.tensor([-2.3, -0.4, 0.0, 0.7, 1.6, 3.1], dtype=torch.double, requires_grad=True)
    E.FIXED_LOSSES[name](z).sum().backward()
    assert torch.allclose(z.grad, deriv(z.detach()))


def test_fixed_losses_values_and_calibration_at_zero():
    z = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.double)
    assert torch.allclose(E.logistic_loss(z), torch.log1p(torch.exp(-z)))
    assert torch.allclose(E.hinge_loss(z), torch.tensor([2.0, 1.0, 0.0], dtype=torch.double))
    assert torch.allclose(E.exponential_loss(z), torch.exp(-z))
    for fn in E.FIXED_LOSSES.values():  # φ'(0) < 0 for every fixed loss
        z0 = torch.zeros(1, dtype=torch.double, requires_grad=True)
        fn(z0).sum().backward()
        assert z0.grad.item() < 0


def test_bce_margin_equals_cross_entropy_on_two_logits():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(20, 2, generator=g, dtype=torch.double), torch.randint(0, 2, (20,), generator=g)
    assert torch.allclose(E.margin_loss("bce", logits, y), torch.nn.functional.cross_entropy(logits, y))


@pytest.mark.parametrize("seed", range(5))
def test_sampled_derivative_is_calibrated(seed):
    g = torch.Generator().manual_seed(seed)
    z = 3.0 * torch.randn(257, generator=g, dtype=torch.double)
    d, d0 = E.sample_derivative(z, torch.Generator().manual_seed(100 + seed))
    assert d.shape == z.shape
    assert d0.item() < 0  # calibration: φ'(0) < 0
    assert (d < 0).all() and (d >= -1.0 - 1e-6).all()  # bounded, strictly negative
    zs = torch.cat([z, z.new_zeros(1)])
    ds = torch.cat([d, d0.reshape(1)])
    order = torch.argsort(zs)
    assert (ds[order].diff() >= -1e-12).all()  # non-decreasing in z: a convex loss


def test_sampler_tail_and_box_cox_lambda():
    z = torch.linspace(-3, 6, 200, dtype=torch.double)
    d_tail, _ = E.sample_derivative(z, torch.Generator().manual_seed(1))
    d_raw, _ = E.sample_derivative(z, torch.Generator().manual_seed(1), tail=False)
    big = z > 1
    assert torch.allclose((d_raw[big] + 1e-6) / z[big] - 1e-6, d_tail[big])
    assert torch.equal(d_raw[~big], d_tail[~big])
    e = torch.linspace(-2, 2, 9, dtype=torch.double)
    assert torch.allclose(E.inverse_box_cox(e, 0.0), torch.exp(e))
    assert torch.allclose(E.inverse_box_cox(e, 1.0), torch.clamp(1 + e, min=0))


def test_custom_backward_is_sampled_derivative_times_dz_dtheta():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)).double()
    x, y = torch.randn(16, 5, dtype=torch.double), torch.randint(0, 2, (16,))
    E.ensloss(model(x), y, torch.Generator().manual_seed(3)).backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    z = E.margins(model(x), y)
    d, _ = E.sample_derivative(z, torch.Generator().manual_seed(3))
    jac = torch.autograd.grad(z, list(model.parameters()), grad_outputs=d / len(d))  # Σ_i (g_i/B) ∂z_i/∂θ
    for a, b in zip(got, jac, strict=True):
        assert torch.allclose(a, b)


def test_ensloss_grad_function_gradcheck():
    z = torch.randn(6, dtype=torch.double, requires_grad=True)
    g = -torch.rand(6, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda t: E.EnsLossGrad.apply(t, g), (z,))


def test_determinism_by_seed():
    z = torch.randn(64, dtype=torch.double)
    a, _ = E.sample_derivative(z, torch.Generator().manual_seed(7))
    b, _ = E.sample_derivative(z, torch.Generator().manual_seed(7))
    c, _ = E.sample_derivative(z, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    logits, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    model = torch.nn.Identity()
    f1, f2 = E.batch_loss_for("ensloss", 4), E.batch_loss_for("ensloss", 4)
    assert torch.equal(f1(model, logits, y, None, 1)[0]["ensloss"], f2(model, logits, y, None, 1)[0]["ensloss"])


def test_pair_split_and_sign_test():
    x = torch.arange(12.0).reshape(12, 1)
    y = torch.tensor([0, 1, 2, 3] * 3)
    s = E.pair_split(Split(x, y, x, y, x, y, 4, (1,), "toy"), 1, 3)
    assert s.n_classes == 2 and s.y_train.tolist() == [0, 1] * 3 and s.x_train[:, 0].tolist() == [1, 3, 5, 7, 9, 11]
    assert E.sign_test_k(10) == 9  # P(Bin(10,½) ≥ 9) = 11/1024 ≤ 0.05 < P(≥ 8) = 56/1024
    assert E.sign_test_k(3) == 4  # no count rejects at n = 3
    assert E.best_minus_final([0.5, 0.9, 0.8]) == pytest.approx(0.1)
    with pytest.raises(KeyError):
        E.batch_loss_for("squared")


def test_parse_pair():
    assert E.parse_pair("mnist1d:3v8") == ("mnist1d", 3, 8)
    for bad in ("digits:3v3", "digits3v8", "digits:3-8"):
        with pytest.raises(ValueError):
            E.parse_pair(bad)
