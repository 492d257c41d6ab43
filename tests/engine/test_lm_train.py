"""LM loss and training loop: masking, learning a repeated sequence, determinism, NaN stop, logging keys."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbook.models.gpt import GPT, GPTConfig
from lossbook.train.lm import evaluate_lm, lm_loss, train_lm


def test_lm_loss_matches_cross_entropy_and_ignores_masked():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    y = torch.randint(0, 7, (2, 5))
    ref = F.cross_entropy(logits.reshape(-1, 7), y.reshape(-1))
    torch.testing.assert_close(lm_loss(logits, y), ref)
    y2 = y.clone()
    y2[:, :2] = -100
    keep = y2 != -100
    per = lm_loss(logits, y2, reduction="none")
    assert per.shape == (2, 5) and torch.all(per[~keep] == 0)
    torch.testing.assert_close(lm_loss(logits, y2), F.cross_entropy(logits[keep], y[keep]))
    torch.testing.assert_close(lm_loss(logits, y2, reduction="sum"), per.sum())
    with pytest.raises(ValueError):
        lm_loss(logits, y, reduction="avg")


def _repeated_batches(V=11, T=16, B=4):
    seq = torch.arange(T + 1) % 5 + 3  # a repeated pattern

    def get_batch(step):
        x = seq[:-1].repeat(B, 1)
        y = seq[1:].repeat(B, 1)
        return x, y

    return get_batch


def _train(seed, steps=40, lr=1e-2, **kw):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, d_model=32))
    h = train_lm(m, _repeated_batches(), steps=steps, lr=lr, warmup=5, progress=False, **kw)
    return m, h


def test_loss_decreases_on_repeated_sequence():
    m, h = _train(0)
    assert h["loss"][0] > 2.0  # ~log(11) at init
    assert h["final_loss"] < 0.2 * h["loss"][0]
    assert len(h["step"]) == 40 and h["total_tokens"] == 40 * 4 * 16
    assert h["total_flops"] == pytest.approx(40 * 4 * 16 * m.flops_per_token(16))
    assert all(v > 0 for v in h["tokens_per_s"])
    x, y = _repeated_batches()(0)
    assert evaluate_lm(m, [(x, y)]) == pytest.approx(float(lm_loss(m(x), y).detach()), rel=1e-5)


def test_bitwise_determinism_cpu():
    m1, h1 = _train(3, steps=15)
    m2, h2 = _train(3, steps=15)
    assert h1["loss"] == h2["loss"]
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    m3, _ = _train(4, steps=15)
    assert not all(torch.equal(p, q) for p, q in zip(m1.parameters(), m3.parameters()))


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_schedules_drive_lr(schedule):
    _, h = _train(0, steps=20, schedule=schedule)
    assert h["lr"][0] == pytest.approx(1e-2 / 5)  # warmup step 1 of 5
    assert max(h["lr"]) == pytest.approx(1e-2)
    if schedule == "constant":
        assert h["lr"][-1] == pytest.approx(1e-2)
    else:
        assert h["lr"][-1] < 1e-2 * 0.2


def test_eval_fn_and_nonfinite_stop():
    calls = []

    def eval_fn(step):
        calls.append(step)
        return {"val_loss": 1.0}

    _, h = _train(0, steps=10, eval_fn=eval_fn, eval_every=4)
    assert calls == [4, 8, 10] and h["eval"][-1] == {"step": 10, "val_loss": 1.0}

    from lossbook.tracking import MetricLogger, NonFiniteLossError

    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, d_model=32))
    with torch.no_grad():
        m.lm_head.weight.fill_(float("nan"))
    logger = MetricLogger()
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train_lm(m, _repeated_batches(), steps=3, lr=1e-3, progress=False, logger=logger)
