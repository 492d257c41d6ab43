"""α-BN (lossbook.calibration.test_time_bn): α = 1 is source BN, α = 0 is test BN, a hand mix, no mutation."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch import nn

from lossbook.calibration import test_time_bn as ttbn
from lossbook.models.cnn1d import CNN1D


def _trained_model(seed: int = 0) -> CNN1D:
    """A BN CNN1D whose running statistics are far from (0, 1): a few train-mode forwards on shifted inputs."""
    torch.manual_seed(seed)
    m = CNN1D(40, 10, channels=8, hidden=16, batchnorm=True)
    m.train()
    with torch.no_grad():
        for _ in range(5):
            m(2.0 + 3.0 * torch.randn(64, 40))
        for bn in ttbn.bn_layers(m):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return m


def test_alpha_one_equals_eval_mode():
    m = _trained_model()
    x = torch.randn(20, 40)
    ref = copy.deepcopy(m).eval()(x)
    for b in (1, 4, 20):
        assert torch.equal(ttbn.predict_with_alpha(m, x, 1.0, b), ref.float())


@pytest.mark.parametrize("b", [1, 3, 8])
def test_alpha_zero_equals_train_mode_per_batch(b):
    """α = 0: each consecutive batch of b is normalised by its own statistics, as a train-mode BN forward
    on that batch alone (without momentum updates: run on a copy and compare)."""
    m = _trained_model()
    x = torch.randn(20, 40)  # 20 = 2·8 + 4: also checks the shorter last batch
    got = ttbn.predict_with_alpha(m, x, 0.0, b)
    ref = copy.deepcopy(m).train()
    with torch.no_grad():
        want = torch.cat([ref(x[i : i + b]) for i in range(0, len(x), b)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_hand_computed_mix_on_a_tiny_layer():
    bn = nn.BatchNorm1d(2, eps=0.0)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 9.0]))
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # batch mean (1, 2), biased var (1, 4)
    a = 0.25
    mu = torch.tensor([a * 1 + 0.75 * 1, a * -2 + 0.75 * 2])  # (1, 1)
    var = torch.tensor([a * 4 + 0.75 * 1, a * 9 + 0.75 * 4])  # (1.75, 5.25)
    want = (x - mu) / var.sqrt() * torch.tensor([2.0, 1.0]) + torch.tensor([0.5, 0.0])
    with ttbn.alpha_bn(bn, a):
        got = bn(x)
    torch.testing.assert_close(got, want)


def test_running_stats_and_mode_untouched():
    m = _trained_model()
    m.train()
    before = copy.deepcopy(m.state_dict())
    for a in (0.0, 0.5, 1.0):
        ttbn.predict_with_alpha(m, torch.randn(16, 40) * 5, a, 4)
    assert m.training
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all("forward" not in vars(bn) for bn in ttbn.bn_layers(m))


def test_group_forward_equals_loop_over_batches_for_a_mix():
    m = _trained_model(1)
    x = torch.randn(13, 40)
    got = ttbn.predict_with_alpha(m, x, 0.6, 4)
    want = torch.cat([ttbn.predict_with_alpha(m, x[i : i + 4], 0.6, 4) for i in range(0, 13, 4)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # statistics really depend on the batch: a sample's logits change with its batch-mates at α < 1
    assert not torch.allclose(ttbn.predict_with_alpha(m, x[:4], 0.6, 4)[0], ttbn.predict_with_alpha(m, x[:2], 0.6, 2)[0])


def test_alpha_out_of_range_rejected():
    with pytest.raises(ValueError):
        with ttbn.alpha_bn(_trained_model(), 1.5):
            pass


def test_score_and_summary_table():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    y = torch.tensor([0, 0, 0])
    s = ttbn.score(logits, y)
    assert s["acc"] == pytest.approx(2 / 3)
    assert s["nll"] == pytest.approx(float(nn.functional.cross_entropy(logits, y)))
    rows = pd.DataFrame({"m": ["a"] * 3 + ["b"] * 3, "acc": [0.1, 0.2, 0.3, 1, 1, 1], "ece": 0.0, "nll": 1.0})
    t = ttbn.summary_table(rows, ["m"]).set_index("m")
    assert t.loc["a", "acc"] == pytest.approx(0.2) and t.loc["a", "acc_lo"] < 0.2 < t.loc["a", "acc_hi"]
    assert t.loc["b", "acc_lo"] == pytest.approx(1.0) and t.loc["a", "n"] == 3
