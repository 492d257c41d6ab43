"""The LR schedule option of the one epoch loop (`train.loop.fit`): off by default, per step or per epoch."""

from __future__ import annotations

import pytest
import torch

from lossbook import repro
from lossbook.data.classification import Split
from lossbook.models.mlp import MLP
from lossbook.optim.schedules import lr_multiplier
from lossbook.train.loop import fit


def _split(n: int = 200, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 5, generator=g) * 2
    y = torch.randint(0, 3, (n,), generator=g)
    x = centres[y] + torch.randn(n, 5, generator=g)
    return Split(x[:120], y[:120], x[120:160], y[120:160], x[160:], y[160:], 3, (5,), "blobs")


def _run(**kw):
    repro.seed_everything(0)
    m = MLP(5, 3, hidden=(16,))
    r = fit(m, _split(), epochs=4, lr=1e-2, batch_size=32, progress=False, **kw)
    return r, m


def test_no_schedule_is_the_constant_lr_run_bitwise() -> None:
    r0, m0 = _run()
    r1, m1 = _run(schedule="constant")
    assert "lr" not in r0.curves and r1.curves["lr"] == [1e-2] * 4
    assert r0.curves["train_loss"] == r1.curves["train_loss"] and r0.curves["val_acc"] == r1.curves["val_acc"]
    assert all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m1.state_dict().values(), strict=True))


def test_cosine_per_step_sets_the_lr_of_every_step() -> None:
    r, _ = _run(schedule="cosine", final_frac=0.0)
    steps = 4  # 120 examples in batches of 32
    total = 4 * steps
    want = [1e-2 * lr_multiplier("cosine", (e + 1) * steps - 1, total, final_frac=0.0) for e in range(4)]
    assert r.curves["lr"] == pytest.approx(want, rel=1e-12)
    assert r.curves["lr"][-1] == pytest.approx(0.0, abs=1e-15) and r.curves["lr"][0] < 1e-2
    r_const, _ = _run()
    assert r.curves["train_loss"] != r_const.curves["train_loss"]  # the schedule changed the run


def test_per_epoch_unit_and_warmup() -> None:
    r, _ = _run(schedule="cosine", schedule_unit="epoch", warmup=2, final_frac=0.1)
    want = [1e-2 * lr_multiplier("cosine", e, 4, 2, final_frac=0.1) for e in range(4)]
    assert r.curves["lr"] == pytest.approx(want, rel=1e-12)
    assert r.curves["lr"][0] == pytest.approx(0.5e-2) and r.curves["lr"][1] == pytest.approx(1e-2)


def test_zero_final_lr_freezes_the_last_step_and_bad_options_raise() -> None:
    # wsd decaying to 0 over its last 20% of steps: the last step runs at lr 0
    r, _ = _run(schedule="wsd", final_frac=0.0)
    assert r.curves["lr"][-1] == 0.0 and r.curves["lr"][0] == 1e-2
    with pytest.raises(ValueError, match="schedule must be None or one of"):
        _run(schedule="step")
    with pytest.raises(ValueError, match="schedule_unit"):
        _run(schedule="cosine", schedule_unit="batch")
