"""StackedGPT: K stacked models compute, and train, what K separate GPTs compute and train."""

from __future__ import annotations

import pytest
import torch

from lossbook.models.gpt import GPT, GPTConfig, StackedGPT
from lossbook.train.lm import (
    evaluate_lm,
    evaluate_lm_stacked,
    lm_loss,
    stack_batches,
    stacked_lm_loss,
    train_lm,
    train_lm_stacked,
)

V, T = 23, 12


def _models(k: int, gelu: str = "exact", perturb: float = 0.0, **kw) -> list[GPT]:
    cfg = GPTConfig(**{"vocab_size": V, "block_size": T, "n_layer": 2, "n_head": 2, "d_model": 16, **kw})
    out = []
    for j in range(k):
        torch.manual_seed(100 + j)
        m = GPT(cfg, gelu=gelu)
        with torch.no_grad():  # random gains/biases too, so a slot mix-up cannot hide behind ones and zeros
            for p in m.parameters():
                p.add_(perturb * torch.randn_like(p))
        out.append(m)
    return out


@pytest.mark.parametrize("tie,bias,gelu", [(True, False, "exact"), (False, True, "tanh"), (True, True, "exact")])
def test_forward_equals_separate_models(tie, bias, gelu):
    ms = _models(3, gelu=gelu, perturb=0.1, tie_weights=tie, bias=bias)
    s = StackedGPT.from_models(ms)
    idx = torch.randint(0, V, (3, 4, T))
    logits, hidden = s(idx, return_hidden=True)
    for j, m in enumerate(ms):
        lj, hj = m(idx[j], return_hidden=True)
        torch.testing.assert_close(logits[j], lj, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hidden[j], hj, rtol=1e-5, atol=1e-5)
    assert s.flops_per_token(T) == ms[0].flops_per_token(T) and s.num_params() == ms[0].num_params()


def test_state_dict_round_trip_and_validation():
    ms = _models(2, perturb=0.1, tie_weights=False, bias=True)
    s = StackedGPT.from_models(ms)
    for j, m in enumerate(ms):
        sd = s.state_dict_of(j)
        assert set(sd) == set(m.state_dict())
        assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())
    back = s.to_models()
    assert all(torch.equal(p, q) for p, q in zip(back[1].parameters(), ms[1].parameters(), strict=True))
    with pytest.raises(ValueError, match="one GPTConfig"):
        StackedGPT.from_models([ms[0], _models(1, d_model=32)[0]])
    with pytest.raises(ValueError, match="leading axis"):
        s(torch.zeros(3, 1, T, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        s(torch.zeros(2, 1, T + 1, dtype=torch.long))


def test_stacked_loss_and_eval_match_per_model():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 5, V)
    y = torch.randint(0, V, (3, 2, 5))
    y[1, :, :3] = -100  # model 1 masks a different number of positions
    per = stacked_lm_loss(logits, y)
    for j in range(3):
        torch.testing.assert_close(per[j], lm_loss(logits[j], y[j]))
    ms = _models(3, perturb=0.05)
    s = StackedGPT.from_models(ms)
    batches = [(torch.randint(0, V, (4, T)), torch.randint(0, V, (4, T))) for _ in range(2)]
    batches[1][1][:, :4] = -100
    got = evaluate_lm_stacked(s, batches)
    for j, m in enumerate(ms):
        assert got[j] == pytest.approx(evaluate_lm(m, batches), rel=1e-5)


def _stream(seed: int, B: int = 4):
    def get_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed * 1000 + step)
        s = torch.randint(0, V, (B, T + 1), generator=g)
        for t in range(1, T + 1):  # random first token, then a per-stream successor rule: learnable
            s[:, t] = (s[:, t - 1] * (2 + seed) + 1) % V
        return s[:, :-1], s[:, 1:]

    return get_batch


@pytest.mark.parametrize("fused,shape", [(False, {}), (True, {"bias": True, "tie_weights": False})])
def test_training_equals_separate_training(fused, shape):
    """Same init, same per-model data and schedule -> the same loss curves and weights (clipping active; with
    biases and an untied head, the weight-decay groups must match too)."""
    k, steps = 3, 25
    kw = dict(steps=steps, lr=3e-2, warmup=3, grad_clip=0.5, progress=False, fused=fused)
    sep = _models(k, **shape)
    stack = StackedGPT.from_models(sep)
    streams = [_stream(j) for j in range(k)]
    hs = [train_lm(m, streams[j], **kw) for j, m in enumerate(sep)]
    hk = train_lm_stacked(stack, stack_batches(streams), **kw)
    assert len(hk) == k
    for j in range(k):
        assert hs[j]["loss"][-1] < 0.85 * hs[j]["loss"][0]  # they learn, so the comparison is not between two flat lines
        torch.testing.assert_close(torch.tensor(hk[j]["loss"]), torch.tensor(hs[j]["loss"]), rtol=2e-5, atol=2e-5)
        torch.testing.assert_close(torch.tensor(hk[j]["grad_norm"]), torch.tensor(hs[j]["grad_norm"]), rtol=1e-4, atol=1e-5)
        assert max(hs[j]["grad_norm"]) > 0.5  # the per-model clip was active
        for name, v in stack.state_dict_of(j).items():
            want = sep[j].state_dict()[name]
            if name.endswith("qkv.bias"):  # the key bias has an exactly zero gradient (softmax is shift-invariant), so
                v, want = v[torch.arange(48) // 16 != 1], want[torch.arange(48) // 16 != 1]  # Adam turns its rounding noise into lr-sized steps
            torch.testing.assert_close(v, want, rtol=1e-4, atol=5e-5)
        assert hk[j]["total_tokens"] == hs[j]["total_tokens"] and hk[j]["lr"] == hs[j]["lr"]


def test_nonfinite_names_the_model():
    from lossbook.tracking import NonFiniteLossError

    ms = _models(3)
    with torch.no_grad():
        ms[2].tok_emb.weight[0, 0] = float("nan")
    s = StackedGPT.from_models(ms)
    with pytest.raises(NonFiniteLossError, match="model 2 of the stack"):
        train_lm_stacked(s, stack_batches([_stream(j) for j in range(3)]), steps=2, lr=1e-3, progress=False)


def test_eval_fn_gets_one_result_per_model():
    ms = _models(2)
    s = StackedGPT.from_models(ms)
    val = [_stream(9)(0)]
    hk = train_lm_stacked(s, stack_batches([_stream(0), _stream(1)]), steps=4, lr=1e-3, progress=False, eval_every=2,
                          eval_fn=lambda step: [{"val_loss": v} for v in evaluate_lm_stacked(s, val)])
    assert [e["step"] for e in hk[1]["eval"]] == [2, 4]
    assert hk[0]["eval"][-1]["val_loss"] == pytest.approx(evaluate_lm(s.to_models()[0], val), rel=1e-5)


def test_per_model_learning_rates_equal_separate_runs():
    """An LR sweep as one stack: model k trained at lr[k] matches train_lm at lr[k] (AdamW is linear in the LR)."""
    lrs = [3e-2, 1e-2, 3e-3]
    kw = dict(steps=15, warmup=2, weight_decay=0.1, grad_clip=0.5, progress=False)
    sep = _models(3)
    stack = StackedGPT.from_models(sep)
    hs = [train_lm(m, _stream(0), lr=lr, **kw) for m, lr in zip(sep, lrs, strict=True)]
    hk = train_lm_stacked(stack, stack_batches([_stream(0)] * 3), lr=lrs, **kw)
    for j in range(3):
        assert hk[j]["lr"] == pytest.approx(hs[j]["lr"])
        torch.testing.assert_close(torch.tensor(hk[j]["loss"]), torch.tensor(hs[j]["loss"]), rtol=2e-5, atol=2e-5)
        for name, v in stack.state_dict_of(j).items():
            torch.testing.assert_close(v, sep[j].state_dict()[name], rtol=1e-4, atol=5e-5)
    assert hs[0]["final_loss"] != pytest.approx(hs[2]["final_loss"], abs=1e-2)  # the LRs really differ in effect
    with pytest.raises(ValueError, match="lr must be"):
        train_lm_stacked(stack, stack_batches([_stream(0)] * 3), lr=[1e-3, 1e-3], **kw)
