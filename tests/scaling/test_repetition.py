"""Repetition protocol helpers: exact epoch counts, single-pass check, the effective-data law and its fits."""

import numpy as np
import pytest
import torch

from lossbook.scaling.repetition import (
    duplicate_share,
    effective_data,
    fit_base_law_fixed_e,
    fit_r_star,
    pool_tokens,
    stream_windows,
)
from lossbook.scaling.task_language import TaskLanguage


def test_pool_gives_exact_epochs_and_stream_is_single_pass():
    src = TaskLanguage(n_tasks=64, code_alphabet=8, code_len=2, n_symbols=8, seed=3)
    steps, batch, block = 20, 8, 12
    for e in (1, 2, 4, 8):
        w = stream_windows(src.repeat_batch_fn(batch, block, pool_tokens(steps, batch, block, e), seed=5), steps)
        assert w.shape == (steps * batch, block + 1)
        # every pool window is seen exactly e times (pools are draws of distinct windows here)
        _, counts = torch.unique(w, dim=0, return_counts=True)
        assert counts.min() == counts.max() == e
        assert duplicate_share(w) == pytest.approx(1 - 1 / e)
    fresh = stream_windows(src.batch_fn(batch, block, seed=5), steps)
    assert duplicate_share(fresh) == 0.0


def test_pools_nested_across_u():
    src = TaskLanguage(n_tasks=64, code_alphabet=8, code_len=2, n_symbols=8, seed=1)
    small, big = src.pool_windows(40, 12, seed=2, chunk=16), src.pool_windows(100, 12, seed=2, chunk=16)
    assert torch.equal(small, big[:40])


def test_effective_data_limits():
    U = 1000.0
    assert effective_data(U, U, 15.4) == pytest.approx(U)  # one epoch: no repeats
    assert effective_data(U, 1.5 * U, 1e6) == pytest.approx(1.5 * U, rel=1e-4)  # R* -> inf: repeats as good as fresh
    assert effective_data(U, 1e9 * U, 15.4) == pytest.approx(U * 16.4, rel=1e-6)  # saturation U (1 + R*)


def test_fixed_e_fit_and_r_star_recover_truth():
    E, B, beta, r_true = 1.7, 30.0, 0.4, 6.0
    D = np.array([1e4, 4e4, 1.6e5])
    e, b, be = fit_base_law_fixed_e(D, E + B * D**-beta, E)
    assert (e, b, be) == pytest.approx((E, B, beta), rel=1e-8)
    Dtot = 1.6e5
    U = Dtot / np.array([2, 4, 8, 16, 32])
    L = E + B * effective_data(U, Dtot, r_true) ** -beta
    fit = fit_r_star([(E, B, beta)] * len(U), U, np.full(len(U), Dtot), L)
    assert fit["r_star"] == pytest.approx(r_true, rel=1e-3) and not fit["at_bound"]
    with pytest.raises(ValueError):
        fit_base_law_fixed_e(D, np.array([1.0, 2.0, 3.0]), E)
