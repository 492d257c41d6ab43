"""PS-KD and USKD (``distillation.self_kd``): closed-form gradients against autograd, the gradient-rescaling identity,
hand-computed golden values, USKD against a line-by-line transcription of the official code, and invariances."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook import repro
from lossbook.data.classification import Split
from lossbook.distillation import self_kd as SK
from lossbook.models.mlp import MLP


def _logits(b: int = 16, c: int = 10, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(b, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_soft_cross_entropy_matches_torch_probability_targets() -> None:
    z = _logits()
    q = torch.softmax(_logits(seed=1), 1)
    assert torch.allclose(SK.soft_cross_entropy(z, q), F.cross_entropy(z, q), atol=1e-12)
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(SK.soft_cross_entropy(z, F.one_hot(y, 10).double()), F.cross_entropy(z, y), atol=1e-12)


def test_pskd_alpha_schedule_is_the_official_one() -> None:
    epochs, a_T = 300, 0.8
    for e0 in (0, 1, 149, 299):  # official: alpha_T * (epoch + 1) / end_epoch with a 0-based epoch
        assert SK.pskd_alpha(e0 + 1, epochs, a_T) == pytest.approx(a_T * (e0 + 1) / epochs)
    assert SK.pskd_alpha(epochs, epochs, a_T) == pytest.approx(a_T)
    with pytest.raises(ValueError):
        SK.pskd_alpha(0, epochs, a_T)


def test_pskd_logit_gradient_matches_autograd() -> None:
    z = _logits().requires_grad_(True)
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(3))
    p_prev = torch.softmax(_logits(seed=4), 1)
    alpha = 0.37
    loss = SK.soft_cross_entropy(z, SK.pskd_targets(y, p_prev, alpha), reduction="sum")
    (g,) = torch.autograd.grad(loss, z)
    assert torch.allclose(g, SK.pskd_logit_grad(z.detach(), y, p_prev, alpha), atol=1e-12)


def test_pskd_gradient_rescaling_identity_against_autograd() -> None:
    """Target-class gradient of PS-KD / that of CE = 1 − α(1 − p̂_GT)/(1 − p_GT), per example (derived in self_kd's
    docstring); where every non-target p_c ≥ α p̂_c the L1 norms of the whole logit gradients have the same ratio."""
    z = _logits(b=64).requires_grad_(True)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(5))
    noise = _logits(b=64, seed=6, scale=1.0)
    noise[:32] *= 0.05  # half the examples: past predictions close to the current ones; half: unrelated
    p_prev = torch.softmax(torch.cat([z.detach()[:32], torch.zeros(32, 10, dtype=torch.float64)]) + noise, 1)
    alpha = 0.8
    (g_pskd,) = torch.autograd.grad(SK.soft_cross_entropy(z, SK.pskd_targets(y, p_prev, alpha), "sum"), z)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(z, y, reduction="sum"), z)
    r = SK.pskd_rescaling(z.detach(), y, p_prev, alpha)
    ratio_gt = g_pskd.gather(1, y[:, None]).squeeze(1) / g_ce.gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(ratio_gt, r, atol=1e-10)
    p = torch.softmax(z.detach(), 1)
    nontarget_ok = ((p - alpha * p_prev) >= 0).scatter(1, y[:, None], True).all(1)
    assert nontarget_ok.sum() >= 5 and (~nontarget_ok).sum() >= 5  # the construction leaves enough examples where the condition holds
    l1 = g_pskd.abs().sum(1) / g_ce.abs().sum(1)
    assert torch.allclose(l1[nontarget_ok], r[nontarget_ok], atol=1e-10)
    assert (l1[~nontarget_ok] > r[~nontarget_ok] - 1e-12).all()  # otherwise |p_c − α p̂_c| only adds: the L1 ratio is larger


def test_pskd_rescaling_golden_value() -> None:
    # p = (0.5, 0.3, 0.2), p̂ = (0.8, 0.1, 0.1), y = 0, α = 0.5: ∂_GT = 0.5 − 0.5 − 0.4 = −0.4 vs CE's −0.5 -> r = 0.8;
    # non-target 0.3 − 0.05 = 0.25 and 0.2 − 0.05 = 0.15: L1 0.8 vs CE's 1.0.
    z = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64).log()
    ph = torch.tensor([[0.8, 0.1, 0.1]], dtype=torch.float64)
    y = torch.tensor([0])
    g = SK.pskd_logit_grad(z, y, ph, 0.5)
    assert torch.allclose(g, torch.tensor([[-0.4, 0.25, 0.15]], dtype=torch.float64), atol=1e-12)
    assert SK.pskd_rescaling(z, y, ph, 0.5).item() == pytest.approx(0.8)
    assert SK.pskd_rescaling(z, y, torch.softmax(z, 1), 0.5).item() == pytest.approx(0.5)  # p̂ = p: r = 1 − α


def test_prediction_buffer_starts_one_hot_and_records() -> None:
    y = torch.tensor([2, 0, 1])
    b = SK.PredictionBuffer(y, 3)
    assert torch.equal(b.read(torch.tensor([0, 2])), torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    assert b.target_confidence(y) == 1.0
    b.write(torch.tensor([1]), torch.tensor([[0.5, 0.25, 0.25]]))
    assert b.target_confidence(y) == pytest.approx((1 + 0.5 + 1) / 3)


def _tiny_split(n: int = 96, d: int = 12, c: int = 4, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, c, generator=g)
    xs = [torch.randn(m, d, generator=g) for m in (n, 32, 32)]
    ys = [(x @ w).argmax(1) for x in xs]
    return Split(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], c, (d,), "tiny")


def test_pskd_with_alpha_zero_is_cross_entropy() -> None:
    split = _tiny_split()
    curves = {}
    for kind, spec in {"ce": SK.SelfKDSpec("ce"), "pskd": SK.SelfKDSpec("pskd", alpha_T=0.0)}.items():
        repro.seed_everything(0)
        m = MLP(12, 4, hidden=(16, 16))
        curves[kind] = SK.train_self_kd(m, split, spec, epochs=3, lr=0.05, seed=0, batch_size=32, optimizer="sgd", progress=False).curves
    for k in ("train_loss", "val_loss", "test_acc"):
        assert curves["ce"][k] == pytest.approx(curves["pskd"][k], abs=1e-6)


def test_pskd_first_epoch_uses_hard_labels_then_past_predictions() -> None:
    """Epoch 1 trains on one-hot targets (buffer initialised to the labels); after training the buffer holds the
    softmax of the last epoch's training forward pass, which differs from one-hot."""
    split = _tiny_split()
    state: dict = {}
    repro.seed_everything(0)
    SK.train_self_kd(MLP(12, 4, hidden=(16, 16)), split, SK.SelfKDSpec("pskd", alpha_T=0.8), epochs=2, lr=0.05, seed=0,
                     batch_size=32, optimizer="sgd", progress=False, state=state)
    p = state["buffer"].p
    assert torch.allclose(p.sum(1), torch.ones(len(p)), atol=1e-5)
    assert state["buffer"].target_confidence(split.y_train) < 1.0


def _uskd_official(logit_s: torch.Tensor, w_fc: torch.Tensor, gt_label: torch.Tensor, alpha: float, beta: float, mu: float) -> torch.Tensor:
    """Line-by-line transcription of ``yzd-v/cls_KD`` ``USKDLoss.forward`` (hard labels; the weak head's logits given)."""
    label = gt_label.view(len(gt_label), 1)
    value = torch.ones_like(label)
    n, c = logit_s.shape
    s_i = F.softmax(logit_s, dim=1)
    s_t = torch.gather(s_i, 1, label)
    p_t = s_t**2
    p_t = p_t + value - p_t.mean(0, True)
    p_t[value == 0] = 0
    p_t = p_t.detach()
    s_i = F.log_softmax(logit_s, dim=1)
    s_t = torch.gather(s_i, 1, label)
    loss_t = -(p_t * s_t).sum(dim=1).mean()
    target = torch.zeros_like(logit_s).scatter_(1, label, 0.9) + 0.1 * torch.ones_like(logit_s) / c
    w_i = F.log_softmax(w_fc, dim=1)
    loss_weak = -(mu * target * w_i).sum(dim=1).mean()
    w_i = F.softmax(w_fc, dim=1)
    w_t = torch.gather(w_i, 1, label)
    rank = w_i / (1 - w_t.sum(1, True) + 1e-6) + s_i / (1 - s_t.sum(1, True) + 1e-6)
    _, rank = torch.sort(rank, descending=True, dim=-1)
    z_i = (1 / torch.arange(1, c + 1, dtype=logit_s.dtype)).repeat(n, 1)
    ids_sort = torch.argsort(rank)
    z_i = torch.gather(z_i, dim=1, index=ids_sort)
    mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
    ns_i = F.log_softmax(logit_s[mask].reshape(n, -1), dim=1)
    nz_i = z_i[mask].reshape(n, -1)
    nz_i = (nz_i / nz_i.sum(dim=1, keepdim=True)).detach()
    loss_non = -(nz_i * ns_i).sum(dim=1).mean()
    return alpha * loss_t + beta * loss_non + loss_weak


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uskd_matches_the_official_transcription(seed: int) -> None:
    z = _logits(b=32, c=10, seed=seed).requires_grad_(True)
    zw = _logits(b=32, c=10, seed=seed + 10, scale=1.0).requires_grad_(True)
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(seed + 20))
    ours = sum(SK.uskd_terms(z, zw, y, alpha=0.1, beta=0.1, mu=0.1).values())
    ref = _uskd_official(z, zw, y, 0.1, 0.1, 0.1)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-12)
    g1 = torch.autograd.grad(ours, (z, zw))
    g2 = torch.autograd.grad(_uskd_official(z, zw, y, 0.1, 0.1, 0.1), (z, zw))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g1, g2, strict=True))


def test_zipf_labels_golden() -> None:
    # scores (0.1, 0.9, 0.5, 0.3), target 1: ranks 4, 1, 2, 3 -> weights 1/4, 1, 1/2, 1/3; drop the target and
    # normalise over (1/4, 1/2, 1/3) whose sum is 13/12 -> (3/13, 6/13, 4/13)
    out = SK.zipf_non_target_labels(torch.tensor([[0.1, 0.9, 0.5, 0.3]], dtype=torch.float64), torch.tensor([1]))
    assert torch.allclose(out, torch.tensor([[3 / 13, 6 / 13, 4 / 13]], dtype=torch.float64))


def test_uskd_target_term_golden_and_its_gradient() -> None:
    # probs (0.5, 0.3, 0.2) with y = 0 and (0.2, 0.6, 0.2) with y = 2: s_t = 0.5, 0.2, s_t² = 0.25, 0.04, batch mean 0.145
    # -> p̃ = 1.105, 0.895; L_t = −(1.105 ln 0.5 + 0.895 ln 0.2)/2
    z = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2]], dtype=torch.float64).log().requires_grad_(True)
    y = torch.tensor([0, 2])
    t = SK.uskd_terms(z, torch.zeros_like(z), y, alpha=1.0, beta=1.0, mu=1.0)
    assert t["uskd_target"].item() == pytest.approx(-(1.105 * math.log(0.5) + 0.895 * math.log(0.2)) / 2, abs=1e-12)
    (g,) = torch.autograd.grad(t["uskd_target"], z)  # p̃ is a constant: ∂/∂z = −p̃ (onehot − s) / B
    s = torch.softmax(z.detach(), 1)
    expect = -torch.tensor([[1.105], [0.895]], dtype=torch.float64) * (F.one_hot(y, 3).double() - s) / 2
    assert torch.allclose(g, expect, atol=1e-12)
    # weak head with uniform logits: −μ Σ q log(1/3) = log 3 for any label-smoothed q
    assert t["uskd_weak"].item() == pytest.approx(math.log(3), abs=1e-12)


def test_weak_head_mlp_forward_is_the_mlps() -> None:
    repro.seed_everything(0)
    mlp = MLP(12, 4, hidden=(16, 16))
    ref = MLP(12, 4, hidden=(16, 16))
    ref.load_state_dict(mlp.state_dict())
    m = SK.WeakHeadMLP(mlp)
    x = torch.randn(5, 12)
    z, zw = m.forward_weak(x)
    assert torch.allclose(m(x), ref(x)) and torch.allclose(z, ref(x)) and zw.shape == (5, 4)


def test_augment_signals_rolls_each_row() -> None:
    x = torch.arange(20.0).view(2, 10)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(SK.augment_signals(x, 0, 0.0, g), x)
    out = SK.augment_signals(x, 3, 0.0, g)
    for i in range(2):
        assert any(torch.equal(out[i], torch.roll(x[i], k)) for k in range(-3, 4))


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(KeyError, match="pskd"):
        SK.SelfKDSpec("psdk")
