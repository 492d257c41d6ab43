"""A synthetic language with a known entropy rate: an order-k Markov source with Zipf-shaped transitions.

Next-token distribution given the last k tokens (c₁..c_k, most recent last) is a mixture over suffix lengths:
    P(x | c) = Σ_{j=0..k} λ_j · Zipf_s(π_{c_{k−j+1..k}}(x)),
where Zipf_s(r) ∝ (r+1)^−s over ranks r = 0..V−1 and π_σ is a random permutation of the vocabulary drawn for
each suffix σ (j = 0: one global "unigram" ranking; j = 1: one per previous token; j = k: one per full
context). Coarse structure (unigram, bigram) is cheap to learn and the full-context part needs capacity, so
loss falls smoothly with model size. Every probability is > 0, so the chain on contexts is ergodic.

Exact entropy rate: with μ the stationary distribution over the V^k contexts (power iteration),
    H = Σ_c μ(c) · H(P(· | c))   [nats/token].
`bayes_loss(T)` is the best achievable mean next-token loss of a causal model on length-T windows that start
in stationarity: positions t < k−1 see fewer than k tokens and pay H(X_{t+1} | X_{0..t}) > H.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


@dataclass
class MarkovSource:
    """Order-`order` Markov source over `vocab_size` tokens (see module docstring); deterministic in `seed`."""

    vocab_size: int = 64
    order: int = 2
    zipf: float = 1.1
    mix: tuple[float, ...] = (0.15, 0.35, 0.5)
    seed: int = 0
    P: np.ndarray = field(init=False, repr=False)  # [V]*order + [V]
    mu: np.ndarray = field(init=False, repr=False)  # [V]*order stationary context distribution

    def __post_init__(self) -> None:
        V, k = self.vocab_size, self.order
        if len(self.mix) != k + 1 or abs(sum(self.mix) - 1) > 1e-9 or min(self.mix) < 0:
            raise ValueError(f"mix must have order+1={k + 1} non-negative weights summing to 1, got {self.mix}")
        if V ** (k + 1) > 5e7:
            raise ValueError(f"vocab_size**(order+1) = {V ** (k + 1):.3g} is too large for exact tables; lower one of them.")
        rng = np.random.default_rng(self.seed)
        z = (np.arange(V) + 1.0) ** -self.zipf
        z /= z.sum()
        P = np.zeros((V,) * (k + 1))
        for j, lam in enumerate(self.mix):
            n_ctx = V**j
            perms = np.argsort(rng.random((n_ctx, V)), axis=1)  # perms[σ, rank] = token
            table = np.empty((n_ctx, V))
            np.put_along_axis(table, perms, np.broadcast_to(z, (n_ctx, V)), axis=1)  # table[σ, token] = z[rank]
            table = table.reshape((V,) * j + (V,))
            P += lam * table.reshape((1,) * (k - j) + table.shape)  # depends on the last j tokens only
        self.P = P / P.sum(-1, keepdims=True)
        self.mu = self._stationary()
        self._cdf = torch.from_numpy(np.cumsum(self.P.reshape(-1, V), axis=1)).float()
        self._cdf[:, -1] = 1.0 + 1e-6

    def _stationary(self, tol: float = 1e-14, max_iter: int = 10_000) -> np.ndarray:
        V, k = self.vocab_size, self.order
        if k == 0:
            return np.ones(())
        mu = np.full((V,) * k, 1.0 / V**k)
        Pm = self.P.reshape(V, V ** (k - 1), V)  # [first, middle, next]
        for _ in range(max_iter):
            new = (mu.reshape(V, V ** (k - 1), 1) * Pm).sum(0).reshape((V,) * k)
            if np.abs(new - mu).sum() < tol:
                return new
            mu = new
        return mu

    @staticmethod
    def _ent(p: np.ndarray) -> np.ndarray:
        return -(p * np.log(p)).sum(-1)

    def entropy_rate(self) -> float:
        """H = Σ_c μ(c) H(P(·|c)) in nats per token (exact)."""
        return float((self.mu * self._ent(self.P)).sum())

    def conditional_entropies(self, T: int) -> np.ndarray:
        """H(X_{t+1} | X_0..X_t) for t = 0..T−1 under a stationary start (nats)."""
        V, k = self.vocab_size, self.order
        out = []
        for t in range(T):
            n_seen = t + 1
            if n_seen >= k:
                out.append(self.entropy_rate())
                continue
            # joint of the last n_seen tokens and the next one, marginalising the unseen earlier context
            joint = (self.mu[..., None] * self.P).reshape(V ** (k - n_seen), V**n_seen, V).sum(0)  # [seen ctx, next]
            marg = joint.sum(1, keepdims=True)
            cond = joint / marg
            out.append(float((marg[:, 0] * self._ent(cond)).sum()))
        return np.array(out)

    def bayes_loss(self, block_size: int) -> float:
        """Best achievable mean next-token CE over positions 0..block_size−1 of a stationary window (nats)."""
        return float(self.conditional_entropies(block_size).mean())

    def sample(self, n: int, length: int, generator: torch.Generator) -> Tensor:
        """`n` independent sequences of `length` tokens, each starting from the stationary distribution."""
        V, k = self.vocab_size, self.order
        mu = torch.from_numpy(self.mu.reshape(-1)).float()
        ctx = torch.multinomial(mu, n, replacement=True, generator=generator)  # flat context index
        digits = [(ctx // V ** (k - 1 - i)) % V for i in range(k)]
        seq = torch.empty(n, length, dtype=torch.long)
        for t in range(min(k, length)):
            seq[:, t] = digits[t]
        for t in range(k, length):
            u = torch.rand(n, 1, generator=generator)
            nxt = torch.searchsorted(self._cdf[ctx], u).squeeze(1).clamp_(max=V - 1)
            seq[:, t] = nxt
            ctx = (ctx * V + nxt) % (V**k)
        return seq

    def batch_fn(self, batch_size: int, block_size: int, seed: int = 0):
        """`get_batch(step) -> (x, y)`, fresh samples per step, deterministic in (seed, step); y = x shifted by 1."""

        def get_batch(step: int) -> tuple[Tensor, Tensor]:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            s = self.sample(batch_size, block_size + 1, g)
            return s[:, :-1], s[:, 1:]

        return get_batch

    def entropy_mc(self, n_tokens: int = 200_000, seed: int = 0) -> tuple[float, float]:
        """Monte-Carlo check of the entropy rate: mean −log P(x_t | context) over sampled tokens and its s.e."""
        V, k = self.vocab_size, self.order
        g = torch.Generator().manual_seed(seed)
        n_seq = max(n_tokens // 256, 1)
        s = self.sample(n_seq, 256 + k, g).numpy()
        flatP = self.P.reshape(-1, V)
        ctx = np.zeros((n_seq, 256), dtype=np.int64)
        for i in range(k):
            ctx = ctx * V + s[:, i : i + 256]
        lp = -np.log(flatP[ctx, s[:, k : k + 256]])
        per_seq = lp.mean(1)
        return float(per_seq.mean()), float(per_seq.std(ddof=1) / math.sqrt(n_seq))
