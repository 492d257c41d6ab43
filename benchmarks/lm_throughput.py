"""Training throughput of lossbook's GPT vs a same-shape reference, and vs the machine's measured matmul peak.

    .venv/bin/python benchmarks/lm_throughput.py [--d-model 256 --n-layer 4 --threads 2 --rounds 5]

One training step = forward, next-token CE, backward, global-norm clip, AdamW step — the same function for both
models. Reference: Hugging Face `GPT2LMHeadModel` built from a `GPT2Config` of the same shape (no download;
dropout 0, its default attention implementation), or, when `transformers` is missing, a causal
`nn.TransformerEncoder` with the same width, depth, FFN size, embeddings and tied head. Rounds alternate
ours/reference so machine load hits both alike; the median round is reported. Achieved FLOP/s uses our exact
per-token count (`GPT.flops_per_token`, causal attention and unembedding included). The matmul peak is the
best of fp32 `torch.mm` on square sizes 512..2048 with the same thread count, measured inside every round
(so it sees the same machine load); we report the fraction of the best peak and the median same-round fraction. Results are printed and
written to runs/benchmarks/lm_throughput.json (with `uptime` load, since other processes inflate times).
Targets from issue 5 (2 cores, d_model = 256): ours ≥ 1.2× reference tokens/s, ≥ 50% of matmul peak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn

from lossbook import REPO_ROOT
from lossbook.models.gpt import GPT, GPTConfig
from lossbook.optim import make_optimizer
from lossbook.train.lm import lm_loss


def matmul_peak(threads: int, sizes=(256, 512, 1024, 2048), reps: int = 5) -> float:
    """Best measured fp32 GEMM FLOP/s (2·n³ per n×n product) over `sizes`."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            torch.mm(a, b)
            ts.append(time.perf_counter() - t)
        best = max(best, 2 * n**3 / min(ts))
    return best


class TorchRef(nn.Module):
    """Causal nn.TransformerEncoder LM of the same shape (pre-LN, GELU, tied head)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.block_size, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_head, cfg.d_ff, 0.0, activation="gelu", batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, cfg.n_layer, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(T)
        x = self.tok(idx) + self.pos(torch.arange(T))
        return self.head(self.ln(self.enc(x, mask=mask, is_causal=True)))


def build_reference(cfg: GPTConfig) -> tuple[nn.Module, str]:
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return TorchRef(cfg), "torch.nn.TransformerEncoder (causal)"
    hf = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
                    n_inner=cfg.d_ff, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new", tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
    m = GPT2LMHeadModel(hf)

    class Wrap(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=idx, use_cache=False).logits

    impl = getattr(m.config, "_attn_implementation", "?")
    return Wrap(m), f"transformers.GPT2LMHeadModel (attn={impl})"


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Seconds per training step (mean over `steps`, after one warm-up step)."""
    opt = make_optimizer(model, "adamw", 1e-4, weight_decay=0.1, betas=(0.9, 0.95), decay_matrices_only=True)

    def step() -> None:
        loss = lm_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd versions of both")
    ap.add_argument("--out", default=str(REPO_ROOT / "runs" / "benchmarks" / "lm_throughput.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=a.vocab, block_size=a.block, n_layer=a.n_layer, n_head=a.n_head, d_model=a.d_model)
    ours = GPT(cfg)
    ref, ref_name = build_reference(cfg)
    x = torch.randint(0, a.vocab, (a.batch, a.block))
    y = torch.randint(0, a.vocab, (a.batch, a.block))
    models = {"ours": ours, "reference": ref}
    if a.compile:
        models["ours_compiled"] = torch.compile(GPT(cfg))
        models["reference_compiled"] = torch.compile(build_reference(cfg)[0])
    times: dict[str, list[float]] = {k: [] for k in models}
    peaks: list[float] = []
    for _ in range(a.rounds):  # peak measured inside every round: the same machine load for all three
        peaks.append(matmul_peak(a.threads, sizes=(512, 1024, 2048), reps=3))
        for k, m in models.items():
            times[k].append(time_steps(m, x, y, a.steps))
    tokens = a.batch * a.block
    fpt = ours.flops_per_token(a.block, training=True)
    peak = max(peaks)
    res = {
        "shape": {"d_model": a.d_model, "n_layer": a.n_layer, "n_head": a.n_head, "vocab": a.vocab, "block": a.block, "batch": a.batch},
        "threads": a.threads,
        "reference": ref_name,
        "params_non_embedding": ours.num_params(),
        "params_ref_total": sum(p.numel() for p in ref.parameters()),
        "flops_per_token_train": fpt,
        "matmul_peak_flops": peak,
        "matmul_peak_per_round": peaks,
        "step_seconds_per_round": times,
        "load_avg": os.getloadavg(),
        "torch": torch.__version__,
    }
    for k, ts in times.items():
        med = statistics.median(ts)
        res[f"{k}_tokens_per_s"] = tokens / med
        res[f"{k}_flops_per_s"] = tokens / med * fpt
        res[f"{k}_frac_of_peak"] = tokens / med * fpt / peak
        res[f"{k}_frac_of_round_peak_median"] = statistics.median(tokens / t * fpt / p for t, p in zip(ts, peaks))
    res["ratio_ours_vs_reference"] = res["ours_tokens_per_s"] / res["reference_tokens_per_s"]
    if a.compile:
        res["ratio_compiled"] = res["ours_compiled_tokens_per_s"] / res["reference_compiled_tokens_per_s"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"shape {res['shape']}, {a.threads} threads, load {res['load_avg']}")
    print(f"reference: {ref_name}")
    for k in times:
        print(f"{k:>20s}: {res[f'{k}_tokens_per_s']:10.0f} tok/s  {res[f'{k}_flops_per_s'] / 1e9:7.2f} GFLOP/s  {100 * res[f'{k}_frac_of_peak']:5.1f}% of best peak, "
              f"{100 * res[f'{k}_frac_of_round_peak_median']:5.1f}% of same-round peak (median)")
    print(f"matmul peak per round {[round(p / 1e9, 1) for p in peaks]} GFLOP/s; ours/reference = {res['ratio_ours_vs_reference']:.2f}x "
          f"(target >= 1.2x); ours at {100 * res['ours_frac_of_peak']:.0f}% of peak (target >= 50%)")
    return res


if __name__ == "__main__":
    main()
