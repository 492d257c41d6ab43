"""Sweep points for the scaling notebooks: train one tiny GPT on a corpus, cached by config hash, logged as a child run.

`run_point(cfg)` returns a plain dict (N, N_total, D, C, val_loss, curves, wall time, throughput). The config is
a nested dict of plain values (data, model, train); `lossbook.cache.cached("scaling_point", cfg, ...)` stores
the result under runs/cache/scaling_point/<hash>.pt, so re-running a notebook does not retrain and notebooks
that ask for the same point share it. Each freshly trained point is logged as an MLflow child run of the
active run (tag `mlflow.parentRunId`), with its params, final metrics and its loss curve.

Corpora: {"kind": "tasks", n_tasks, code_alphabet, code_len, n_symbols, zipf, eps, seed} —
`lossbook.scaling.task_language.TaskLanguage`: windows start on an episode boundary (with `unique_tokens`, windows
repeat a fixed pool of that many tokens of the same source: repetition without distribution shift), the Bayes-optimal loss of the
scored targets is `bayes_loss(block_size)` (reported as `entropy_rate`, the E a converged law should reach); we
also report `val_loss_adj` = val_loss − (Ĥ_eval − H), where Ĥ_eval is the true source's own NLL on the same
tokens (a control variate that removes the eval sample's luck; same shift for every model).
{"kind": "shakespeare", val_fraction, unique_tokens} — random windows from the first `unique_tokens` training
characters (repetition), validation on the held-out tail. (The first-order Markov source the notebooks used
before issue 16 is gone: its table lives in the embeddings, so it cannot show a law in non-embedding N.)

Opt-in speed path: a config with "fast": `train.lm.fast_options(d_model, device)` (exact GELU, fused AdamW, bf16
where it pays) trains with those kernels; the options are part of the config, hence of the cache key. Configs
without the key (every notebook before issue 16 item 6) train and hash exactly as before. The Chinchilla
notebook's annealed IsoFLOP endpoints come from `scaling.wsd_sweep` (trunks + cooldown branches).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from lossbook import repro
from lossbook.cache import cached
from lossbook.data.lm_batches import eval_windows, window_batches
from lossbook.models.gpt import GPT, GPTConfig, count_params_by_hand
from lossbook.scaling.task_language import TaskLanguage
from lossbook.train.lm import evaluate_lm, train_lm

_SOURCES: dict[str, Any] = {}
TASK_KEYS = ("n_tasks", "code_alphabet", "code_len", "n_symbols", "zipf", "eps", "seed")


def task_language(d: dict[str, Any]) -> TaskLanguage:
    """The `TaskLanguage` of a data config {"kind": "tasks", ...} (cached per config)."""
    key = repr(sorted((k, d[k]) for k in TASK_KEYS))
    if key not in _SOURCES:
        _SOURCES[key] = TaskLanguage(**{k: d[k] for k in TASK_KEYS})
    return _SOURCES[key]


def model_config(m: dict[str, Any], vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=m["block_size"], n_layer=m["n_layer"], n_head=m["n_head"], d_model=m["d_model"],
                     dropout=m.get("dropout", 0.0))


def point_size(model: dict[str, Any], vocab_size: int) -> dict[str, float]:
    """N (non-embedding), N_total and exact training FLOPs per token of a model config (sizes a sweep)."""
    mc = model_config(model, vocab_size)
    counts = count_params_by_hand(mc)
    with torch.device("meta"):
        fpt = GPT(mc).flops_per_token(mc.block_size, training=True)
    return {"N": counts["non_embedding"], "N_total": counts["total"], "flops_per_token": fpt}


def stream_seed(data: dict[str, Any], train_seed: int) -> int:
    """The seed of a `tasks` point's training stream (or pool): one per (data seed, train seed) pair."""
    return int(data.get("data_seed", data["seed"])) * 7919 + int(train_seed)


def _train_point(cfg: dict[str, Any]) -> dict[str, Any]:
    data, mcfg, tr = cfg["data"], cfg["model"], cfg["train"]
    repro.seed_everything(tr["seed"])
    if data["kind"] == "tasks":
        src = task_language(data)
        V = src.vocab_size
        stream = stream_seed(data, tr["seed"])
        if data.get("unique_tokens"):  # repetition without shift: a fixed pool of the same source, reshuffled every epoch
            get_batch = src.repeat_batch_fn(tr["batch_size"], mcfg["block_size"], int(data["unique_tokens"]), seed=stream)
        else:
            get_batch = src.batch_fn(tr["batch_size"], mcfg["block_size"], seed=stream)
        val_batches = src.eval_set(mcfg["block_size"], data.get("eval_tokens", 16384), data["seed"])
        true_nll, H = src.eval_true_nll(val_batches), src.bayes_loss(mcfg["block_size"])
    elif data["kind"] == "shakespeare":
        from lossbook.scaling.shakespeare import load_shakespeare

        corpus = load_shakespeare()
        V = corpus.vocab_size
        train, val = corpus.split(data.get("val_fraction", 0.05))
        get_batch = window_batches(train, tr["batch_size"], mcfg["block_size"], seed=tr["seed"], unique_tokens=data.get("unique_tokens"))
        val_batches = eval_windows(val, mcfg["block_size"], max_windows=data.get("eval_tokens", 32768) // mcfg["block_size"])
        true_nll, H = float("nan"), float("nan")
    else:
        raise ValueError(f"unknown corpus kind {data['kind']!r}; expected 'tasks' or 'shakespeare'")
    torch.manual_seed(tr["seed"])
    fast = cfg.get("fast") or {"model": {}, "train": {}}  # opt-in speed path (`fast_options`); absent: today's kernels and key
    model = GPT(model_config(mcfg, V), **fast["model"])
    n_evals = int(tr.get("n_evals", 8))
    every = max(tr["steps"] // n_evals, 1)
    hist = train_lm(model, get_batch, steps=tr["steps"], lr=tr["lr"], weight_decay=tr.get("weight_decay", 0.1), schedule=tr.get("schedule", "cosine"),
                    warmup=tr.get("warmup", 0), grad_clip=1.0, device=cfg.get("device", "cpu"), progress=False,
                    eval_fn=lambda s: {"val_loss": evaluate_lm(model, val_batches, cfg.get("device", "cpu"))}, eval_every=every, log_every=max(tr["steps"] // 100, 1),
                    **fast["train"])
    val = hist["eval"][-1]["val_loss"]
    fpt = hist["flops_per_token"]
    res = {
        "N": model.num_params(), "N_total": model.num_params(False), "D": hist["total_tokens"], "C": hist["total_flops"], "C_6ND": 6.0 * model.num_params() * hist["total_tokens"],
        "flops_per_token": fpt, "val_loss": val, "val_loss_adj": val - (true_nll - H) if math.isfinite(true_nll) else val,
        "eval_true_nll": true_nll, "entropy_rate": H, "final_train_loss": hist["final_loss"], "wall_s": hist["wall_s"],
        "tokens_per_s": hist["total_tokens"] / hist["wall_s"], "flops_per_s": hist["total_flops"] / hist["wall_s"],
        "curve": {"step": hist["step"], "tokens": hist["tokens"], "flops": hist["flops"], "loss": hist["loss"], "lr": hist["lr"]},
        "val_curve": {"step": [e["step"] for e in hist["eval"]], "val_loss": [e["val_loss"] for e in hist["eval"]]},
    }
    res["val_curve"]["flops"] = [s * fpt * tr["batch_size"] * mcfg["block_size"] for s in res["val_curve"]["step"]]
    return res


def log_child(name: str, cfg: dict[str, Any], res: dict[str, Any]) -> None:
    import mlflow
    from mlflow.entities import Metric, Param

    from lossbook import tracking

    parent = mlflow.active_run()
    if parent is None:
        return
    client = tracking.configure()
    run = client.create_run(parent.info.experiment_id, run_name=name, tags={"mlflow.parentRunId": parent.info.run_id, "kind": "sweep_point"})
    rid = run.info.run_id
    flat = list(tracking.flatten(cfg).items())
    for i in range(0, len(flat), 100):
        client.log_batch(rid, params=[Param(k, v) for k, v in flat[i : i + 100]])
    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, 0) for k, v in res.items() if isinstance(v, (int, float)) and math.isfinite(float(v))]
    ms += [Metric("train_loss", float(v), now, int(s)) for s, v in zip(res["curve"]["step"], res["curve"]["loss"])]
    ms += [Metric("val_loss_curve", float(v), now, int(s)) for s, v in zip(res["val_curve"]["step"], res["val_curve"]["val_loss"])]
    for i in range(0, len(ms), 1000):
        client.log_batch(rid, metrics=ms[i : i + 1000])
    client.set_terminated(rid, "FINISHED")


def run_point(cfg: dict[str, Any], name: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Train (or load from cache) one sweep point; fresh points are logged as child runs of the active run."""
    fresh = {"hit": True}

    def build() -> dict[str, Any]:
        fresh["hit"] = False
        return _train_point(cfg)

    res = cached("scaling_point", cfg, build, refresh=refresh)
    if not fresh["hit"]:
        m = cfg["model"]
        log_child(name or f"L{m['n_layer']}-d{m['d_model']}-steps{cfg['train']['steps']}", cfg, res)
    return res


def gpt_size(d_model: float, n_layer: int, vocab_size: int, block_size: int) -> tuple[float, float]:
    """(N non-embedding, training FLOPs per token) of a bias-free GPT with d_ff = 4d, as smooth functions of d.

    N = L·(12d² + 2d) + d;  FLOPs/token = 3·[L·(24d² + 2d(T+1)) + 2dV]  (matches GPT.num_params/flops_per_token).
    """
    d = np.asarray(d_model, float)
    N = n_layer * (12 * d**2 + 2 * d) + d
    fpt = 3 * (n_layer * (24 * d**2 + 2 * d * (block_size + 1)) + 2 * d * vocab_size)
    return N, fpt


AXES = ("total", "non_embedding")


def axis_params(d_model: float, n_layer: int, vocab_size: int, block_size: int, axis: str = "total") -> np.ndarray:
    """Parameter count on one axis as a smooth function of d: "non_embedding" (Kaplan's N) or "total" (N plus the
    tied token embedding V·d and the position embedding T·d). With exact training FLOPs C, the total count is the
    consistent one: C/(6·N_total·D) = 1 up to the attention terms, while C/(6·N·D) runs far above 1 at small d
    (Pearce & Song 2024, arXiv 2406.12907)."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    N, _ = gpt_size(d_model, n_layer, vocab_size, block_size)
    return N + (0 if axis == "non_embedding" else (vocab_size + block_size) * np.asarray(d_model, float))


def optimal_on_axis(predict, budgets, n_layer: int, vocab_size: int, block_size: int, axis: str = "total",
                    d_range=(2.0, 1024.0)) -> dict[str, np.ndarray | float]:
    """Approach 3's N_opt(C) read off its own fitted law on one axis: for each exact-FLOP budget C, the width d
    minimising predict(N_axis(d), C / FLOPs-per-token(d)); then a = slope of log N_opt on log C (no C = 6ND
    assumption, unlike β/(α+β)). Returns {"C", "N_opt", "L_opt", "d_opt", "a", "at_edge"} (at_edge: a minimum on
    the edge of `d_range`)."""
    ds = np.geomspace(*d_range, 6000)
    N = axis_params(ds, n_layer, vocab_size, block_size, axis)
    _, fpt = gpt_size(ds, n_layer, vocab_size, block_size)
    Cs = np.asarray(budgets, float)
    idx = [int(np.argmin(predict(N, c / fpt))) for c in Cs]
    n_opt = N[idx]
    a = float(np.polyfit(np.log(Cs), np.log(n_opt), 1)[0]) if len(Cs) > 1 else float("nan")
    return {"C": Cs, "N_opt": n_opt, "L_opt": np.array([float(predict(N[i : i + 1], c / fpt[i : i + 1])[0]) for i, c in zip(idx, Cs)]),
            "d_opt": ds[idx], "a": a, "at_edge": bool(min(idx) == 0 or max(idx) == len(ds) - 1)}


def isoflop_widths(budget: float, ladder: list[int], n_layer: int, vocab_size: int, block_size: int, n_sizes: int = 5,
                   tokens_per_param: float = 20.0, axis: str = "non_embedding") -> list[int]:
    """`n_sizes` consecutive ladder widths whose D/N (D = budget / FLOPs-per-token, N on `axis`) is centred on `tokens_per_param`."""
    ratios = []
    for d in ladder:
        _, fpt = gpt_size(d, n_layer, vocab_size, block_size)
        N = axis_params(d, n_layer, vocab_size, block_size, axis)
        ratios.append(np.log((budget / fpt) / N) - np.log(tokens_per_param))
    n_sizes = min(n_sizes, len(ladder))
    best = min(range(len(ladder) - n_sizes + 1), key=lambda i: abs(np.mean(ratios[i : i + n_sizes])))
    return ladder[best : best + n_sizes]
