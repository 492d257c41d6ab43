"""lossbook.stats: mean ± std and the paired bootstrap CI."""

from __future__ import annotations

import numpy as np
import pytest

from lossbook.stats import mean_std, paired_bootstrap_ci, verdict_greater


def test_mean_std():
    m, s = mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_bootstrap_constant_shift_is_exact():
    a = np.array([0.1, 0.5, 0.3, 0.9])
    ci = paired_bootstrap_ci(a + 0.02, a)
    assert ci.diff == pytest.approx(0.02) and ci.low == pytest.approx(0.02) and ci.high == pytest.approx(0.02)
    assert ci.excludes_zero and ci.sign() == 1


def test_bootstrap_pairing_matters():
    # large between-seed spread, small consistent gain: paired CI excludes 0
    rng = np.random.default_rng(1)
    base = rng.normal(0.7, 0.1, size=8)
    a = base + 0.01 + rng.normal(0, 0.002, size=8)
    ci = paired_bootstrap_ci(a, base)
    assert ci.low > 0
    assert verdict_greater(a, base)[0] is True
    assert verdict_greater(base, a)[0] is False


def test_bootstrap_coverage_close_to_nominal():
    # percentile bootstrap of a mean: coverage of the true mean near 95% (n = 30, normal data)
    rng = np.random.default_rng(0)
    hits = 0
    for r in range(200):
        d = rng.normal(0.3, 1.0, size=30)
        ci = paired_bootstrap_ci(d, np.zeros(30), n_boot=2000, seed=r)
        hits += ci.low <= 0.3 <= ci.high
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_inconclusive_and_errors():
    assert verdict_greater([0.5], [0.4])[0] is None
    assert verdict_greater([0.1, 0.3, 0.2], [0.2, 0.2, 0.2])[0] is None
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0, 2.0], [1.0])
    assert paired_bootstrap_ci([1.0, 2.0], [0.0, 0.0], seed=3) == paired_bootstrap_ci([1.0, 2.0], [0.0, 0.0], seed=3)
