"""Multi-token runs read at a DPO-loss target (lossbook.alignment.progress.train_to_targets and friends)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossbook.alignment.preference import PreferenceConfig, clone_policy, evaluate_logps
from lossbook.alignment.progress import mean_dpo_loss, policy_at, read_step, train_to_targets
from lossbook.alignment.world import SyntheticWorld, WorldConfig, multi_token_preference_data
from lossbook.models.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def setup() -> tuple[SyntheticWorld, GPT, object]:
    world = SyntheticWorld(WorldConfig(seed=0))
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len(), n_layer=1, n_head=2, d_model=16)).eval()
    data = multi_token_preference_data(world, world.multi_token_pairs(16, seed=3))
    return world, gpt, data


def test_mean_dpo_loss_closed_form() -> None:
    c, r, rc, rr = (torch.tensor(v, dtype=torch.float64) for v in ([-1.0, -2.0], [-3.0, -1.0], [-2.0, -2.0], [-1.5, -1.0]))
    d = np.array([(-1 + 2) - (-3 + 1.5), 0.0])  # margins 2.5 and 0
    expected = np.mean([math.log1p(math.exp(-0.5 * x)) for x in d])
    assert mean_dpo_loss(c, r, rc, rr, 0.5) == pytest.approx(expected, rel=1e-12)
    assert mean_dpo_loss(rc, rr, rc, rr, 0.1) == pytest.approx(math.log(2))


def test_train_to_targets_stops_at_the_deepest_target_and_keeps_the_weights(setup) -> None:
    _, gpt, data = setup
    cfg = PreferenceConfig(loss="dpo", beta=0.1, lr=3e-3, optimizer="adam", steps=200)
    run = train_to_targets(clone_policy(gpt), gpt, data, cfg, [0.68, 0.6], dpo_beta=0.1, eval_data=data.subset(range(4)))
    L = run["dpo_loss"]
    assert L[0] == pytest.approx(math.log(2), abs=1e-6)  # step 0 is the reference
    t1, t2 = run["t_star"][0.68], run["t_star"][0.6]
    assert t1 is not None and t2 is not None and t1 <= t2 == run["n_steps"]  # stopped right at the deepest target
    assert L[t2] <= 0.6 < L[t2 - 1] and L[t1] <= 0.68 < L[t1 - 1]
    assert run["chosen"].shape == (run["n_steps"] + 1, len(data)) and run["eval_chosen"].shape == (run["n_steps"] + 1, 4)
    # the kept weights reproduce the recorded log-probs at t*
    for tg, t in ((0.68, t1), (0.6, t2)):
        e = evaluate_logps(policy_at(run, tg, gpt), data)
        torch.testing.assert_close(e["chosen_logps"].double(), run["chosen"][t], atol=1e-5, rtol=0)
        assert read_step(run, tg) == t


def test_train_to_targets_runs_to_the_cap_when_a_target_is_out_of_reach(setup) -> None:
    _, gpt, data = setup
    cfg = PreferenceConfig(loss="apo_zero", beta=0.1, lr=1e-3, optimizer="adam", steps=4)
    run = train_to_targets(clone_policy(gpt), gpt, data, cfg, [0.0], dpo_beta=0.1)
    assert run["t_star"][0.0] is None and run["n_steps"] == 4 and read_step(run, 0.0) == 4
    assert len(run["dpo_loss"]) == 5 and "eval_chosen" not in run
