"""Training throughput of many tiny GPTs: one at a time vs stacked, fp32 vs bf16, against the measured matmul peak.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lm_throughput.py [--ks 1,4,16 --ds 32,64,128,256 --seconds 2]

Every number is a real training step of the book's trainer (`train.lm.train_lm` for one model,
`train.lm.train_lm_stacked` for a `StackedGPT` of K models): forward, next-token CE, backward, global-norm clip,
AdamW step, LR schedule. Rows per width d and mode (fp32, or bf16 autocast):

- `one/default`: K models trained one after another with the defaults (tanh GELU, unfused AdamW) — today's path.
  One model's rate does not depend on K (the models run in turn), so it is measured once per (d, mode).
- `one/fast`: the same with the opt-in speed path: `GPT(cfg, gelu="exact", attn_fp32=True)` (attention kernel
  in fp32 under autocast; no effect in fp32 rows) and `train_lm(..., fused=True)`.
- `stack/K`: K models as one `StackedGPT` (the same options), K = 4, 16.
- `one/fast+bmm`, `stack+bmm` (`--attn sdpa,bmm`): the same with `attn="bmm"` (`models.gpt.bmm_attention`) and,
  under autocast, the attention in bf16 (`attn_fp32=False`: the point is bf16 matmuls for the scores too).
- `one/compiled` (with `--compile`): `one/fast` under `torch.compile`; the compile (first step, wall time) and
  the number of tokens after which it pays back are printed.
- `ref/gpt2`: the reference. Hugging Face `GPT2LMHeadModel` of the same shape when `transformers` is importable
  (the `bench` extra pins it: `pip install -e .[bench]`; its default SDPA attention, dropout 0, `gelu_new`, tied
  head, biases as GPT-2); otherwise `GPT2Ref` below, a plain re-implementation of GPT2LMHeadModel's eager
  forward (Conv1D-style addmm with biases, biased LayerNorms, SDPA attention, the `gelu_new` tanh formula written
  in tensor ops as HF's `NewGELUActivation` does, tied head; the same logits and gradients as HF's from the same
  weights, tests/engine/test_gpt2_reference.py). Both are trained by the same `train_lm`.

Timing: each measurement trains for at least `--seconds` of process CPU time (>= 3 steps, after warm-up steps)
and records wall time and process CPU time; tokens/s is computed from CPU time (with OMP_NUM_THREADS=1 that is
the per-core rate, robust to other processes sharing the cores; wall time is printed next to it). The matmul
peak is measured the same way (sustained for `--seconds` of CPU time, not a best-of-3 burst) on fp32 and bf16
square products, once per round, between the training measurements; % peak is achieved FLOP/s (exact per-token
count, `GPT.flops_per_token`: causal attention and unembedding included) over the fp32 peak (fp32 rows) or
the bf16 peak (bf16 rows). `os.getloadavg()` is recorded before and after. Results: printed, and written as
JSON to `--out` (default /tmp/lossbook-benchmarks/lm_throughput.json; outputs do not go in the repo).
`--profile 32:1:float32:sdpa,...` (d:K:mode:attn) prints instead where one fast-path step's self CPU time goes
(`torch.profiler`, grouped: matmul, attention kernel, GELU, cross-entropy, LayerNorm, AdamW, clip, zero_grad, other).
Measured on the AVX-512-BF16 EPYC (load ~4, shares of the profiled step): fp32 d = 32, K = 1: matmul 37%, SDPA
14%, GELU 10%, cross-entropy 9%, zero_grad/fill 5%, AdamW 4%, LayerNorm 3%, dispatch/autograd/Python 12%; K = 16:
matmul 51%, SDPA 17%, GELU 9%, elementwise 6%, cross-entropy 5%, LayerNorm 4%; d = 64, K = 1: matmul 59%, SDPA
14%, GELU 7%. The matmuls at these shapes run at 55-90% of the square-GEMM peak (K-stacked bmm 49-77 GFLOP/s,
single mm 80-99, fp32 peak 90-97), and 32 -> 128 -> 512 sequences per step lifts d = 32 only from ~30% to 35% / 34%
of peak: per-element cost, not dispatch, is what is left.

`x ref` is over the reference in the same mode; `x best ref` over the reference's faster mode at that width (HF's
bf16 attention backward is slow on CPU, so the same-mode ratio flatters bf16 rows). Targets (issue 16): >= 50% of
fp32 peak for d <= 128, >= 70% at d >= 256 (or the bf16 equivalent), >= 1.3x Hugging Face GPT-2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from lossbook.models.gpt import GPT, GPTConfig, StackedGPT
from lossbook.train.lm import train_lm, train_lm_stacked


class GPT2Ref(nn.Module):
    """GPT2LMHeadModel's eager forward, re-implemented (the reference when transformers is not importable): wte + wpe, per block
    ln_1 → c_attn (addmm, bias) → SDPA causal → c_proj, ln_2 → c_fc → gelu_new (tensor-op tanh formula) → c_proj,
    ln_f, tied lm_head. Biases everywhere, as GPT-2."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        d, ff = cfg.d_model, cfg.d_ff
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, d)
        self.wpe = nn.Embedding(cfg.block_size, d)
        self.blocks = nn.ModuleList()
        for _ in range(cfg.n_layer):
            self.blocks.append(nn.ModuleDict({"ln_1": nn.LayerNorm(d), "c_attn": nn.Linear(d, 3 * d), "c_proj": nn.Linear(d, d),
                                              "ln_2": nn.LayerNorm(d), "c_fc": nn.Linear(d, ff), "mlp_proj": nn.Linear(ff, d)}))
        self.ln_f = nn.LayerNorm(d)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    @staticmethod
    def gelu_new(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        d, h = self.cfg.d_model, self.cfg.n_head
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            q, k, v = b["c_attn"](b["ln_1"](x)).split(d, dim=2)
            q, k, v = (t.view(B, T, h, d // h).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, d)
            x = x + b["c_proj"](y)
            x = x + b["mlp_proj"](self.gelu_new(b["c_fc"](b["ln_2"](x))))
        return self.ln_f(x) @ self.wte.weight.T


def build_reference(cfg: GPTConfig) -> tuple[nn.Module, str]:
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return GPT2Ref(cfg), "GPT2Ref (transformers not importable: a re-implementation of GPT2LMHeadModel's eager ops)"
    hf = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
                    n_inner=cfg.d_ff, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new", tie_word_embeddings=True,
                    bos_token_id=None, eos_token_id=None)
    m = GPT2LMHeadModel(hf)

    class Wrap(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=idx, use_cache=False).logits

    return Wrap(m), f"transformers.GPT2LMHeadModel (attn={getattr(m.config, '_attn_implementation', '?')})"


def sustained(run: Callable[[int], None], seconds: float, warmup: int = 1, min_steps: int = 3) -> dict[str, float]:
    """Call `run(n)` (n steps) until `seconds` of process CPU time have passed, after `warmup` steps;
    {"steps", "cpu_s", "wall_s", "warmup_cpu_s", "warmup_wall_s"} (the warm-up holds a compile, if any)."""
    c0, w0 = time.process_time(), time.perf_counter()
    run(warmup)
    warm = {"warmup_cpu_s": time.process_time() - c0, "warmup_wall_s": time.perf_counter() - w0}
    c0, w0, n = time.process_time(), time.perf_counter(), 0
    while n < min_steps or time.process_time() - c0 < seconds:
        spent = time.process_time() - c0
        per_step = spent / n if n else float("inf")
        chunk = 1 if n == 0 else int(min(64, max(1, (seconds - spent) / per_step, min_steps - n)))
        run(chunk)
        n += chunk
    return {"steps": n, "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0, **warm}


def matmul_peak(dtype: torch.dtype, seconds: float, n: int = 1024) -> dict[str, float]:
    """Sustained n×n×n GEMM FLOP/s (2n³ each) over `seconds` of CPU time: {"cpu_flops", "wall_flops"}."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    r = sustained(lambda k: [a @ b for _ in range(k)], seconds)
    return {"cpu_flops": 2 * n**3 * r["steps"] / r["cpu_s"], "wall_flops": 2 * n**3 * r["steps"] / r["wall_s"]}


def batch_fn(k: int, batch: int, block: int, vocab: int) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """Fixed random tokens ([k, B, T], or [B, T] when k == 0): the step's cost does not depend on their values."""
    g = torch.Generator().manual_seed(0)
    shape = (k, batch, block) if k else (batch, block)
    x, y = torch.randint(0, vocab, shape, generator=g), torch.randint(0, vocab, shape, generator=g)
    return lambda step: (x, y)


def measure(kind: str, cfg: GPTConfig, k: int, mode: str, a: argparse.Namespace, hook: Callable[[Callable[[int], None]], None] | None = None) -> dict[str, Any]:
    """One row: train `kind` ("one/default", "one/fast", "one/fast+bmm", "one/compiled", "stack", "stack+bmm",
    "ref") and time it (or hand its `run(n_steps)` to `hook` instead, which returns {}); per-model tokens counted. "one/compiled" is "one/fast" with the model wrapped once in
    `torch.compile` (default inductor backend); its compile lands in the warm-up step, reported as warmup_wall_s."""
    torch.manual_seed(0)
    kw = dict(lr=1e-3, schedule="constant", dtype=mode, progress=False, log_every=10**9)
    bmm = kind.endswith("+bmm")
    opts = dict(gelu="exact", attn_fp32=not bmm, attn="bmm" if bmm else "sdpa")
    if kind.startswith("stack"):
        model = StackedGPT.from_models([GPT(cfg, **opts) for _ in range(k)])
        gb = batch_fn(k, a.batch, a.block, cfg.vocab_size)

        def run(n: int) -> None:
            train_lm_stacked(model, gb, steps=n, fused=True, **kw)
    else:
        fast = kind in ("one/fast", "one/fast+bmm", "one/compiled")
        model = build_reference(cfg)[0] if kind == "ref" else GPT(cfg, **opts) if fast else GPT(cfg)
        if kind == "one/compiled":
            torch._dynamo.reset()
            model = torch.compile(model)
        gb = batch_fn(0, a.batch, a.block, cfg.vocab_size)

        def run(n: int) -> None:
            train_lm(model, gb, steps=n, fused=fast, **kw)

    if hook is not None:
        hook(run)
        return {}
    r = sustained(run, a.seconds)
    with torch.device("meta"):
        fpt = GPT(cfg).flops_per_token(a.block, training=True)
    tokens = r["steps"] * a.batch * a.block * (k if kind.startswith("stack") else 1)
    return {"kind": kind, "k": k, "d": cfg.d_model, "mode": mode, **r, "tokens": tokens, "tokens_per_cpu_s": tokens / r["cpu_s"],
            "tokens_per_wall_s": tokens / r["wall_s"], "flops_per_cpu_s": tokens * fpt / r["cpu_s"]}


PROFILE_GROUPS = [("cross-entropy", ("log_softmax", "nll_loss")), ("softmax (bmm attention)", ("aten::_softmax", "_softmax_backward")),
                  ("matmul", ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")), ("attention kernel (SDPA)", ("flash_atten",)),
                  ("GELU", ("gelu",)), ("LayerNorm", ("layer_norm",)), ("AdamW", ("Optimizer.step", "_fused_adamw")),
                  ("zero_grad / fill", ("zero_grad", "aten::fill_", "aten::zero_")), ("grad-norm clip", ("vector_norm", "aten::stack", "aten::mul_", "aten::clamp")),
                  ("embedding", ("embedding",)), ("elementwise add/mul/copy/cat", ("aten::add", "aten::mul", "aten::copy_", "aten::cat", "aten::_to_copy", "aten::sum"))]


def profile_step(spec: str, a: argparse.Namespace) -> dict[str, float]:
    """Self CPU time per step (ms) of the fast path ("one/fast" for K = 1, "stack" otherwise; `attn` "sdpa" or
    "bmm") at `spec` = "d:K:mode:attn", grouped by `PROFILE_GROUPS` (first match wins; the rest is "other")."""
    from torch.profiler import ProfilerActivity, profile

    d, k, mode, attn = spec.split(":")
    cfg = GPTConfig(vocab_size=a.vocab, block_size=a.block, n_layer=a.n_layer, n_head=max(int(d) // a.head_dim, 1), d_model=int(d))
    kind = ("one/fast" if int(k) == 1 else "stack") + ("+bmm" if attn == "bmm" else "")
    steps = max(4, 64 // int(k))
    times: dict[str, float] = {}

    def hook(run: Callable[[int], None]) -> None:
        run(2)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(steps)
        for e in prof.key_averages():
            g = next((g for g, keys in PROFILE_GROUPS if any(key in e.key for key in keys)), "other (dispatch, autograd, Python)")
            times[g] = times.get(g, 0.0) + e.self_cpu_time_total / steps / 1e3

    measure(kind, cfg, int(k), mode, a, hook=hook)
    return times


def median_row(rows: list[dict[str, Any]], kind: str, k: int, d: int, mode: str) -> dict[str, Any]:
    """The round whose tokens/CPU-s is the median of the matching rows (the lower middle one for an even count)."""
    sel = sorted((r for r in rows if r["kind"] == kind and r["k"] == k and r["d"] == d and r["mode"] == mode), key=lambda r: r["tokens_per_cpu_s"])
    return sel[(len(sel) - 1) // 2]


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", default="1,4,16", help="stack sizes K (K = 1 is the one-at-a-time rows)")
    ap.add_argument("--ds", default="32,64,128,256", help="widths d_model")
    ap.add_argument("--attn", default="sdpa,bmm", help="attention kernels of the fast and stacked rows (models.gpt.ATTNS)")
    ap.add_argument("--modes", default="float32,bfloat16")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=16, help="n_head = d_model / head_dim")
    ap.add_argument("--vocab", type=int, default=128)
    ap.add_argument("--block", type=int, default=32, help="the scaling notebooks' default block_size")
    ap.add_argument("--batch", type=int, default=32, help="sequences per model per step (the notebooks' default)")
    ap.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per measurement")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole grid; the median round is reported")
    ap.add_argument("--compile", action="store_true", help="also time one/fast under torch.compile (compile time reported)")
    ap.add_argument("--profile", default="", help="d:K:mode:attn[,...]: print where a fast-path step's CPU time goes, and stop")
    ap.add_argument("--out", default="/tmp/lossbook-benchmarks/lm_throughput.json")
    a = ap.parse_args()
    if a.profile:
        out = {spec: profile_step(spec, a) for spec in a.profile.split(",")}
        for spec, times in out.items():
            total = sum(times.values())
            print(f"\n{spec}: {total:.2f} ms self CPU per profiled step (the profiler adds overhead; shares are what to read)")
            for g, v in sorted(times.items(), key=lambda kv: -kv[1]):
                print(f"  {g:36s} {v:8.3f} ms {100 * v / total:5.1f}%")
        return {"profile": out}
    ks = [int(v) for v in a.ks.split(",")]
    ds = [int(v) for v in a.ds.split(",")]
    modes = a.modes.split(",")
    attns = a.attn.split(",")
    sfx = {"sdpa": "", "bmm": "+bmm"}
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    peaks: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    ref_name = build_reference(GPTConfig(vocab_size=8, d_model=16, n_head=1))[1]
    for rnd in range(a.rounds):
        for mode in modes:
            peaks[mode].append(matmul_peak(torch.float32 if mode == "float32" else torch.bfloat16, a.seconds))
            for d in ds:
                cfg = GPTConfig(vocab_size=a.vocab, block_size=a.block, n_layer=a.n_layer, n_head=max(d // a.head_dim, 1), d_model=d)
                kinds = [("one/default", 1)] + [("one/fast" + sfx[t], 1) for t in attns] + [("one/compiled", 1)] * a.compile + [("ref", 1)]
                kinds += [("stack" + sfx[t], k) for t in attns for k in ks if k > 1]
                for kind, k in kinds:
                    row = measure(kind, cfg, k, mode, a)
                    row["round"] = rnd
                    rows.append(row)
                    print(f"  round {rnd} {mode:8s} d={d:4d} {kind:12s} K={k:3d}: {row['tokens_per_cpu_s']:9.0f} tok/cpu-s "
                          f"({row['tokens_per_wall_s']:9.0f} tok/wall-s, {row['flops_per_cpu_s'] / 1e9:5.1f} GFLOP/cpu-s)", flush=True)
    peak = {m: statistics.median(p["cpu_flops"] for p in peaks[m]) for m in modes}
    table = []
    today = {d: median_row(rows, "one/default", 1, d, "float32")["tokens_per_cpu_s"] for d in ds} if "float32" in modes else {}
    for mode in modes:
        for d in ds:
            def med(kind: str, k: int = 1, d: int = d, mode: str = mode) -> dict[str, Any]:
                return median_row(rows, kind, k, d, mode)

            base, ref = med("one/default"), med("ref")
            best_ref = max(median_row(rows, "ref", 1, d, m)["tokens_per_cpu_s"] for m in modes)
            entries = [("one/default", 1, base)] + [("one/fast" + sfx[t], 1, med("one/fast" + sfx[t])) for t in attns]
            entries += ([("one/compiled", 1, med("one/compiled"))] if a.compile else []) + [("ref/gpt2", 1, ref)]
            entries += [("stack" + sfx[t], k, med("stack" + sfx[t], k)) for t in attns for k in ks if k > 1]
            for name, k, r in entries:
                table.append({"mode": mode, "d": d, "rows": name, "K": k, "tokens_per_cpu_s": r["tokens_per_cpu_s"], "tokens_per_wall_s": r["tokens_per_wall_s"],
                              "cpu_s": r["cpu_s"], "wall_s": r["wall_s"], "warmup_wall_s": r["warmup_wall_s"], "pct_peak": 100 * r["flops_per_cpu_s"] / peak[mode],
                              "pct_fp32_peak": 100 * r["flops_per_cpu_s"] / peak.get("float32", float("nan")),
                              "x_default": r["tokens_per_cpu_s"] / base["tokens_per_cpu_s"], "x_ref": r["tokens_per_cpu_s"] / ref["tokens_per_cpu_s"],
                              "x_best_ref": r["tokens_per_cpu_s"] / best_ref,
                              "x_fp32_default": r["tokens_per_cpu_s"] / today[d] if d in today else float("nan")})
    res = {"shape": {"n_layer": a.n_layer, "head_dim": a.head_dim, "vocab": a.vocab, "block": a.block, "batch_per_model": a.batch},
           "threads": threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "reference": ref_name, "seconds": a.seconds, "rounds": a.rounds,
           "matmul_peak_cpu_flops": peak, "matmul_peaks": peaks, "load_before": load_before, "load_after": os.getloadavg(),
           "torch": torch.__version__, "table": table, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"\nshape {res['shape']}, {threads} thread(s), load {load_before} -> {res['load_after']}; reference: {ref_name}")
    print("sustained matmul peak (1024^3, CPU time): " + ", ".join(f"{m} {p / 1e9:.0f} GFLOP/s" for m, p in peak.items()))
    print("x default: over the same mode's one/default row; x fp32 def: over today's path (fp32 one/default); x ref: over the GPT-2 reference "
          "in the same mode; x best ref: over the reference's faster mode at that width")
    print(f"{'mode':8s} {'d':>4s} {'rows':12s} {'K':>3s} {'tok/cpu-s':>10s} {'tok/wall-s':>10s} {'%peak':>6s} {'%fp32pk':>7s} {'x default':>9s} "
          f"{'x fp32 def':>10s} {'x ref':>6s} {'x best ref':>10s}")
    for t in table:
        print(f"{t['mode']:8s} {t['d']:4d} {t['rows']:12s} {t['K']:3d} {t['tokens_per_cpu_s']:10.0f} {t['tokens_per_wall_s']:10.0f} {t['pct_peak']:6.1f} "
              f"{t['pct_fp32_peak']:7.1f} {t['x_default']:9.2f} {t['x_fp32_default']:10.2f} {t['x_ref']:6.2f} {t['x_best_ref']:10.2f}")
    for t in table:
        if t["rows"] == "one/compiled":
            fast = next(u for u in table if u["mode"] == t["mode"] and u["d"] == t["d"] and u["rows"] == "one/fast")
            gain = 1 / fast["tokens_per_cpu_s"] - 1 / t["tokens_per_cpu_s"]  # CPU-s saved per token
            payback = t["warmup_wall_s"] / gain if gain > 0 else float("inf")
            print(f"compile {t['mode']} d={t['d']}: {t['warmup_wall_s']:.0f} s wall for the first step, {t['tokens_per_cpu_s'] / fast['tokens_per_cpu_s']:.2f}x "
                  f"one/fast after it; pays back after {payback:.3g} tokens")
    return res


if __name__ == "__main__":
    main()
