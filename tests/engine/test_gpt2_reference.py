"""The benchmark's GPT-2 references: Hugging Face `GPT2LMHeadModel` built to our shape, and `GPT2Ref` (the fallback
re-implementation used when transformers is not importable) computing the same logits and gradients from the same
weights. Needs the `bench` extra (transformers); skipped without it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from lossbook.models.gpt import GPTConfig
from lossbook.train.lm import lm_loss

pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "lm_throughput.py"


def _bench():
    spec = importlib.util.spec_from_file_location("lm_throughput_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_gpt2ref_is_hugging_face_gpt2():
    b = _bench()
    cfg = GPTConfig(vocab_size=37, block_size=12, n_layer=2, n_head=2, d_model=16)
    torch.manual_seed(0)
    hf, name = b.build_reference(cfg)
    assert name.startswith("transformers.GPT2LMHeadModel")
    m = hf.m
    assert (m.config.n_embd, m.config.n_layer, m.config.n_head, m.config.n_positions, m.config.vocab_size) == (16, 2, 2, 12, 37)
    assert m.config.resid_pdrop == m.config.embd_pdrop == m.config.attn_pdrop == 0.0
    ref = b.GPT2Ref(cfg)
    t = m.transformer
    sd = {"wte.weight": t.wte.weight, "wpe.weight": t.wpe.weight, "ln_f.weight": t.ln_f.weight, "ln_f.bias": t.ln_f.bias}
    for i, h in enumerate(t.h):  # HF's Conv1D stores [in, out]: nn.Linear's weight transposed
        for ours, theirs in (("ln_1", h.ln_1), ("ln_2", h.ln_2)):
            sd[f"blocks.{i}.{ours}.weight"], sd[f"blocks.{i}.{ours}.bias"] = theirs.weight, theirs.bias
        for ours, theirs in (("c_attn", h.attn.c_attn), ("c_proj", h.attn.c_proj), ("c_fc", h.mlp.c_fc), ("mlp_proj", h.mlp.c_proj)):
            sd[f"blocks.{i}.{ours}.weight"], sd[f"blocks.{i}.{ours}.bias"] = theirs.weight.T, theirs.bias
    with torch.no_grad():  # non-zero biases and gains, so every term is exercised
        for v in sd.values():
            v.add_(0.05 * torch.randn_like(v))
    ref.load_state_dict({k: v.detach().clone() for k, v in sd.items()})
    assert torch.equal(m.lm_head.weight, t.wte.weight)  # tied head
    idx = torch.randint(0, 37, (3, 12), generator=torch.Generator().manual_seed(1))
    lh, lr = hf(idx), ref(idx)
    torch.testing.assert_close(lr, lh, rtol=0, atol=1e-5)
    lm_loss(lh, idx).backward()
    lm_loss(lr, idx).backward()
    torch.testing.assert_close(ref.wte.weight.grad, t.wte.weight.grad, rtol=0, atol=1e-5)
    torch.testing.assert_close(ref.blocks[1].c_fc.weight.grad, t.h[1].mlp.c_fc.weight.grad.T, rtol=0, atol=1e-5)
