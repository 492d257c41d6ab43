"""The didactic on-policy bandit (`lossbook.alignment.onpolicy`): target, rewards, query budget, pairs, arms."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lossbook.alignment import onpolicy as op
from lossbook.alignment.losses import dpo_loss
from lossbook.models.gpt import GPT, GPTConfig


def _gpt(vocab: int = 5, length: int = 2, seed: int = 0, scale: float = 20.0) -> GPT:
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=vocab, block_size=length + 1, n_layer=1, n_head=2, d_model=8))
    with torch.no_grad():  # larger weights than GPT-2 init so the conditionals differ by context
        for p in m.parameters():
            p.mul_(scale)
    return m.eval()


def test_squashed_cauchy_histogram_matches_monte_carlo() -> None:
    p = op.squashed_cauchy_histogram(100)
    assert p.shape == (100,) and math.isclose(float(p.sum()), 1.0, abs_tol=1e-6) and (p > 0).all()
    assert 10 <= int(p[1:-1].argmax()) + 1 <= 20  # interior mode near token 15 (the paper's Fig. 3)
    g = torch.Generator().manual_seed(0)
    u = torch.rand(400_000, generator=g, dtype=torch.float64)
    x = torch.tanh(-0.7 + 0.4 * torch.tan(math.pi * (u - 0.5)))  # Cauchy by inverse CDF, squashed
    hist = torch.histc(x.float(), bins=100, min=-1.0, max=1.0) / x.numel()
    assert float((hist - p).abs().max()) < 3e-3


def test_gold_reward_closed_form() -> None:
    ys = torch.tensor([[70, 70, 70], [60, 80, 70], [0, 0, 0]])
    r = op.gold_reward(ys, 70.0)
    torch.testing.assert_close(r, torch.tensor([1.0, (2 * math.exp(-1) + 1) / 3, math.exp(-49)]))
    assert set(op.REWARD_CENTRES.values()) == {70.0, 20.0}


def test_query_budget_refuses_beyond_budget_and_charges_nothing() -> None:
    b = op.QueryBudget(10)
    b.take("a", 6)
    with pytest.raises(op.BudgetExhausted):
        b.take("a", 5)
    assert b.used("a") == 6 and b.remaining("a") == 4
    b.take("a", 4)
    with pytest.raises(op.BudgetExhausted):
        b.take("a", 1)
    b.take("b", 10)  # every arm has its own equal allowance on the same counter
    assert b.used("b") == 10 and b.remaining("c") == 10
    with pytest.raises(ValueError):
        op.QueryBudget(-1)


def test_query_rewards_charges_one_query_per_response() -> None:
    b = op.QueryBudget(12)
    ys = torch.full((2, 3, 4), 70)
    r = op.query_rewards(b, "arm", ys, 70.0)
    assert r.shape == (2, 3) and b.used("arm") == 6
    with pytest.raises(op.BudgetExhausted):
        op.query_rewards(b, "arm", torch.zeros(7, 4, dtype=torch.long), 70.0)


def test_sequence_logprobs_are_a_distribution() -> None:
    """Σ over all V^L responses of π(y|x) = 1 (teacher-forced log-probs agree with the autoregressive factorisation)."""
    m, vocab, length = _gpt(), 5, 2
    ys = torch.tensor(list(itertools.product(range(vocab), repeat=length)))
    for x in (0, 3):
        lp = op.response_logps(m, torch.full((len(ys),), x), ys)
        assert math.isclose(float(lp.detach().exp().sum()), 1.0, rel_tol=1e-5)


def test_sampler_follows_the_model() -> None:
    m, vocab, length = _gpt(), 5, 2
    ys_all = torch.tensor(list(itertools.product(range(vocab), repeat=length)))
    with torch.no_grad():
        exact = op.response_logps(m, torch.zeros(len(ys_all), dtype=torch.long), ys_all).exp()
    ys = op.sample_responses(m, torch.zeros(20_000, dtype=torch.long), length, torch.Generator().manual_seed(1))
    freq = torch.bincount(ys[:, 0] * vocab + ys[:, 1], minlength=vocab**length).float() / len(ys)
    assert float((freq - exact).abs().max()) < 0.015


def test_expected_reward_and_kl_exact_for_one_token_responses() -> None:
    m, vocab = _gpt(vocab=100, length=1, scale=3.0), 100
    x = torch.arange(8)
    marg = op.policy_marginals(m, x, 1, torch.Generator().manual_seed(0))
    logp = torch.log_softmax(m(x.view(-1, 1))[:, -1].detach(), -1)
    probs = logp.exp()  # L = 1: the marginal is π(·|x) exactly
    r = op.token_rewards(vocab, 70.0)
    assert math.isclose(op.expected_reward(marg, 70.0), float((probs @ r).mean()), rel_tol=1e-5)
    t = op.squashed_cauchy_histogram(vocab)
    kl = float((t * (t.log() - logp)).sum(-1).mean())
    assert math.isclose(op.kl_to_target(marg, t), kl, rel_tol=1e-5)
    assert op.kl_to_target(t.expand(1, 1, vocab), t) == pytest.approx(0.0, abs=1e-6)


def test_ranked_pairs_all_pairs_winner_first_ties_dropped() -> None:
    rewards = torch.tensor([[0.1, 0.5, 0.3], [0.2, 0.2, 0.9]])
    pp, win, lose = op.ranked_pairs(rewards)
    assert len(pp) == 3 + 2  # 3 pairs per prompt, one tie dropped in prompt 1
    assert (rewards[pp, win] > rewards[pp, lose]).all()
    assert set(zip(pp.tolist(), win.tolist(), lose.tolist())) == {(0, 1, 0), (0, 2, 0), (0, 1, 2), (1, 2, 0), (1, 2, 1)}


def _batch() -> tuple[torch.Tensor, op.RoundBatch]:
    g = torch.Generator().manual_seed(0)
    logps = torch.randn(2, 4, generator=g, requires_grad=True)
    batch = op.RoundBatch(torch.tensor([0, 1]), torch.zeros(2, 4, 3, dtype=torch.long), torch.rand(2, 4, generator=g), torch.randn(2, 4, generator=g))
    return logps, batch


def test_arm_losses_match_hand_computations() -> None:
    logps, b = _batch()
    cfg = op.ArmConfig(dpo_beta=0.3)
    best = b.rewards.argmax(-1)
    torch.testing.assert_close(op.sft_best_loss(logps, b, cfg), -(logps[0, best[0]] + logps[1, best[1]]) / 2 / 3)
    # Pref-FT: a sample of rank k (0 = worst) is the chosen response of k pairs
    ranks = b.rewards.argsort(-1).argsort(-1).float()
    torch.testing.assert_close(op.sft_chosen_loss(logps, b, cfg), -(ranks * logps).sum() / ranks.sum() / 3)
    pp, w, lo = op.ranked_pairs(b.rewards)
    want = dpo_loss(logps[pp, w], logps[pp, lo], b.ref_logps[pp, w], b.ref_logps[pp, lo], beta=0.3).mean()
    torch.testing.assert_close(op.pair_loss("dpo")(logps, b, cfg), want)
    assert torch.isfinite(op.pair_loss("ipo")(logps, b, cfg))


def test_rloo_arm_gradient_pushes_up_above_average_samples() -> None:
    logps, b = _batch()
    b.ref_logps = logps.detach().clone()  # zero KL: the advantage is the leave-one-out reward difference
    op.rloo_arm_loss(logps, b, op.ArmConfig()).backward()
    above = b.rewards > b.rewards.mean(-1, keepdim=True)
    assert (logps.grad[above] < 0).all() and (logps.grad[~above] > 0).all()


def test_registry_lookup() -> None:
    assert op.get_arm("rloo").on_policy and not op.get_arm("pref_ft").on_policy
    assert {a for a, arm in op.ARMS.items() if not arm.negative_gradient} == {"pref_ft", "filtered_bc", "raft"}
    with pytest.raises(KeyError, match="rlo"):
        op.get_arm("rlooo")


def test_reference_fit_and_run_arm_spend_exactly_the_budget(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path))
    cfg = op.RefConfig(response_len=3, vocab_size=100, d_model=16, n_sequences=512, steps=60, batch_size=64, lr=1e-2, seed=0)
    ref = op.fit_reference(cfg)
    g = torch.Generator().manual_seed(0)
    prompts = op.random_prompts(64, 100, g)
    t = op.squashed_cauchy_histogram(100)
    fresh = GPT(cfg.gpt_config()).eval()
    assert op.kl_to_target(op.policy_marginals(ref, prompts, 3, g), t) < 0.5 * op.kl_to_target(op.policy_marginals(fresh, prompts, 3, g), t)
    assert (tmp_path / "onpolicy_ref").is_dir()
    arm_cfg = op.ArmConfig(n_prompts=2, n_samples=3, inner_steps=2)
    budget = op.QueryBudget(20)  # 3 rounds of 6 queries; the 4th cannot be paid for
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    for name in ("raft", "dpo_offline"):
        out = op.run_arm(name, ref, budget, 70.0, arm_cfg, 0, prompts[:8])
        assert budget.used(name) == 18 and out["queries"] == [0, 6, 12, 18]
        assert len(out["reward"]) == 4 and len(out["loss"]) == 6 and out["final_hist"].shape == (100,)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in before.items())  # π_ref is never trained


def test_paper_lrs_name_arms_and_drive_the_arms_optimizer(tmp_path, monkeypatch) -> None:
    assert set(op.PAPER_LR) <= set(op.ARMS) and all(v > 0 for v in op.PAPER_LR.values())
    assert op.PAPER_LR["raft"] < op.PAPER_LR["filtered_bc"] < op.PAPER_LR["ipo_online"]  # 3e-5 < 1e-4 < 1e-2 (scripts)
    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path))
    ref = op.fit_reference(op.RefConfig(response_len=3, vocab_size=100, d_model=16, n_sequences=256, steps=20, batch_size=64, lr=1e-2, seed=1))
    prompts = op.random_prompts(32, 100, torch.Generator().manual_seed(1))
    moved = {}
    for lr in (1e-9, 1e-2):  # the paper's offline protocol: one round of queries, many steps on it
        budget = op.QueryBudget(12)
        out = op.run_arm("filtered_bc", ref, budget, 70.0, op.ArmConfig(n_prompts=4, n_samples=3, inner_steps=15, lr=lr), 0, prompts)
        assert out["queries"] == [0, 12] and len(out["loss"]) == 15
        moved[lr] = out["loss"][0] - out["loss"][-1]  # the same batch all 15 steps: the fall of its loss
    assert abs(moved[1e-9]) < 1e-5 and moved[1e-2] > 0.1  # ArmConfig.lr is the rate the arm's Adam uses
