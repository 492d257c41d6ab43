"""The preference trainer (any registered loss, TRL metric names, NaN handling) and the cached pretrain/SFT helper."""

from __future__ import annotations

import math

import pytest
import torch

from lossbook.alignment.losses import dpo_margin, sequence_logps
from lossbook.alignment.preference import (
    PreferenceConfig,
    clone_policy,
    concatenated_forward,
    evaluate_logps,
    similarity_scores,
    train_preference,
)
from lossbook.alignment.registry import PREFERENCE_LOSSES
from lossbook.alignment.sft import PretrainConfig, SFTConfig, pretrained_and_sft
from lossbook.alignment.world import (
    SyntheticWorld,
    WorldConfig,
    multi_token_preference_data,
    single_token_preference_data,
)
from lossbook.models.gpt import GPT, GPTConfig
from lossbook.tracking import MetricLogger, NonFiniteLossError

TRL = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


@pytest.fixture(scope="module")
def setup() -> tuple[SyntheticWorld, GPT]:
    torch.manual_seed(0)
    w = SyntheticWorld(WorldConfig(seed=0))
    return w, GPT(GPTConfig(vocab_size=w.vocab_size, block_size=w.max_len(), n_layer=1, n_head=2, d_model=16))


def test_concatenated_forward_matches_sequence_logps(setup) -> None:
    w, model = setup
    d = multi_token_preference_data(w, w.multi_token_pairs(8))
    r = concatenated_forward(model, d, return_hidden=True)
    with torch.no_grad():
        want = sequence_logps(model(d.chosen_ids), d.chosen_labels)
    torch.testing.assert_close(r["chosen_logps"].detach(), want)
    assert (r["chosen_len"] == (d.chosen_labels != -100).sum(1)).all()
    assert r["hidden_chosen"].shape[-1] == 16


def test_dpo_full_batch_trajectory_and_metrics(setup) -> None:
    w, model = setup
    d = single_token_preference_data(w, w.single_token_prompts("No", 2), "No", "Never")
    pol = clone_policy(model)
    logger = MetricLogger(prefix="dpo/")
    h = train_preference(pol, model, d, PreferenceConfig(lr=1e-3, optimizer="sgd", steps=20, track_first_token=True), logger=logger)
    assert h["loss"][0] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference at step 0
    assert h["rewards/margins"][0] == pytest.approx(0.0, abs=1e-7)
    assert len(h["loss"]) == 21 and h["step"][-1] == 20
    assert h["loss"][-1] < h["loss"][0] and h["rewards/margins"][-1] > 0
    for k in TRL + ("ld/pref_logp_change", "ld/max_pref_prob_drop"):
        assert k in h and len(h[k]) == 21
        assert logger.history[k][-1][1] == pytest.approx(h[k][-1])
    assert h["first_logprobs"].shape == (21, 2, w.vocab_size)
    p = h["first_logprobs"][:, :, w.stoi["No"]].exp().mean(1)
    assert h["ld/pref_prob"][-1] == pytest.approx(float(p[-1]), rel=1e-5)
    # the final evaluation agrees with the last record; the reference did not move
    torch.testing.assert_close(h["final"]["chosen_logps"], evaluate_logps(pol, d)["chosen_logps"])
    torch.testing.assert_close(h["ref"]["chosen_logps"], evaluate_logps(model, d)["chosen_logps"])
    margin = dpo_margin(h["final"]["chosen_logps"], h["final"]["rejected_logps"], h["ref"]["chosen_logps"], h["ref"]["rejected_logps"])
    assert 0.1 * float(margin.mean()) == pytest.approx(h["rewards/margins"][-1], rel=1e-4)
    assert h["pairs_per_s"] > 0


def test_minibatch_ipo_and_optimizers(setup) -> None:
    w, model = setup
    d = multi_token_preference_data(w, w.multi_token_pairs(20))
    for opt in ("rmsprop", "adam", "adamw", "sgd"):
        h = train_preference(clone_policy(model), model, d, PreferenceConfig(loss="ipo", beta=0.5, lr=1e-4, optimizer=opt, batch_size=6, epochs=2))
        assert h["n_steps"] == 2 * 4 and len(h["loss"]) == 8
    with pytest.raises(ValueError, match="optimizer"):
        PreferenceConfig(optimizer="lion")
    with pytest.raises(KeyError, match="Valid"):
        PreferenceConfig(loss="nope")


def test_trainer_runs_a_newly_registered_loss_and_stops_on_nan(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    w, model = setup
    d = single_token_preference_data(w, w.single_token_prompts("Yes", 2), "Yes", "No")

    def slic(c, r, rc, rr, *, beta, delta=1.0, **kw):
        return torch.relu(delta - beta * (c - r))

    def nan_loss(c, r, rc, rr, *, beta, **kw):
        return (c - rc) * float("nan")

    monkeypatch.setitem(PREFERENCE_LOSSES, "_test_slic", slic)
    monkeypatch.setitem(PREFERENCE_LOSSES, "_test_nan", nan_loss)
    h = train_preference(clone_policy(model), model, d, PreferenceConfig(loss="_test_slic", steps=3, lr=1e-3, loss_kwargs={"delta": 2.0}))
    assert h["loss"][0] == pytest.approx(float(torch.relu(2.0 - 0.1 * (h["ref"]["chosen_logps"] - h["ref"]["rejected_logps"])).mean()), rel=1e-5)
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train_preference(clone_policy(model), model, d, PreferenceConfig(loss="_test_nan", steps=3))
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train_preference(clone_policy(model), model, d, PreferenceConfig(loss="_test_nan", steps=3), logger=MetricLogger())


def test_similarity_scores(setup) -> None:
    w, model = setup
    pairs = w.multi_token_pairs(6)
    pairs[0] = {**pairs[0], "rejected": list(pairs[0]["chosen"])}
    sc = similarity_scores(model, multi_token_preference_data(w, pairs))
    assert sc["ches"][0].item() == pytest.approx(0.0, abs=1e-9) and sc["ln_ches"][0].item() == pytest.approx(0.0, abs=1e-9)
    assert sc["edit_distance"][0].item() == 0.0 and (sc["edit_distance"][1:] > 0).all()
    assert set(sc) == {"ches", "ln_ches", "last_hidden_ip", "edit_distance"}


def test_pretrain_sft_is_cached(capsys: pytest.CaptureFixture[str]) -> None:
    wc = WorldConfig(seed=5)
    w = SyntheticWorld(wc)
    gc = GPTConfig(vocab_size=w.vocab_size, block_size=w.max_len(), n_layer=1, n_head=2, d_model=16)
    kw = dict(pretrain=PretrainConfig(n_docs=200, steps=5, batch_size=8), sft=SFTConfig(n_examples=50, steps=5, batch_size=8))
    a = pretrained_and_sft(wc, gc, **kw)
    first = capsys.readouterr().out
    b = pretrained_and_sft(wc, gc, **kw)
    second = capsys.readouterr().out
    assert "cache miss: align_pretrain" in first and "cache miss: align_sft" in first
    assert "cache hit: align_pretrain" in second and "cache hit: align_sft" in second
    for (k, v), (_, v2) in zip(a["sft"].state_dict().items(), b["sft"].state_dict().items()):
        assert torch.equal(v, v2), k
    assert not all(torch.equal(x, y) for x, y in zip(a["base"].parameters(), a["sft"].parameters()))
    with pytest.raises(ValueError, match="vocab_size"):
        pretrained_and_sft(wc, GPTConfig(vocab_size=5, block_size=30), **kw)


def test_single_token_displacement_run(setup) -> None:
    from lossbook.alignment.preference import single_token_displacement_run

    w, model = setup
    d = single_token_preference_data(w, w.single_token_prompts("No", 1), "No", "Never")
    r = single_token_displacement_run(
        model, d, w.stoi["No"], w.stoi["Never"], w.disagree_ids, w.agree_ids, PreferenceConfig(lr=1e-3, optimizer="sgd", steps=6), early_steps=3
    )
    assert r["p_plus"].shape == (7,) and r["stable"] in (True, False)
    assert 0 <= r["max_drop"] <= 1 and -1 <= r["rho"] <= 1
    assert w.stoi["No"] not in r["top"] and len(r["top_kind"]) == 3
    total = r["p_plus"] + r["p_minus"] + r["benign"] + r["catastrophic"]
    assert (total <= 1 + 1e-9).all()
