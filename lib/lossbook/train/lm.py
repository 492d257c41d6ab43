"""Causal-LM training: next-token cross-entropy and an AdamW loop with schedules, FLOP and throughput logging.

`train_lm(model, get_batch, steps=..., lr=...)` runs `steps` optimizer steps on batches `get_batch(step) -> (x, y)`
(LongTensors on CPU, y already shifted; −100 marks positions to ignore), with AdamW (decoupled weight decay on
matrices only, as nanoGPT/GPT-2), a cosine/WSD/constant LR schedule with linear warmup, global-norm gradient
clipping, optional autocast and torch.compile. It logs loss, lr, tokens, FLOPs, tokens/s and achieved FLOP/s
through a `tracking.MetricLogger` (whose NaN check sees "loss") and returns the history as a dict of lists.

Segments, for constant-LR trunks with cooldown branches (Hägele et al. 2024): `steps` is the schedule's end step
and `start_step` its first, so `train_lm(m, gb, steps=S, start_step=s0, optimizer_state=ck["optimizer"],
schedule="wsd")` on a model loaded from a checkpoint `ck` taken at s0 by a constant-LR trunk
(`checkpoint_at=[s0]`) runs the last S − s0 steps of one WSD run of S steps: the same LRs, the same batches
`get_batch(step)` (global step indices), the same optimizer moments, hence the same weights (tested bitwise).

Many tiny models (`train_lm_stacked`): K same-shape GPTs as one `models.gpt.StackedGPT`, each trained exactly as
`train_lm` would train it alone (own data, own clipping norm, optionally its own LR), in one step of batched
matmuls. Speed, measured by `benchmarks/lm_throughput.py` (one thread, 2-layer GPT, head dim 16, T = 32, 32
sequences per model per step, tokens per CPU-second, AVX-512-BF16 EPYC without AMX, load ~4; fp32 matmul peak 90
GFLOP/s, bf16 415): the default fp32 path reaches 25 / 51 / 68 / 84% of the fp32 peak at d = 32 / 64 / 128 / 256;
the opt-in `fast_options` (exact GELU, fused AdamW) give 1.02-1.28x in fp32; stacking K = 4-16 gives up to 1.56x at
d = 32 (with `attn="bmm"`) and 0.9-1.2x at d = 64-256 (two runs; the K-fold activations leave the cache); bf16 autocast with
the attention kernel in fp32 gives 1.2 / 1.3 / 2.2 / 2.9x single-model over today's fp32 path, and with the
attention in bf16 as batched matmuls (`fast_options(..., bf16_attention=True)`), best of single and stacked, 2.5 /
2.4 / 2.8 / 3.05x. What limits fp32 at d = 32 (profile in the benchmark's docstring): the matmuls reach only 55-90%
of peak at these shapes and the attention kernel, GELU, cross-entropy, LayerNorm and elementwise ops cost about as
much again. `compile=True` gave 0.90-1.15x over the fast path after a 24-59 s compile (wall, under load) per shape:
it pays back only beyond ~1.5e7-1e9 tokens per compiled shape, or never. Every speed path is opt-in; the
defaults are today's kernels, bitwise.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lossbook.optim import make_optimizer
from lossbook.optim.schedules import lr_multiplier
from lossbook.repro import autocast, get_device

if TYPE_CHECKING:
    from lossbook.models.gpt import StackedGPT
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


BF16_MIN_D_MODEL = 64
"""Narrowest width at which `fast_options` picks bf16 autocast on a CPU with native bf16 dot products
(avx512_bf16 / amx_bf16): measured crossover on an AVX-512-BF16 EPYC, one thread (`benchmarks/lm_throughput.py`)."""


def cpu_has_bf16() -> bool:
    """Whether this CPU advertises native bf16 dot products (avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_options(d_model: int, device: str | torch.device = "cpu", bf16_attention: bool = False) -> dict[str, dict[str, Any]]:
    """The opt-in speed path for a width, as keyword arguments: {"model": for `GPT`/`StackedGPT`, "train": for
    `train_lm`/`train_lm_stacked`}. Exact GELU, fused AdamW + foreach clip; bf16 autocast on CUDA, or on a CPU
    with native bf16 when d_model >= BF16_MIN_D_MODEL, with the attention kernel kept in fp32 on CPU (its bf16
    backward is the slow part there). None of this is the default: results differ from the default path by
    rounding (fused), < 1e-3 per activation (GELU) and bf16 precision (tested against fp32 in
    tests/engine/test_lm_speed_paths.py); a caller that opts in should put these options in its cache key.

    `bf16_attention=True` (opt-in; False returns exactly the options above, so existing cache keys hold): where
    bf16 autocast is picked on a CPU, run the attention in bf16 as two batched matmuls instead of the fp32 flash
    kernel (model options `attn="bmm"`, `attn_fp32=False`; `models.gpt.bmm_attention`): this CPU's native bf16
    dot products make it 1.0-1.4x faster at d = 64-256 (`benchmarks/lm_throughput.py`, rows "+bmm"; tested
    against fp32 in tests/engine/test_gpt_attn.py). No effect in fp32 or on CUDA (SDPA is the fast kernel there)."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    bf16 = dev.type == "cuda" or (dev.type == "cpu" and d_model >= BF16_MIN_D_MODEL and cpu_has_bf16())
    model: dict[str, Any] = {"gelu": "exact", "attn_fp32": dev.type == "cpu"}
    if bf16_attention and bf16 and dev.type == "cpu":
        model.update(attn="bmm", attn_fp32=False)
    return {"model": model, "train": {"fused": True, "dtype": "bfloat16" if bf16 else "float32"}}


def _snapshot(model: nn.Module, opt: torch.optim.Optimizer, step: int) -> dict[str, Any]:
    """A checkpoint after `step` completed steps: CPU copies of the model and optimizer state dicts."""
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"step": step, "model": sd, "optimizer": copy.deepcopy(opt.state_dict())}


def _check_segment(start_step: int, steps: int, checkpoint_at: Sequence[int]) -> list[int]:
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step must be in [0, steps={steps}], got {start_step}")
    bad = [c for c in checkpoint_at if not start_step <= c <= steps]
    if bad:
        raise ValueError(f"checkpoint_at steps {bad} lie outside this segment [{start_step}, {steps}]")
    return sorted(set(int(c) for c in checkpoint_at))


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
    fused: bool = False,
    start_step: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    checkpoint_at: Sequence[int] = (),
) -> dict[str, Any]:
    """Train `model` for `steps` AdamW steps; return the history.

    The LR at step t is `lr · lr_multiplier(schedule, t, steps, warmup, **schedule_kwargs)`. Each step: forward
    under autocast(`dtype`), `lm_loss`, backward, clip the global grad norm to `grad_clip` (0 disables), step.
    Every `log_every` steps: loss, lr, grad_norm, tokens (cumulative, non-ignored targets counted as the batch's
    B·T), flops (cumulative, `model.flops_per_token(T)` × tokens; 6N otherwise), tokens_per_s and flops_per_s
    (over the steps since the last log). `eval_fn(step) -> dict` runs every `eval_every` steps (if > 0) and after
    the last step; its values are logged and stored under `eval/<key>` in the history. `fused=True` (opt-in; the
    default keeps today's kernels, bitwise) uses torch's fused AdamW and the foreach global-norm clip: the same
    update up to floating-point rounding, with fewer small ops per step (see `benchmarks/lm_throughput.py`).

    Segments (module docstring): the loop runs global steps `start_step` … `steps` − 1 (the schedule's horizon stays
    `steps`), after loading `optimizer_state` (an `optimizer.state_dict()`, e.g. a checkpoint's) when given;
    `checkpoint_at` lists global steps s in [start_step, steps] at which the state after s completed steps is
    kept in `hist["checkpoints"][s]` = {"step", "model", "optimizer"} (CPU copies). tokens/flops count this
    segment's steps. The defaults (0, None, ()) are the whole run, as before.

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
    opt = make_optimizer(model, "adamw", lr, weight_decay=weight_decay, betas=betas, decay_matrices_only=True, fused=True if fused else None)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    ckpts = _check_segment(start_step, steps, checkpoint_at)
    clip_kw: dict[str, Any] = {"foreach": True} if fused else {}
    fwd = torch.compile(model) if compile else model
    skw = dict(schedule_kwargs or {})
    hist: dict[str, Any] = {k: [] for k in ("step", "loss", "lr", "grad_norm", "tokens", "flops", "tokens_per_s", "flops_per_s")}
    hist["eval"] = []
    saved: dict[int, dict[str, Any]] = {}
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

    bar = tqdm(range(start_step, steps), disable=not progress, desc="train_lm", leave=False)
    loss_val = float("nan")
    for step in bar:
        if ckpts and ckpts[0] == step:
            saved[ckpts.pop(0)] = _snapshot(model, opt, step)
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
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"), **clip_kw)
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
    if ckpts:
        saved[ckpts.pop(0)] = _snapshot(model, opt, steps)
    if checkpoint_at:
        hist["checkpoints"] = saved
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


def stacked_lm_loss(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Per-model mean next-token CE [K] for stacked `logits` [K, B, T, V] and `targets` [K, B, T]: entry k is
    `lm_loss(logits[k], targets[k])` (mean over model k's non-ignored positions), computed in one kernel."""
    K, V = logits.shape[0], logits.shape[-1]
    flat = F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), ignore_index=ignore_index, reduction="none").view(K, -1)
    n = (targets != ignore_index).reshape(K, -1).sum(1)
    return flat.sum(1) / n.clamp(min=1)


def stack_batches(get_batches: list[Callable[[int], tuple[Tensor, Tensor]]]) -> Callable[[int], tuple[Tensor, Tensor]]:
    """One `get_batch` for a stack of K models: model k's batch from `get_batches[k]`, stacked to [K, B, T]."""

    def get_batch(step: int) -> tuple[Tensor, Tensor]:
        xs, ys = zip(*(g(step) for g in get_batches))
        return torch.stack(xs), torch.stack(ys)

    return get_batch


def train_lm_stacked(
    model: StackedGPT,
    get_batch: Callable[[int], tuple[Tensor, Tensor]],
    *,
    steps: int,
    lr: float | list[float],
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    schedule: str = "cosine",
    warmup: int = 0,
    grad_clip: float = 1.0,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    fused: bool = False,
    eval_fn: Callable[[int], list[dict]] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    log_every: int = 1,
    schedule_kwargs: dict[str, Any] | None = None,
    start_step: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    checkpoint_at: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """Train the K models of a `models.gpt.StackedGPT` at once, each exactly as `train_lm` would train it alone.

    `get_batch(step) -> (x, y)` [K, B, T] (model k's own batch in slice k; `stack_batches` builds one from K
    single-model functions). The objective is Σ_k L_k with L_k model k's mean CE (`stacked_lm_loss`), so model
    k's slice receives ∇L_k; its gradient is clipped to `grad_clip` by *its own* global norm
    ‖g_k‖ = (Σ_params ‖g_k,p‖²)^½ (coefficient min(1, clip/(‖g_k‖ + 1e-6)), torch's formula), and one AdamW
    over the stacked tensors (decay on per-model matrices only, as `train_lm`) is elementwise, hence per model.
    One LR schedule for all K; `lr` is one peak LR or K of them (an LR sweep as one stack). Per-model LRs are
    exact because an AdamW step is linear in the LR given the parameters and moments (θ' = θ − η·(λθ + m̂/(√v̂+ε)),
    the moments do not depend on η): the stack steps at the largest LR η_max, then moves model k to
    θ + (η_k/η_max)·(θ' − θ) (`torch.lerp`). `eval_fn(step) -> [K dicts]`. A non-finite loss of any model
    raises `tracking.NonFiniteLossError` naming the step and the model. `start_step`, `optimizer_state` and
    `checkpoint_at` run a segment as in `train_lm`; checkpoints (the whole stack's state) are in the first
    history's "checkpoints".

    Returns K histories with `train_lm`'s keys; tokens and FLOPs are model k's own, and tokens_per_s /
    flops_per_s are model k's tokens over the stack's wall time (the stack's throughput is their sum).
    """
    from tqdm.auto import tqdm

    from lossbook import tracking

    guard = tracking.MetricLogger(to_run=False)
    dev = get_device(str(device)) if not isinstance(device, torch.device) else device
    model.to(dev)
    model.train()
    K = model.k
    lrs = [float(v) for v in lr] if isinstance(lr, (list, tuple)) else [float(lr)] * K
    if len(lrs) != K or min(lrs) <= 0:
        raise ValueError(f"lr must be one positive float or {K} of them, got {lr!r}")
    peak = max(lrs)
    scale = None if min(lrs) == peak else torch.tensor([v / peak for v in lrs], device=dev)
    opt = make_optimizer(model.matrices(), "adamw", peak, weight_decay=weight_decay, betas=betas, fused=True if fused else None)
    opt.add_param_group({"params": model.gains(), "weight_decay": 0.0})
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    ckpts = _check_segment(start_step, steps, checkpoint_at)
    params = list(model.parameters())
    skw = dict(schedule_kwargs or {})
    keys = ("step", "loss", "lr", "grad_norm", "tokens", "flops", "tokens_per_s", "flops_per_s")
    hists: list[dict[str, Any]] = [{**{k: [] for k in keys}, "eval": []} for _ in range(K)]
    tokens, flops, fpt = 0, 0.0, None
    t_start = time.perf_counter()
    t_last, tok_last = t_start, 0

    def run_eval(step: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad():
            res = list(eval_fn(step))
        model.train()
        if len(res) != K:
            raise ValueError(f"eval_fn returned {len(res)} results for a stack of {K} models")
        for h, r in zip(hists, res):
            h["eval"].append({"step": step, **r})

    saved: dict[int, dict[str, Any]] = {}
    losses = torch.full((K,), float("nan"))
    for step in tqdm(range(start_step, steps), disable=not progress, desc=f"train_lm_stacked[{K}]", leave=False):
        if ckpts and ckpts[0] == step:
            saved[ckpts.pop(0)] = _snapshot(model, opt, step)
        x, y = get_batch(step)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if fpt is None:
            fpt = float(model.flops_per_token(x.shape[-1], training=True))
        mult = lr_multiplier(schedule, step, steps, warmup, **skw)
        for g in opt.param_groups:
            g["lr"] = peak * mult
        with autocast(dev, dtype):
            logits = model(x)
        per_model = stacked_lm_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        per_model.sum().backward()
        with torch.no_grad():
            sq = torch.stack([p.grad.pow(2).reshape(K, -1).sum(1) for p in params if p.grad is not None]).sum(0)
            gnorm = sq.sqrt()
            if grad_clip > 0:
                coef = (grad_clip / (gnorm + 1e-6)).clamp(max=1.0)
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(coef.view(K, *([1] * (p.dim() - 1))))
        losses = per_model.detach().cpu()
        for j, v in enumerate(losses.tolist()):
            guard.check_finite(step, where=f"model {j} of the stack", loss=v)
        if scale is None:
            opt.step()
        else:
            with torch.no_grad():
                before = [p.detach().clone() for p in params]
                opt.step()
                for p, b in zip(params, before, strict=True):
                    p.copy_(torch.lerp(b, p, scale.view(K, *([1] * (p.dim() - 1)))))
        tokens += x[0].numel()
        flops += fpt * x[0].numel()
        if step % log_every == 0 or step == steps - 1:
            now = time.perf_counter()
            dt = max(now - t_last, 1e-9)
            tps = (tokens - tok_last) / dt
            t_last, tok_last = now, tokens
            gn = gnorm.cpu().tolist()
            for j, h in enumerate(hists):
                rec = {"step": step, "loss": float(losses[j]), "lr": lrs[j] * mult, "grad_norm": gn[j], "tokens": tokens, "flops": flops,
                       "tokens_per_s": tps, "flops_per_s": tps * fpt}
                for k, v in rec.items():
                    h[k].append(v)
        if eval_every > 0 and (step + 1) % eval_every == 0 and step != steps - 1:
            run_eval(step + 1)
    if ckpts:
        saved[ckpts.pop(0)] = _snapshot(model, opt, steps)
    if checkpoint_at:
        hists[0]["checkpoints"] = saved
    run_eval(steps)
    wall = time.perf_counter() - t_start
    for j, h in enumerate(hists):
        h.update(wall_s=wall, final_loss=float(losses[j]), total_tokens=tokens, total_flops=flops, flops_per_token=fpt or 0.0)
    return hists


@torch.no_grad()
def evaluate_lm_stacked(model: StackedGPT, batches: list[tuple[Tensor, Tensor]], device: str | torch.device = "cpu", dtype: str = "float32") -> list[float]:
    """Per-model mean next-token CE (nats/token) of a `StackedGPT` over `batches`: (x, y) either [B, T] (every
    model sees the same tokens) or [K, B, T]; weighted by the number of non-ignored targets, as `evaluate_lm`."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    was = model.training
    model.eval()
    K = model.k
    tot = torch.zeros(K, dtype=torch.float64)
    n = torch.zeros(K, dtype=torch.float64)
    for x, y in batches:
        if x.dim() == 2:
            x, y = x.expand(K, *x.shape), y.expand(K, *y.shape)
        x, y = x.to(dev), y.to(dev)
        with autocast(dev, dtype):
            logits = model(x)
        keep = (y != -100).reshape(K, -1)
        tot += (stacked_lm_loss(logits, y) * keep.sum(1)).double().cpu()
        n += keep.sum(1).double().cpu()
    model.train(was)
    return (tot / n.clamp(min=1)).tolist()
