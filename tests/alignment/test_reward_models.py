"""Reward models: BT heads, ensembles, the persona gold, the LSC transform (lossbook.alignment.reward_models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossbook.alignment import reward_models as rm
from lossbook.alignment.world import SyntheticWorld, WorldConfig
from lossbook.models.gpt import GPT, GPTConfig


def test_bt_loss_closed_form_and_weights():
    r_w, r_l = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    assert rm.bt_loss(r_w, r_l).item() == pytest.approx((math.log1p(math.exp(-1.0)) + math.log(2)) / 2)
    # bootstrap counts weight pairs: a count of 0 drops a pair
    assert rm.bt_loss(r_w, r_l, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_bt_heads_recover_a_planted_linear_reward():
    """Pairs labelled by σ(r*(a) − r*(b)) with r* = w*·φ: the fitted heads rank held-out pairs like r*."""
    g = torch.Generator().manual_seed(0)
    d, N = 8, 3000
    w_star = torch.randn(d, generator=g)
    phi_a, phi_b = torch.randn(N, d, generator=g), torch.randn(N, d, generator=g)
    p = torch.sigmoid(2.0 * (phi_a - phi_b) @ w_star)
    a_wins = (torch.rand(N, generator=g) < p).unsqueeze(1)
    fw, fl = torch.where(a_wins, phi_a, phi_b), torch.where(a_wins, phi_b, phi_a)
    H = rm.train_bt_heads(fw.expand(2, -1, -1), fl.expand(2, -1, -1), seeds=[1, 2], steps=300)
    assert len(H.history) == 300 and len(H.history[0]) == 2
    assert all(end < start for start, end in zip(H.history[0], H.history[-1]))
    ta, tb = torch.randn(2000, d, generator=g), torch.randn(2000, d, generator=g)
    truth = ((ta - tb) @ w_star) > 0
    ra, rb = H(ta), H(tb)
    acc = ((ra > rb) == truth).float().mean(-1)
    assert (acc > 0.9).all()
    # different fine-tuning seeds (init + bootstrap) give different heads
    assert not torch.allclose(ra[0], ra[1])


def test_heads_fold_standardisation_into_first_layer():
    """Heads are trained on standardised features but take raw ones: shifting/scaling the inputs at train time must not
    change the training loss path (the standardisation absorbs it)."""
    g = torch.Generator().manual_seed(3)
    fw, fl = torch.randn(1, 200, 5, generator=g), torch.randn(1, 200, 5, generator=g)
    H1 = rm.train_bt_heads(fw, fl, seeds=[0], steps=30)
    H2 = rm.train_bt_heads(3.0 * fw + 7.0, 3.0 * fl + 7.0, seeds=[0], steps=30)
    np.testing.assert_allclose(H1.history, H2.history, rtol=1e-4, atol=1e-5)
    assert torch.allclose(H1(fw[0]), H2(3.0 * fw[0] + 7.0), atol=1e-4)


def test_soft_bt_loss_closed_form_and_hard_label_limit():
    """soft_bt_loss = −[p log σ(d) + (1 − p) log σ(−d)]; with p ∈ {0, 1} it is the hard-label BT loss, and at p = σ(d)
    (calibrated) it is the binary entropy of p, its minimum over d."""
    ra, rb = torch.tensor([[1.0, -0.5, 2.0]]), torch.tensor([[0.0, 0.5, 2.0]])
    p = torch.tensor([0.7, 0.2, 0.5])
    d = (ra - rb)[0]
    expect = -(p * torch.log(torch.sigmoid(d)) + (1 - p) * torch.log(torch.sigmoid(-d))).mean()
    assert rm.soft_bt_loss(ra, rb, p).item() == pytest.approx(expect.item(), rel=1e-6)
    hard = torch.tensor([1.0, 0.0, 1.0])
    w, lo = torch.where(hard.bool(), ra, rb), torch.where(hard.bool(), rb, ra)
    assert rm.soft_bt_loss(ra, rb, hard).item() == pytest.approx(rm.bt_loss(w, lo).item(), rel=1e-6)
    q = torch.sigmoid(d)
    ent = -(q * q.log() + (1 - q) * (1 - q).log()).mean()
    assert rm.soft_bt_loss(ra, rb, q).item() == pytest.approx(ent.item(), rel=1e-6)


def test_heldout_history_is_read_only_and_matches_the_heads():
    """Held-out pairs only record a curve: the fit (training history, heads) is unchanged, and the first recorded value
    is the initial heads' soft BT loss on those pairs."""
    g = torch.Generator().manual_seed(5)
    fw, fl = torch.randn(2, 300, 6, generator=g), torch.randn(2, 300, 6, generator=g)
    ha, hb = torch.randn(2, 50, 6, generator=g), torch.randn(2, 50, 6, generator=g)
    hp = torch.rand(2, 50, generator=g)
    H0 = rm.train_bt_heads(fw, fl, seeds=[0, 1], steps=25)
    H1 = rm.train_bt_heads(fw, fl, seeds=[0, 1], steps=25, heldout=(ha, hb, hp))
    assert H0.heldout_history == [] and len(H1.heldout_history) == 25 and len(H1.heldout_history[0]) == 2
    np.testing.assert_array_equal(H0.history, H1.history)
    assert torch.equal(H0.W1, H1.W1)
    # the first recorded held-out loss is the initial heads' loss: recompute it from an untrained (0-step) fit
    Hi = rm.train_bt_heads(fw, fl, seeds=[0, 1], steps=0)
    np.testing.assert_allclose(H1.heldout_history[0], rm.soft_bt_loss(Hi(ha), Hi(hb), hp).numpy(), rtol=1e-5)


def test_ensembles_and_standardise():
    r = torch.tensor([[1.0, 5.0], [3.0, 2.0], [2.0, 0.0]])
    assert rm.ensemble_reward(r, "mean").tolist() == pytest.approx([2.0, 7 / 3])
    assert rm.ensemble_reward(r, "min").tolist() == [1.0, 0.0]
    assert rm.ensemble_reward(r, "median").tolist() == [2.0, 2.0]
    with pytest.raises(KeyError, match="Valid"):
        rm.ensemble_reward(r, "avg")
    z = rm.standardise(r, r)
    assert z.mean(-1).tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)


def test_pairwise_agreement_and_accuracy():
    r1 = torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0]])
    r2 = torch.tensor([[0.0, 1.0, 1.0], [0.0, 2.0, 1.0]])
    A = rm.pairwise_agreement(r1, r2)
    assert A.diagonal().tolist() == [1.0, 1.0]
    assert A[0, 1].item() == pytest.approx(2 / 3)
    assert rm.pair_accuracy(r1, r2).tolist() == pytest.approx([2 / 3, 1 / 3])


def test_lsc_transform_closed_forms():
    assert rm.lsc_transform(0.0, 0.0).item() == pytest.approx(math.log(0.5))
    assert rm.lsc_transform(30.0, 0.0).item() == pytest.approx(0.0, abs=1e-12)
    assert rm.lsc_transform(-30.0, 0.0).item() == pytest.approx(-30.0, abs=1e-12)
    # shift invariance: u depends on r − r_ref only
    assert rm.lsc_transform(3.0, 1.0).item() == pytest.approx(rm.lsc_transform(2.0, 0.0).item())
    # derivative σ(−(r − r_ref)): diminishing returns
    r = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    rm.lsc_transform(r, torch.zeros(3, dtype=torch.float64)).sum().backward()
    assert r.grad.tolist() == pytest.approx(torch.sigmoid(-r.detach()).tolist())


def test_lsc_sum_is_log_probability_of_and():
    """Σ_i log σ(r_i − ref_i) = log Π_i P(y ≻ ref_i): the AND of independent BT events."""
    ra, rb = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.3])
    refs = [torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])]
    got = rm.combine_rewards([ra, rb], refs)
    want = torch.log(torch.sigmoid(ra.double()) * torch.sigmoid(rb.double() - 1.0))
    assert torch.allclose(got, want)
    assert torch.allclose(rm.combine_rewards([ra, rb], None), (ra + rb).double())


def test_reference_reward_quantile():
    r = torch.arange(11, dtype=torch.float64).unsqueeze(0)
    assert rm.reference_reward(r, 0.5).item() == pytest.approx(5.0)
    assert rm.reference_reward(r, 0.85).item() == pytest.approx(8.5)


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(WorldConfig(seed=0))


def _resp(world, ans, words):
    return world.encode([ans, "because", *words, "<eos>"])


def test_persona_properties_and_gold(world):
    rng = np.random.default_rng(0)
    st = world.statement(rng, trait=1)
    prompt = world.encode(world.prompt_tokens(st))
    on = [world.concept_words[k][0] for k in st.concepts]
    off_concept = next(k for k in range(world.cfg.n_concepts) if k not in st.concepts)
    spec = rm.GoldSpec()
    good = rm.persona_properties(world, prompt, _resp(world, "Yes", on[:2]))
    assert good == {"well_formed": 1.0, "correct": 1.0, "k": 2.0, "on_topic": 2.0, "off_topic": 0.0}
    assert rm.gold_reward(good, spec) == pytest.approx(1.0 + 2 * 0.25)
    # a repeated concept (another synonym) and an off-topic word count as off-topic
    rep = rm.persona_properties(world, prompt, _resp(world, "No", [on[0], world.concept_words[st.concepts[0]][1],
                                                                     world.concept_words[off_concept][0]]))
    assert (rep["correct"], rep["on_topic"], rep["off_topic"]) == (0.0, 1.0, 2.0)
    assert rm.gold_reward(rep, spec) == pytest.approx(0.25 - 1.5)
    bad = rm.persona_properties(world, prompt, world.encode(["Yes", "<eos>"]))
    assert bad["well_formed"] == 0.0 and rm.gold_reward(bad, spec) == spec.malformed
    assert rm.property_golds(good)[2:] == (True, True)
    assert rm.property_golds(rep)[2:] == (False, False)


def test_bt_labels_follow_the_gold():
    rng = np.random.default_rng(0)
    a, b = np.ones(20000), np.zeros(20000)
    assert rm.bt_labels(a, b, 2.0, rng).mean() == pytest.approx(1 / (1 + math.exp(-2.0)), abs=0.01)
    assert rm.bt_labels(a, b, 1e6, rng).all()


def test_response_features_last_token_and_mean(world):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len(), n_layer=1, n_head=2, d_model=16)).eval()
    rng = np.random.default_rng(1)
    prompts = [world.encode(world.prompt_tokens(world.statement(rng))) for _ in range(3)]
    resps = [_resp(world, "Yes", ["c00a"]), _resp(world, "No", ["c01a", "c02b", "c03c"]), _resp(world, "Sure", ["c04a", "c05a"])]
    f = rm.response_features(gpt, prompts, resps, world.pad_id, pool="last+mean")
    assert f.shape == (3, 32)
    for i in range(3):  # padding never changes a row: each alone gives the same features
        seq = torch.tensor([prompts[i] + resps[i]])
        _, h = gpt(seq, return_hidden=True)
        assert torch.allclose(f[i, :16], h[0, -1], atol=1e-5)
        assert torch.allclose(f[i, 16:], h[0, len(prompts[i]):].mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        rm.response_features(gpt, prompts, resps, world.pad_id, pool="max")
