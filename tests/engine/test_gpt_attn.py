"""The opt-in `attn="bmm"` attention kernel (`models.gpt.bmm_attention`): the same causal softmax attention as SDPA
(values and gradients against an independent per-query loop in float64 and against SDPA in float32), the same
GPT / StackedGPT functions, bf16 training that follows fp32; the default stays SDPA."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.models.gpt import ATTNS, GPT, GPTConfig, StackedGPT, attention, bmm_attention
from lossbook.train.lm import lm_loss, stack_batches, train_lm, train_lm_stacked

CFG = GPTConfig(vocab_size=19, block_size=16, n_layer=2, n_head=2, d_model=32)


def _gpt(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG, **kw)


def _loop_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention written per query: y_i = Σ_{j≤i} softmax_j(q_i·k_j/√hd) v_j (the closed form, no mask)."""
    T, hd = q.shape[-2:]
    rows = [torch.softmax(q[..., i : i + 1, :] @ k[..., : i + 1, :].transpose(-1, -2) / math.sqrt(hd), -1) @ v[..., : i + 1, :] for i in range(T)]
    return torch.cat(rows, dim=-2)


def test_bmm_attention_is_causal_softmax_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    gy = torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64)
    got = bmm_attention(q, k, v)
    grads = torch.autograd.grad(got, (q, k, v), gy)
    want = _loop_attention(q, k, v)
    want_grads = torch.autograd.grad(want, (q, k, v), gy)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for a, b in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # and SDPA in float32 (the default kernel): equal to fp32 rounding, values and gradients
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = F.scaled_dot_product_attention(q32, k32, v32, is_causal=True)
    out = attention(q32, k32, v32, 0.0, False, "bmm")
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    for a, b in zip(torch.autograd.grad(out, (q32, k32, v32), gy.float()), torch.autograd.grad(ref, (q32, k32, v32), gy.float()), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_bmm_attention_dropout_is_unbiased():
    """Dropout acts on the attention weights (as SDPA's): each draw differs, their mean is the p = 0 output."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 5, 4, generator=g) for _ in range(3))
    torch.manual_seed(0)
    draws = torch.stack([bmm_attention(q, k, v, dropout_p=0.5) for _ in range(4000)])
    assert not torch.equal(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), bmm_attention(q, k, v), rtol=0, atol=0.06)


def test_gpt_bmm_attention_is_the_same_model():
    a, b = _gpt(), _gpt(attn="bmm")
    assert a.attn == "sdpa" and a.blocks[0].attn.attn == "sdpa" and StackedGPT(CFG, 2).attn == "sdpa"  # the default is unchanged
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))  # same init
    idx = torch.randint(0, 19, (3, 16), generator=torch.Generator().manual_seed(2))
    la, lb = lm_loss(a(idx), idx), lm_loss(b(idx), idx)
    torch.testing.assert_close(b(idx), a(idx), rtol=0, atol=1e-5)
    la.backward()
    lb.backward()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="attn"):
        GPT(CFG, attn="flash")
    with pytest.raises(ValueError, match="attn"):
        StackedGPT(CFG, 2, attn="flash")
    assert ATTNS == ("sdpa", "bmm")


def test_stacked_bmm_attention_equals_separate_models():
    ms = [_gpt(0, gelu="exact", attn="bmm"), _gpt(1, gelu="exact", attn="bmm")]
    st = StackedGPT.from_models(ms)
    assert st.attn == "bmm" and all(m.attn == "bmm" for m in st.to_models())
    idx = torch.randint(0, 19, (2, 3, 16), generator=torch.Generator().manual_seed(3))
    out = st(idx)
    for j, m in enumerate(ms):
        torch.testing.assert_close(out[j], m(idx[j]), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="attn"):
        StackedGPT.from_models([ms[0], _gpt(1, gelu="exact")])


def _batches(step: int, B: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    s = torch.randint(0, 19, (B, 17), generator=g)
    for t in range(1, 17):  # random first token, then a deterministic successor rule: learnable to ~0 loss
        s[:, t] = (s[:, t - 1] * 5 + 2) % 19
    return s[:, :-1], s[:, 1:]


@pytest.mark.parametrize("stacked", [False, True])
def test_bf16_bmm_attention_tracks_fp32(stacked):
    """bf16 autocast with the attention itself in bf16 (`attn="bmm"`, `attn_fp32=False`: scores and weighted sum
    as bf16 batched matmuls, softmax in fp32 under autocast) follows the fp32 SDPA curve within the tolerance of
    the other bf16 paths: |L_bf16 - L_fp32| <= 0.02 + 0.02 L_fp32 at every step of 40, both below half the start."""
    kw = dict(steps=40, lr=1e-2, warmup=4, progress=False)
    curves = {}
    for dtype, attn in (("float32", "sdpa"), ("bfloat16", "bmm")):
        if stacked:
            ms = [_gpt(0, gelu="exact", attn=attn), _gpt(1, gelu="exact", attn=attn)]
            h = train_lm_stacked(StackedGPT.from_models(ms), stack_batches([_batches, _batches]), dtype=dtype, fused=True, **kw)[1]
        else:
            h = train_lm(_gpt(gelu="exact", attn=attn), _batches, dtype=dtype, fused=True, **kw)
        curves[dtype] = torch.tensor(h["loss"])
    f32, b16 = curves["float32"], curves["bfloat16"]
    assert torch.all((b16 - f32).abs() <= 0.02 + 0.02 * f32), (f32, b16)
    assert f32[-1] < 0.5 * f32[0] and b16[-1] < 0.5 * b16[0]
    assert not torch.equal(f32, b16)


def test_fast_options_bf16_attention_is_opt_in(monkeypatch):
    from lossbook.train import lm

    monkeypatch.setattr(lm, "cpu_has_bf16", lambda: True)
    for d in (lm.BF16_MIN_D_MODEL - 1, lm.BF16_MIN_D_MODEL):
        assert lm.fast_options(d, bf16_attention=False) == lm.fast_options(d) and "attn" not in lm.fast_options(d)["model"]  # keys unchanged
    wide = lm.fast_options(lm.BF16_MIN_D_MODEL, bf16_attention=True)
    assert wide == {"model": {"gelu": "exact", "attn_fp32": False, "attn": "bmm"}, "train": {"fused": True, "dtype": "bfloat16"}}
    assert lm.fast_options(lm.BF16_MIN_D_MODEL - 1, bf16_attention=True) == lm.fast_options(lm.BF16_MIN_D_MODEL - 1)  # fp32: no change
    assert lm.fast_options(8, "cuda", bf16_attention=True) == lm.fast_options(8, "cuda")  # SDPA on CUDA
    monkeypatch.setattr(lm, "cpu_has_bf16", lambda: False)
    assert lm.fast_options(4 * lm.BF16_MIN_D_MODEL, bf16_attention=True) == lm.fast_options(4 * lm.BF16_MIN_D_MODEL)
    opts = wide  # valid keyword arguments of the model and the trainer
    h = train_lm(GPT(CFG, **opts["model"]), _batches, steps=3, lr=1e-3, progress=False, **opts["train"])
    assert len(h["loss"]) == 3
