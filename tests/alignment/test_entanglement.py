"""Per-pair gradient tools of `alignment.entanglement` (Yuan et al. 2024, gradient entanglement)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lossbook.alignment import entanglement as E
from lossbook.alignment.losses import dpo_loss, sequence_logps
from lossbook.alignment.world import SyntheticWorld, WorldConfig, multi_token_preference_data
from lossbook.models.gpt import GPT, GPTConfig
from lossbook.optim import make_optimizer


@pytest.fixture(scope="module")
def setup() -> tuple[GPT, object, list[dict]]:
    torch.manual_seed(0)
    w = SyntheticWorld(WorldConfig(seed=0))
    model = GPT(GPTConfig(vocab_size=w.vocab_size, block_size=w.max_len(), n_layer=1, n_head=2, d_model=16)).double().eval()
    with torch.no_grad():  # larger weights than the N(0, 0.02) init, so the pairs' gradients differ visibly
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pairs = w.multi_token_pairs(16, seed=3)
    return model, multi_token_preference_data(w, pairs), pairs


def _loop_grads(model: GPT, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    rows = []
    for b in range(ids.shape[0]):
        n = int((labels[b] != -100).nonzero().max()) + 1  # unpadded: the sequence alone, cut after its last label
        lp = sequence_logps(model(ids[b : b + 1, :n]), labels[b : b + 1, :n])[0]
        gs = torch.autograd.grad(lp, [p for p in model.parameters()])
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(rows)


def test_per_sample_grads_match_a_loop_of_autograd(setup) -> None:
    model, data, _ = setup
    lp, g = E.per_sample_logp_grads(model, data.chosen_ids, data.chosen_labels)
    ref = _loop_grads(model, data.chosen_ids, data.chosen_labels)
    assert g.shape == ref.shape == (len(data), sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(g, ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(lp, sequence_logps(model(data.chosen_ids), data.chosen_labels))
    assert (g.norm(dim=1) > 0).all()


def test_inner_products_match_explicit_flattening(setup) -> None:
    model, data, _ = setup
    tab = E.entanglement_table(model, data, dpo_loss, [1e-4], chunk=5, beta=0.1)  # chunk 5 does not divide 16
    gw = _loop_grads(model, data.chosen_ids, data.chosen_labels)
    gl = _loop_grads(model, data.rejected_ids, data.rejected_labels)
    np.testing.assert_allclose(tab["ww"], (gw * gw).sum(1).numpy(), rtol=1e-9)
    np.testing.assert_allclose(tab["ll"], (gl * gl).sum(1).numpy(), rtol=1e-9)
    np.testing.assert_allclose(tab["wl"], (gw * gl).sum(1).numpy(), rtol=1e-9)
    np.testing.assert_allclose(tab["cos"], torch.nn.functional.cosine_similarity(gw, gl).numpy(), rtol=1e-9)
    # identical responses (answer_synonym swaps a token, so never identical) give cos < 1 here; a pair with itself gives 1
    same = E.entanglement_table(model, data.subset([0]).__class__(data.chosen_ids[:1], data.chosen_labels[:1], data.chosen_ids[:1], data.chosen_labels[:1]), dpo_loss, [1e-4], beta=0.1)
    np.testing.assert_allclose(same["cos"], [1.0], rtol=1e-12)
    np.testing.assert_allclose(same["meas_w"][1e-4], [0.0], atol=1e-12)  # ∇ℓ = c(∇w − ∇l) = 0: nothing moves


def test_dpo_slopes_at_the_reference_are_minus_and_plus_beta_over_two() -> None:
    lw, ll = torch.tensor([-3.0, -1.0], dtype=torch.float64), torch.tensor([-2.0, -5.0], dtype=torch.float64)
    sw, sl = E.loss_slopes(dpo_loss, lw, ll, lw, ll, beta=0.4)
    torch.testing.assert_close(sw, torch.full((2,), -0.2, dtype=torch.float64))
    torch.testing.assert_close(sl, torch.full((2,), 0.2, dtype=torch.float64))


def test_first_order_prediction_converges_as_lr_goes_to_zero(setup) -> None:
    model, data, _ = setup
    lrs = [1e-1, 1e-2, 1e-3]  # below ~1e-4 float32 log-softmax rounding (sequence_logps) sets a floor
    tab = E.entanglement_table(model, data, dpo_loss, lrs, beta=0.1)
    errs = [np.median(E.first_order_error(tab["pred_w"][lr], tab["meas_w"][lr])) for lr in lrs]
    errs_l = [np.median(E.first_order_error(tab["pred_l"][lr], tab["meas_l"][lr])) for lr in lrs]
    # the error of a first-order expansion is O(lr): 10x smaller lr -> ~10x smaller relative error
    for e in (errs, errs_l):
        assert e[2] < 1e-2
        assert e[1] < e[0] / 5 and e[2] < e[1] / 5
    agree = E.sign_agreement(tab["pred_w"][1e-3], tab["meas_w"][1e-3]) & E.sign_agreement(tab["pred_l"][1e-3], tab["meas_l"][1e-3])
    assert agree.all()


def test_measured_change_is_an_optimizer_sgd_step_on_the_pair(setup) -> None:
    model, data, _ = setup
    lr, j = 3e-3, 4
    tab = E.entanglement_table(model, data, dpo_loss, [lr], beta=0.1)
    m = copy.deepcopy(model)
    pair = data.subset([j])
    with torch.no_grad():
        ref_w = sequence_logps(model(pair.chosen_ids), pair.chosen_labels)
        ref_l = sequence_logps(model(pair.rejected_ids), pair.rejected_labels)
    opt = make_optimizer(m, "sgd", lr)
    loss = dpo_loss(sequence_logps(m(pair.chosen_ids), pair.chosen_labels), sequence_logps(m(pair.rejected_ids), pair.rejected_labels), ref_w, ref_l, beta=0.1).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        new_w = sequence_logps(m(pair.chosen_ids), pair.chosen_labels)
        new_l = sequence_logps(m(pair.rejected_ids), pair.rejected_labels)
    np.testing.assert_allclose(tab["meas_w"][lr][j], float(new_w - ref_w), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(tab["meas_l"][lr][j], float(new_l - ref_l), rtol=1e-8, atol=1e-12)


def test_condition_flags_and_first_order_formula() -> None:
    ww, wl, ll = np.array([1.0, 4.0, 1.0]), np.array([2.0, 1.0, 0.5]), np.array([3.0, 0.5, 4.0])
    f = E.condition_flags(ww, wl, ll)
    assert f["chosen_falls"].tolist() == [True, False, False]
    assert f["rejected_rises"].tolist() == [False, True, False]
    assert f["entangled"].tolist() == [True, True, False]
    pw, pl = E.first_order_changes(torch.tensor(ww), torch.tensor(wl), torch.tensor(ll), torch.tensor(-0.5), torch.tensor(0.5), 0.1)
    np.testing.assert_allclose(pw.numpy(), 0.05 * (ww - wl))  # η c (‖∇w‖² − ⟨∇w,∇l⟩)
    np.testing.assert_allclose(pl.numpy(), 0.05 * (wl - ll))  # η c (⟨∇w,∇l⟩ − ‖∇l‖²)
    assert (np.sign(pw.numpy()) < 0).tolist() == f["chosen_falls"].tolist()
    assert (np.sign(pl.numpy()) > 0).tolist() == f["rejected_rises"].tolist()


def test_world_and_type_summaries(setup) -> None:
    model, data, pairs = setup
    tab = E.entanglement_table(model, data, dpo_loss, [1e-3], beta=0.1)
    types = [p["type"] for p in pairs]
    s = E.world_entanglement(tab, types, 1e-3, ["one_synonym"], ["random"])
    k1, k2 = np.array(types) == "one_synonym", np.array(types) == "random"
    assert s["cos_gap"] == pytest.approx(tab["cos"][k1].mean() - tab["cos"][k2].mean())
    assert s["falls_gap"] == pytest.approx((tab["meas_w"][1e-3][k1] < 0).mean() - (tab["meas_w"][1e-3][k2] < 0).mean())
    ts = E.type_summary(tab, types, 1e-3)
    assert ts["pairs"].sum() == len(pairs) and set(ts.index) == set(types)


def test_training_trace_records_the_probe_before_steps_and_at_the_end(setup) -> None:
    from lossbook.alignment.preference import PreferenceConfig, clone_policy, evaluate_logps

    model, data, _ = setup
    policy, ref = clone_policy(model), clone_policy(model)
    probe = data.subset(range(6))
    before = evaluate_logps(policy, probe)
    cfg = PreferenceConfig(loss="dpo", beta=0.1, lr=1e-3, optimizer="rmsprop", batch_size=4, epochs=2, seed=0)  # 8 steps
    tr = E.training_trace(policy, ref, data, cfg, probe, every=3)
    assert tr["step"].tolist() == [0, 3, 6, 8] and tr["cos"].shape == (4, 6) and tr["loss"].shape == (8,)
    assert tr["chosen"][0] == pytest.approx(float(before["chosen_logps"].mean()))
    after = evaluate_logps(policy, probe)
    assert tr["rejected"][-1] == pytest.approx(float(after["rejected_logps"].mean()))
    assert tr["rejected"][-1] < tr["rejected"][0]  # DPO pushed the rejected side down
    assert E.synchronized_share([0.0, 1.0, 0.5, 0.7], [0.0, 2.0, 1.0, 0.1]) == pytest.approx(2 / 3)
