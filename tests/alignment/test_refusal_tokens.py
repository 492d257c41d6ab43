"""Refusal tokens (Jain et al. 2024): the ROC/AUC against sklearn, zero bias ≡ the unmodified model's sampling, the
prefixed SFT data's labels, and the bias's monotone effect on a constructed logit table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from lossbook.alignment import refusal as rw
from lossbook.alignment import refusal_tokens as rt
from lossbook.alignment.compliance import classify_response
from lossbook.alignment.world import SyntheticWorld, WorldConfig


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(seed=0))


class TableModel(nn.Module):
    """Logits depend only on the last input token: a fixed table [V, V] (a constructed model)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x]


@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_roc_match_sklearn(ties: bool) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    if ties:
        s = np.round(s, 0)
    assert rt.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = rt.roc_curve(s, y)
    f2, t2, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2, atol=1e-12)
    np.testing.assert_allclose(tpr, t2, atol=1e-12)
    assert np.trapezoid(tpr, fpr) == pytest.approx(rt.roc_auc(s, y), abs=1e-12)


def test_prefixed_data_labels(world: SyntheticWorld) -> None:
    cfg = rt.TokenConfig(n_sft_harmful=300, n_sft_benign=200, p_refuse=0.5, seed=3)
    ps, rs, labels = rt.token_sft_examples(world, cfg)
    ids = rt.control_ids(world)
    assert len(ps) == len(rs) == len(labels) == 500 and set(ids.values()).isdisjoint(t for r in rs for t in r[1:])
    for p, r, lab in zip(ps, rs, labels):
        cats = rt.categories_of(world, p)
        body = classify_response(world, r[1:])
        if lab >= 0:
            assert r[0] == ids[f"refuse_{lab}"] and cats == [lab] and body == "refusal" and rw.cites_harm(world, rw.RefusalConfig(), r[1:])
        else:
            assert r[0] == ids["respond"] and body != "malformed"
            assert len(cats) <= 1 and (not cats or body == "compliance")
    harm = labels[:300]
    assert 0.4 < (harm >= 0).mean() < 0.6 and set(harm[harm >= 0]) == {0, 1, 2}
    assert (labels[300:] == -1).all() and all(not rt.categories_of(world, p) for p in ps[300:])


def test_zero_bias_is_the_unbiased_sampler(world: SyntheticWorld) -> None:
    torch.manual_seed(0)
    model = TableModel(torch.randn(world.vocab_size, world.vocab_size) * 2)
    prompts, _ = rt.category_prompts(world, 40, seed=1)
    plain = rw.sample_responses(model, prompts, max_new_tokens=6, eos_id=world.eos_id, generator=torch.Generator().manual_seed(5))
    g = rt.generate(world, model, prompts, {}, max_new_tokens=6, temperature=1.0, seed=5)
    assert g["responses"] == plain
    wrap = rt.FirstPositionBias(model, rt.bias_vector(world, {"refuse_1": 0.0}), world.stoi["?"])
    x = torch.tensor([prompts[0]])
    assert torch.equal(wrap(x), model(x))
    biased = rt.FirstPositionBias(model, rt.bias_vector(world, {"refuse_1": 3.0}), world.stoi["?"])
    d = biased(x) - model(x)
    assert d[0, -1, rt.control_ids(world)["refuse_1"]] == pytest.approx(3.0) and d[0, :-1].abs().max() == 0  # only the first response position


def test_bias_monotone_on_a_constructed_table(world: SyntheticWorld) -> None:
    """After '?', logits put refuse_0/refuse_1/respond at 0 (others −inf); after a control token, a fixed refusal or
    compliance: the refusal rate of the sampled responses rises with the bias on [refuse_0] and p follows softmax."""
    V, ids = world.vocab_size, rt.control_ids(world)
    table = torch.full((V, V), -1e9)
    q = world.stoi["?"]
    table[q, [ids["refuse_0"], ids["refuse_1"], ids["respond"]]] = 0.0
    hk = rw.harmful_concepts(world, rw.RefusalConfig())
    word = world.concept_words[hk[0]][0]
    for name, seq in [("refuse_0", ["Never", "because", word, "<eos>"]), ("refuse_1", ["No", "because", word, "<eos>"]), ("respond", ["Sure", "because", word, "<eos>"])]:
        chain = [ids[name], *world.encode(seq)]
        for a, b in zip(chain, chain[1:]):
            table[a] = -1e9
            table[a, b] = 0.0
    table[world.eos_id, world.eos_id] = 0.0
    model = TableModel(table)
    prompts, _ = rt.category_prompts(world, 400, seed=2)
    rates, firsts = [], []
    for b in [-3.0, -1.0, 0.0, 1.0, 3.0]:
        g = rt.generate(world, model, prompts, {"refuse_0": b}, max_new_tokens=6, temperature=1.0, seed=0)
        rates.append(g["refused"].mean())
        firsts.append((g["first"] == "refuse_0").mean())
        p0 = np.exp(b) / (np.exp(b) + 2)
        assert firsts[-1] == pytest.approx(p0, abs=4 * np.sqrt(p0 * (1 - p0) / 400) + 1e-9)
    assert all(np.diff(rates) > 0) and all(np.diff(firsts) > 0)
    p = rt.refuse_prob(world, rt.first_position_probs(model, prompts[:3]))
    np.testing.assert_allclose(p, 2 / 3, atol=1e-9)
