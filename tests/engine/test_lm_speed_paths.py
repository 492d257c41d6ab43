"""The trainer's opt-in speed paths: exact GELU, fused AdamW + foreach clip, bf16 autocast — each checked against
the default fp32 path it replaces; the default stays what it was (tanh GELU, unfused kernels)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.models.gpt import GPT, GPTConfig, StackedGPT
from lossbook.train.lm import stack_batches, train_lm, train_lm_stacked

CFG = GPTConfig(vocab_size=19, block_size=16, n_layer=2, n_head=2, d_model=32)


def _gpt(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG, **kw)


def test_gelu_forms():
    tanh, exact = _gpt(), _gpt(gelu="exact")
    assert tanh.gelu == "tanh" and tanh.blocks[0].mlp.approximate == "tanh"  # the default is GPT-2's form, as before
    # one seed, one init, whichever form
    assert all(torch.equal(p, q) for p, q in zip(tanh.state_dict().values(), exact.state_dict().values(), strict=True))
    x = torch.linspace(-6, 6, 1001)
    phi = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    tanh_form = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    for m, want in ((exact, x * phi), (tanh, tanh_form)):
        mlp = m.blocks[0].mlp
        with torch.no_grad():
            mlp.fc.weight.zero_()
            mlp.fc.weight[:, 0] = 1.0  # fc(e_0 * x) = x in every hidden unit
            mlp.proj.weight.zero_()
            mlp.proj.weight[0, 0] = 1.0  # read unit 0 back
        inp = torch.zeros(1001, 32)
        inp[:, 0] = x
        torch.testing.assert_close(mlp(inp)[:, 0], want, rtol=1e-5, atol=1e-6)
    assert (x * phi - tanh_form).abs().max() < 1e-3  # the two forms are close, not equal
    with pytest.raises(ValueError, match="gelu"):
        GPT(CFG, gelu="erf")
    with pytest.raises(ValueError, match="gelu"):
        StackedGPT(CFG, 2, gelu="fast")


def _batches(step: int, B: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    s = torch.randint(0, 19, (B, 17), generator=g)
    for t in range(1, 17):  # random first token, then a deterministic successor rule: learnable to ~0 loss
        s[:, t] = (s[:, t - 1] * 5 + 2) % 19
    return s[:, :-1], s[:, 1:]


def test_fused_matches_default_to_rounding():
    a, b = _gpt(), _gpt()
    ha = train_lm(a, _batches, steps=30, lr=1e-2, warmup=3, grad_clip=0.5, progress=False)
    hb = train_lm(b, _batches, steps=30, lr=1e-2, warmup=3, grad_clip=0.5, progress=False, fused=True)
    assert ha["final_loss"] < 0.5 * ha["loss"][0]
    torch.testing.assert_close(torch.tensor(hb["loss"]), torch.tensor(ha["loss"]), rtol=1e-4, atol=1e-4)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("stacked,attn_fp32", [(False, False), (False, True), (True, True)])
def test_bf16_autocast_tracks_fp32(stacked, attn_fp32):
    """bf16 autocast (8-bit mantissa in the matmuls; CE and LayerNorm stay fp32) follows the fp32 loss curve:
    |L_bf16 - L_fp32| <= 0.02 + 0.02 L_fp32 at every step of a 40-step run, and both end below half the start."""
    kw = dict(steps=40, lr=1e-2, warmup=4, progress=False)
    curves = {}
    for dtype in ("float32", "bfloat16"):
        if stacked:
            ms = [_gpt(0, gelu="exact", attn_fp32=attn_fp32), _gpt(1, gelu="exact", attn_fp32=attn_fp32)]
            h = train_lm_stacked(StackedGPT.from_models(ms), stack_batches([_batches, _batches]), dtype=dtype, **kw)[1]
        else:
            h = train_lm(_gpt(gelu="exact", attn_fp32=attn_fp32), _batches, dtype=dtype, **kw)
        curves[dtype] = torch.tensor(h["loss"])
    f32, b16 = curves["float32"], curves["bfloat16"]
    assert torch.all((b16 - f32).abs() <= 0.02 + 0.02 * f32), (f32, b16)
    assert f32[-1] < 0.5 * f32[0] and b16[-1] < 0.5 * b16[0]
    assert not torch.equal(f32, b16)  # autocast really ran in bf16


def test_exact_gelu_trains_like_tanh():
    """Switching the GELU form changes the function by < 1e-3 per unit: the loss curves stay close."""
    ht = train_lm(_gpt(), _batches, steps=30, lr=1e-2, warmup=3, progress=False)
    he = train_lm(_gpt(gelu="exact"), _batches, steps=30, lr=1e-2, warmup=3, progress=False)
    assert ht["loss"][0] == pytest.approx(he["loss"][0], abs=1e-3)
    assert max(abs(a - b) for a, b in zip(ht["loss"], he["loss"], strict=True)) < 0.1
    assert F.gelu(torch.tensor(1.0)) != F.gelu(torch.tensor(1.0), approximate="tanh")


def test_attn_fp32_is_a_no_op_without_autocast_and_fp32_under_it():
    a, b = _gpt(), _gpt(attn_fp32=True)
    idx = torch.randint(0, 19, (3, 16))
    assert torch.equal(a(idx), b(idx))  # fp32: the same kernel on the same inputs
    seen = []
    b.blocks[0].attn.proj.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].dtype))
    a.blocks[0].attn.proj.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b(idx), a(idx)
    assert seen == [torch.float32, torch.bfloat16]  # attention output in fp32 with the flag, bf16 without


def test_fast_options_gate(monkeypatch):
    from lossbook.train import lm

    monkeypatch.setattr(lm, "cpu_has_bf16", lambda: True)
    assert lm.fast_options(lm.BF16_MIN_D_MODEL - 1)["train"] == {"fused": True, "dtype": "float32"}
    wide = lm.fast_options(lm.BF16_MIN_D_MODEL)
    assert wide == {"model": {"gelu": "exact", "attn_fp32": True}, "train": {"fused": True, "dtype": "bfloat16"}}
    monkeypatch.setattr(lm, "cpu_has_bf16", lambda: False)
    assert lm.fast_options(4 * lm.BF16_MIN_D_MODEL)["train"]["dtype"] == "float32"  # no native bf16: stay fp32
    assert lm.fast_options(8, "cuda")["train"]["dtype"] == "bfloat16" and lm.fast_options(8, "cuda")["model"]["attn_fp32"] is False
    opts = lm.fast_options(32)  # the options are valid keyword arguments of the model and the trainer
    h = train_lm(GPT(CFG, **opts["model"]), _batches, steps=3, lr=1e-3, progress=False, **opts["train"])
    assert len(h["loss"]) == 3
