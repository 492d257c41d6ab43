"""Best-of-n: the closed-form KL, the order-statistic estimator and the leave-one-out peak (lossbook.alignment.best_of_n)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from lossbook.alignment import best_of_n as bon


def test_kl_formula_values():
    assert bon.kl_best_of_n(1) == pytest.approx(0.0)
    assert bon.kl_best_of_n(2) == pytest.approx(math.log(2) - 0.5)
    assert bon.kl_best_of_n(np.array([4, 256])) == pytest.approx([math.log(4) - 0.75, math.log(256) - 255 / 256])
    with pytest.raises(ValueError):
        bon.kl_best_of_n(0)


@pytest.mark.parametrize("n", [2, 4, 16, 64])
def test_exact_kl_tends_to_formula_for_many_distinct_atoms(n):
    """Uniform π₀ over A atoms with distinct rewards: the exact KL is below the closed form and reaches it as A grows."""
    rng = np.random.default_rng(0)
    gaps = []
    for A in (50, 500, 20000):
        p = rng.dirichlet(np.full(A, 50.0))
        kl = bon.exact_kl_discrete(p, rng.permutation(A).astype(float), n)
        assert kl <= bon.kl_best_of_n(n) + 1e-12
        gaps.append(bon.kl_best_of_n(n) - kl)
    assert gaps[0] > gaps[-1]
    assert gaps[-1] < 0.005


def test_exact_kl_against_monte_carlo():
    """Exact π_bon on a 6-atom base vs the empirical frequency of best-of-3 draws."""
    rng = np.random.default_rng(1)
    p = np.array([0.3, 0.25, 0.2, 0.15, 0.07, 0.03])
    r = np.array([0.0, 3.0, 1.0, 5.0, 2.0, 4.0])
    n = 3
    draws = rng.choice(6, size=(200_000, n), p=p)
    best = draws[np.arange(draws.shape[0]), np.argmax(r[draws], 1)]
    q = np.bincount(best, minlength=6) / draws.shape[0]
    kl_mc = float(np.sum(q * np.log(q / p)))
    assert bon.exact_kl_discrete(p, r, n) == pytest.approx(kl_mc, abs=3e-3)


def test_exact_kl_ties_and_single_atom():
    assert bon.exact_kl_discrete(np.array([1.0]), np.array([0.0]), 8) == pytest.approx(0.0)
    # two atoms of equal reward are one atom for best-of-n: KL 0
    assert bon.exact_kl_discrete(np.array([0.5, 0.5]), np.array([1.0, 1.0]), 8) == pytest.approx(0.0)


def test_weights_sum_to_one_and_match_combinatorics():
    m, n = 10, 4
    w = bon.bon_weights(m, n)
    assert w.sum() == pytest.approx(1.0)
    assert w[: n - 1] == pytest.approx(0.0)
    assert w[-1] == pytest.approx(math.comb(m - 1, n - 1) / math.comb(m, n))
    assert bon.bon_weights(5, 1) == pytest.approx(np.full(5, 0.2))


def test_estimator_equals_brute_force_over_subsets():
    """Ê_n = the average over all C(m, n) subsets of the value at the subset's proxy argmax."""
    rng = np.random.default_rng(2)
    m = 9
    proxy = rng.normal(size=(3, m))
    gold = rng.normal(size=(3, m))
    ns = [1, 2, 3, 5, 9]
    est = bon.expected_best_of_n(proxy, gold, ns)
    for r in range(3):
        for j, n in enumerate(ns):
            vals = [gold[r, list(c)][np.argmax(proxy[r, list(c)])] for c in combinations(range(m), n)]
            assert est[r, j] == pytest.approx(np.mean(vals))


def test_estimator_is_unbiased_for_iid_best_of_n():
    """Mean of Ê_n over many pools of m draws = the exact E[gold of best-of-n] on a discrete base."""
    p = np.array([0.4, 0.3, 0.2, 0.1])
    proxy_atom = np.array([0.0, 2.0, 1.0, 3.0])
    gold_atom = np.array([1.0, -1.0, 2.0, 0.5])
    n, m = 3, 6
    order = np.argsort(proxy_atom)
    F = np.cumsum(p[order])
    pb = np.empty(4)
    pb[order] = F**n - np.concatenate([[0.0], F[:-1]]) ** n
    exact = float(pb @ gold_atom)
    rng = np.random.default_rng(3)
    idx = rng.choice(4, size=(40_000, m), p=p)
    est = bon.expected_best_of_n(proxy_atom[idx], gold_atom[idx], [n])[:, 0]
    assert est.mean() == pytest.approx(exact, abs=0.01)


def test_select_best_of_n_monte_carlo_matches_estimator():
    rng = np.random.default_rng(4)
    proxy, gold = rng.normal(size=(1, 12)), rng.normal(size=(1, 12))
    picks = [bon.select_best_of_n(proxy, 4, rng)[0] for _ in range(20000)]
    assert np.mean(gold[0, picks]) == pytest.approx(bon.expected_best_of_n(proxy, gold, [4])[0, 0], abs=0.02)


def test_ties_share_their_mean():
    proxy = np.array([[1.0, 1.0, 0.0]])
    gold = np.array([[2.0, 0.0, 5.0]])
    assert bon.expected_best_of_n(proxy, gold, [3])[0, 0] == pytest.approx(1.0)


def test_empirical_kl_counts_repeats_as_atoms():
    keys = [[("a",), ("a",), ("b",), ("c",)]]
    proxy = np.array([[0.0, 0.0, 1.0, 2.0]])
    p = np.array([0.5, 0.25, 0.25])
    assert bon.empirical_kl_best_of_n(proxy, keys, 2) == pytest.approx(bon.exact_kl_discrete(p, np.array([0.0, 1.0, 2.0]), 2))


def test_loo_peak_drop():
    curves = np.array([[0.0, 1.0, 0.5], [0.0, 0.8, 0.2], [0.0, 0.9, 0.4], [0.0, 0.2, 0.9]])
    drops, idx = bon.loo_peak_drop(curves)
    # the last replicate's peak is read at the others' argmax (index 1), not its own (index 2)
    assert idx.tolist() == [1, 1, 1, 1]
    assert drops == pytest.approx([0.5, 0.6, 0.5, -0.7])
    one, i1 = bon.loo_peak_drop(curves[:1])
    assert i1.tolist() == [1] and one == pytest.approx([0.5])
