"""The 3D-properties toy (Yan et al. 2024): Cor. 1, the losses, the toy's construction and its read-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook.alignment import three_d as T3
from lossbook.alignment.losses import dpo_loss


@pytest.mark.parametrize("beta, beta_minus", [(0.1, 0.1), (0.5, 0.5), (0.1, 0.03)])
def test_cor1_probability_gradient_ratio_against_autograd(beta: float, beta_minus: float) -> None:
    g = torch.Generator().manual_seed(0)
    pp = torch.rand(50, generator=g, dtype=torch.float64) * 0.9 + 0.05
    pm = torch.rand(50, generator=g, dtype=torch.float64) * 0.9 + 0.01
    p0p, p0m = torch.rand(50, generator=g, dtype=torch.float64) + 0.05, torch.rand(50, generator=g, dtype=torch.float64) + 0.05
    pp.requires_grad_(True)
    pm.requires_grad_(True)
    T3.flex_dpo_loss(pp.log(), pm.log(), p0p.log(), p0m.log(), beta=beta, beta_minus=beta_minus).sum().backward()
    torch.testing.assert_close(pm.grad / pp.grad, T3.prob_gradient_ratio(pp.detach(), pm.detach(), beta, beta_minus))
    assert (pm.grad > 0).all() and (pp.grad < 0).all()  # the loss falls as π⁺ rises and as π⁻ falls


def test_dpo_logit_gradient_on_a_softmax_is_a_pure_contrast() -> None:
    """Free logits z of one prompt: ∂ℓ/∂z = −β σ(−βΔ) (e⁺ − e⁻) — the normaliser cancels, unseen logits get 0."""
    torch.manual_seed(1)
    z0 = torch.randn(10, dtype=torch.float64)
    z = (z0 + 0.3 * torch.randn(10, dtype=torch.float64)).requires_grad_(True)
    yp, ym, beta = 2, 7, 0.2
    lp, lp0 = torch.log_softmax(z, -1), torch.log_softmax(z0, -1)
    loss = dpo_loss(lp[yp], lp[ym], lp0[yp], lp0[ym], beta=beta)
    loss.backward()
    delta = float(((lp[yp] - lp0[yp]) - (lp[ym] - lp0[ym])).detach())
    expect = torch.zeros(10, dtype=torch.float64)
    c = beta * torch.sigmoid(torch.tensor(-beta * delta, dtype=torch.float64))
    expect[yp], expect[ym] = -c, c
    torch.testing.assert_close(z.grad, expect)


def test_flex_with_equal_betas_is_dpo_and_dpo_sft_adds_a_weighted_nll() -> None:
    torch.manual_seed(2)
    a, b, c, d = (torch.randn(6, dtype=torch.float64) - 2 for _ in range(4))
    torch.testing.assert_close(T3.flex_dpo_loss(a, b, c, d, beta=0.3), dpo_loss(a, b, c, d, beta=0.3))
    torch.testing.assert_close(T3.flex_dpo_loss(a, b, c, d, beta=0.3, beta_minus=0.3), dpo_loss(a, b, c, d, beta=0.3))
    assert not torch.allclose(T3.flex_dpo_loss(a, b, c, d, beta=0.3, beta_minus=0.1), dpo_loss(a, b, c, d, beta=0.3))
    w, beta = 0.2, 0.1
    torch.testing.assert_close(T3.TOY_LOSSES["dpo_sft"](a, b, c, d, beta=beta, eta=w / beta), dpo_loss(a, b, c, d, beta=beta) - w * a)


@pytest.mark.parametrize("scenario", ["on_policy", "off_policy"])
def test_toy_construction(scenario: str) -> None:
    cfg = T3.ToyConfig(n_prompts=3, n_responses=8, hidden=16, pairs_per_prompt=2, scenario=scenario, ref_steps=50, seed=4)
    toy = T3.make_toy(cfg)
    assert toy.pairs.shape == (6, 3)
    with torch.no_grad():
        p_ref = torch.softmax(toy.reference(toy.x), -1)
    for i in range(3):
        rows = toy.pairs[toy.pairs[:, 0] == i]
        seen = set(rows[:, 1:].reshape(-1).tolist())
        assert len(seen) == 4  # distinct responses in the prompt's pairs
        assert set(torch.nonzero(~toy.unseen[i]).reshape(-1).tolist()) == seen
        assert (toy.reward[i, rows[:, 1]] >= toy.reward[i, rows[:, 2]]).all()  # chosen = higher gold reward
        if scenario == "off_policy":
            low = set(torch.argsort(p_ref[i])[:4].tolist())
            assert seen == low  # 4 of the max(4, 8 // 2) lowest
    assert T3.make_toy(cfg).pairs.tolist() == toy.pairs.tolist()  # seeded
    with pytest.raises(ValueError, match="scenario"):
        T3.ToyConfig(scenario="nope")


def test_training_starts_at_the_reference_and_read_toy_closed_forms() -> None:
    toy = T3.make_toy(T3.ToyConfig(n_prompts=2, n_responses=6, hidden=8, pairs_per_prompt=1, ref_steps=20, seed=0))
    run = T3.train_toy(toy, "dpo", beta=0.1, steps=5, lr=1e-2)
    assert run["probs"].shape == (6, 2, 6) and run["loss"].shape == (5,)
    assert run["dpo_loss"][0] == pytest.approx(np.log(2.0))
    assert run["dpo_loss"][-1] < run["dpo_loss"][0]
    np.testing.assert_allclose(run["probs"].sum(-1), 1.0, rtol=1e-6)
    # a hand-made run: prompt 0 pair (0, 1), prompt 1 pair (2, 3); unseen 4 responses each
    P0 = np.full((2, 6), 1 / 6)
    Pt = P0.copy()
    Pt[0] = [2 / 6, 0.5 / 6, 1 / 6, 1 / 6, 0.75 / 6, 0.75 / 6]
    hand = {"probs": np.stack([P0, Pt])}
    toy.pairs = torch.tensor([[0, 0, 1], [1, 2, 3]])
    toy.unseen = torch.tensor([[False, False, True, True, True, True], [True, True, False, False, True, True]])
    r = T3.read_toy(hand, toy, 1)
    dp, dm = np.log(2.0) / 2, np.log(0.5) / 2
    assert r["d_logp_plus"] == pytest.approx(dp) and r["d_logp_minus"] == pytest.approx(dm)
    assert r["rejected_share"] == pytest.approx(-dm / (dp - dm))
    assert r["d_unseen"] == pytest.approx(((3.5 / 6) - (4 / 6)) / 2)  # prompt 0 loses 0.5/6 of unseen mass, prompt 1 none
    assert r["share_chosen_fell"] == 0.0
    assert T3.mass_curves(hand, toy)["unseen"][1] == pytest.approx(r["unseen_t"])


def test_toy_replicates_read_all_arms_at_the_dpo_target() -> None:
    cfg = T3.ToyConfig(n_prompts=2, n_responses=6, hidden=8, pairs_per_prompt=1, ref_steps=20)
    out = T3.toy_replicates(cfg, [0, 1], beta=0.1, steps=40, lr=1e-2, loss_target=0.6, beta_minus=0.05, sft_weight=0.1)
    for k, t in enumerate(out["t_star"]):
        assert out["reached"][k] == (out["runs"]["dpo"][k]["dpo_loss"].min() <= 0.6)
        assert all(out["reads"][m][k]["t"] == t for m in T3.TOY_LOSSES)
        assert T3.cor1_check(out["toys"][k], out["runs"]["dpo"][k], t, 0.1) < 1e-9


def test_dispersion_split_and_table_by_hand() -> None:
    toy = T3.make_toy(T3.ToyConfig(n_prompts=2, n_responses=4, hidden=8, pairs_per_prompt=1, ref_steps=0, seed=0))
    toy.pairs = torch.tensor([[0, 0, 1], [1, 2, 3]])
    toy.unseen = torch.tensor([[False, False, True, True], [True, True, False, False]])
    P0 = np.array([[0.1, 0.4, 0.25, 0.25], [0.25, 0.25, 0.3, 0.2]])  # prompt 0: π(y−) > π(y+); prompt 1: not
    P1 = np.array([[0.2, 0.1, 0.35, 0.35], [0.2, 0.2, 0.5, 0.1]])
    P2 = np.array([[0.4, 0.0, 0.3, 0.3], [0.1, 0.1, 0.8, 0.0]])
    d = T3.dispersion_split({"probs": np.stack([P0, P1, P2])}, toy, 2)
    np.testing.assert_allclose(d["d_unseen"], [0.1, -0.3])
    np.testing.assert_allclose(d["peak"], [0.2, 0.0])
    assert d["ref_prefers_rejected"].tolist() == [True, False]
    tab = T3.dispersion_table({"s": [d, d]})
    assert tab.loc[("s", True), "prompts"] == 2 and tab.loc[("s", True), "mean Δ unseen at t*"] == pytest.approx(0.1)
    assert tab.loc[("s", False), "mean peak rise before t*"] == pytest.approx(0.0)


def test_free_softmax_unseen_mass_identity() -> None:
    """The docstring's identity: after z⁺ += g, z⁻ −= g, Z'/Z − 1 = π⁺(e^g − 1) − π⁻(1 − e^{−g})."""
    z = torch.tensor([0.3, -0.2, 1.0, 0.1], dtype=torch.float64)
    g = 0.7
    p = torch.softmax(z, 0)
    z2 = z.clone()
    z2[0] += g
    z2[1] -= g
    ratio = torch.exp(z2).sum() / torch.exp(z).sum()
    assert float(ratio - 1) == pytest.approx(float(p[0] * (np.exp(g) - 1) - p[1] * (1 - np.exp(-g))))
    assert float(torch.softmax(z2, 0)[2:].sum()) == pytest.approx(float(p[2:].sum() / ratio))


@pytest.mark.parametrize("scenario", ["chosen_off", "rejected_off"])
def test_mixed_scenarios_put_one_side_in_the_low_half(scenario: str) -> None:
    cfg = T3.ToyConfig(n_prompts=3, n_responses=8, hidden=16, pairs_per_prompt=2, scenario=scenario, ref_steps=50, seed=5)
    toy = T3.make_toy(cfg)
    assert toy.pairs.shape == (6, 3)
    with torch.no_grad():
        p_ref = torch.softmax(toy.reference(toy.x), -1)
    for i in range(3):
        rows = toy.pairs[toy.pairs[:, 0] == i]
        low = set(torch.argsort(p_ref[i])[:4].tolist())
        off_side, on_side = (rows[:, 1], rows[:, 2]) if scenario == "chosen_off" else (rows[:, 2], rows[:, 1])
        assert set(off_side.tolist()) <= low and not set(on_side.tolist()) & low
        seen = set(rows[:, 1:].reshape(-1).tolist())
        assert len(seen) == 4 and set(torch.nonzero(~toy.unseen[i]).reshape(-1).tolist()) == seen
    assert T3.make_toy(cfg).pairs.tolist() == toy.pairs.tolist()  # seeded (2·pairs ≤ R already gives pairs ≤ R // 2 per side)


def test_late_phase_by_hand() -> None:
    toy = T3.make_toy(T3.ToyConfig(n_prompts=1, n_responses=4, hidden=8, pairs_per_prompt=1, ref_steps=0, seed=0))
    toy.pairs = torch.tensor([[0, 0, 1]])
    toy.unseen = torch.tensor([[False, False, True, True]])
    rise_fall = [[0.3, 0.3, 0.2, 0.2], [0.6, 0.1, 0.15, 0.15], [0.5, 0.0, 0.25, 0.25], [0.2, 0.0, 0.4, 0.4]]
    r = T3.late_phase({"probs": np.array(rise_fall)[:, None, :]}, toy, window=0.34, tol=0.01)
    assert r["both_fell"] and not r["plateau"] and r["late"] and r["chosen_peak_step"] == 1
    assert r["max_move"] == pytest.approx(0.3)  # last window w = 1 step: π(y+) 0.5 → 0.2
    still = [[0.3, 0.3, 0.2, 0.2], [0.6, 0.1, 0.15, 0.15], [0.8, 0.0, 0.1, 0.1], [0.805, 0.0, 0.0975, 0.0975]]
    r = T3.late_phase({"probs": np.array(still)[:, None, :]}, toy, window=0.34, tol=0.01)
    assert not r["both_fell"] and r["plateau"] and r["late"]
    rising = [[0.3, 0.3, 0.2, 0.2], [0.5, 0.1, 0.2, 0.2], [0.7, 0.0, 0.15, 0.15], [0.9, 0.0, 0.05, 0.05]]
    assert not T3.late_phase({"probs": np.array(rising)[:, None, :]}, toy, window=0.34, tol=0.01)["late"]


def test_toy_replicates_methods_subset() -> None:
    cfg = T3.ToyConfig(n_prompts=2, n_responses=6, hidden=8, pairs_per_prompt=1, ref_steps=20)
    out = T3.toy_replicates(cfg, [0], beta=0.1, steps=10, lr=1e-2, loss_target=0.6, beta_minus=0.05, sft_weight=0.1, methods=("dpo",))
    assert list(out["runs"]) == ["dpo"] and len(out["reads"]["dpo"]) == 1
    full = T3.toy_replicates(cfg, [0], beta=0.1, steps=10, lr=1e-2, loss_target=0.6, beta_minus=0.05, sft_weight=0.1)
    np.testing.assert_array_equal(out["runs"]["dpo"][0]["probs"], full["runs"]["dpo"][0]["probs"])
    with pytest.raises(ValueError, match="dpo"):
        T3.toy_replicates(cfg, [0], beta=0.1, steps=10, lr=1e-2, loss_target=0.6, beta_minus=0.05, sft_weight=0.1, methods=("flex_dpo",))
