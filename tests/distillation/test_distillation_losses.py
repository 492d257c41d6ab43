"""Distillation losses: closed forms, identities, gradients against autograd, parity with reference code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.distillation import losses as D
from lossbook.distillation.registry import KD_LOSSES, get_kd_loss
from lossbook.distillation.train import LossSpec
from lossbook.train.losses import label_smoothing_loss


@pytest.fixture()
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    zs = torch.randn(16, 10, generator=g, dtype=torch.float64) * 2
    zt = torch.randn(16, 10, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (16,), generator=g)
    return zs, zt, y


def test_kd_matches_torch_kl_div(batch):
    zs, zt, _ = batch
    for T in (1.0, 4.0):
        ref = F.kl_div(F.log_softmax(zs / T, 1), F.softmax(zt / T, 1), reduction="batchmean") * T**2
        assert torch.allclose(D.kd_loss(zs, zt, T), ref)
        assert D.kd_loss(zs, zt, T, reduction="none").shape == (16,)
        assert torch.allclose(D.kd_loss(zs, zt, T, reduction="sum"), ref * 16)


def test_kd_zero_iff_same_distribution(batch):
    zs, _, _ = batch
    assert D.kd_loss(zs, zs + 3.0, 2.0).abs() < 1e-12  # softmax shift invariance
    assert (D.kd_loss(zs, zs * 1.5, 2.0, reduction="none") > 0).all()


def test_kd_gradient_closed_form_vs_autograd(batch):
    zs, zt, _ = batch
    for T in (0.5, 1.0, 4.0, 16.0):
        z = zs.clone().requires_grad_(True)
        D.kd_loss(z, zt, T, reduction="sum").backward()
        assert torch.allclose(z.grad, D.kd_gradient(zs, zt, T), atol=1e-10)


def test_kd_gradient_tends_to_centred_logit_matching(batch):
    zs, zt, _ = batch
    C = zs.shape[1]
    limit = ((zs - zs.mean(1, keepdim=True)) - (zt - zt.mean(1, keepdim=True))) / C
    errs = [(D.kd_gradient(zs, zt, T) - limit).abs().max().item() for T in (1.0, 4.0, 16.0, 64.0, 256.0)]
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False))
    assert errs[-1] < errs[-2] / 3  # error is O(1/T): ×4 in T cuts it by ~4
    assert errs[-1] < 0.02 * limit.abs().max().item()
    # O(1): the T²-scaled gradient does not blow up nor vanish as T grows
    mags = [D.kd_gradient(zs, zt, T).abs().mean().item() for T in (1.0, 4.0, 16.0, 64.0, 256.0)]
    assert 0.2 < min(mags) / max(mags) and max(mags) < 10 * limit.abs().mean().item()


def test_dkd_identity_kd_equals_tckd_plus_weighted_nckd(batch):
    zs, zt, y = batch
    for T in (1.0, 4.0):
        tckd, nckd, pt = D.dkd_parts(zs, zt, y, T)
        kd = D.kd_loss(zs, zt, T, reduction="none")
        assert torch.allclose(kd, tckd + (1 - pt) * nckd, atol=1e-10)
        assert (tckd >= -1e-12).all() and (nckd >= -1e-12).all()


def _mdistiller_dkd(zs, zt, y, alpha, beta, T):
    """Independent re-implementation after mdistiller's DKD.py (masking with −1000, not column removal)."""
    gt = F.one_hot(y, zs.shape[1]).bool()
    ps, pt = F.softmax(zs / T, 1), F.softmax(zt / T, 1)

    def cat(p):
        t1, t2 = (p * gt).sum(1, keepdim=True), (p * ~gt).sum(1, keepdim=True)
        return torch.cat([t1, t2], 1)

    ps2, pt2 = cat(ps), cat(pt)
    tckd = F.kl_div(torch.log(ps2), pt2, reduction="sum") * T**2 / y.shape[0]
    pt3 = F.softmax(zt / T - 1000.0 * gt, 1)
    ls3 = F.log_softmax(zs / T - 1000.0 * gt, 1)
    nckd = F.kl_div(ls3, pt3, reduction="sum") * T**2 / y.shape[0]
    return alpha * tckd + beta * nckd


def test_dkd_parity_with_mdistiller_form(batch):
    zs, zt, y = batch
    ours = D.dkd_loss(zs, zt, y, alpha=1.0, beta=8.0, T=4.0)
    assert torch.allclose(ours, _mdistiller_dkd(zs, zt, y, 1.0, 8.0, 4.0), atol=1e-8)


def test_dkd_gradcheck(batch):
    zs, zt, y = batch
    z = zs[:4].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: D.dkd_loss(a, zt[:4], y[:4], 1.0, 2.0, 3.0), (z,))


def test_dist_matches_reference_and_invariances(batch):
    zs, zt, _ = batch

    def ref(a, b):  # after hunto/image_classification_sota dist_kd.py
        def pc(x, y):
            x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
            return F.cosine_similarity(x, y, dim=1, eps=1e-8)

        ys, yt = a.softmax(1), b.softmax(1)
        return (1 - pc(ys, yt).mean()) + (1 - pc(ys.t(), yt.t()).mean())

    assert torch.allclose(D.dist_loss(zs, zt), ref(zs, zt), atol=1e-6)
    assert D.dist_loss(zt, zt).abs() < 1e-6
    per = D.dist_loss(zs, zt, reduction="none")
    assert per.shape == (16,) and torch.allclose(per.mean(), D.dist_loss(zs, zt))


def test_binary_kl_closed_form_and_zero(batch):
    zs, zt, _ = batch
    T = 2.0
    p, q = torch.sigmoid(zs / T), torch.sigmoid(zt / T)
    ref = (T**2 * (q * torch.log(q / p) + (1 - q) * torch.log((1 - q) / (1 - p))).sum(1)).mean()
    assert torch.allclose(D.binary_kl(zs, zt, T), ref)
    assert D.binary_kl(zt, zt, T).abs() < 1e-12


def test_binary_kl_norm_is_logcosh(batch):
    zs, zt, _ = batch
    for T in (1.0, 2.0, 5.0):
        lc = T**2 * torch.log(torch.cosh((zs - zt) / (2 * T))).sum(1)
        ours = D.binary_kl_norm(zs, zt, T, reduction="none")
        # the constant the derivation gives is exactly 0
        assert torch.allclose(ours, lc, atol=1e-10)
        # and it matches the released code (KLDivLoss against a 0.5 target)
        d = torch.sigmoid((zs - zt) / T)
        rel = T**2 * (F.kl_div(torch.log(d), torch.full_like(d, 0.5), reduction="none")
                      + F.kl_div(torch.log(1 - d), torch.full_like(d, 0.5), reduction="none")).sum() / zs.shape[0]
        assert torch.allclose(D.binary_kl_norm(zs, zt, T), rel, atol=1e-8)


def test_binary_kl_norm_gradient_bounded():
    zs = torch.tensor([[100.0, -100.0, 0.0]], dtype=torch.float64, requires_grad=True)
    D.binary_kl_norm(zs, torch.zeros(1, 3, dtype=torch.float64), T=2.0, reduction="sum").backward()
    assert zs.grad.abs().max() <= 2.0 / 2 + 1e-9  # (T/2)·tanh
    assert torch.allclose(zs.grad, 1.0 * torch.tanh(zs.detach() / 4))


def test_label_smoothing_equals_kd_with_uniform_teacher(batch):
    zs, _, y = batch
    eps = 0.2
    C = zs.shape[1]
    ref = F.cross_entropy(zs, y, label_smoothing=eps)
    assert torch.allclose(label_smoothing_loss(zs, y, eps), ref)
    manual = (1 - eps) * F.cross_entropy(zs, y) + eps * (D.kd_loss(zs, D.uniform_teacher_logits(zs), 1.0) + math.log(C))
    assert torch.allclose(manual, ref)
    # same gradients as CE + ε·KD(uniform) up to the (1−ε) weight
    z1, z2 = zs.clone().requires_grad_(True), zs.clone().requires_grad_(True)
    F.cross_entropy(z1, y, label_smoothing=eps).backward()
    ((1 - eps) * F.cross_entropy(z2, y) + eps * D.kd_loss(z2, torch.zeros_like(zs), 1.0)).backward()
    assert torch.allclose(z1.grad, z2.grad)


def test_project_conflicting():
    g_ce = torch.tensor([1.0, 0.0])
    g_kd = torch.tensor([-1.0, 1.0])
    out = D.project_conflicting([g_ce, g_kd])
    assert torch.allclose(out, torch.tensor([1.0, 1.0]))  # conflicting component removed
    g_ok = torch.tensor([0.5, 1.0])
    assert torch.allclose(D.project_conflicting([g_ce, g_ok]), g_ce + g_ok)  # no conflict: plain sum


def test_flat_grads_and_registry(batch):
    w = torch.randn(3, requires_grad=True)
    v = torch.randn(2, requires_grad=True)
    g = D.flat_grads((w**2).sum(), [w, v])
    assert torch.allclose(g[:3], 2 * w.detach()) and (g[3:] == 0).all()
    zs, zt, y = batch
    spec = LossSpec(kind="kd", T=3.0)
    assert torch.equal(get_kd_loss("kd")(zs, zt, y, spec), D.kd_loss(zs, zt, 3.0))
    with pytest.raises(KeyError, match="unknown distillation loss"):
        get_kd_loss("nope")
    with pytest.raises(ValueError):
        D.kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_every_registered_loss_is_per_example(batch):
    zs, zt, y = batch
    spec = LossSpec(kind="dkd", T=2.0, alpha=1.0, beta=8.0)
    cases = {name: (lambda r, fn=fn: fn(zs, zt, y, spec, r)) for name, fn in KD_LOSSES.items()}
    cases["label_smoothing"] = lambda r: label_smoothing_loss(zs, y, 0.1, r)
    for name, fn in cases.items():
        per = fn("none")
        assert per.shape == (16,), name
        assert torch.allclose(per.mean(), fn("mean")), name
        assert torch.allclose(per.sum(), fn("sum")), name
