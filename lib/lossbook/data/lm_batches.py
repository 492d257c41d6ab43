"""Batches of next-token windows from a token stream, deterministic in (seed, step).

`window_batches(data, batch_size, block_size, seed, unique_tokens=None)` returns `get_batch(step) -> (x, y)`:
B random windows of length T+1 drawn uniformly from `data[:unique_tokens]` (the whole stream by default);
x = window[:-1], y = window[1:]. Restricting to the first U tokens and training for D tokens repeats the
data ≈ D/U times ("epochs", Muennighoff et al. 2023) with fresh window offsets each pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def window_batches(
    data: Tensor, batch_size: int, block_size: int, seed: int = 0, unique_tokens: int | None = None
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """`get_batch(step)` of random windows from `data[:unique_tokens]` (see module docstring)."""
    n = len(data) if unique_tokens is None else int(unique_tokens)
    if n > len(data):
        raise ValueError(f"unique_tokens={n} exceeds the stream length {len(data)}")
    if n < block_size + 2:
        raise ValueError(f"need at least block_size+2={block_size + 2} tokens, got {n}")
    src = data[:n]
    offs = torch.arange(block_size + 1)

    def get_batch(step: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        start = torch.randint(0, n - block_size - 1 + 1, (batch_size,), generator=g)
        w = src[start[:, None] + offs]
        return w[:, :-1], w[:, 1:]

    return get_batch


def eval_windows(data: Tensor, block_size: int, max_windows: int = 256, batch_size: int = 64) -> list[tuple[Tensor, Tensor]]:
    """Non-overlapping (x, y) windows covering `data` from the start (at most `max_windows`), in batches."""
    n_win = min((len(data) - 1) // block_size, max_windows)
    if n_win < 1:
        raise ValueError(f"data of length {len(data)} is shorter than one window of {block_size + 1}")
    starts = torch.arange(n_win) * block_size
    offs = torch.arange(block_size + 1)
    w = data[starts[:, None] + offs]
    return [(w[i : i + batch_size, :-1], w[i : i + batch_size, 1:]) for i in range(0, n_win, batch_size)]
