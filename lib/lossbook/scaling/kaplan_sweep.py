"""Kaplan sweep points trained as stacks: one (depth, width) shape, the K replicate worlds' models at once.

Kaplan et al. (2020, arXiv 2001.08361) fit L(N) = (N_c/N)^α_N over models trained to near convergence; here
every model of one shape is trained once per replicate world (`sweep.run_point`'s protocol: world seed s
draws the language, the training stream `stream_seed`, the validation set and the init) with a cosine
schedule. `shape_config(...)` is the cache key and recipe of one shape; `run_shape(cfg)` trains (or loads,
`lossbook.cache.cached("kaplan_stack", cfg)`) the K models as one `models.gpt.StackedGPT` with
`train.lm.train_lm_stacked` — each model's gradient, clip and AdamW update are its own, so model k ends where
`sweep.run_point` on world k would, up to floating-point rounding (tested in tests/scaling/test_kaplan_sweep.py)
— and returns one `run_point`-shaped result per world (N, N_total, D, C, val_loss, val_loss_adj = val_loss −
(Ĥ_eval − H), curves, wall time). `fast=True` records `train.lm.fast_options(d_model, device)` (exact GELU,
fused AdamW; fp32 below d = 64 on CPU) in the key. Fresh results are logged as MLflow child runs, one per world.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from lossbook.cache import cached
from lossbook.scaling.sweep import log_child
from lossbook.scaling.wsd_sweep import stacked_worlds
from lossbook.train.lm import evaluate_lm_stacked, fast_options, train_lm_stacked


def shape_config(lang: dict[str, Any], seeds: Sequence[int], *, n_layer: int, d_model: int, block_size: int, batch_size: int, steps: int,
                 lr: float, warmup: int, n_evals: int = 4, weight_decay: float = 0.1, grad_clip: float = 1.0, fast: bool = True,
                 device: str = "cpu") -> dict[str, Any]:
    """The cache key and recipe of one shape's K = len(seeds) models (a "tasks" language; every knob that changes a
    result is in it; `fast` is recorded resolved, so the key says which kernels and dtype ran)."""
    if lang.get("kind") != "tasks":
        raise ValueError(f"kaplan_sweep trains on a 'tasks' language, got kind {lang.get('kind')!r}")
    fo = fast_options(d_model, device) if fast else {"model": {}, "train": {}}
    return {"data": dict(lang), "seeds": [int(s) for s in seeds],
            "model": {"n_layer": int(n_layer), "d_model": int(d_model), "n_head": max(1, int(d_model) // 16), "block_size": int(block_size)},
            "train": {"steps": int(steps), "batch_size": int(batch_size), "lr": float(lr), "warmup": int(warmup), "n_evals": int(n_evals),
                      "weight_decay": float(weight_decay), "grad_clip": float(grad_clip), "schedule": "cosine"},
            "fast": fo, "device": device}


def _train_shape(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    t0, c0 = time.perf_counter(), time.process_time()
    m, tr, dev = cfg["model"], cfg["train"], cfg.get("device", "cpu")
    T, B = m["block_size"], tr["batch_size"]
    stack, models, get_batch, val_stacked, true_nll, H = stacked_worlds(cfg)
    hists = train_lm_stacked(stack, get_batch, steps=tr["steps"], lr=tr["lr"], weight_decay=tr["weight_decay"], schedule=tr["schedule"],
                             warmup=tr["warmup"], grad_clip=tr["grad_clip"], device=dev, progress=False,
                             eval_fn=lambda _s: [{"val_loss": v} for v in evaluate_lm_stacked(stack, val_stacked, dev)],
                             eval_every=max(tr["steps"] // max(tr["n_evals"], 1), 1), log_every=max(tr["steps"] // 100, 1), **cfg["fast"]["train"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ref, out = models[0], []
    for h, tn, e in zip(hists, true_nll, H):
        val, fpt = h["eval"][-1]["val_loss"], h["flops_per_token"]
        res = {"N": ref.num_params(), "N_total": ref.num_params(False), "D": h["total_tokens"], "C": h["total_flops"],
               "C_6ND": 6.0 * ref.num_params() * h["total_tokens"], "flops_per_token": fpt, "val_loss": val,
               "val_loss_adj": val - (tn - e) if math.isfinite(tn) else val, "eval_true_nll": tn, "entropy_rate": e, "final_train_loss": h["final_loss"],
               "wall_s": wall, "cpu_s": cpu, "stack_k": len(hists), "tokens_per_s": h["total_tokens"] / wall, "flops_per_s": h["total_flops"] / wall,
               "curve": {"step": h["step"], "tokens": h["tokens"], "flops": h["flops"], "loss": h["loss"], "lr": h["lr"]},
               "val_curve": {"step": [v["step"] for v in h["eval"]], "val_loss": [v["val_loss"] for v in h["eval"]]}}
        res["val_curve"]["flops"] = [s * fpt * B * T for s in res["val_curve"]["step"]]
        out.append(res)
    return out


def run_shape(cfg: dict[str, Any], name: str | None = None, refresh: bool = False) -> list[dict[str, Any]]:
    """Train (or load from the cache) one shape's stacked models; one result per world of `cfg["seeds"]`, in order.
    Fresh results are logged as child runs of the active MLflow run (`sweep.log_child`), named `<name>/s<seed>`."""
    fresh = {"hit": True}

    def build() -> list[dict[str, Any]]:
        fresh["hit"] = False
        return _train_shape(cfg)

    res = cached("kaplan_stack", cfg, build, refresh=refresh)
    if not fresh["hit"]:
        m = cfg["model"]
        base = name or f"L{m['n_layer']}-d{m['d_model']}-steps{cfg['train']['steps']}"
        for s, r in zip(cfg["seeds"], res):
            log_child(f"{base}/s{s}", {**cfg, "seeds": [s]}, r)
    return res
