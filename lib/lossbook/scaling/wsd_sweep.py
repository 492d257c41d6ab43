"""Annealed IsoFLOP endpoints: one constant-LR trunk per width, cooldown branches ending at each budget's D.

Hägele et al. (2024), "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations" (arXiv
2405.18392): a warmup-stable-decay run whose LR is constant and then cools down over its last fraction
(1 − sqrt shape, η_t = η·(1 − √p), p the share of the cooldown done) matches a cosine run of the same length, and
one constant-LR run per size serves every length: branch a cooldown off the trunk at step S_b − n_b (n_b =
round(f·S_b), f = `cooldown_frac`, 0.2 here) for each length S_b. Every endpoint is then an *annealed* model
trained for exactly D_b = S_b·B·T tokens, not an unannealed point along a longer cosine.

`width_config(...)` is the one place a width's run is described (data, K worlds, model, optimizer, schedule,
branch lengths, the opt-in fast path): `run_width(cfg)` trains (or loads, `lossbook.cache.cached("scaling_wsd",
cfg)`) the trunk and its branches for K replicate worlds at once as one `models.gpt.StackedGPT` (their K
streams, inits and validation sets; `train.lm.train_lm_stacked` with the trunk checkpointed at every branch
start). The same call with K copies of one world and K learning rates is an LR pilot (`pick_lr`).
`branch_steps_for` turns FLOP budgets into step counts, `annealed_envelope` is Approach 1 on the annealed
endpoints over a fixed grid of budgets (not from the latest first point on), `tokens_per_param_at` reads the
pilot optimum's D/N. The `sweep.run_point` points (kaplan, data_repetition) are a separate cache kind, unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from lossbook.cache import cached
from lossbook.models.gpt import GPT, StackedGPT
from lossbook.scaling.sweep import axis_params, gpt_size, model_config, stream_seed, task_language
from lossbook.train.lm import evaluate_lm_stacked, fast_options, stack_batches, train_lm_stacked


def cooldown_start(steps: int, cooldown_frac: float) -> int:
    """The step at which a WSD run of `steps` starts its cooldown: steps − max(round(f·steps), 1), exactly where
    `optim.schedules.lr_multiplier("wsd", ..., decay_frac=f)` leaves its constant phase."""
    return steps - max(int(round(cooldown_frac * steps)), 1)


def branch_steps_for(budgets: Sequence[float], d_model: int, n_layer: int, vocab_size: int, block_size: int, tokens_per_step: int) -> list[int]:
    """Steps S = round(C / (FLOPs per token · tokens per step)) of a width for each exact-FLOP budget C."""
    _, fpt = gpt_size(d_model, n_layer, vocab_size, block_size)
    return [int(round(c / (float(fpt) * tokens_per_step))) for c in budgets]


def width_config(lang: dict[str, Any], seeds: Sequence[int], *, d_model: int, n_layer: int, block_size: int, batch_size: int,
                 lr: float | Sequence[float], branch_steps: Sequence[int], warmup: int, betas: Sequence[float] = (0.9, 0.95),
                 weight_decay: float = 0.1, cooldown_frac: float = 0.2, cooldown_shape: str = "sqrt", grad_clip: float = 1.0,
                 fast: bool = False, trunk_evals: int = 4, device: str = "cpu") -> dict[str, Any]:
    """The cache key and recipe of one width's trunk + branches (every knob that changes a result is in it).

    `seeds`: the K replicate worlds stacked together (a world seed draws the language, stream, validation set and
    init, as `sweep.run_point` does); `lr`: one peak LR or one per model; `branch_steps`: the lengths S_b of the
    WSD runs to branch off (each ≥ 1; the trunk runs to the last cooldown start); `warmup` steps shared by every
    branch; `fast`: the opt-in kernels of `train.lm.fast_options` (exact GELU, fused AdamW, bf16 where it pays) —
    recorded resolved, so the key says which dtype ran.
    """
    lrs = [float(v) for v in lr] if isinstance(lr, (list, tuple)) else [float(lr)] * len(seeds)
    fo = fast_options(d_model, device) if fast else {"model": {}, "train": {}}
    return {"data": dict(lang), "seeds": [int(s) for s in seeds],
            "model": {"n_layer": n_layer, "d_model": d_model, "n_head": max(1, d_model // 16), "block_size": block_size},
            "train": {"batch_size": batch_size, "lr": lrs, "betas": [float(b) for b in betas], "weight_decay": weight_decay, "warmup": int(warmup),
                      "cooldown_frac": cooldown_frac, "cooldown_shape": cooldown_shape, "grad_clip": grad_clip,
                      "branch_steps": sorted({int(s) for s in branch_steps}), "trunk_evals": int(trunk_evals)},
            "fast": fo, "device": device}


class StackedWorlds(NamedTuple):
    """The K replicate worlds of one shape, ready to train as one stack (see `stacked_worlds`)."""
    stack: StackedGPT
    models: list[GPT]
    get_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    val_stacked: list[tuple[torch.Tensor, torch.Tensor]]
    true_nll: list[float]
    entropy_rate: list[float]


def stacked_worlds(cfg: dict[str, Any]) -> StackedWorlds:
    """`cfg["seeds"]`'s worlds (`sweep.run_point`'s protocol: world seed s draws the language, the training stream
    `stream_seed`, the validation set and the init — the global generator seeded with s) as one `StackedGPT` with its
    stacked batches and validation set, each world's exact NLL of that set and its entropy rate."""
    data, m, T, B = cfg["data"], cfg["model"], cfg["model"]["block_size"], cfg["train"]["batch_size"]
    srcs = [task_language({**data, "seed": s}) for s in cfg["seeds"]]
    gets = [src.batch_fn(B, T, seed=stream_seed({**data, "seed": s}, s)) for src, s in zip(srcs, cfg["seeds"])]
    vals = [src.eval_set(T, data.get("eval_tokens", 16384), s) for src, s in zip(srcs, cfg["seeds"])]
    true_nll, H = [src.eval_true_nll(v) for src, v in zip(srcs, vals)], [src.bayes_loss(T) for src in srcs]
    mc = model_config(m, srcs[0].vocab_size)
    models = []
    for s in cfg["seeds"]:
        torch.manual_seed(s)
        models.append(GPT(mc, **cfg["fast"]["model"]))
    val_stacked = [(torch.stack([v[i][0] for v in vals]), torch.stack([v[i][1] for v in vals])) for i in range(len(vals[0]))]
    return StackedWorlds(StackedGPT.from_models(models), models, stack_batches(gets), val_stacked, true_nll, H)


def _train_width(cfg: dict[str, Any]) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    m, tr, dev = cfg["model"], cfg["train"], cfg.get("device", "cpu")
    stack, models, get_batch, val_stacked, true_nll, H = stacked_worlds(cfg)
    common = {"lr": tr["lr"], "weight_decay": tr["weight_decay"], "betas": tuple(tr["betas"]), "warmup": tr["warmup"], "grad_clip": tr["grad_clip"],
              "device": dev, "progress": False, **cfg["fast"]["train"]}
    branch = {"schedule": "wsd", "schedule_kwargs": {"decay_frac": tr["cooldown_frac"], "decay_shape": tr["cooldown_shape"], "final_frac": 0.0}}
    steps = tr["branch_steps"]
    starts = [cooldown_start(S, tr["cooldown_frac"]) for S in steps]
    if min(starts) < tr["warmup"]:
        raise ValueError(f"a cooldown starts (step {min(starts)}) before the warmup ends ({tr['warmup']}): lengthen the shortest branch")
    trunk_len = max(starts)
    every = max(trunk_len // max(tr["trunk_evals"], 1), 1)
    ev = lambda _s: [{"val_loss": v} for v in evaluate_lm_stacked(stack, val_stacked, dev)]  # noqa: E731
    h_tr = train_lm_stacked(stack, get_batch, steps=trunk_len, schedule="constant", checkpoint_at=starts, eval_fn=ev, eval_every=every,
                            log_every=max(trunk_len // 50, 1), **common)
    ckpts = h_tr[0]["checkpoints"]
    tps = tr["batch_size"] * m["block_size"]
    fpt = float(stack.flops_per_token(m["block_size"], training=True))
    out_branches = []
    for S, s0 in zip(steps, starts):
        ck = ckpts[s0]
        stack.load_state_dict(ck["model"])
        h = train_lm_stacked(stack, get_batch, steps=S, start_step=s0, optimizer_state=ck["optimizer"], log_every=max((S - s0) // 10, 1),
                             **branch, **common)
        vl = evaluate_lm_stacked(stack, val_stacked, dev)
        out_branches.append({"steps": S, "start": s0, "D": S * tps, "C": S * tps * fpt, "val_loss": vl,
                             "val_loss_adj": [v - (t - e) for v, t, e in zip(vl, true_nll, H)], "train_loss": [hk["final_loss"] for hk in h]})
    ref = models[0]
    return {"d_model": m["d_model"], "N": ref.num_params(), "N_total": ref.num_params(False), "flops_per_token": fpt, "tokens_per_step": tps,
            "seeds": cfg["seeds"], "lr": tr["lr"], "warmup": tr["warmup"], "entropy_rate": H, "eval_true_nll": true_nll, "branches": out_branches,
            "trunk": {"step": [e["step"] for e in h_tr[0]["eval"]], "val_loss": [[e["val_loss"] for e in hk["eval"]] for hk in h_tr],
                      "train_step": h_tr[0]["step"], "train_loss": [hk["loss"] for hk in h_tr]},
            "trunk_steps": trunk_len, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def run_width(cfg: dict[str, Any], refresh: bool = False) -> dict[str, Any]:
    """Train (or load from the cache) one width's trunk and cooldown branches for the stacked worlds of `cfg`."""
    return cached("scaling_wsd", cfg, lambda: _train_width(cfg), refresh=refresh)


def endpoint_rows(res: dict[str, Any], budget_of: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """One row per (world, branch) of a `run_width` result: seed, width, N, N_total, steps, D, C, L (= val_loss_adj),
    val_loss, lr, and the nominal budget of the branch (`budget_of[steps]`, NaN when absent)."""
    rows = []
    for b in res["branches"]:
        for j, s in enumerate(res["seeds"]):
            rows.append({"seed": s, "width": res["d_model"], "N": res["N"], "N_total": res["N_total"], "steps": b["steps"], "D": b["D"], "C": b["C"],
                         "L": b["val_loss_adj"][j], "val_loss": b["val_loss"][j], "lr": res["lr"][j], "model": j,
                         "budget": (budget_of or {}).get(b["steps"], float("nan"))})
    return rows


def pick_lr(widths: Sequence[float], lrs: Sequence[float], losses: np.ndarray) -> dict[str, Any]:
    """Per-width peak LR from a pilot: `losses[i, j]` is width i's annealed loss at LR j. Returns the per-width
    argmin ("best"), whether it lies inside the grid ("inside"), and a smooth law log η* = c₀ + c₁·log d fitted
    to the argmins (the LR of every width, `lr_of(d)`, clipped to the grid's range; needs ≥ 2 widths)."""
    w, g, L = np.asarray(widths, float), np.asarray(lrs, float), np.asarray(losses, float)
    j = np.argmin(L, axis=1)
    best = g[j]
    c1, c0 = np.polyfit(np.log(w), np.log(best), 1) if len(w) > 1 else (0.0, float(np.log(best[0])))
    lo, hi = float(g.min()), float(g.max())
    return {"best": best, "inside": (j > 0) & (j < len(g) - 1), "slope": float(c1), "intercept": float(c0),
            "lr_of": lambda d: float(np.clip(np.exp(c0 + c1 * np.log(d)), lo, hi))}


def tokens_per_param_at(n_opt: float, budget: float, n_layer: int, vocab_size: int, block_size: int, axis: str = "total") -> float:
    """D/N at the width whose `axis` parameter count is `n_opt`, for exact-FLOP budget C: D = C / FLOPs-per-token(d)."""
    ds = np.geomspace(1.0, 4096.0, 20000)
    N = axis_params(ds, n_layer, vocab_size, block_size, axis)
    d = float(np.exp(np.interp(np.log(n_opt), np.log(N), np.log(ds))))
    _, fpt = gpt_size(d, n_layer, vocab_size, block_size)
    return float(budget / fpt / n_opt)


def annealed_envelope(curves: Sequence[tuple[float, Sequence[float], Sequence[float]]], grid: Sequence[float]) -> dict[str, Any]:
    """Approach 1 on annealed endpoints: `curves` = [(N, C_b[], L_b[])] per width (its annealed losses at its branch
    budgets). At each C of `grid` the lowest loss among the widths whose endpoints span C (linear in log C between
    endpoints) gives N_opt(C); a = slope of log N_opt on log C over the grid points some width reaches. Returns
    {"C", "N_opt", "L_opt", "a", "covered"} (covered: share of the grid some width spans)."""
    Cs = np.asarray(grid, float)
    n_opt, l_opt = np.full(len(Cs), np.nan), np.full(len(Cs), np.inf)
    for n, c, loss in curves:
        c, loss = np.asarray(c, float), np.asarray(loss, float)
        o = np.argsort(c)
        c, loss = c[o], loss[o]
        for i, x in enumerate(Cs):
            if c[0] * (1 - 1e-6) <= x <= c[-1] * (1 + 1e-6):
                v = float(np.interp(np.log(x), np.log(c), loss))
                if v < l_opt[i]:
                    l_opt[i], n_opt[i] = v, n
    ok = np.isfinite(l_opt)
    a = float(np.polyfit(np.log(Cs[ok]), np.log(n_opt[ok]), 1)[0]) if ok.sum() > 1 else float("nan")
    return {"C": Cs[ok], "N_opt": n_opt[ok], "L_opt": l_opt[ok], "a": a, "covered": float(ok.mean())}


def envelope_grid(budgets: Sequence[float]) -> list[float]:
    """The budgets and the geometric midpoint of each consecutive pair (the annealed-envelope grid)."""
    b = sorted(float(x) for x in budgets)
    mids = [math.sqrt(x * y) for x, y in zip(b, b[1:])]
    return sorted(b + mids)


def pilot_optimum(N: Sequence[float], L: Sequence[float], n_near: int = 7) -> dict[str, Any]:
    """The pilot IsoFLOP's optimum: a parabola in log N (`fit.fit_parabola`, Approach 2's profile) through the
    `n_near` sizes nearest the lowest loss. Returns {"N_opt", "bracketed" (positive curvature and the minimum
    strictly inside the sizes used), "N_used", "parabola"}; unbracketed falls back to the lowest point."""
    from lossbook.scaling.fit import fit_parabola

    N, L = np.asarray(N, float), np.asarray(L, float)
    o = np.argsort(N)
    N, L = N[o], L[o]
    i = int(np.argmin(L))
    lo = int(np.clip(i - n_near // 2, 0, max(len(N) - n_near, 0)))
    n, y = N[lo : lo + n_near], L[lo : lo + n_near]
    try:
        p = fit_parabola(n, y)
        inside = bool(n.min() < p.x_opt < n.max())
    except ValueError:
        p, inside = None, False
    return {"N_opt": p.x_opt if inside else float(N[i]), "bracketed": inside, "N_used": n.tolist(), "parabola": p}
