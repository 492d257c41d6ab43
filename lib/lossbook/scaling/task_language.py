"""A synthetic language whose knowledge must live in the non-embedding parameters, with an exact entropy rate.

The text is a stream of independent *episodes* of m + 2 tokens:  c₁ … c_m  x  y.
- A task t ∈ {0..T−1} is drawn from a Zipf prior p_t ∝ (t+1)^−s and **spelled** by its code c₁..c_m, m tokens of
  a small code alphabet of K tokens (T distinct codes drawn at random from the K^m possible ones, by `seed`).
- The input x is uniform over S symbols; the output is y = f_t(x) with probability 1 − ε and uniform over the S
  symbols otherwise, where f_t : S → S is task t's own random map (drawn by `seed`).
Token ids: codes 0..K−1, symbols K..K+S−1 (x and y share the symbol alphabet), so vocab_size = K + S.

Because a task is spelled by several code tokens, no single token's embedding can hold its map: predicting y
needs attention to gather (c₁..c_m, x) and an MLP that stores T·S associations, i.e. non-embedding
parameters. This is the "quantization model" of neural scaling (Michaud, Liu, Girit, Tegmark 2023,
"The Quantization Model of Neural Scaling", arXiv 2303.13506; Hutter 2021, arXiv 2102.04074): Zipf-distributed
pieces of knowledge, each worth a fixed loss reduction once learned.

Exact entropies (nats). Per episode position j (its *offset*):
    h_j = H(c_{≤j+1}) − H(c_{≤j})  for code positions j = 0..m−1 (H of the prior pushed onto code prefixes),
    h_m = log S  (the input),
    h_{m+1} = h_out = −(1−ε+ε/S)·log(1−ε+ε/S) − (S−1)·(ε/S)·log(ε/S)  (the output given task and input).
Σ_{j<m} h_j = H(p) (codes are a bijection of tasks), so the entropy rate is H = (H(p) + log S + h_out)/(m + 2).
A window that starts on an episode boundary and scores targets at positions 1..T_b has Bayes loss
mean_{i=1..T_b} h_{i mod (m+2)} (`bayes_loss`), which a model reaches only by knowing every map.

Oracle curve: a predictor that knows everything except the maps of tasks ≥ n (for those it can only predict
the marginal of y, uniform over S) pays (1 − P_n)·(log S − h_out) extra nats on each output token, with
P_n = Σ_{t<n} p_t. For T → ∞, 1 − P_n ≈ n^{1−s}/((s−1)·ζ(s)): a power law in the number of tasks known with
exponent s − 1, which is the law L(N) − E ∝ N^{−(s−1)} if a model's capacity buys tasks at a fixed cost each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@dataclass
class TaskLanguage:
    """Zipf-distributed tasks spelled by `code_len` tokens of a `code_alphabet`-token alphabet, each with its own
    map S → S used with probability 1 − `eps` (module docstring). Deterministic in `seed` (codes and maps)."""

    n_tasks: int = 256
    code_alphabet: int = 16
    code_len: int = 2
    n_symbols: int = 16
    zipf: float = 1.5
    eps: float = 0.1
    seed: int = 0
    prior: np.ndarray = field(init=False, repr=False)  # [T] task probabilities, decreasing
    codes: np.ndarray = field(init=False, repr=False)  # [T, m] code tokens of each task
    maps: np.ndarray = field(init=False, repr=False)  # [T, S] f_t(x) as a symbol index

    def __post_init__(self) -> None:
        T, K, m, S = self.n_tasks, self.code_alphabet, self.code_len, self.n_symbols
        if min(T, K, m, S) < 1 or not 0.0 <= self.eps <= 1.0 or self.zipf < 0:
            raise ValueError(f"need n_tasks, code_alphabet, code_len, n_symbols >= 1, eps in [0, 1], zipf >= 0; got {self}")
        if T > K**m:
            raise ValueError(f"n_tasks = {T} exceeds the {K}^{m} = {K**m} distinct codes; raise code_alphabet or code_len.")
        rng = np.random.default_rng(self.seed)
        w = (np.arange(T) + 1.0) ** -self.zipf
        self.prior = w / w.sum()
        flat = rng.choice(K**m, size=T, replace=False)
        self.codes = np.stack([(flat // K ** (m - 1 - i)) % K for i in range(m)], axis=1)
        self.maps = rng.integers(0, S, size=(T, S))

    # ------------------------------------------------------------------ sizes and exact entropies
    @property
    def vocab_size(self) -> int:
        return self.code_alphabet + self.n_symbols

    @property
    def episode_len(self) -> int:
        return self.code_len + 2

    def output_entropy(self) -> float:
        """h_out = H(y | t, x) = −(1−ε+ε/S)·log(1−ε+ε/S) − (S−1)·(ε/S)·log(ε/S)."""
        S, e = self.n_symbols, self.eps
        hit, miss = 1 - e + e / S, e / S
        return float(-hit * math.log(hit) - ((S - 1) * miss * math.log(miss) if miss > 0 else 0.0))

    def offset_entropies(self) -> np.ndarray:
        """[h_0 … h_{m+1}]: the exact conditional entropy of each episode position given everything before it."""
        K, m = self.code_alphabet, self.code_len
        flat = np.zeros(len(self.prior), dtype=np.int64)
        prefix_h = [0.0]
        for j in range(m):
            flat = flat * K + self.codes[:, j]
            prefix_h.append(_entropy(np.bincount(flat, weights=self.prior)))
        return np.array([*np.diff(prefix_h), math.log(self.n_symbols), self.output_entropy()])

    def entropy_rate(self) -> float:
        """H = (H(p) + log S + h_out)/(m + 2) nats per token (exact)."""
        return float(self.offset_entropies().mean())

    def _scored_output_share(self, block_size: int) -> float:
        offs = np.arange(1, block_size + 1) % self.episode_len
        return float(np.mean(offs == self.episode_len - 1))

    def bayes_loss(self, block_size: int) -> float:
        """Best achievable mean CE over targets 1..block_size of a window starting on an episode boundary."""
        h = self.offset_entropies()
        return float(h[np.arange(1, block_size + 1) % self.episode_len].mean())

    def tail_mass(self, n: np.ndarray | int) -> np.ndarray:
        """1 − P_n = Σ_{t ≥ n} p_t, the prior mass of the tasks an oracle that knows the top n does not know."""
        n = np.clip(np.asarray(n, dtype=np.int64), 0, self.n_tasks)
        tail = np.concatenate([np.cumsum(self.prior[::-1])[::-1], [0.0]])
        return tail[n]

    def oracle_loss(self, n: np.ndarray | int, block_size: int) -> np.ndarray:
        """Exact loss of the oracle that knows the maps of the n most frequent tasks (and nothing of the others'):
        bayes_loss + (1 − P_n)·(log S − h_out)·(share of scored targets that are outputs)."""
        gap = math.log(self.n_symbols) - self.output_entropy()
        return self.bayes_loss(block_size) + self.tail_mass(n) * gap * self._scored_output_share(block_size)

    def oracle_exponent(self) -> float:
        """The power-law exponent s − 1 of the oracle's excess loss in n for T → ∞ (Zipf tail mass)."""
        return float(self.zipf - 1.0)

    # ------------------------------------------------------------------ sampling and scoring
    def sample_episodes(self, n_seq: int, n_ep: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Draw tasks, inputs and outputs for `n_seq` × `n_ep` episodes: {"task", "x", "y", "tokens" [n_seq, n_ep·(m+2)]}."""
        K, S = self.code_alphabet, self.n_symbols
        prior = torch.from_numpy(self.prior)
        task = torch.multinomial(prior, n_seq * n_ep, replacement=True, generator=generator).view(n_seq, n_ep)
        x = torch.randint(0, S, (n_seq, n_ep), generator=generator)
        noise = torch.rand(n_seq, n_ep, generator=generator) < self.eps
        y = torch.where(noise, torch.randint(0, S, (n_seq, n_ep), generator=generator), torch.from_numpy(self.maps)[task, x])
        codes = torch.from_numpy(self.codes)[task]  # [n_seq, n_ep, m]
        tokens = torch.cat([codes, (K + x)[..., None], (K + y)[..., None]], dim=2).reshape(n_seq, -1)
        return {"task": task, "x": x, "y": y, "tokens": tokens}

    def sample(self, n: int, length: int, generator: torch.Generator) -> Tensor:
        """`n` independent token sequences of `length` tokens, each starting on an episode boundary."""
        n_ep = -(-length // self.episode_len)
        return self.sample_episodes(n, n_ep, generator)["tokens"][:, :length].contiguous()

    def batch_fn(self, batch_size: int, block_size: int, seed: int = 0):
        """`get_batch(step) -> (x, y)` of fresh windows, deterministic in (seed, step); y = x shifted by 1."""

        def get_batch(step: int) -> tuple[Tensor, Tensor]:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            s = self.sample(batch_size, block_size + 1, g)
            return s[:, :-1], s[:, 1:]

        return get_batch

    def pool_windows(self, n_windows: int, block_size: int, seed: int = 0, chunk: int = 256) -> Tensor:
        """A fixed pool of `n_windows` windows of block_size + 1 tokens, drawn in seed-fixed chunks so that the pool
        for a smaller n is a prefix of the pool for a larger one (unique sets nested across U)."""
        n_chunks = -(-n_windows // chunk)
        parts = [self.sample(chunk, block_size + 1, torch.Generator().manual_seed(7_777_777 + seed * 1_000_003 + c)) for c in range(n_chunks)]
        return torch.cat(parts)[:n_windows]

    def repeat_batch_fn(self, batch_size: int, block_size: int, unique_tokens: int, seed: int = 0):
        """`get_batch(step)` that repeats a fixed pool of ≈ `unique_tokens` tokens from this same source (no
        distribution shift: validation comes from the same law), in a fresh seed-fixed order every epoch, so
        each window is seen once per epoch. Epochs after D tokens = D / (pool windows · (block_size + 1))."""
        pool = self.pool_windows(max(unique_tokens // (block_size + 1), 1), block_size, seed)
        n = len(pool)
        perms: dict[int, Tensor] = {}

        def order(epoch: int) -> Tensor:
            if epoch not in perms:
                perms[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + 31 * epoch + 5))
            return perms[epoch]

        def get_batch(step: int) -> tuple[Tensor, Tensor]:
            idx = torch.arange(step * batch_size, (step + 1) * batch_size)
            rows = torch.stack([order(int(i) // n)[int(i) % n] for i in idx])
            s = pool[rows]
            return s[:, :-1], s[:, 1:]

        return get_batch

    def episode_nll(self, task: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """−log P(episode) under the source: −log p_t + log S − log q(y | t, x)."""
        S, e = self.n_symbols, self.eps
        hit = torch.from_numpy(self.maps)[task, x] == y
        log_q = torch.where(hit, torch.tensor(math.log(1 - e + e / S)), torch.tensor(math.log(e / S) if e > 0 else -math.inf))
        return -torch.log(torch.from_numpy(self.prior))[task] + math.log(S) - log_q

    def entropy_mc(self, n_episodes: int = 200_000, seed: int = 0) -> tuple[float, float]:
        """Monte-Carlo entropy rate: mean episode NLL / (m + 2) over sampled episodes, and its standard error."""
        g = torch.Generator().manual_seed(seed)
        ep = self.sample_episodes(n_episodes, 1, g)
        v = (self.episode_nll(ep["task"], ep["x"], ep["y"]) / self.episode_len).double().numpy().ravel()
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))

    def eval_set(self, block_size: int, n_tokens: int, seed: int, batch: int = 64) -> list[tuple[Tensor, Tensor]]:
        """A fixed validation set of ≈ `n_tokens` targets in windows of `block_size`, drawn from its own stream."""
        n_seq = max(n_tokens // block_size, 1)
        s = self.sample(n_seq, block_size + 1, torch.Generator().manual_seed(10_000_019 + seed))
        return [(s[i : i + batch, :-1].contiguous(), s[i : i + batch, 1:].contiguous()) for i in range(0, n_seq, batch)]

    def eval_true_nll(self, batches: list[tuple[Tensor, Tensor]]) -> float:
        """The source's own mean NLL on the scored targets of `batches` (for the control variate L − (Ĥ − H_Bayes))."""
        h_tok = torch.from_numpy(self._token_logprobs_table())
        tot, n = 0.0, 0
        for x, y in batches:
            full = torch.cat([x[:, :1], y], dim=1)
            tot += float(self._window_nll(full, h_tok)[:, 1:].sum())
            n += y.numel()
        return tot / max(n, 1)

    def _token_logprobs_table(self) -> np.ndarray:
        """log P(c_{≤j+1} prefix) per task and code depth j = 0..m ([T, m+1]; column 0 is 0)."""
        K, m = self.code_alphabet, self.code_len
        out = np.zeros((self.n_tasks, m + 1))
        flat = np.zeros(self.n_tasks, dtype=np.int64)
        for j in range(m):
            flat = flat * K + self.codes[:, j]
            mass = np.bincount(flat, weights=self.prior)
            out[:, j + 1] = np.log(mass[flat])
        return out

    def _window_nll(self, s: Tensor, table: Tensor) -> Tensor:
        """Per-token NLL [n, L] of windows starting on an episode boundary (position 0 scored like any other)."""
        n, L = s.shape
        E, m, K, S = self.episode_len, self.code_len, self.code_alphabet, self.n_symbols
        n_ep = -(-L // E)
        pad = torch.zeros(n, n_ep * E - L, dtype=s.dtype)
        ep = torch.cat([s, pad], dim=1).view(n, n_ep, E)
        code = ep[..., :m].numpy()
        lookup = {tuple(c): t for t, c in enumerate(self.codes.tolist())}
        task = torch.tensor([[lookup.get(tuple(c), 0) for c in row] for row in code.reshape(n, n_ep, m).tolist()])
        x, y = ep[..., m] - K, ep[..., m + 1] - K
        nll = torch.empty(n, n_ep, E, dtype=torch.float64)
        lp = table[task]  # [n, n_ep, m+1]
        nll[..., :m] = -(lp[..., 1:] - lp[..., :-1])
        nll[..., m] = math.log(S)
        e = self.eps
        hit = torch.from_numpy(self.maps)[task, x.clamp(0, S - 1)] == y
        nll[..., m + 1] = torch.where(hit, -math.log(1 - e + e / S), -math.log(e / S) if e > 0 else math.inf).double()
        return nll.view(n, -1)[:, :L]
