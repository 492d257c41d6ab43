"""CHES / lnCHES on constructed hidden states, max-drop, baselines, and Thm 2 on the unconstrained-features toy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lossbook.alignment.losses import dpo_loss
from lossbook.alignment.metrics import (
    benign_catastrophic_mass,
    ches,
    drop_endpoints,
    edit_distance,
    last_hidden_inner_product,
    ln_ches,
    loss_ever_rose,
    max_drop,
    normalized_edit_distance,
    thm1_score,
    token_alignment,
)


def test_ches_by_hand() -> None:
    hp = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # Σ = (1, 1), mean = (.5, .5)
    hm = torch.tensor([[2.0, 0.0]])  # Σ = mean = (2, 0)
    assert ches(hp, hm).item() == pytest.approx(2.0 - 2.0)
    assert ln_ches(hp, hm).item() == pytest.approx(1.0 - 0.5)
    # identical responses -> 0; orthogonal -> −‖Σh+‖²
    assert ches(hp, hp).item() == pytest.approx(0.0)
    assert ches(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 5.0]])).item() == pytest.approx(-9.0)


def test_ches_masks_and_batch() -> None:
    torch.manual_seed(0)
    hc, hr = torch.randn(4, 6, 3), torch.randn(4, 6, 3)
    mc = torch.zeros(4, 6, dtype=torch.bool)
    mr = torch.zeros(4, 6, dtype=torch.bool)
    for b in range(4):
        mc[b, 1 : 2 + b] = True
        mr[b, 2 : 5] = True
    got = ches(hc, hr, mc, mr)
    got_ln = ln_ches(hc, hr, mc, mr)
    for b in range(4):
        single = ches(hc[b][mc[b]], hr[b][mr[b]])
        assert got[b].item() == pytest.approx(single.item(), rel=1e-10)
        assert got_ln[b].item() == pytest.approx(ln_ches(hc[b][mc[b]], hr[b][mr[b]]).item(), rel=1e-10)
    # garbage outside the masks changes nothing
    hc2 = hc.clone()
    hc2[~mc] = 1e3
    torch.testing.assert_close(ches(hc2, hr, mc, mr), got)
    # the paper's identity: lnCHES = <Σh+,Σh->/(|y+||y-|) − ‖Σh+‖²/|y+|²
    sp = (hc * mc.unsqueeze(-1)).sum(1).double()
    sm = (hr * mr.unsqueeze(-1)).sum(1).double()
    npl, nmi = mc.sum(1).double(), mr.sum(1).double()
    want = (sp * sm).sum(-1) / (npl * nmi) - (sp * sp).sum(-1) / npl**2
    torch.testing.assert_close(got_ln, want)


def test_last_hidden_inner_product_picks_last_masked_position() -> None:
    h = torch.zeros(1, 5, 2)
    h[0, 3] = torch.tensor([1.0, 2.0])
    m = torch.tensor([[False, True, True, True, False]])
    assert last_hidden_inner_product(h, h, m, m).item() == pytest.approx(5.0)


def test_max_drop_and_endpoints() -> None:
    assert max_drop([0.9, 0.5, 0.7, 0.1]) == pytest.approx(0.8)
    assert drop_endpoints([0.9, 0.5, 0.7, 0.1]) == pytest.approx((0.9, 0.1))
    assert max_drop([0.1, 0.2, 0.3]) == 0.0
    assert max_drop([0.2, 0.8, 0.3, 0.9]) == pytest.approx(0.5)  # the rise comes first: 0.8 -> 0.3
    assert drop_endpoints([0.2, 0.8, 0.3, 0.9]) == pytest.approx((0.8, 0.3))
    assert max_drop(torch.tensor([0.5])) == 0.0
    assert loss_ever_rose([0.7, 0.6, 0.65]) and not loss_ever_rose([0.7, 0.6, 0.6])


def test_edit_distance() -> None:
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert normalized_edit_distance([1, 2, 3], [1, 2, 3]) == 0.0
    assert normalized_edit_distance([1, 2], [3, 4, 5]) == pytest.approx(1.0)


def test_benign_catastrophic_mass() -> None:
    p = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25])
    m = benign_catastrophic_mass(p, y_plus=0, y_minus=1, same_meaning=[0, 1, 2], opposite_meaning=[3, 4])
    assert m["benign"].item() == pytest.approx(0.3) and m["catastrophic"].item() == pytest.approx(0.4)
    assert m["y_plus"].item() == pytest.approx(0.1)


def _toy(seed: int = 0, V: int = 12, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, generator=g, dtype=torch.float64), torch.randn(V, d, generator=g, dtype=torch.float64)


def test_thm2_token_gain_is_affine_in_alignment_on_unconstrained_features() -> None:
    """Razin et al. Thm 2: with trainable h (unconstrained features) and W, under gradient flow
    d/dt ln π(z) = c·⟨W_z, W_{y+} − W_{y−}⟩ + b for every z ∉ {y+, y−}, with c > 0 and b independent of z.

    The instantaneous derivative is −⟨∇_θ ln π(z), ∇_θ ℓ⟩ over θ = (h, W); we check the affine law exactly."""
    h0, W0 = _toy()
    yp, ym, beta = 2, 7, 0.5
    h, W = h0.clone().requires_grad_(), W0.clone().requires_grad_()
    logp = torch.log_softmax(W @ h, -1)
    ref = logp.detach()
    loss = dpo_loss(logp[yp : yp + 1], logp[ym : ym + 1], ref[yp : yp + 1], ref[ym : ym + 1], beta=beta).sum()
    gh, gW = torch.autograd.grad(loss, (h, W), retain_graph=True)
    others = [z for z in range(W0.shape[0]) if z not in (yp, ym)]
    rates = []
    for z in others:
        dh, dW = torch.autograd.grad(logp[z], (h, W), retain_graph=True)
        rates.append(-(dh @ gh + (dW * gW).sum()))
    rates = torch.stack(rates)
    a = token_alignment(W0, yp, ym)[others]
    A = torch.stack([a, torch.ones_like(a)], 1)
    coef = torch.linalg.lstsq(A, rates.unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(A @ coef, rates, rtol=1e-9, atol=1e-9)
    assert coef[0] > 0
    assert coef[0].item() == pytest.approx(beta * torch.sigmoid(torch.tensor(0.0)).item())  # c = βσ(−βΔ), Δ = 0 at init
    assert spearmanr(a, rates)[0] == pytest.approx(1.0)


def test_thm2_ordering_survives_a_small_gradient_step() -> None:
    h0, W0 = _toy(3, V=20, d=6)
    yp, ym = 0, 1
    h, W = h0.clone().requires_grad_(), W0.clone().requires_grad_()
    before = torch.log_softmax(W0 @ h0, -1)
    logp = torch.log_softmax(W @ h, -1)
    loss = dpo_loss(logp[:1], logp[1:2], before[:1], before[1:2], beta=0.1).sum()
    loss.backward()
    with torch.no_grad():
        after = torch.log_softmax((W - 1e-3 * W.grad) @ (h - 1e-3 * h.grad), -1)
    others = list(range(2, 20))
    rho = spearmanr(token_alignment(W0, yp, ym)[others], (after - before)[others])[0]
    assert rho > 0.99


def test_thm1_score_by_hand() -> None:
    W = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    p = torch.tensor([0.5, 0.3, 0.2])
    # <W0,W1> = 1; W0 - W1 = (0, -1); <W2, (0,-1)> = -2; score = 1 + 0.2 * (-2) = 0.6
    assert thm1_score(W, p, 0, 1) == pytest.approx(0.6)


def test_percentile_windows() -> None:
    from lossbook.alignment.metrics import percentile_windows

    s = np.arange(100)[::-1].astype(float)  # index i has score 99 - i
    w = percentile_windows(s, [0, 50, 100], 10)
    assert sorted(s[w[0]]) == list(range(10)) and sorted(s[w[2]]) == list(range(90, 100))
    assert 45 <= s[w[1]].mean() <= 55
    with pytest.raises(ValueError):
        percentile_windows(s, [0], 101)


def test_sample_diversity_uses_well_formed_samples_only() -> None:
    from lossbook.alignment.metrics import sample_diversity

    samples = [
        [[1, 2, 3], [1, 2, 3], [1, 2, 4], [9]],  # 3 well-formed: 2 distinct; edit distances 0, 1/3, 1/3
        [[5, 6], [7]],  # only one well-formed: left out
        [[1], [2]],  # two well-formed, all different: distance 1
    ]
    ok = [[True, True, True, False], [True, False], [True, True]]
    d = sample_diversity(samples, ok)
    assert d["n_prompts"] == 2
    assert d["distinct"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert d["pairwise_edit"] == pytest.approx(((0 + 1 / 3 + 1 / 3) / 3 + 1.0) / 2)
    assert d["well_formed"] == pytest.approx(6 / 8)
    assert np.isnan(sample_diversity([[[1], [2]]], [[False, True]])["pairwise_edit"])
