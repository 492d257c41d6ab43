"""Trainer segments for WSD trunks and cooldown branches: a constant-LR trunk checkpointed at s0 plus a cooldown
branch from that checkpoint is one WSD run (bitwise, for `train_lm` and `train_lm_stacked`, default and fused
kernels); resuming from any checkpoint is the uninterrupted run; a segment outside its run is refused."""

from __future__ import annotations

import pytest
import torch

from lossbook.models.gpt import GPT, GPTConfig, StackedGPT
from lossbook.train.lm import stack_batches, train_lm, train_lm_stacked

CFG = GPTConfig(vocab_size=19, block_size=16, n_layer=2, n_head=2, d_model=32)
S, S0, W = 40, 30, 3  # WSD run length, cooldown start (20% cooldown), warmup steps


def _gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG)


def _batches(step: int, B: int = 8, salt: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * salt + step)
    s = torch.randint(0, 19, (B, 17), generator=g)
    return s[:, :-1], s[:, 1:]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


WSD = {"schedule": "wsd", "schedule_kwargs": {"decay_frac": (S - S0) / S, "decay_shape": "sqrt"}}


@pytest.mark.parametrize("fused", [False, True])
def test_trunk_plus_cooldown_branch_is_one_wsd_run(fused):
    ref = _gpt()
    h_ref = train_lm(ref, _batches, steps=S, lr=5e-3, warmup=W, grad_clip=0.5, progress=False, fused=fused, **WSD)
    trunk = _gpt()
    h_tr = train_lm(trunk, _batches, steps=S0 + 5, lr=5e-3, warmup=W, grad_clip=0.5, progress=False, fused=fused, schedule="constant",
                    checkpoint_at=[S0, 10])
    assert sorted(h_tr["checkpoints"]) == [10, S0]
    ck = h_tr["checkpoints"][S0]
    branch = _gpt(seed=7)  # another init: the checkpoint must overwrite everything
    branch.load_state_dict(ck["model"])
    h_br = train_lm(branch, _batches, steps=S, lr=5e-3, warmup=W, grad_clip=0.5, progress=False, fused=fused, start_step=S0,
                    optimizer_state=ck["optimizer"], **WSD)
    assert h_br["step"][0] == S0 and h_br["step"][-1] == S - 1 and h_br["total_tokens"] == (S - S0) * 8 * 16
    assert h_br["lr"] == h_ref["lr"][S0:]  # the branch's LRs are the WSD run's cooldown, value for value
    assert h_tr["lr"][:S0] == h_ref["lr"][:S0]  # and the trunk's are its warmup + stable phase
    assert h_br["loss"] == h_ref["loss"][S0:]
    assert _equal(branch.state_dict(), ref.state_dict())
    assert h_br["lr"][-1] == 0.0 and min(h_tr["lr"][W:]) == 5e-3


def test_resume_from_checkpoint_equals_uninterrupted():
    ref = _gpt()
    h_ref = train_lm(ref, _batches, steps=25, lr=3e-3, warmup=2, progress=False, schedule="cosine", checkpoint_at=[12, 25])
    ck = h_ref["checkpoints"][12]
    m = _gpt(seed=3)
    m.load_state_dict(ck["model"])
    h = train_lm(m, _batches, steps=25, lr=3e-3, warmup=2, progress=False, schedule="cosine", start_step=12, optimizer_state=ck["optimizer"])
    assert h["loss"] == h_ref["loss"][12:]
    assert _equal(m.state_dict(), ref.state_dict())
    assert _equal(h_ref["checkpoints"][25]["model"], ref.state_dict())  # a checkpoint at the end is the final state
    assert "checkpoints" not in h  # the default return is as before


def test_stacked_trunk_and_branch_is_one_stacked_wsd_run():
    gb = stack_batches([lambda s, k=k: _batches(s, salt=k) for k in range(2)])
    mk = lambda: StackedGPT.from_models([_gpt(0), _gpt(1)])  # noqa: E731
    ref = mk()
    h_ref = train_lm_stacked(ref, gb, steps=S, lr=[4e-3, 2e-3], warmup=W, progress=False, fused=True, **WSD)
    trunk = mk()
    h_tr = train_lm_stacked(trunk, gb, steps=S0, lr=[4e-3, 2e-3], warmup=W, progress=False, fused=True, schedule="constant", checkpoint_at=[S0])
    ck = h_tr[0]["checkpoints"][S0]
    br = StackedGPT(CFG, 2)
    br.load_state_dict(ck["model"])
    h_br = train_lm_stacked(br, gb, steps=S, lr=[4e-3, 2e-3], warmup=W, progress=False, fused=True, start_step=S0,
                            optimizer_state=ck["optimizer"], **WSD)
    assert [h["loss"] for h in h_br] == [h["loss"][S0:] for h in h_ref]
    assert _equal(br.state_dict(), ref.state_dict())


def test_segment_bounds_are_checked():
    with pytest.raises(ValueError, match="start_step"):
        train_lm(_gpt(), _batches, steps=5, lr=1e-3, start_step=6, progress=False)
    with pytest.raises(ValueError, match="checkpoint_at"):
        train_lm(_gpt(), _batches, steps=5, lr=1e-3, start_step=2, checkpoint_at=[1], progress=False)
