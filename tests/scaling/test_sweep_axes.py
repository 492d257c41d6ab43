"""One axis for Chinchilla: parameter counts per axis, Approach 3's own N_opt(C) slope, the mixed-axes bias."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook.models.gpt import GPT, GPTConfig
from lossbook.scaling.fit import optimal_allocation
from lossbook.scaling.sweep import axis_params, gpt_size, isoflop_widths, optimal_on_axis


@pytest.mark.parametrize("d,L", [(8, 1), (16, 2), (48, 3)])
def test_axis_params_match_the_model(d, L):
    cfg = GPTConfig(vocab_size=48, block_size=16, n_layer=L, n_head=max(1, d // 16), d_model=d)
    with torch.device("meta"):
        m = GPT(cfg)
    assert axis_params(d, L, 48, 16, "total") == m.num_params(False)
    assert axis_params(d, L, 48, 16, "non_embedding") == m.num_params()
    assert gpt_size(d, L, 48, 16)[1] == m.flops_per_token(16)
    with pytest.raises(ValueError, match="axis"):
        axis_params(d, L, 48, 16, "embedding")


def test_approach3_slope_on_the_consistent_axis_equals_beta_over_sum():
    # a law in total N: minimising it along exact-FLOP lines gives N_opt ∝ C^(β/(α+β)) where C ≈ 6·N_total·D
    A, B, al, be = 400.0, 2000.0, 0.34, 0.37
    predict = lambda N, D: 1.8 + A / N**al + B / D**be  # noqa: E731
    budgets = np.geomspace(1e13, 1e16, 6)
    res = optimal_on_axis(predict, budgets, 4, 64, 64, axis="total")
    assert not res["at_edge"]
    assert res["a"] == pytest.approx(be / (al + be), abs=0.02)
    # and it lands where the closed-form allocation under C = 6ND puts it (within the FLOP-count mismatch)
    n_cf, _ = optimal_allocation(budgets, A, B, al, be)
    np.testing.assert_allclose(res["N_opt"], n_cf, rtol=0.25)


def test_mixed_axes_raise_the_exponent_at_small_width():
    # the same runs, counted in non-embedding N while C includes the embeddings' work: a comes out larger
    predict_total = lambda N, D: 1.5 + 50 / N**0.4 + 200 / D**0.4  # noqa: E731
    budgets = np.geomspace(1e9, 1e12, 5)
    tot = optimal_on_axis(predict_total, budgets, 2, 128, 16, axis="total")
    d_opt = tot["d_opt"]
    n_non = axis_params(d_opt, 2, 128, 16, "non_embedding")
    a_mixed = np.polyfit(np.log(budgets), np.log(n_non), 1)[0]
    assert a_mixed > tot["a"] + 0.05


def test_isoflop_widths_centre_on_tokens_per_param_on_either_axis():
    w_tot = isoflop_widths(1e11, [8, 12, 16, 24, 32, 48, 64, 96], 2, 48, 16, 3, 20.0, axis="total")
    w_non = isoflop_widths(1e11, [8, 12, 16, 24, 32, 48, 64, 96], 2, 48, 16, 3, 20.0, axis="non_embedding")
    assert len(w_tot) == 3 and w_tot[0] <= w_non[0]  # total N is larger, so the same D/N needs narrower models
