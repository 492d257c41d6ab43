"""Kaplan shapes as stacks (`scaling.kaplan_sweep`): each stacked model ends where `sweep.run_point`'s single
training of its world ends (same stream, init, validation set, fast kernels), to rounding; the key moves with
every knob; results come back in seed order with run_point's fields."""

from __future__ import annotations

import pytest

from lossbook.cache import config_hash
from lossbook.scaling import kaplan_sweep as ks
from lossbook.scaling.sweep import _train_point

LANG = {"kind": "tasks", "n_tasks": 16, "code_alphabet": 8, "code_len": 2, "n_symbols": 4, "zipf": 1.5, "eps": 0.1, "eval_tokens": 256}
BASE = {"n_layer": 2, "d_model": 16, "block_size": 8, "batch_size": 4, "steps": 40, "lr": 1e-2, "warmup": 2, "n_evals": 2}


def test_stacked_shape_equals_separate_run_points():
    cfg = ks.shape_config(LANG, [3, 1, 2], **BASE)
    res = ks._train_shape(cfg)
    assert len(res) == 3
    for s, r in zip(cfg["seeds"], res):
        single = {"data": {**LANG, "seed": s}, "model": cfg["model"], "device": "cpu", "fast": cfg["fast"],
                  "train": {"steps": 40, "batch_size": 4, "lr": 1e-2, "warmup": 2, "seed": s, "n_evals": 2}}
        ref = _train_point(single)
        assert ref["curve"]["loss"][-1] < 0.9 * ref["curve"]["loss"][0]  # it learns: the comparison is not between two flat lines
        for k in ("N", "N_total", "D", "C", "entropy_rate", "eval_true_nll"):
            assert r[k] == pytest.approx(ref[k], rel=1e-12)
        assert r["val_curve"]["step"] == ref["val_curve"]["step"] == [20, 40]
        assert r["val_curve"]["val_loss"] == pytest.approx(ref["val_curve"]["val_loss"], rel=2e-5)
        assert r["val_loss_adj"] == pytest.approx(ref["val_loss_adj"], rel=2e-5)
        assert r["curve"]["loss"] == pytest.approx(ref["curve"]["loss"], rel=2e-5)
    assert res[0]["val_loss"] != pytest.approx(res[1]["val_loss"], rel=1e-3)  # the worlds really differ


def test_cache_key_moves_with_every_knob_and_records_the_kernels():
    base = ks.shape_config(LANG, [0, 1], **BASE)
    assert base["fast"]["model"]["gelu"] == "exact" and base["fast"]["train"] == {"fused": True, "dtype": "float32"}
    assert ks.shape_config(LANG, [0, 1], **BASE, fast=False)["fast"] == {"model": {}, "train": {}}
    h0 = config_hash(base)
    variants = [ks.shape_config({**LANG, "zipf": 1.4}, [0, 1], **BASE), ks.shape_config(LANG, [0, 2], **BASE),
                ks.shape_config(LANG, [0, 1], **BASE, fast=False), ks.shape_config(LANG, [0, 1], **BASE, weight_decay=0.0)]
    variants += [ks.shape_config(LANG, [0, 1], **{**BASE, k: v}) for k, v in
                 [("n_layer", 1), ("d_model", 32), ("block_size", 12), ("batch_size", 8), ("steps", 41), ("lr", 2e-2), ("warmup", 3), ("n_evals", 4)]]
    hashes = {config_hash(v) for v in variants}
    assert h0 not in hashes and len(hashes) == len(variants)
    with pytest.raises(ValueError, match="tasks"):
        ks.shape_config({"kind": "shakespeare"}, [0], **BASE)


def test_run_shape_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path))
    cfg = ks.shape_config(LANG, [0], **{**BASE, "steps": 4})
    a = ks.run_shape(cfg)
    monkeypatch.setattr(ks, "_train_shape", lambda c: pytest.fail("cache miss on the second call"))
    b = ks.run_shape(cfg)
    assert a[0]["val_loss"] == b[0]["val_loss"] and a[0]["stack_k"] == 1
