"""Displacement read at matched progress (lossbook.alignment.progress): the DPO-loss curve, the target step, the two
stability filters, mass by kind, gainers, per-world statistics, unembedding geometry and the CHES windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook.alignment.displacement import displacement_runs, meaning_groups
from lossbook.alignment.preference import PreferenceConfig
from lossbook.alignment.progress import (
    KINDS,
    ches_window_changes,
    curves_vs_loss,
    dpo_loss_curve,
    first_step_at,
    gainers,
    kept,
    mass_by_kind,
    read_at_target,
    stable_until,
    unembedding_geometry,
    world_stats,
    world_table,
)
from lossbook.alignment.recipes import base_cache_keys, base_configs
from lossbook.alignment.world import SyntheticWorld, WorldConfig, multi_token_preference_data
from lossbook.cache import config_hash
from lossbook.models.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(seed=0))


@pytest.fixture(scope="module")
def gpt(world: SyntheticWorld) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len(), n_layer=1, n_head=2, d_model=16)).eval()


def test_dpo_loss_curve_is_the_training_loss_of_a_single_token_run(world, gpt) -> None:
    cfg = PreferenceConfig(loss="dpo", beta=0.1, lr=1e-2, optimizer="rmsprop", steps=6)
    r = displacement_runs(world, gpt, cfg, [("No", "Never")], 1, seed=0, early_steps=2, log_curves=False)[("No", "Never")][0]
    L = dpo_loss_curve(r["p_plus"], r["p_minus"], 0.1)
    assert L[0] == pytest.approx(np.log(2))
    np.testing.assert_allclose(L, r["loss"], atol=2e-5)
    assert L[-1] < L[0]  # the run made progress


def test_first_step_and_the_two_stability_filters() -> None:
    loss = np.array([0.69, 0.65, 0.6502, 0.55, 0.56, 0.45])
    assert first_step_at(loss, 0.6) == 3 and first_step_at(loss, 0.69) == 0 and first_step_at(loss, 0.3) is None
    assert not stable_until(loss, 3, 0.0)  # 0.65 -> 0.6502 rose: strict filter (exact <=) drops it
    assert stable_until(loss, 3, 0.01)  # a 0.03% rise passes the 1% substantive filter
    assert not stable_until(loss, 5, 0.01)  # 0.55 -> 0.56 is a 1.8% rise
    assert stable_until(np.array([0.5, 0.5, 0.4]), 2, 0.0)  # equal is allowed (<=)


def test_mass_by_kind_partitions_the_distribution(world) -> None:
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(world.vocab_size), size=3)
    yp, ym = world.stoi["No"], world.stoi["Never"]
    same, opp = meaning_groups(world, "No")
    m = mass_by_kind(P, yp, ym, same, opp)
    assert set(m) == set(KINDS)
    np.testing.assert_allclose(sum(m.values()), 1.0)
    np.testing.assert_allclose(m["opposite_group"], P[:, world.agree_ids].sum(1))
    np.testing.assert_allclose(m["same_group"], P[:, [world.stoi["Maybe"], world.stoi["Perhaps"]]].sum(1))


def test_gainers_rank_the_gain_from_step_zero() -> None:
    P = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.25, 0.4, 0.25]])
    assert gainers(P, 1, range(4), exclude=(0,), k=2) == [2, 3]
    assert gainers(P, 1, [0, 1], k=1) == [1]


def _fake_run(world: SyntheticWorld, yp: str, ym: str, p_plus: list[float], p_minus: list[float], to_opposite: bool, loss=None) -> dict:
    """A run whose lost π(y+) mass goes to one opposite-group token (or to a non-answer token)."""
    T = len(p_plus)
    P = np.full((T, world.vocab_size), 0.0)
    sink = world.stoi["Yes"] if to_opposite else world.stoi["because"]
    P[:, world.stoi[yp]], P[:, world.stoi[ym]] = p_plus, p_minus
    P[:, sink] = 1 - P.sum(1)
    L = dpo_loss_curve(p_plus, p_minus, 0.1) if loss is None else np.asarray(loss)
    return {"p_plus": np.asarray(p_plus), "p_minus": np.asarray(p_minus), "token_probs": P, "loss": L, "rho": 0.7, "thm1": 1.0}


def test_read_at_target_reads_the_drop_and_masses_up_to_the_target_only(world) -> None:
    pp = [0.9, 0.8, 0.5, 0.3, 0.1]
    pm = [0.05, 0.01, 0.001, 1e-4, 1e-6]
    r = _fake_run(world, "No", "Never", pp, pm, to_opposite=True)
    L = dpo_loss_curve(pp, pm, 0.1)
    target = float(L[2]) + 1e-9
    out = read_at_target(r, world, "No", "Never", target, 0.1)
    assert out["reached"] and out["t_star"] == 2 and out["drop"] == pytest.approx(0.4)  # 0.9 -> 0.5, not 0.9 -> 0.1
    assert out["p_plus_0"] == 0.9 and out["p_plus_t"] == 0.5
    assert out["dmass"]["opposite_group"] == pytest.approx((1 - 0.5 - 0.001) - (1 - 0.9 - 0.05))
    assert out["dmass"]["non_answer"] == pytest.approx(0.0) and out["strict"] and out["substantive"]
    assert world.itos[out["top_answers"][0]] == "Yes"
    never = read_at_target(r, world, "No", "Never", 0.0, 0.1)
    assert not never["reached"] and never["t_star"] is None and never["t_read"] == 4 and not kept([never])
    assert kept([never], require_reached=False) == [never]


def test_world_stats_and_table_count_what_the_claims_read(world) -> None:
    pp_big, pp_small = [0.9, 0.7, 0.5, 0.4], [0.9, 0.88, 0.86, 0.85]
    pm = [0.05, 0.005, 5e-4, 5e-5]
    L = dpo_loss_curve(pp_big, pm, 0.1)
    tg = float(L[3]) + 1e-9
    rose = L.copy()
    rose[1] = L[0] * 1.05  # a 5% rise: dropped by both filters
    runs = {("No", "Never"): [_fake_run(world, "No", "Never", pp_big, pm, True), _fake_run(world, "No", "Never", pp_small, pm, False),
                              _fake_run(world, "No", "Never", pp_big, pm, True, loss=rose)],
            ("Yes", "No"): [_fake_run(world, "Yes", "No", pp_small, pm, False)]}
    reads = {0: {p: [read_at_target(r, world, *p, tg, 0.1) for r in rs] for p, rs in runs.items()}}
    s = world_stats(reads, {0: world}, 0.2, 0.1).loc[0]
    assert s["min_share_similar"] == 0.5 and s["n_displaced_similar"] == 1 and s["share_catastrophic"] == 1.0
    assert s["min_kept"] == 1 and s["min_reached"] == 1.0 and s["median_rho"] == pytest.approx(0.7)
    assert s["drop_similar"] == pytest.approx((0.5 + 0.05) / 2) and s["drop_dissimilar"] == pytest.approx(0.05)
    t = world_table(reads, {0: world}, 0.2).set_index("pair")
    assert t.loc["No/Never", "kept"] == 2 and t.loc["No/Never", "strict kept"] == 2 and t.loc["No/Never", "runs"] == 3
    assert t.loc["No/Never", "share drop≥thr"] == 0.5 and bool(t.loc["No/Never", "similar"]) and not bool(t.loc["Yes/No", "similar"])


def test_curves_vs_loss_interpolates_each_run_on_the_loss_grid(world) -> None:
    pp, pm = [0.9, 0.7, 0.5, 0.4], [0.05, 0.005, 5e-4, 5e-5]
    r = _fake_run(world, "No", "Never", pp, pm, True)
    L = dpo_loss_curve(pp, pm, 0.1)
    c = curves_vs_loss([r], world, "No", "Never", 0.1, np.array([L[0], L[2], 0.0]))
    assert c["y_plus"][0] == pytest.approx(0.9) and c["y_plus"][1] == pytest.approx(0.5) and np.isnan(c["y_plus"][2])


def test_unembedding_geometry_sees_group_structure(world) -> None:
    torch.manual_seed(0)
    W = torch.randn(world.vocab_size, 8) * 0.1
    a, d = torch.randn(8), torch.randn(8)
    W[world.agree_ids] += a * 3
    W[world.disagree_ids] += d * 3
    for ws in world.concept_words:
        W[[world.stoi[x] for x in ws]] += torch.randn(8) * 3
    g = unembedding_geometry(W, world)
    assert g["answer_within"] > 0.9 and g["answer_gap"] > 0.5 and g["synonym_gap"] > 0.5
    assert unembedding_geometry(torch.randn(world.vocab_size, 64), world)["answer_gap"] == pytest.approx(0.0, abs=0.15)


def test_ches_windows_train_one_run_per_window(world, gpt) -> None:
    data = multi_token_preference_data(world, world.multi_token_pairs(24, seed=1))
    score = np.arange(24, dtype=float)
    cfg = PreferenceConfig(loss="dpo", beta=0.1, lr=1e-3, steps=3)  # full batch: the order inside a window does not matter
    out = ches_window_changes(gpt, data, {"s": score, "neg": -score}, 3, cfg, seed=0)
    assert set(out) == {"s", "neg"} and out["s"]["means"].shape == (3,)
    assert out["s"]["top"] == out["s"]["means"][-1] and -1 <= out["s"]["rho"] <= 1
    np.testing.assert_allclose(out["neg"]["means"], out["s"]["means"][::-1], rtol=1e-4)  # the same windows, in reverse order


def test_gpt_overrides_keep_the_recipe_keys_and_untie_on_request() -> None:
    assert base_cache_keys("persona-tiny", 0, None) == base_cache_keys("persona-tiny", 0) == base_cache_keys("persona-tiny", 0, {"tie_weights": True})
    untied = base_cache_keys("persona-tiny", 0, {"tie_weights": False})
    assert config_hash(untied["align_pretrain"]) != config_hash(base_cache_keys("persona-tiny", 0)["align_pretrain"])
    assert base_configs("persona-tiny", 0, {"tie_weights": False})[1].tie_weights is False
    with pytest.raises(KeyError, match="not GPT fields"):
        base_configs("persona-tiny", 0, {"n_layers": 3})
