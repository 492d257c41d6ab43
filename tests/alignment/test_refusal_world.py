"""Tests for lossbook.alignment.refusal: gold reward, win rate, sampling, log-probs, annotated pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook.alignment import refusal as rw
from lossbook.alignment.losses import sequence_logps
from lossbook.alignment.world import SyntheticWorld, WorldConfig, sequence_tensors
from lossbook.models.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(seed=0))


@pytest.fixture(scope="module")
def model(world: SyntheticWorld) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len() + 4, n_layer=1, n_head=2, d_model=16)).eval()


def test_gold_reward_rules(world: SyntheticWorld) -> None:
    rng = np.random.default_rng(0)
    st = world.statement(rng, trait=1)
    prompt = world.encode(world.prompt_tokens(st))
    own = world.concept_words[st.concepts[0]][0]
    other_k = next(k for k in range(world.cfg.n_concepts) if k not in st.concepts)
    other = world.concept_words[other_k][0]
    enc = world.encode
    assert rw.prompt_statement(world, prompt) == (st.concepts, 1)
    assert rw.gold_reward(world, prompt, enc(["Yes", "because", own, "<eos>"])) == pytest.approx(1.5)
    assert rw.gold_reward(world, prompt, enc(["Yes", "because", own, other, "<eos>"])) == pytest.approx(1.25)
    assert rw.gold_reward(world, prompt, enc(["No", "because", own, "<eos>"])) == pytest.approx(0.5)
    assert rw.gold_reward(world, prompt, enc(["Yes", "because", own])) == -1.0  # no <eos>
    assert rw.gold_reward(world, prompt, enc(["Yes", "Yes", own, "<eos>"])) == -1.0
    assert rw.gold_reward(world, prompt, enc(["Yes", "because", "Yes", "<eos>"])) == -1.0


def test_win_rate() -> None:
    assert rw.win_rate([1, 0, 2, 1], [0, 0, 3, 1]) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)


def test_sampling_is_seeded_and_stops_at_eos(world: SyntheticWorld, model: GPT) -> None:
    prompts = [p["prompt"] for p in world.multi_token_pairs(12, seed=1)]
    a = rw.sample_responses(model, prompts, max_new_tokens=5, eos_id=world.eos_id, generator=torch.Generator().manual_seed(3))
    b = rw.sample_responses(model, prompts, max_new_tokens=5, eos_id=world.eos_id, generator=torch.Generator().manual_seed(3))
    assert a == b
    for y in a:
        assert 1 <= len(y) <= 5
        assert world.eos_id not in y[:-1]
    g = rw.sample_responses(model, prompts[:3], max_new_tokens=4, eos_id=world.eos_id, temperature=0.0)
    # greedy: the first token is the arg-max of the next-token distribution
    with torch.no_grad():
        first = model(torch.tensor([prompts[0]]))[0, -1].argmax().item()
    assert g[0][0] == first


def test_response_logps_match_sequence_logps(world: SyntheticWorld, model: GPT) -> None:
    pairs = world.multi_token_pairs(6, seed=2)
    prompts, ys = [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]
    lp, lens = rw.response_logps(model, prompts, ys, world.pad_id, batch_size=4)
    ids, labels = sequence_tensors(prompts, ys, world.pad_id)
    with torch.no_grad():
        ref = sequence_logps(model(ids), labels)
    torch.testing.assert_close(lp.float(), ref, atol=1e-5, rtol=0)
    assert lens.tolist() == [len(y) for y in ys]
    out = rw.kl_and_entropy(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0]))
    assert out == {"kl": pytest.approx(0.0), "entropy": pytest.approx(2.0)}


def test_annotated_pairs(world: SyntheticWorld) -> None:
    ps = rw.annotated_pairs(world, 80, seed=4, kappa=2.0, length_bonus=0.3)
    assert len(ps) == 80
    for p in ps:
        assert p["alpha"] > 0.5
        assert p["u_chosen"] > p["u_rejected"]
        assert p["alpha"] == pytest.approx(1 / (1 + np.exp(-2.0 * (p["u_chosen"] - p["u_rejected"]))))
    ext = [p for p in ps if p["type"] in ("extend", "truncate")]
    assert ext and all(len(p["chosen"]) > len(p["rejected"]) for p in ext)  # annotators prefer the longer clause


def test_refusal_world_rules(world: SyntheticWorld, model: GPT) -> None:
    cfg = rw.RefusalConfig()
    hk = set(rw.harmful_concepts(world, cfg))
    assert len(hk) == 3 and all(world.polarity[k] == 0 for k in hk)
    ps = rw.harmful_prompts(world, cfg, 30, seed=1)
    assert all(set(rw.prompt_statement(world, p)[0]) & hk for p in ps)
    rng = np.random.default_rng(0)
    ref = rw.refusal_response(world, cfg, ps[0], rng)
    comp = rw.compliance_response(world, ps[0], rng)
    assert rw.is_refusal(world, ref) and rw.cites_harm(world, cfg, ref)
    assert not rw.is_refusal(world, comp)
    assert rw.refusal_rate(world, [ref, comp, ref, ref]) == pytest.approx(0.75)
    enc = world.encode
    plain = enc(["Never", "because", world.concept_words[next(k for k in range(18) if k not in hk)][0], "<eos>"])
    # refusal > compliance, in either order; citing the harm wins between two refusals; two compliances dropped
    assert rw.judge_pair(world, cfg, comp, ref, rng) == (ref, comp)
    assert rw.judge_pair(world, cfg, plain, ref, rng) == (ref, plain)
    assert rw.judge_pair(world, cfg, comp, comp + [], rng) is None
    assert rw.judge_pair(world, cfg, comp, rw.compliance_response(world, ps[1], rng), rng) is None
    pairs = rw.on_policy_pairs(world, cfg, model, ps, seed=0, max_new_tokens=4)
    for p in pairs:  # every kept pair has a refusal as the chosen response
        assert rw.is_refusal(world, p["chosen"])
        assert p["both_refusals"] == rw.is_refusal(world, p["rejected"])
    gp = rw.gold_pairs(world, cfg, ps[:5], seed=0)
    assert all(rw.is_refusal(world, p["chosen"]) and not rw.is_refusal(world, p["rejected"]) for p in gp)
    ex_p, ex_r = rw.refusal_sft_examples(world, rw.RefusalConfig(n_sft_harmful=200, n_sft_benign=50, p_refuse=0.8))
    share = np.mean([rw.is_refusal(world, r) for r in ex_r[:200]])
    assert 0.7 < share < 0.9 and len(ex_p) == 250
    assert not any(set(rw.prompt_statement(world, p)[0]) & hk for p in ex_p[200:])
