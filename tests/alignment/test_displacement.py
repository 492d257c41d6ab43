"""Single-token displacement over pairs and seeds (Razin et al. §3) and its summary table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook import repro
from lossbook.alignment.displacement import displacement_runs, displacement_table, meaning_groups
from lossbook.alignment.preference import PreferenceConfig, single_token_displacement_run
from lossbook.alignment.world import SyntheticWorld, WorldConfig, single_token_preference_data
from lossbook.models.gpt import GPT, GPTConfig

PAIRS = [("No", "Never"), ("Yes", "No")]
CFG = PreferenceConfig(loss="dpo", beta=0.1, lr=1e-3, optimizer="rmsprop", steps=4)


@pytest.fixture(scope="module")
def setup() -> tuple[SyntheticWorld, GPT]:
    torch.manual_seed(0)
    w = SyntheticWorld(WorldConfig(seed=0))
    return w, GPT(GPTConfig(vocab_size=w.vocab_size, block_size=w.max_len(), n_layer=1, n_head=2, d_model=16)).eval()


def test_meaning_groups(setup) -> None:
    w, _ = setup
    assert meaning_groups(w, "Never") == (w.disagree_ids, w.agree_ids)
    assert meaning_groups(w, "Sure") == (w.agree_ids, w.disagree_ids)
    with pytest.raises(ValueError, match="not an answer token"):
        meaning_groups(w, "because")


def test_runs_cover_pairs_and_seeds_and_match_a_direct_run(setup) -> None:
    w, ref = setup
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    out = displacement_runs(w, ref, CFG, PAIRS, 2, seed=5, early_steps=2, name="t")
    assert list(out) == PAIRS and all(len(runs) == 2 for runs in out.values())
    for runs in out.values():
        for r in runs:
            assert "history" not in r and len(r["p_plus"]) == CFG.steps + 1 and isinstance(r["stable"], bool)
    # run s of a pair is the direct protocol on the pair's s-th prompt after seed_everything(seed + s)
    yp, ym = PAIRS[1]
    prompts = w.single_token_prompts(yp, 2, seed=5)
    repro.seed_everything(5 + 1)
    same, opp = meaning_groups(w, yp)
    direct = single_token_displacement_run(ref, single_token_preference_data(w, [prompts[1]], yp, ym), w.stoi[yp], w.stoi[ym],
                                           same, opp, CFG, early_steps=2)
    got = out[PAIRS[1]][1]
    np.testing.assert_array_equal(got["token_probs"], direct["token_probs"])
    assert got["max_drop"] == direct["max_drop"] and got["rho"] == direct["rho"]
    # the two seeds are different prompts, and the reference is left untouched
    assert not np.array_equal(out[PAIRS[0]][0]["token_probs"], out[PAIRS[0]][1]["token_probs"])
    assert all(v.equal(before[k]) for k, v in ref.state_dict().items())


def _run(drop: float, stable: bool, top: list[int]) -> dict:
    return {"stable": stable, "max_drop": drop, "top": top, "top_kind": ["benign"] * len(top), "drop_from_to": (0.9, 0.9 - drop),
            "benign": np.array([0.1, 0.3]), "catastrophic": np.array([0.05, 0.15]), "rho": drop, "thm1": 2 * drop}


def test_table_reads_stable_runs_only(setup) -> None:
    w, _ = setup
    no, never, yes = w.stoi["No"], w.stoi["Never"], w.stoi["Yes"]
    results = {
        ("No", "Never"): [_run(0.5, True, [never, yes]), _run(0.1, True, [never]), _run(0.9, False, [yes])],
        ("Yes", "No"): [_run(0.7, False, [no])],
    }
    t = displacement_table(w, results, drop_threshold=0.2).set_index("pair")
    row = t.loc["No/Never"]
    assert bool(row["similar"]) and row["stable runs"] == "2/3"
    assert row["frac drop>=thr"] == 0.5 and row["mean drop"] == pytest.approx(0.3)
    assert row["drop min..max"] == "0.10..0.50" and row["π(y+) from→to (mean)"] == "0.90→0.60"
    assert row["benign mass t0→T"] == "0.10→0.30" and row["catastr. mass t0→T"] == "0.05→0.15"
    assert row["top gainers (count)"] == "Never(2), Yes(1)" and row["gainer kinds"] == {"benign": 3}
    assert row["median ρ (Thm 2)"] == pytest.approx(0.3) and row["Thm 1 score"] == pytest.approx(0.6)
    unstable = t.loc["Yes/No"]
    assert not bool(unstable["similar"]) and unstable["stable runs"] == "0/1" and np.isnan(unstable["mean drop"])
