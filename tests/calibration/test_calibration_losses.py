"""Train-time calibration losses: closed forms, special cases, invariances, gradients, registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.calibration import losses as L
from lossbook.calibration.metrics import brier
from lossbook.calibration.registry import LOSSES, get_loss
from lossbook.train.losses import label_smoothing_loss


def _data(n: int = 16, c: int = 5, seed: int = 0, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("name", list(LOSSES))
def test_reductions_are_consistent(name: str) -> None:
    z, y = _data()
    fn = LOSSES[name]
    per = fn(z, y, reduction="none")
    assert per.shape == (16,)
    assert torch.allclose(fn(z, y, reduction="mean"), per.mean())
    assert torch.allclose(fn(z, y, reduction="sum"), per.sum())
    assert torch.allclose(get_loss(name)(z, y), per.mean())
    with pytest.raises(ValueError):
        fn(z, y, reduction="avg")


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradients_match_finite_differences(name: str) -> None:
    z, y = _data(n=6, c=4, seed=1)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: LOSSES[name](t, y), (z,), eps=1e-6, atol=1e-5)


def test_cross_entropy_and_label_smoothing_match_torch() -> None:
    z, y = _data()
    assert torch.allclose(L.cross_entropy(z, y), F.cross_entropy(z, y))
    for a in (0.0, 0.05, 0.3):
        assert torch.allclose(label_smoothing_loss(z, y, eps=a), F.cross_entropy(z, y, label_smoothing=a))


def test_focal_special_cases() -> None:
    z, y = _data()
    assert torch.allclose(L.focal_loss(z, y, gamma=0.0), F.cross_entropy(z, y))
    # closed form at two classes with p_y = 0.25: -(0.75)^3 log 0.25
    z2 = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    assert L.focal_loss(z2, torch.tensor([0]), gamma=3.0).item() == pytest.approx(-(0.75**3) * math.log(0.25))


def test_flsd53_switches_gamma_at_0_2() -> None:
    z, y = _data(n=200, scale=3.0)
    p_y = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    per = L.flsd53_loss(z, y, reduction="none")
    f5 = L.focal_loss(z, y, gamma=5.0, reduction="none")
    f3 = L.focal_loss(z, y, gamma=3.0, reduction="none")
    low = p_y < 0.2
    assert low.any() and (~low).any()
    assert torch.allclose(per[low], f5[low]) and torch.allclose(per[~low], f3[~low])


def test_brier_matches_metric_and_closed_form() -> None:
    z, y = _data()
    assert L.brier_loss(z, y).item() == pytest.approx(brier(torch.softmax(z, 1), y))
    c = 5
    assert L.brier_loss(torch.zeros(3, c), torch.tensor([0, 1, 2])).item() == pytest.approx(1 - 1 / c)


def test_squentropy_squares_raw_logits_of_wrong_classes() -> None:
    z = torch.tensor([[2.0, -1.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([0])
    expected = F.cross_entropy(z, y).item() + ((-1.0) ** 2 + 3.0**2) / 2
    assert L.squentropy_loss(z, y).item() == pytest.approx(expected)
    # not the Brier-like variant that squares probabilities
    assert L.squentropy_loss(z, y).item() != pytest.approx(F.cross_entropy(z, y).item() + (torch.softmax(z, 1)[0, 1:] ** 2).mean().item())


def test_comp_sum_members() -> None:
    z, y = _data(scale=1.5)
    p_y = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    u = (torch.exp(z - z.gather(1, y[:, None])).sum(1) - 1)  # sum over y' != y of exp(z_y' - z_y)
    none = {"reduction": "none"}
    assert torch.allclose(L.comp_sum_loss(z, y, tau=0.0, **none), u)  # sum-exponential
    assert torch.allclose(L.comp_sum_loss(z, y, tau=1.0, **none), -torch.log(p_y))  # CE
    assert torch.allclose(L.comp_sum_loss(z, y, tau=2.0, **none), 1 - p_y)  # MAE
    assert torch.allclose(L.comp_sum_loss(z, y, tau=1.5, **none), (1 - p_y**0.5) / 0.5)  # GCE q = 0.5
    assert torch.allclose(L.gce_loss(z, y, q=0.7, **none), (1 - p_y**0.7) / 0.7)
    # continuous in tau at 1
    assert torch.allclose(L.comp_sum_loss(z, y, tau=1 + 1e-7, **none), -torch.log(p_y), atol=1e-5)
    # u = (1 - p_y)/p_y
    assert torch.allclose(u, (1 - p_y) / p_y)


def test_z_loss_is_shift_and_scale_invariant() -> None:
    z, y = _data()
    base = L.z_loss(z, y, reduction="none")
    assert torch.allclose(L.z_loss(3.7 * z - 11.0, y, reduction="none"), base)
    # closed form: two classes, z = (1, -1): mean 0, population std 1 -> zbar_y = 1 -> softplus(b - 1)
    z2 = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    assert L.z_loss(z2, torch.tensor([0]), a=1.0, b=2.0).item() == pytest.approx(math.log1p(math.e))
    # CE is not scale invariant
    assert not torch.allclose(F.cross_entropy(3.7 * z, y), F.cross_entropy(z, y))


def test_get_loss_binds_hyperparameters_and_rejects_unknown() -> None:
    z, y = _data()
    assert torch.allclose(get_loss("focal", gamma=2.0)(z, y), L.focal_loss(z, y, gamma=2.0))
    with pytest.raises(KeyError, match="unknown calibration loss"):
        get_loss("hinge")


def test_losses_train_a_linear_model() -> None:
    """Each loss decreases on a separable toy problem after a few steps of gradient descent."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    for name in LOSSES:
        torch.manual_seed(0)
        lin = torch.nn.Linear(4, 3)
        opt = torch.optim.SGD(lin.parameters(), lr=0.5)
        fn = get_loss(name)
        first = fn(lin(x), y).item()
        for _ in range(20):
            opt.zero_grad()
            loss = fn(lin(x), y)
            loss.backward()
            opt.step()
        assert loss.item() < first, name


def test_symmetric_label_noise_rate_and_no_self_flips() -> None:
    y = torch.arange(20000) % 10
    noisy = L.symmetric_label_noise(y, 0.3, 10, seed=0)
    changed = noisy != y
    assert abs(changed.float().mean().item() - 0.3) < 0.015
    # flipped labels are spread over the other 9 classes
    counts = torch.bincount((noisy[changed] - y[changed]) % 10, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 0.8 * counts[1:].float().mean()
    assert torch.equal(noisy, L.symmetric_label_noise(y, 0.3, 10, seed=0))
