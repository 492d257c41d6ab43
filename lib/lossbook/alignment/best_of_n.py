"""Best-of-n as an optimiser: selection, its KL from the base policy, and an unbiased estimator of its rewards.

Best-of-n draws n i.i.d. responses from the base policy π₀ and returns the one with the highest proxy reward.
Gao, Schulman, Hilton (2022), "Scaling Laws for Reward Model Overoptimization" (arXiv 2210.10760, §2 and App.),
use it as the cheap optimiser whose KL is known in closed form,

    KL(π_bon ‖ π₀) = log n − (n − 1)/n,

exact when the proxy's distribution under π₀ has no atoms (continuous, or every response distinct with
vanishing probability); for a discrete π₀ it is an upper bound (Beirami et al. 2024, "Theoretical guarantees on
the best-of-n alignment policy", arXiv 2401.01879), and `exact_kl_discrete` gives the exact value. Gao et al.
plot gold reward against d = √KL.

`expected_best_of_n` is the order-statistic (U-statistic) estimator of E[v(argmax of n draws)] from m ≥ n
samples per prompt (Nakano et al. 2021, WebGPT App.; Gao et al. 2022 App. "best-of-n"): sort the m samples by
proxy, ascending; the sample of rank i (1-based) is the maximum of a uniformly random n-subset with
probability C(i−1, n−1)/C(m, n), so

    Ê_n[v] = Σ_i v_(i) · C(i−1, n−1) / C(m, n),

unbiased for every n ≤ m because a uniform n-subset of m i.i.d. draws is itself n i.i.d. draws. Ties in the
proxy are broken uniformly at random, i.e. v is averaged within a tie group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def kl_best_of_n(n: int | np.ndarray) -> np.ndarray:
    """KL(π_bon ‖ π₀) = log n − (n − 1)/n in nats (Gao et al. 2022; an upper bound for atoms, Beirami et al. 2024)."""
    n_ = np.asarray(n, dtype=float)
    if np.any(n_ < 1):
        raise ValueError(f"n must be >= 1, got {n}")
    return np.log(n_) - (n_ - 1) / n_


def bon_weights(m: int, n: int) -> np.ndarray:
    """w_i = C(i−1, n−1)/C(m, n), i = 1..m: the probability that the rank-i sample (ascending) is the best of a
    uniform n-subset of m. Sums to 1. Computed through log-Gamma, so m in the thousands is fine."""
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= m, got n={n}, m={m}")
    i = np.arange(1, m + 1, dtype=float)
    ok = i >= n
    lw = np.full(m, -np.inf)
    lg = math.lgamma
    log_cmn = lg(m + 1) - lg(n + 1) - lg(m - n + 1)
    lw[ok] = np.array([lg(k) - lg(n) - lg(k - n + 1) for k in i[ok]]) - log_cmn
    return np.exp(lw)


def _tie_averaged(proxy: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the values sorted by proxy (ascending), averaged within groups of equal proxy."""
    order = np.argsort(proxy, axis=-1, kind="stable")
    p = np.take_along_axis(proxy, order, -1)
    v = np.take_along_axis(values, order, -1).astype(float)
    for r in range(p.shape[0]):
        if np.unique(p[r]).size < p.shape[1]:
            _, inv = np.unique(p[r], return_inverse=True)
            v[r] = (np.bincount(inv, v[r]) / np.bincount(inv))[inv]
    return p, v


def expected_best_of_n(proxy: np.ndarray, values: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """Unbiased Ê[v of the best-of-n by `proxy`] per prompt for each n in `ns`: [P, len(ns)].

    proxy, values [P, m] (m samples of π₀ per prompt; `values` e.g. the gold reward, or the proxy itself).
    Ê_n = Σ_i v_(i) C(i−1, n−1)/C(m, n) with ranks by proxy (Gao et al. 2022); ties share their mean value.
    """
    proxy, values = np.atleast_2d(np.asarray(proxy, dtype=float)), np.atleast_2d(np.asarray(values, dtype=float))
    if proxy.shape != values.shape:
        raise ValueError(f"proxy {proxy.shape} and values {values.shape} must have one shape [P, m]")
    _, v = _tie_averaged(proxy, values)
    m = proxy.shape[1]
    W = np.stack([bon_weights(m, int(n)) for n in ns], 1)  # [m, len(ns)]
    return v @ W


def select_best_of_n(proxy: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Monte-Carlo best-of-n: for each row of proxy [P, m], draw n of the m indices uniformly without
    replacement and return the index of the largest proxy among them (first on ties) -> [P]."""
    P, m = proxy.shape
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= m, got n={n}, m={m}")
    idx = np.stack([rng.choice(m, size=n, replace=False) for _ in range(P)])
    best = np.argmax(np.take_along_axis(proxy, idx, 1), 1)
    return idx[np.arange(P), best]


def exact_kl_discrete(probs: np.ndarray, rewards: np.ndarray, n: int) -> float:
    """Exact KL(π_bon ‖ π₀) for a discrete π₀ (`probs` over atoms with `rewards`), ties broken at random.

    With atoms sorted by reward and F the CDF, an atom in a tie group G gets π_bon = p/p(G)·(F(G)ⁿ − F(G⁻)ⁿ)
    (F(G⁻): mass strictly below the group). KL = Σ π_bon log(π_bon / p) ≤ log n − (n−1)/n (Beirami et al. 2024).
    """
    p, r = np.asarray(probs, dtype=float), np.asarray(rewards, dtype=float)
    if p.shape != r.shape or np.any(p < 0) or not math.isclose(float(p.sum()), 1.0, rel_tol=1e-9):
        raise ValueError("probs must be a distribution with one reward per atom")
    keep = p > 0
    p, r = p[keep], r[keep]
    levels, inv = np.unique(r, return_inverse=True)
    mass = np.bincount(inv, p, minlength=levels.size)
    hi = np.cumsum(mass)
    lo = hi - mass
    group_bon = np.clip(hi, 0, 1) ** n - np.clip(lo, 0, 1) ** n
    q = p / mass[inv] * group_bon[inv]
    nz = q > 0
    return float(np.sum(q[nz] * np.log(q[nz] / p[nz])))


def empirical_kl_best_of_n(proxy: np.ndarray, keys: Sequence[Sequence[object]], n: int) -> float:
    """Mean over prompts of `exact_kl_discrete` on each prompt's empirical distribution of its m samples:
    identical responses (equal `keys[r][j]`, e.g. token tuples) form one atom with their sample frequency. Shows how
    far the closed form overstates the KL when π₀ repeats responses."""
    proxy = np.atleast_2d(np.asarray(proxy, dtype=float))
    out = []
    for r in range(proxy.shape[0]):
        atoms: dict[object, list[float]] = {}
        for j, k in enumerate(keys[r]):
            atoms.setdefault(k, []).append(float(proxy[r, j]))
        p = np.array([len(v) for v in atoms.values()], dtype=float)
        out.append(exact_kl_discrete(p / p.sum(), np.array([v[0] for v in atoms.values()]), n))
    return float(np.mean(out))


def loo_peak_drop(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Over-optimisation read without selection bias: for replicate r, the peak index i*_r = argmax of the mean
    curve of the *other* replicates, and drop_r = curve_r[i*_r] − curve_r[-1] (> 0: the curve turned down after
    the peak). curves [R, L] (one gold-vs-n curve per replicate) -> (drops [R], i* [R]); with R = 1 the replicate's
    own argmax is used (smoke only: biased towards a drop)."""
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    R = c.shape[0]
    idx = np.array([int(np.argmax(c[np.arange(R) != r].mean(0))) if R > 1 else int(np.argmax(c[0])) for r in range(R)])
    return c[np.arange(R), idx] - c[:, -1], idx
