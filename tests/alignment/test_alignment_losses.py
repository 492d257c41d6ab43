"""Preference losses: closed forms, autograd vs hand-derived gradients, finite differences, the registry."""

from __future__ import annotations

import math

import pytest
import torch

from lossbook.alignment.losses import dpo_loss, dpo_margin, ipo_loss, sequence_logps
from lossbook.alignment.registry import PREFERENCE_LOSSES, get_preference_loss


def _inputs(seed: int = 0, n: int = 6) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple((-5 * torch.rand(n, generator=g, dtype=torch.float64)).requires_grad_() for _ in range(4))


def test_dpo_closed_form_by_hand() -> None:
    # Δ = (-1 - -2) - (-3 - -1) = 1 + 2 = 3 ; ℓ = log(1 + e^{-βΔ})
    c, r, rc, rr = (torch.tensor([v], dtype=torch.float64) for v in (-1.0, -3.0, -2.0, -1.0))
    for beta in (0.1, 1.0, 2.5):
        want = math.log1p(math.exp(-beta * 3.0))
        assert dpo_loss(c, r, rc, rr, beta=beta).item() == pytest.approx(want, rel=1e-12)
    assert dpo_margin(c, r, rc, rr).item() == pytest.approx(3.0)


def test_dpo_at_reference_is_log2_and_per_pair() -> None:
    c, r = torch.randn(5), torch.randn(5)
    out = dpo_loss(c, r, c, r, beta=0.1)
    assert out.shape == (5,)
    torch.testing.assert_close(out, torch.full((5,), math.log(2.0)))


def test_dpo_gradient_identity() -> None:
    """∂ℓ/∂log π(y+) = −β σ(−βΔ), ∂ℓ/∂log π(y−) = +β σ(−βΔ), and the reference gets the opposite signs."""
    c, r, rc, rr = _inputs()
    beta = 0.3
    loss = dpo_loss(c, r, rc, rr, beta=beta)
    loss.sum().backward()
    s = torch.sigmoid(-beta * dpo_margin(c, r, rc, rr)).detach()
    torch.testing.assert_close(c.grad, -beta * s)
    torch.testing.assert_close(r.grad, beta * s)
    torch.testing.assert_close(rc.grad, beta * s)
    torch.testing.assert_close(rr.grad, -beta * s)
    # equal magnitudes: DPO only sees the margin
    torch.testing.assert_close(c.grad.abs(), r.grad.abs())


def test_ipo_closed_form_and_gradient() -> None:
    c, r, rc, rr = _inputs(1)
    lc = torch.tensor([1.0, 2, 3, 4, 5, 6], dtype=torch.float64)
    lr = torch.tensor([3.0, 1, 2, 2, 7, 1], dtype=torch.float64)
    tau = 0.05
    loss = ipo_loss(c, r, rc, rr, beta=tau, chosen_len=lc, rejected_len=lr)
    h = ((c - rc) / lc - (r - rr) / lr).detach()
    torch.testing.assert_close(loss.detach(), (h - 1 / (2 * tau)) ** 2)
    loss.sum().backward()
    torch.testing.assert_close(c.grad, 2 * (h - 1 / (2 * tau)) / lc)
    torch.testing.assert_close(r.grad, -2 * (h - 1 / (2 * tau)) / lr)
    # zero at the target margin 1/(2τ)
    z = ipo_loss(torch.tensor([10.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), beta=0.05, chosen_len=torch.tensor([1.0]), rejected_len=torch.tensor([1.0]))
    assert z.item() == pytest.approx(0.0)


def test_ipo_needs_lengths() -> None:
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="chosen_len"):
        ipo_loss(x, x, x, x, beta=0.1)


@pytest.mark.parametrize("name", ["dpo", "ipo"])
def test_gradcheck(name: str) -> None:
    fn = get_preference_loss(name)
    lc = torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64)
    lr = torch.tensor([1.0, 4.0, 2.0], dtype=torch.float64)
    xs = tuple(torch.randn(3, dtype=torch.float64, requires_grad=True) for _ in range(4))
    assert torch.autograd.gradcheck(lambda a, b, c, d: fn(a, b, c, d, beta=0.2, chosen_len=lc, rejected_len=lr), xs)


def test_registry_and_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_preference_loss("dpo") is dpo_loss and get_preference_loss("ipo") is ipo_loss
    with pytest.raises(KeyError, match="Did you mean dpo.*Valid: .*ipo"):
        get_preference_loss("dpoo")

    def hinge(c, r, rc, rr, *, beta, chosen_len=None, rejected_len=None, **kw):
        return torch.relu(1 - beta * dpo_margin(c, r, rc, rr))

    monkeypatch.setitem(PREFERENCE_LOSSES, "_test_hinge", hinge)
    assert get_preference_loss("_test_hinge") is hinge
    # every loss accepts the common keyword set (extra kw ignored)
    x = torch.zeros(2)
    for fn in PREFERENCE_LOSSES.values():
        assert fn(x, x, x, x, beta=0.1, chosen_len=torch.ones(2), rejected_len=torch.ones(2), some_option=3).shape == (2,)


def test_sequence_logps_against_loop() -> None:
    torch.manual_seed(0)
    B, T, V = 3, 5, 7
    logits = torch.randn(B, T, V)
    labels = torch.randint(0, V, (B, T))
    labels[0, :2] = -100
    labels[2, 4] = -100
    lp = torch.log_softmax(logits, -1)
    want = torch.zeros(B)
    n = torch.zeros(B)
    for b in range(B):
        for t in range(T):
            if labels[b, t] != -100:
                want[b] += lp[b, t, labels[b, t]]
                n[b] += 1
    torch.testing.assert_close(sequence_logps(logits, labels), want)
    torch.testing.assert_close(sequence_logps(logits, labels, average=True), want / n)
    mask = labels != -100
    torch.testing.assert_close(sequence_logps(logits, labels, mask.float()), want)
    with pytest.raises(ValueError):
        sequence_logps(logits, labels[:, :3])
