"""Causal-LM training: next-token cross-entropy and an AdamW loop with schedules, FLOP and throughput logging.

`train_lm(model, get_batch, steps=..., lr=...)` runs `steps` optimizer steps on batches `get_batch(step) -> (x, y)`
(LongTensors on CPU, y already shifted; −100 marks positions to ignore), with AdamW (decoupled weight decay on
matrices only, as nanoGPT/GPT-2), a cosine/WSD/constant LR schedule with linear warmup, global-norm gradient
clipping, optional autocast and torch.compile. It logs loss, lr, tokens, FLOPs, tokens/s and achieved FLOP/s
through a `tracking.MetricLogger` (whose NaN check sees "loss") and returns the history as a dict of lists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lossbook.optim import make_optimizer
from lossbook.optim.schedules import lr_multiplier
from lossbook.repro import autocast, get_device

if TYPE_CHECKING:
    from lossbook.tracking import MetricLogger


def lm_loss(logits: Tensor, targets: Tensor, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Next-token cross-entropy −log softmax(logits)[target], averaged over non-ignored positions.

    `logits` [B, T, V] (or [N, V]), `targets` [B, T] (or [N]) already aligned (targets[t] = token t+1). Positions
    with `targets == ignore_index` contribute nothing (SFT masks the prompt this way). `reduction`:
    "mean" (over kept positions), "sum", or "none" (shape of `targets`, 0 at ignored positions).
    """
    V = logits.shape[-1]
    flat = F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), ignore_index=ignore_index, reduction="none")
    if reduction == "none":
        return flat.view(targets.shape)
    if reduction == "sum":
        return flat.sum()
    if reduction == "mean":
        n = (targets != ignore_index).sum()
        return flat.sum() / n.clamp(min=1)
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


def _flops_per_token(model: nn.Module, seq_len: int) -> float:
    m = getattr(model, "_orig_mod", model)
    if hasattr(m, "flops_per_token"):
        return float(m.flops_per_token(seq_len, training=True))
    n = sum(p.numel() for p in m.parameters())
    return 6.0 * n


def train_lm(
    model: nn.Module,
    get_batch: Callable[[int], tuple[Tensor, Tensor]],
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    schedule: str = "cosine",
    warmup: int = 0,
    grad_clip: float = 1.0,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    compile: bool = False,
    logger: MetricLogger | None = None,
    eval_fn: Callable[[int], dict] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    log_every: int = 1,
    schedule_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `model` for `steps` AdamW steps; return the history.

    The LR at step t is `lr · lr_multiplier(schedule, t, steps, warmup, **schedule_kwargs)`. Each step: forward
    under autocast(`dtype`), `lm_loss`, backward, clip the global grad norm to `grad_clip` (0 disables), step.
    Every `log_every` steps: loss, lr, grad_norm, tokens (cumulative, non-ignored targets counted as the batch's
    B·T), flops (cumulative, `model.flops_per_token(T)` × tokens; 6N otherwise), tokens_per_s and flops_per_s
    (over the steps since the last log). `eval_fn(step) -> dict` runs every `eval_every` steps (if > 0) and after
    the last step; its values are logged and stored under `eval/<key>` in the history.

    A non-finite loss raises `tracking.NonFiniteLossError` naming the step (the logger's guard,
    `MetricLogger.check_finite`). Returns {"step", "loss", "lr", "grad_norm", "tokens", "flops", "tokens_per_s",
    "flops_per_s", "eval": [{"step": s, ...}], "wall_s", "final_loss", "total_tokens", "total_flops"}.
    """
    from tqdm.auto import tqdm

    from lossbook import tracking

    guard = logger if logger is not None else tracking.MetricLogger(to_run=False)
    dev = get_device(str(device)) if not isinstance(device, torch.device) else device
    model.to(dev)
    model.train()
    opt = make_optimizer(model, "adamw", lr, weight_decay=weight_decay, betas=betas, decay_matrices_only=True)
    fwd = torch.compile(model) if compile else model
    skw = dict(schedule_kwargs or {})
    hist: dict[str, Any] = {k: [] for k in ("step", "loss", "lr", "grad_norm", "tokens", "flops", "tokens_per_s", "flops_per_s")}
    hist["eval"] = []
    tokens = 0
    flops = 0.0
    fpt: float | None = None
    t_start = time.perf_counter()
    t_last, tok_last, flop_last = t_start, 0, 0.0

    def run_eval(step: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad():
            res = dict(eval_fn(step))
        model.train()
        hist["eval"].append({"step": step, **res})
        if logger is not None:
            logger.log(step, **{f"eval/{k}": float(v) for k, v in res.items() if isinstance(v, (int, float))})

    bar = tqdm(range(steps), disable=not progress, desc="train_lm", leave=False)
    loss_val = float("nan")
    for step in bar:
        x, y = get_batch(step)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if fpt is None:
            fpt = _flops_per_token(model, x.shape[1])
        cur_lr = lr * lr_multiplier(schedule, step, steps, warmup, **skw)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        with autocast(dev, dtype):
            logits = fwd(x)
        loss = lm_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
        loss_val = float(loss.detach())
        guard.check_finite(step, loss=loss_val)
        opt.step()
        tokens += x.numel()
        flops += fpt * x.numel()
        if step % log_every == 0 or step == steps - 1:
            now = time.perf_counter()
            dt = max(now - t_last, 1e-9)
            tps = (tokens - tok_last) / dt
            fps = (flops - flop_last) / dt
            t_last, tok_last, flop_last = now, tokens, flops
            rec = {"loss": loss_val, "lr": cur_lr, "grad_norm": float(gnorm), "tokens": tokens, "flops": flops, "tokens_per_s": tps, "flops_per_s": fps}
            hist["step"].append(step)
            for k, v in rec.items():
                hist[k].append(v)
            if logger is not None:
                logger.log(step, **rec)
            if progress:
                bar.set_postfix(loss=f"{loss_val:.4f}", refresh=False)
        if eval_every > 0 and (step + 1) % eval_every == 0 and step != steps - 1:
            run_eval(step + 1)
    run_eval(steps)
    if logger is not None:
        logger.flush()
    wall = time.perf_counter() - t_start
    hist.update(wall_s=wall, final_loss=loss_val, total_tokens=tokens, total_flops=flops, flops_per_token=fpt or 0.0)
    return hist


@torch.no_grad()
def evaluate_lm(model: nn.Module, batches: list[tuple[Tensor, Tensor]], device: str | torch.device = "cpu", dtype: str = "float32") -> float:
    """Mean next-token CE (nats/token) over `batches`, weighted by the number of non-ignored targets."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    was = model.training
    model.eval()
    tot, n = 0.0, 0
    for x, y in batches:
        x, y = x.to(dev), y.to(dev)
        with autocast(dev, dtype):
            logits = model(x)
        tot += float(lm_loss(logits, y, reduction="sum"))
        n += int((y != -100).sum())
    model.train(was)
    return tot / max(n, 1)
