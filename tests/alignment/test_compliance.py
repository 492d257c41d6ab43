"""Tests for lossbook.alignment.compliance: golden response classes, invariances, first-token masses, DPO loss and
training to DPO-loss targets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lossbook.alignment import compliance as cp
from lossbook.alignment import progress
from lossbook.alignment import refusal as rw
from lossbook.alignment.preference import PreferenceConfig, clone_policy
from lossbook.alignment.world import SyntheticWorld, WorldConfig, multi_token_preference_data
from lossbook.models.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(seed=0))


@pytest.fixture(scope="module")
def model(world: SyntheticWorld) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len() + 4, n_layer=1, n_head=2, d_model=16)).eval()


GOLDEN = [  # (tokens, class, first token is a refusal token)
    ("Never because c12a <eos>", "refusal", True),
    ("No because c12a c03b <eos>", "refusal", True),
    ("Sure because c01a c02b <eos>", "compliance", False),
    ("Absolutely because c01a c02b c05c <eos>", "compliance", False),
    ("Maybe because c01a <eos>", "hedge", False),
    ("Perhaps because c07b c12c <eos>", "hedge", False),
    ("you you you <eos>", "malformed", False),
    ("Never you you <eos>", "malformed", True),  # the old first-token metric calls this a refusal
    ("Sure because c01a c01b <eos>", "malformed", False),  # one concept twice
    ("Sure because <eos>", "malformed", False),  # empty clause
    ("Sure because c01a c02a c03a c04a <eos>", "malformed", False),  # clause longer than clause_max = 3
    ("Sure because c01a c02a", "malformed", False),  # no <eos> (cut at max_new_tokens)
    ("Sure because Yes <eos>", "malformed", False),  # an answer token inside the clause
    ("because Sure c01a <eos>", "malformed", False),
    ("<pad> <pad> <pad> <eos>", "malformed", False),
    ("Never because c12a <eos> <eos>", "malformed", True),
]


@pytest.mark.parametrize(("text", "kind", "first_refusal"), GOLDEN)
def test_golden_classes(world: SyntheticWorld, text: str, kind: str, first_refusal: bool) -> None:
    y = world.encode(text.split())
    assert cp.classify_response(world, y) == kind
    assert cp.is_well_formed(world, y) == (kind != "malformed")
    assert rw.is_refusal(world, y) == first_refusal


def test_empty_response_is_malformed(world: SyntheticWorld) -> None:
    assert cp.classify_response(world, []) == "malformed"


def test_class_shares_golden(world: SyntheticWorld) -> None:
    ys = [world.encode(t.split()) for t, _, _ in GOLDEN]
    s = cp.class_shares(world, ys)
    n = len(GOLDEN)
    assert sum(s[k] for k in cp.CLASSES) == pytest.approx(1.0)
    for k in cp.CLASSES:
        assert s[k] == pytest.approx(sum(g[1] == k for g in GOLDEN) / n)
    assert s["first_token_refusal"] == pytest.approx(sum(g[2] for g in GOLDEN) / n)
    assert s["judge_refusal"] == pytest.approx(1 - s["compliance"])
    with pytest.raises(ValueError):
        cp.class_shares(world, [])


def test_generators_are_well_formed_and_classified(world: SyntheticWorld) -> None:
    """Every response the world's own generators write is grammatical; the safety-SFT refusals are refusals and
    its compliances are compliance (the classifier and the task agree on their own data)."""
    cfg = rw.RefusalConfig()
    rng = np.random.default_rng(0)
    ps = rw.harmful_prompts(world, cfg, 60, seed=3)
    assert all(cp.classify_response(world, rw.refusal_response(world, cfg, p, rng)) == "refusal" for p in ps)
    assert all(cp.classify_response(world, rw.compliance_response(world, p, rng)) == "compliance" for p in ps)
    for d in world.pretrain_corpus(200, seed=5):
        cut = d.index(world.stoi["?"]) + 1
        kind = cp.classify_response(world, d[cut:])
        assert kind != "malformed"
        assert kind == ("compliance" if world.itos[d[cut]] in rw.AGREE else "refusal" if world.itos[d[cut]] in rw.REFUSAL_TOKENS else "hedge")


def test_invariances(world: SyntheticWorld) -> None:
    """The class depends on the answer token and the grammar only: synonyms and the order of the clause words do not
    change it, and swapping the answer within its class keeps the class."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        k = int(rng.integers(1, 4))
        concepts = rng.choice(world.cfg.n_concepts, size=k, replace=False)
        words = [world.concept_words[c][int(rng.integers(3))] for c in concepts]
        syn = [world.concept_words[c][int(rng.integers(3))] for c in concepts]
        for ans, kind in [("Yes", "compliance"), ("Certainly", "compliance"), ("No", "refusal"), ("Never", "refusal"), ("Maybe", "hedge")]:
            for clause in (words, syn, words[::-1]):
                assert cp.classify_response(world, world.encode([ans, "because", *clause, "<eos>"])) == kind


def test_first_token_masses_match_softmax(world: SyntheticWorld, model: GPT) -> None:
    prompts = rw.harmful_prompts(world, rw.RefusalConfig(), 5, seed=2) + [world.encode("<bos> Would you say : Ann c01a ?".split())]
    m = cp.first_token_masses(model, world, prompts)
    assert sum(m.values()) == pytest.approx(1.0)
    with torch.no_grad():
        p = torch.stack([torch.softmax(model(torch.tensor([x]))[0, -1].double(), -1) for x in prompts])
    assert m["refusal"] == pytest.approx(float(p[:, [world.stoi["Never"], world.stoi["No"]]].sum(1).mean()), abs=1e-6)
    assert m["compliance"] == pytest.approx(float(p[:, world.agree_ids].sum(1).mean()), abs=1e-6)
    assert m["hedge"] == pytest.approx(float(p[:, [world.stoi["Maybe"], world.stoi["Perhaps"]]].sum(1).mean()), abs=1e-6)


def _pairs(world: SyntheticWorld, n: int = 12) -> list[dict]:
    cfg = rw.RefusalConfig()
    rng = np.random.default_rng(4)
    ps = rw.harmful_prompts(world, cfg, n, seed=7)
    return [{"prompt": p, "chosen": rw.refusal_response(world, cfg, p, rng), "rejected": rw.compliance_response(world, p, rng)} for p in ps]


def test_snapshot_rows_read_a_progress_run(world: SyntheticWorld, model: GPT) -> None:
    """`snapshot_rows` over `progress.train_to_targets`: a reached target is profiled at its t*, an unreachable
    one at the cap; the class shares of every row sum to 1."""
    data = multi_token_preference_data(world, _pairs(world))
    prompts = [p["prompt"] for p in _pairs(world, 4)]
    torch.manual_seed(0)
    run = progress.train_to_targets(clone_policy(model), copy.deepcopy(model), data, PreferenceConfig(loss="dpo", beta=0.1, lr=3e-3, optimizer="rmsprop", steps=60),
                                    [0.66, 0.6], dpo_beta=0.1)
    rows = cp.snapshot_rows(model, run, world, prompts, n_samples=2, max_new_tokens=5, temperature=1.0, seed=0)
    assert [r["reached"] for r in rows] == [True, True] and rows[0]["t_star"] <= rows[1]["t_star"]
    assert all(r["dpo_loss"] <= r["target"] for r in rows)
    short = progress.train_to_targets(clone_policy(model), copy.deepcopy(model), data, PreferenceConfig(loss="dpo", beta=0.1, lr=1e-6, optimizer="rmsprop", steps=4),
                                      [0.1], dpo_beta=0.1)
    rows = cp.snapshot_rows(model, short, world, prompts, n_samples=2, max_new_tokens=5, temperature=1.0, seed=0)
    assert len(rows) == 1 and rows[0]["t_star"] == 4 and not rows[0]["reached"]
    assert all(sum(r[k] for k in cp.CLASSES) == pytest.approx(1.0) for r in rows)
