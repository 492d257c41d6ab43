"""WSD trunks with cooldown branches (`scaling.wsd_sweep`): a branch is the single WSD run of its length, the
cache key moves with every knob, the envelope covers its grid, the LR pick and the pilot optimum read what
was planted."""

from __future__ import annotations

import numpy as np
import pytest

from lossbook.cache import config_hash
from lossbook.optim.schedules import lr_multiplier
from lossbook.scaling import wsd_sweep as ws
from lossbook.scaling.sweep import gpt_size
from lossbook.train.lm import evaluate_lm_stacked, train_lm_stacked

LANG = {"kind": "tasks", "n_tasks": 16, "code_alphabet": 8, "code_len": 2, "n_symbols": 4, "zipf": 1.5, "eps": 0.1, "eval_tokens": 256}
BASE = {"d_model": 8, "n_layer": 1, "block_size": 8, "batch_size": 4, "lr": 4e-3, "branch_steps": [30, 60], "warmup": 3}


def test_cooldown_start_is_where_the_wsd_schedule_leaves_its_constant_phase():
    for S in (7, 30, 61, 300, 1001):
        s0 = ws.cooldown_start(S, 0.2)
        assert lr_multiplier("wsd", s0 - 1, S, 2, decay_frac=0.2) == 1.0 > lr_multiplier("wsd", s0, S, 2, decay_frac=0.2)


def test_each_branch_equals_a_single_wsd_run_from_the_same_seeds():
    cfg = ws.width_config(LANG, [0, 1], **BASE)
    res = ws._train_width(cfg)
    assert [b["steps"] for b in res["branches"]] == [30, 60] and res["trunk_steps"] == ws.cooldown_start(60, 0.2)
    for b in res["branches"]:  # the reference: one WSD run of exactly that length, fresh from the same inits and streams
        w = ws.stacked_worlds(cfg)
        train_lm_stacked(w.stack, w.get_batch, steps=b["steps"], lr=4e-3, warmup=3, betas=(0.9, 0.95), schedule="wsd", progress=False,
                         schedule_kwargs={"decay_frac": 0.2, "decay_shape": "sqrt", "final_frac": 0.0})
        assert evaluate_lm_stacked(w.stack, w.val_stacked) == b["val_loss"]
    assert b["D"] == 60 * 4 * 8 and b["C"] == pytest.approx(b["D"] * gpt_size(8, 1, w.models[0].cfg.vocab_size, 8)[1])


def test_cache_key_changes_with_every_knob():
    base = config_hash(ws.width_config(LANG, [0, 1], **BASE))
    changes = [({"lr": 5e-3}, {}), ({"branch_steps": [30, 61]}, {}), ({"warmup": 4}, {}), ({"d_model": 12}, {}), ({"n_layer": 2}, {}),
               ({"block_size": 12}, {}), ({"batch_size": 8}, {}), ({}, {"betas": (0.9, 0.99)}), ({}, {"weight_decay": 0.0}),
               ({}, {"cooldown_frac": 0.1}), ({}, {"cooldown_shape": "linear"}), ({}, {"grad_clip": 0.5}), ({}, {"fast": True}),
               ({}, {"trunk_evals": 2}), ({}, {"device": "cuda"})]
    hashes = {base}
    for over, extra in changes:
        h = config_hash(ws.width_config(LANG, [0, 1], **{**BASE, **over}, **extra))
        assert h not in hashes, (over, extra)
        hashes.add(h)
    for lang in ({**LANG, "eps": 0.2}, {**LANG, "n_tasks": 32}, {**LANG, "eval_tokens": 512}):
        assert config_hash(ws.width_config(lang, [0, 1], **BASE)) != base
    assert config_hash(ws.width_config(LANG, [0, 2], **BASE)) != base
    assert config_hash(ws.width_config(LANG, [0, 1], **{**BASE, "lr": [4e-3, 4e-3]})) == base  # one LR is K equal LRs
    fast = ws.width_config(LANG, [0], **BASE, fast=True)["fast"]
    assert fast["train"]["fused"] is True and fast["model"]["gelu"] == "exact" and fast["train"]["dtype"] in ("float32", "bfloat16")


def test_annealed_envelope_reads_the_planted_optimum_over_the_whole_grid():
    # planted: L(N, C) = 1 + (log N − log N*(C))², N*(C) = 10·C^0.5; widths on a fine ladder, endpoints at every grid budget
    grid = ws.envelope_grid([1e4, 1e5, 1e6])
    assert grid == pytest.approx([1e4, 10**4.5, 1e5, 10**5.5, 1e6])
    Ns = np.geomspace(100, 1e5, 61)
    curves = [(n, grid, [1 + (np.log(n) - np.log(10 * c**0.5)) ** 2 for c in grid]) for n in Ns]
    res = ws.annealed_envelope(curves, grid)
    assert res["covered"] == 1.0 and res["a"] == pytest.approx(0.5, abs=0.02)
    part = ws.annealed_envelope([(n, grid[:2], loss[:2]) for n, _, loss in curves], grid)  # endpoints stop early: grid not covered
    assert part["covered"] == pytest.approx(0.4)


def test_pick_lr_and_pilot_optimum():
    widths, lrs = np.array([4, 8, 16, 32]), np.array([1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2])
    best = {4: 8e-3, 8: 4e-3, 16: 4e-3, 32: 2e-3}
    losses = np.array([[(np.log(g) - np.log(best[w])) ** 2 for g in lrs] for w in widths])
    pk = ws.pick_lr(widths, lrs, losses)
    assert pk["best"].tolist() == [best[w] for w in widths] and pk["inside"].all()
    assert pk["slope"] < 0 and pk["lr_of"](1000) == 1e-3 and pk["lr_of"](0.01) == 1.6e-2  # clipped to the grid
    N = np.geomspace(1e3, 1e5, 9)
    po = ws.pilot_optimum(N, 2 + (np.log(N) - np.log(7e3)) ** 2, 7)
    assert po["bracketed"] and po["N_opt"] == pytest.approx(7e3, rel=1e-6)
    edge = ws.pilot_optimum(N, 2 + np.log(N), 7)
    assert not edge["bracketed"] and edge["N_opt"] == N[0]


def test_tokens_per_param_at_inverts_the_size_formulas():
    V, T, L = 48, 16, 2
    for d in (6, 20, 48):
        n_tot = gpt_size(d, L, V, T)[0] + (V + T) * d
        tpp = ws.tokens_per_param_at(n_tot, 1e11, L, V, T)
        assert tpp == pytest.approx(1e11 / gpt_size(d, L, V, T)[1] / n_tot, rel=1e-3)
    assert ws.branch_steps_for([1e10], 8, L, V, T, 256) == [round(1e10 / (gpt_size(8, L, V, T)[1] * 256))]


def test_run_point_fast_path_is_opt_in_and_keyed(monkeypatch):
    from lossbook.scaling import sweep
    from lossbook.train.lm import fast_options, train_lm

    seen = []

    def spy(model, get_batch, **kw):
        seen.append((model.gelu, model.attn_fp32, kw.get("fused", False), kw.get("dtype", "float32")))
        return train_lm(model, get_batch, **kw)

    monkeypatch.setattr(sweep, "train_lm", spy)
    cfg = {"data": {**LANG, "seed": 0}, "model": {"n_layer": 1, "d_model": 8, "n_head": 1, "block_size": 8},
           "train": {"steps": 20, "batch_size": 4, "lr": 3e-3, "warmup": 2, "seed": 0, "n_evals": 2}, "device": "cpu"}
    fast = {**cfg, "fast": fast_options(8)}
    assert config_hash(fast) != config_hash(cfg)
    a, b = sweep._train_point(cfg), sweep._train_point(fast)
    assert seen == [("tanh", False, False, "float32"), ("exact", True, True, "float32")]  # default kernels unless opted in
    assert a["val_loss"] == pytest.approx(b["val_loss"], abs=0.02)
