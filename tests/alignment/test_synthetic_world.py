"""The synthetic persona world: determinism, meaning groups, trait rule, corpus statistics, pair types, tensors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from lossbook.alignment.metrics import edit_distance
from lossbook.alignment.world import (
    AGREE,
    DISAGREE,
    PAIR_TYPES,
    SyntheticWorld,
    WorldConfig,
    lm_tensors,
    multi_token_preference_data,
    sequence_tensors,
    single_token_preference_data,
)


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(seed=3))


def test_vocab_groups_partition(world: SyntheticWorld) -> None:
    groups = world.token_groups()
    ids = [i for g in groups.values() for i in g]
    assert sorted(ids) == list(range(world.vocab_size))
    assert [world.itos[i] for i in groups["agree"]] == list(AGREE)
    assert [world.itos[i] for i in groups["disagree"]] == list(DISAGREE)
    assert world.decode(world.encode(["Yes", "because", "c00a"])) == ["Yes", "because", "c00a"]
    assert world.answer_group("Never") == "disagree" and world.answer_group(world.stoi["Sure"]) == "agree"
    with pytest.raises(ValueError):
        world.answer_group("because")


def test_deterministic_from_seed() -> None:
    a, b, c = (SyntheticWorld(WorldConfig(seed=s)) for s in (1, 1, 2))
    assert a.pretrain_corpus(50) == b.pretrain_corpus(50)
    assert a.pretrain_corpus(50) != c.pretrain_corpus(50)
    assert a.multi_token_pairs(16) == b.multi_token_pairs(16)


def test_trait_is_sign_of_polarity_sum(world: SyntheticWorld) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        st = world.statement(rng)
        s = int(world.polarity[st.concepts].sum())
        assert s != 0 and st.trait == np.sign(s)
        assert all(world.word_concept[w] == k for w, k in zip(st.words, st.concepts))
    st = world.statement(rng, speaker=2, trait=-1)
    assert st.speaker == 2 and st.trait == -1


def test_pretrain_corpus_statistics(world: SyntheticWorld) -> None:
    """Answer group follows the trait up to the noise; tokens inside a group and synonyms are ~uniform."""
    docs = world.pretrain_corpus(3000)
    sep = world.stoi["?"]
    agree_ok, answers, syn = 0, Counter(), Counter()
    for d in docs:
        j = d.index(sep)
        words = world.decode(d[6:j])
        trait = np.sign(world.polarity[[world.word_concept[w] for w in words]].sum())
        ans = d[j + 1]
        answers[world.itos[ans]] += 1
        agree_ok += (ans in world.agree_ids) == (trait > 0)
        syn.update(w[-1] for w in world.decode(d) if w in world.word_concept)
        assert d[0] == world.bos_id and d[-1] == world.eos_id
    assert agree_ok / len(docs) == pytest.approx(1 - world.cfg.pretrain_noise, abs=0.03)
    agree_counts = np.array([answers[a] for a in AGREE], dtype=float)
    assert agree_counts.min() / agree_counts.max() > 0.75  # uniform within the group
    s = np.array(list(syn.values()), dtype=float)
    assert s.min() / s.max() > 0.9  # synonyms interchangeable


def test_sft_answers_follow_speaker_favorite(world: SyntheticWorld) -> None:
    ex = world.sft_examples(2000)
    hits = 0
    for prompt, ans in ex:
        toks = world.decode(prompt)
        spk = world.speakers.index(toks[5])
        trait = np.sign(world.polarity[[world.word_concept[w] for w in toks[6:-1]]].sum())
        fav = world.favorite(spk, int(trait))
        assert world.answer_group(ans) == ("agree" if trait > 0 else "disagree")
        hits += world.itos[ans] == fav
    p = world.cfg.sft_favorite_prob
    assert hits / len(ex) == pytest.approx(p + (1 - p) / 4.5, abs=0.04)


def test_single_token_prompts_have_y_plus_as_sft_answer(world: SyntheticWorld) -> None:
    for yp in ("No", "Sure", "Yes", "Never"):
        for pr in world.single_token_prompts(yp, 5):
            toks = world.decode(pr)
            spk = world.speakers.index(toks[5])
            trait = np.sign(world.polarity[[world.word_concept[w] for w in toks[6:-1]]].sum())
            assert world.favorite(spk, int(trait)) == yp


def test_pair_types(world: SyntheticWorld) -> None:
    pairs = world.multi_token_pairs(len(PAIR_TYPES) * 20)
    assert Counter(p["type"] for p in pairs) == {t: 20 for t in PAIR_TYPES}
    for p in pairs:
        c, r, t = p["chosen"], p["rejected"], p["type"]
        assert c[-1] == world.eos_id and r[-1] == world.eos_id
        same_group = world.answer_group(c[0]) == world.answer_group(r[0])
        if t == "one_synonym":
            assert edit_distance(c, r) == 1 and c[0] == r[0]
            assert [world.word_concept.get(world.itos[i]) for i in c] == [world.word_concept.get(world.itos[i]) for i in r]
        elif t == "answer_synonym":
            assert c[1:] == r[1:] and c[0] != r[0] and same_group
        elif t == "all_synonyms":
            assert not set(c) - {world.stoi["because"], world.eos_id} & set(r) and same_group
        elif t == "extend":
            assert r[:-2] == c[:-1] and len(r) == len(c) + 1
        elif t == "truncate":
            assert len(r) == len(c) - 1 and r[:-1] == c[:-2]
        elif t == "answer_flip":
            assert c[1:] == r[1:] and not same_group
        elif t == "opposite":
            assert not same_group


def test_sequence_tensors_position_convention(world: SyntheticWorld) -> None:
    prompts = [[1, 5, 6, 7], [1, 5]]
    resp = [[9, 10, 2], [11, 2]]
    ids, labels = sequence_tensors(prompts, resp, world.pad_id)
    assert ids.shape == labels.shape == (2, 6)
    for b in range(2):
        pos = (labels[b] != -100).nonzero().squeeze(1).tolist()
        assert pos == list(range(len(prompts[b]) - 1, len(prompts[b]) - 1 + len(resp[b])))  # Def. 2: |y| positions
        assert labels[b, pos].tolist() == resp[b]
        full = prompts[b] + resp[b]
        assert ids[b, : len(full) - 1].tolist() == full[:-1]
        for t in pos[1:]:
            assert labels[b, t - 1] == ids[b, t]  # labels are pre-shifted


def test_preference_data_and_lm_tensors(world: SyntheticWorld) -> None:
    pairs = world.multi_token_pairs(24)
    d = multi_token_preference_data(world, pairs)
    assert len(d) == 24 and d.chosen_ids.shape == d.rejected_ids.shape
    assert d.subset([3, 5]).meta[1]["type"] == pairs[5]["type"]
    s = single_token_preference_data(world, world.single_token_prompts("No", 3), "No", "Never")
    assert ((s.chosen_labels != -100).sum(1) == 1).all()
    assert (s.chosen_labels[s.chosen_labels != -100] == world.stoi["No"]).all()
    docs = world.pretrain_corpus(10)
    x, y = lm_tensors(docs, world.max_len(), world.pad_id)
    assert x.shape == (10, world.max_len())
    assert torch.equal(y[:, :-1][y[:, :-1] != -100], x[:, 1:][y[:, :-1] != -100])
    with pytest.raises(ValueError, match="block_size"):
        lm_tensors(docs, 3, world.pad_id)
