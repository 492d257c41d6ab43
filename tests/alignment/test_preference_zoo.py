"""Tests for lossbook.alignment.zoo: closed forms, gradients, BCO's theorems, f-DPO = DPO."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossbook.alignment.zoo as zoo
from lossbook.alignment.losses import dpo_loss
from lossbook.alignment.registry import PREFERENCE_LOSSES, ZOO_LOSSES, get_preference_loss


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def ls(x: float) -> float:
    return math.log(sig(x))


# one hand pair: s_w = -1 - (-2) = 1, s_l = -3 - (-1.5) = -1.5, Δ = 2.5
D = torch.float64
C, R, RC, RR = (torch.tensor([v], dtype=D) for v in (-1.0, -3.0, -2.0, -1.5))
LC, LR = torch.tensor([4.0], dtype=D), torch.tensor([2.0], dtype=D)
SW, SL, DELTA = 1.0, -1.5, 2.5
BETA = 0.5


def call(name: str, **kw) -> float:
    return float(get_preference_loss(name)(C, R, RC, RR, beta=BETA, chosen_len=LC, rejected_len=LR, **kw)[0])


def test_all_registered() -> None:
    for n in ZOO_LOSSES:
        assert n in PREFERENCE_LOSSES


@pytest.mark.parametrize(
    "name,kw,expected",
    [
        ("hinge", {}, max(0.0, 1 - BETA * DELTA)),
        ("cdpo", {"label_smoothing": 0.2}, -0.8 * ls(BETA * DELTA) - 0.2 * ls(-BETA * DELTA)),
        ("robust_dpo", {"label_smoothing": 0.2}, (-0.8 * ls(BETA * DELTA) + 0.2 * ls(-BETA * DELTA)) / 0.6),
        ("ln_dpo", {}, -ls(BETA * (SW / 4 - SL / 2))),
        ("simpo", {"gamma": 0.3}, -ls(BETA * (-1.0 / 4 - (-3.0) / 2) - 0.3)),
        ("nca", {}, -ls(BETA * SW) - 0.5 * ls(-BETA * SW) - 0.5 * ls(-BETA * SL)),
        ("apo_zero", {}, (1 - sig(BETA * SW)) + sig(BETA * SL)),
        ("apo_down", {}, sig(BETA * SW) + 1 - sig(BETA * DELTA)),
        ("sppo_hard", {}, (SW - 1 / (2 * BETA)) ** 2 + (SL + 1 / (2 * BETA)) ** 2),
        ("fdpo_reverse_kl", {}, -ls(BETA * DELTA)),
        ("fdpo_forward_kl", {}, -ls(BETA * (-math.exp(-SW) + math.exp(-SL)))),
        ("fdpo_js", {}, -ls(BETA * (ls(SW) - ls(SL)))),
        ("fdpo_alpha", {"alpha": 0.3}, -ls(BETA * ((1 - math.exp(-0.3 * SW)) / 0.3 - (1 - math.exp(-0.3 * SL)) / 0.3))),
        ("rpo", {"eta": 0.1}, -ls(BETA * DELTA) + 0.1 * BETA * 1.0),
        ("rpo", {"eta": 0.1, "nll": "token_mean"}, -ls(BETA * DELTA) + 0.1 * BETA * 1.0 / 4),
        ("bco_pair", {}, -ls(BETA * SW) - ls(-BETA * SL)),
        ("bco_pair", {"delta": 0.2}, -ls(BETA * SW - 0.2) - ls(-(BETA * SL - 0.2))),
        ("kto_pair", {}, (1 - sig(BETA * (SW - 0.0))) + (1 - sig(BETA * (SW - SL)))),  # z_d = max(0, s_l) = 0, z_u = s_w
        ("kto_pair", {"kl": 0.4}, (1 - sig(BETA * (SW - 0.4))) + (1 - sig(BETA * (0.4 - SL)))),
    ],
)
def test_closed_forms(name: str, kw: dict, expected: float) -> None:
    assert call(name, **kw) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_label_smoothing_zero_is_dpo_and_needs_lengths() -> None:
    d = float(dpo_loss(C, R, RC, RR, beta=BETA)[0])
    assert call("robust_dpo", label_smoothing=0.0) == pytest.approx(d)
    assert call("cdpo", label_smoothing=0.0) == pytest.approx(d)
    with pytest.raises(ValueError, match="chosen_len"):
        get_preference_loss("ln_dpo")(C, R, RC, RR, beta=BETA)
    with pytest.raises(ValueError):
        call("robust_dpo", label_smoothing=0.5)


def test_fdpo_reverse_kl_equals_dpo_random() -> None:
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(64, generator=g) * 3 for _ in range(4)]
    for beta in (0.01, 0.1, 1.0, 5.0):
        torch.testing.assert_close(get_preference_loss("fdpo_reverse_kl")(*x, beta=beta), dpo_loss(*x, beta=beta))


def test_fdpo_alpha_limits() -> None:
    s = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(zoo.f_prime(s, "alpha", 1e-6), s, atol=1e-5, rtol=0)
    # α -> 1 is forward KL up to the constant 1 (which cancels in the loss)
    torch.testing.assert_close(zoo.f_prime(s, "alpha", 1 - 1e-7), 1 + zoo.f_prime(s, "forward_kl"), atol=1e-5, rtol=0)


def _grads(name: str, kw: dict, x: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    c, r = x[0].clone().requires_grad_(True), x[1].clone().requires_grad_(True)
    get_preference_loss(name)(c, r, x[2], x[3], beta=BETA, chosen_len=LC, rejected_len=LR, **kw).sum().backward()
    return c.grad, r.grad


def test_gradients_vs_hand_derivatives() -> None:
    """Hand-derived ∂ℓ/∂log π(y_w), ∂ℓ/∂log π(y_l) against autograd."""
    x = [C, R, RC, RR]
    b, z = BETA, BETA * DELTA
    hand = {
        "hinge": ((-b if 1 - z > 0 else 0.0), (b if 1 - z > 0 else 0.0)),
        "nca": (-b * (1 - sig(b * SW)) + 0.5 * b * sig(b * SW), 0.5 * b * sig(b * SL)),
        "apo_zero": (-b * sig(b * SW) * (1 - sig(b * SW)), b * sig(b * SL) * (1 - sig(b * SL))),
        "sppo_hard": (2 * (SW - 1 / (2 * b)), 2 * (SL + 1 / (2 * b))),
        "rpo": (-b * sig(-z) - 0.1 * b, b * sig(-z)),
        "fdpo_forward_kl": (
            -b * sig(-b * (-math.exp(-SW) + math.exp(-SL))) * math.exp(-SW),
            b * sig(-b * (-math.exp(-SW) + math.exp(-SL))) * math.exp(-SL),
        ),
        "bco_pair": (-b * sig(-b * SW), b * sig(b * SL)),
    }
    for name, (gw, gl) in hand.items():
        kw = {"eta": 0.1} if name == "rpo" else {}
        a, bb = _grads(name, kw, x)
        assert float(a[0]) == pytest.approx(gw, rel=1e-9, abs=1e-12), name
        assert float(bb[0]) == pytest.approx(gl, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("name", [n for n in ZOO_LOSSES if n != "hinge"])
def test_gradients_vs_finite_differences(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(5, generator=g) for _ in range(4)]
    lc, lr = torch.tensor([3.0, 1, 2, 5, 4]), torch.tensor([2.0, 2, 6, 1, 3])
    fn = get_preference_loss(name)
    kw = {"kl": 0.3} if name == "kto_pair" else {}  # batch-estimated z0 is detached on purpose: fix it for FD

    def f(c: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return fn(c, r, x[2], x[3], beta=0.7, chosen_len=lc, rejected_len=lr, **kw).sum()

    assert torch.autograd.gradcheck(f, (x[0].clone().requires_grad_(True), x[1].clone().requires_grad_(True)))


def test_bco_upper_bounds_dpo_for_every_delta_gap_smallest_at_midpoint() -> None:
    """Jung et al. Thm 3: ℓ_δ > DPO for every δ; Thm 4: the gap e^{-(r_w-δ)} + e^{r_l-δ} bound is tightest at
    δ = (r_w + r_l)/2 — here checked on the exact gap ℓ_δ − ℓ_DPO, which is convex in δ with that minimiser."""
    g = torch.Generator().manual_seed(2)
    rw, rl = torch.randn(200, generator=g) * 2, torch.randn(200, generator=g) * 2
    dpo = -F.logsigmoid(rw - rl)
    deltas = torch.linspace(-8, 8, 1601)
    gaps = torch.stack([zoo.bco_binary_loss(rw, rl, float(d)) - dpo for d in deltas])  # [D, N]
    assert bool((gaps > 0).all())
    best = deltas[gaps.argmin(0)]
    torch.testing.assert_close(best, ((rw + rl) / 2).clamp(-8, 8), atol=0.011, rtol=0)
    # the loss registered as bco_pair with delta= uses that binary loss on r = β·s
    c, r, rc, rr = (torch.randn(7, generator=g) for _ in range(4))
    mid = float(((0.5 * (c - rc) + 0.5 * (r - rr)) / 2).mean())
    torch.testing.assert_close(
        get_preference_loss("bco_pair")(c, r, rc, rr, beta=0.5, delta=mid), zoo.bco_binary_loss(0.5 * (c - rc), 0.5 * (r - rr), mid)
    )


def test_running_mean_state() -> None:
    st = zoo.RunningMean()
    assert st.update(torch.tensor([1.0, 3.0])) == pytest.approx(2.0)
    assert st.update(torch.tensor([8.0, 8.0, 8.0, 8.0])) == pytest.approx((4 + 32) / 6)
    e = zoo.RunningMean(mode="ema", momentum=0.5)
    e.update(torch.tensor([2.0]))
    assert e.update(torch.tensor([4.0])) == pytest.approx(3.0)
    # bco_pair with a state: δ = mean of all rewards seen so far, updated before use, no gradient through δ
    st2 = zoo.RunningMean()
    c = torch.tensor([0.0, 2.0], requires_grad=True)
    r, rc, rr = torch.tensor([-1.0, 1.0]), torch.zeros(2), torch.zeros(2)
    loss = get_preference_loss("bco_pair")(c, r, rc, rr, beta=1.0, delta_state=st2)
    assert st2.mean == pytest.approx(0.5)
    torch.testing.assert_close(loss, zoo.bco_binary_loss(c.detach(), r, 0.5))
    loss.sum().backward()
    torch.testing.assert_close(c.grad, -torch.sigmoid(-(c.detach() - 0.5)))
    with pytest.raises(TypeError):
        get_preference_loss("bco_pair")(c, r, rc, rr, beta=1.0, delta_state=0.3)


def test_bco_unpaired_matches_paired_and_udm_weights() -> None:
    g = torch.Generator().manual_seed(3)
    c, r, rc, rr = (torch.randn(6, generator=g) for _ in range(4))
    paired = get_preference_loss("bco_pair")(c, r, rc, rr, beta=0.3, delta=0.1)
    unp = zoo.bco_unpaired_loss(torch.cat([c, r]), torch.cat([rc, rr]), torch.tensor([1] * 6 + [0] * 6), beta=0.3, delta=0.1)
    torch.testing.assert_close(unp[:6] + unp[6:], paired)
    # the running shift in the unpaired loss is the midpoint of the two class means
    st = zoo.RunningMean()
    zoo.bco_unpaired_loss(torch.tensor([2.0, 4.0, 0.0]), torch.zeros(3), torch.tensor([1, 1, 0]), beta=1.0, delta_state=st)
    assert st.mean == pytest.approx(0.5 * (3.0 + 0.0))
    # UDM: prompts of D+ around +1, of D- around -1 -> a D- prompt that looks like D+ gets a larger weight
    rng = np.random.default_rng(0)
    xp, xn = rng.normal(1, 1, (300, 2)), rng.normal(-1, 1, (300, 2))
    w = zoo.udm_weights(xp, xn, np.array([[2.0, 2.0], [-2.0, -2.0], [0.0, 0.0]]))
    assert float(w[0]) == pytest.approx(10.0) and float(w[1]) == pytest.approx(0.5)
    assert 0.6 < float(w[2]) < 1.6


def test_rpo_keeps_chosen_gradient_when_dpo_saturates() -> None:
    c = torch.tensor([50.0], requires_grad=True)
    get_preference_loss("rpo")(c, torch.tensor([-50.0]), torch.zeros(1), torch.zeros(1), beta=0.1, eta=1.0).sum().backward()
    assert float(c.grad[0]) == pytest.approx(-0.1, rel=1e-3)  # DPO part ≈ 0, η·β remains
    with pytest.raises(ValueError):
        call("rpo", nll="bogus")


def test_rpo_push_ratio_is_the_ratio_of_the_extra_gradient() -> None:
    c = torch.tensor([-3.0, -10.0, -1.0], requires_grad=True)
    r, rc, rr = torch.tensor([-4.0, -2.0, -9.0]), torch.tensor([-2.5, -9.0, -3.0]), torch.tensor([-3.0, -3.0, -4.0])
    beta, eta = 0.1, 0.005
    (g_rpo,) = torch.autograd.grad(get_preference_loss("rpo")(c, r, rc, rr, beta=beta, eta=eta).sum(), c)
    (g_dpo,) = torch.autograd.grad(dpo_loss(c, r, rc, rr, beta=beta).sum(), c)
    margin = (c.detach() - rc) - (r - rr)
    torch.testing.assert_close(zoo.rpo_push_ratio(margin, beta, eta), ((g_rpo - g_dpo) / g_dpo).double())
    assert float(zoo.rpo_push_ratio(torch.zeros(1), beta, eta)[0]) == pytest.approx(2 * eta)  # at the start σ(0) = ½


def test_generation_eval_on_a_tiny_gpt() -> None:
    from lossbook.alignment.world import SyntheticWorld, WorldConfig
    from lossbook.models.gpt import GPT, GPTConfig

    world = SyntheticWorld(WorldConfig(seed=0))
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len() + 8, n_layer=1, n_head=2, d_model=16)).eval()
    prompts = [p["prompt"] for p in world.multi_token_pairs(5, seed=1)]
    out = zoo.generation_eval(world, gpt, gpt, prompts, n_samples=3, max_new_tokens=6, seed=0)
    assert out["rewards"].shape == (5, 3) and 0.0 <= out["malformed"] <= 1.0
    assert out["kl"] == pytest.approx(0.0, abs=1e-9)  # policy = reference
    assert out["malformed"] == pytest.approx(float((out["rewards"] == -1.0).mean()))
    again = zoo.generation_eval(world, gpt, gpt, prompts, n_samples=3, max_new_tokens=6, seed=0)
    np.testing.assert_array_equal(out["rewards"], again["rewards"])  # seeded
