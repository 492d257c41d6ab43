"""TaskLanguage: closed-form entropies against brute-force enumeration and Monte Carlo, determinism, the oracle curve."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lossbook.scaling.task_language import TaskLanguage


def _tiny() -> TaskLanguage:
    return TaskLanguage(n_tasks=6, code_alphabet=3, code_len=2, n_symbols=3, zipf=1.3, eps=0.2, seed=4)


def test_episode_entropy_matches_brute_force_enumeration():
    src = _tiny()
    S, e = src.n_symbols, src.eps
    h = 0.0
    for t, x, y in itertools.product(range(src.n_tasks), range(S), range(S)):
        q = (1 - e) * (src.maps[t, x] == y) + e / S
        p = src.prior[t] / S * q
        h -= p * math.log(p)
    assert src.offset_entropies().sum() == pytest.approx(h, rel=1e-12)
    assert src.entropy_rate() == pytest.approx(h / src.episode_len, rel=1e-12)


def test_code_position_entropies_by_enumerating_prefixes():
    src = _tiny()
    first = {}
    for t in range(src.n_tasks):
        first[src.codes[t, 0]] = first.get(src.codes[t, 0], 0.0) + src.prior[t]
    h0 = -sum(p * math.log(p) for p in first.values())
    h = src.offset_entropies()
    assert h[0] == pytest.approx(h0, rel=1e-12)
    assert h[0] + h[1] == pytest.approx(-(src.prior * np.log(src.prior)).sum(), rel=1e-12)  # codes are a bijection of tasks
    assert h[2] == pytest.approx(math.log(src.n_symbols))


def test_entropy_rate_matches_monte_carlo_and_the_source_nll_of_samples():
    src = TaskLanguage(n_tasks=64, code_alphabet=8, code_len=2, n_symbols=8, zipf=1.2, eps=0.1, seed=1)
    m, se = src.entropy_mc(100_000, seed=0)
    assert abs(m - src.entropy_rate()) < 4 * se
    # the per-token scorer used for the control variate agrees with the episode NLL on the same tokens
    ev = src.eval_set(16, 40_000, seed=3)
    assert abs(src.eval_true_nll(ev) - src.bayes_loss(16)) < 0.02


def test_deterministic_in_seed_and_seed_changes_the_world():
    a, b, c = TaskLanguage(seed=3), TaskLanguage(seed=3), TaskLanguage(seed=4)
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.maps, b.maps)
    assert not np.array_equal(a.maps, c.maps)
    assert a.entropy_rate() == c.entropy_rate()  # same law, different world
    x1, y1 = a.batch_fn(4, 16, seed=2)(7)
    x2, y2 = b.batch_fn(4, 16, seed=2)(7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 1:], y1[:, :-1])
    assert not torch.equal(x1, a.batch_fn(4, 16, seed=2)(8)[0])


def test_samples_follow_the_maps_and_token_layout():
    src = TaskLanguage(n_tasks=32, code_alphabet=8, code_len=2, n_symbols=8, zipf=1.0, eps=0.25, seed=0)
    ep = src.sample_episodes(20_000, 1, torch.Generator().manual_seed(0))
    tok = ep["tokens"].view(-1, src.episode_len)
    assert (tok[:, :2] < src.code_alphabet).all() and (tok[:, 2:] >= src.code_alphabet).all()
    hit = (torch.from_numpy(src.maps)[ep["task"], ep["x"]] == ep["y"]).float().mean().item()
    assert hit == pytest.approx(1 - src.eps + src.eps / src.n_symbols, abs=0.01)
    freq = np.bincount(ep["task"].numpy().ravel(), minlength=src.n_tasks) / ep["task"].numel()
    assert freq[0] == pytest.approx(src.prior[0], abs=0.01)


def test_bayes_loss_of_windows_and_oracle_curve():
    src = TaskLanguage(n_tasks=512, code_alphabet=32, code_len=2, n_symbols=16, zipf=1.5, eps=0.1, seed=0)
    h = src.offset_entropies()
    assert src.bayes_loss(16) == pytest.approx(src.entropy_rate())  # 16 targets cover every offset 4 times
    assert src.bayes_loss(3) == pytest.approx(h[1:4].mean())
    n = np.arange(0, src.n_tasks + 1)
    o = src.oracle_loss(n, 16)
    assert o[-1] == pytest.approx(src.bayes_loss(16)) and np.all(np.diff(o) <= 0)
    assert o[0] - o[-1] == pytest.approx((math.log(16) - src.output_entropy()) / 4)
    # a Zipf tail: for n << T the local log-log slope of the excess approaches -(s - 1)
    big = TaskLanguage(n_tasks=1 << 20, code_alphabet=1024, code_len=2, n_symbols=4, zipf=1.5, seed=0)
    ex = big.tail_mass(np.array([100, 1000]))
    assert np.log(ex[1] / ex[0]) / np.log(10) == pytest.approx(-big.oracle_exponent(), abs=0.02)


def test_oracle_loss_equals_the_nll_of_an_oracle_predictor():
    src = TaskLanguage(n_tasks=16, code_alphabet=4, code_len=2, n_symbols=4, zipf=1.1, eps=0.3, seed=2)
    ep = src.sample_episodes(200_000, 1, torch.Generator().manual_seed(1))
    t, x, y = (ep[k].ravel() for k in ("task", "x", "y"))
    n_known = 5
    nll = src.episode_nll(t, x, y).double()
    # tasks the oracle does not know: it predicts y uniformly, paying log S instead of -log q(y|t,x)
    e, S = src.eps, src.n_symbols
    hit = torch.from_numpy(src.maps)[t, x] == y
    log_q = torch.where(hit, torch.tensor(math.log(1 - e + e / S)), torch.tensor(math.log(e / S))).double()
    nll = torch.where(t >= n_known, nll + log_q + math.log(S), nll)
    mc = float(nll.mean()) / src.episode_len
    assert mc == pytest.approx(float(src.oracle_loss(n_known, src.episode_len)), abs=4 * float(nll.std()) / src.episode_len / math.sqrt(len(nll)))


def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="distinct codes"):
        TaskLanguage(n_tasks=100, code_alphabet=4, code_len=2)
    with pytest.raises(ValueError):
        TaskLanguage(eps=1.5)


def test_repetition_pool_is_nested_and_each_window_is_seen_once_per_epoch():
    src = TaskLanguage(n_tasks=256, code_alphabet=16, code_len=2, n_symbols=16, zipf=1.0, seed=0)
    small, big = src.pool_windows(300, 8, seed=1), src.pool_windows(1000, 8, seed=1)
    assert torch.equal(small, big[:300])  # unique sets nested across U
    assert not torch.equal(big[:300], src.pool_windows(300, 8, seed=2))
    gb = src.repeat_batch_fn(batch_size=10, block_size=8, unique_tokens=90 * 9, seed=1)  # a pool of 90 windows
    pool = src.pool_windows(90, 8, seed=1)
    assert len(torch.unique(pool, dim=0)) == 90  # distinct windows, so matching below is exact
    seen = torch.cat([torch.cat([x, y[:, -1:]], dim=1) for x, y in (gb(s) for s in range(18))])  # 2 epochs
    for e in range(2):
        ep = seen[90 * e : 90 * (e + 1)]
        match = (ep[:, None, :] == pool[None, :, :]).all(-1)
        assert torch.equal(match.sum(1), torch.ones(90, dtype=torch.long)) and torch.equal(match.sum(0), torch.ones(90, dtype=torch.long))
    assert not torch.equal(seen[:90], seen[90:])  # a new order each epoch
