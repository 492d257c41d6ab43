"""A tiny decoder-only transformer (GPT-2 shape) for the alignment and scaling families.

Learned absolute positions, pre-LayerNorm blocks, fused QKV, `F.scaled_dot_product_attention(is_causal=True)`,
GELU MLP, a final LayerNorm and an (optionally tied) unembedding. `forward(idx, return_hidden=True)` also
returns the final-LayerNorm output, which is exactly what the unembedding consumes:
`logits == hidden @ model.unembedding().T` (+ no bias).

Parameter counting follows Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", §2.1 and
Table 1): N counts *non-embedding* parameters, i.e. it excludes the token embedding (n_vocab·d_model) and
the position embedding (n_ctx·d_model). GPT-2 ties the unembedding to the token embedding, so Kaplan's N
excludes it too; when `tie_weights=False` we count the separate lm_head as embedding as well (it is the
transpose-shaped twin of the token embedding and scales with the vocabulary, not with depth/width). Unlike
Kaplan's approximation N ≈ 12·n_layer·d_model², our count is exact: it includes LayerNorm gains (and biases
when `bias=True`), so `num_params()` = n_layer·(4d² + 2·d·d_ff + 2d [+ biases]) + d for the final LayerNorm.

FLOP counting (`flops_per_token`) is exact for the matmuls, including attention scores and the
unembedding (not only 6N): see that method's docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class GPTConfig:
    """Shape of a GPT. `d_ff` defaults to 4·d_model; `bias` adds biases to Linear and LayerNorm layers."""

    vocab_size: int
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = False
    tie_weights: bool = True

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.d_model % self.n_head != 0:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}.")
        if self.vocab_size < 1 or self.block_size < 1 or self.n_layer < 0:
            raise ValueError(f"bad GPTConfig: {self}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.d_model, self.dropout = cfg.n_head, cfg.d_model, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        h = self.n_head
        q = q.view(B, T, h, C // h).transpose(1, 2)
        k = k.view(B, T, h, C // h).transpose(1, 2)
        v = v.view(B, T, h, C // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer LM. `forward(idx) -> logits [B, T, V]`, or `(logits, hidden [B, T, d])`.

    Init as GPT-2 / nanoGPT: N(0, 0.02) for weights, residual output projections scaled by 1/sqrt(2·n_layer),
    zero biases, LayerNorm gains 1.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * max(cfg.n_layer, 1)))
        self.register_buffer("_pos", torch.arange(cfg.block_size), persistent=False)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx: Tensor, return_hidden: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits [B, T, V] for token ids `idx` [B, T] (T ≤ block_size); with `return_hidden`, also the
        final-LayerNorm output [B, T, d] (the unembedding's input: logits = hidden @ unembedding().T)."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.cfg.block_size}; crop the input or raise block_size.")
        x = self.drop(self.tok_emb(idx) + self.pos_emb(self._pos[:T]))
        for block in self.blocks:
            x = block(x)
        hidden = self.ln_f(x)
        logits = self.lm_head(hidden)
        return (logits, hidden) if return_hidden else logits

    def unembedding(self) -> Tensor:
        """The unembedding matrix W [V, d] (the lm_head weight; the token embedding when tied)."""
        return self.lm_head.weight

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. `non_embedding=True` is Kaplan et al. 2020's N: excludes the token and position
        embeddings and the unembedding (tied, or untied lm_head). `False`: every distinct parameter."""
        seen: set[int] = set()
        total = 0
        for p in self.parameters():  # parameters() already de-duplicates a tied weight
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
        if not non_embedding:
            return total
        emb = self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
        if not self.cfg.tie_weights:
            emb += self.lm_head.weight.numel()
        return total - emb

    def flops_per_token(self, seq_len: int | None = None, training: bool = True, causal: bool = True) -> float:
        """Exact matmul FLOPs per token (1 multiply-add = 2 FLOPs) for sequences of length `seq_len`.

        Forward, per layer and token: QKV 2·d·3d, output projection 2·d², MLP 2·2·d·d_ff, attention scores
        QKᵀ and the weighted sum AV: 2·2·d·t_avg, where t_avg = (T+1)/2 keys on average under a causal mask
        (`causal=False`: T keys, Kaplan's 2·n_layer·n_ctx·d_attn convention). Plus the unembedding 2·d·V.
        Training counts backward as 2× forward: 3× in total. Embedding lookups, LayerNorms, softmax and
        GELU are not matmuls and are left out (they are O(d) per token, well under 1% here).
        """
        c = self.cfg
        T = seq_len or c.block_size
        d, ff = c.d_model, c.d_ff
        t_avg = (T + 1) / 2 if causal else T
        per_layer = 2 * d * 3 * d + 2 * d * d + 2 * 2 * d * ff + 2 * 2 * d * t_avg
        fwd = c.n_layer * per_layer + 2 * d * c.vocab_size
        return float(3 * fwd if training else fwd)


def count_params_by_hand(cfg: GPTConfig) -> dict[str, int]:
    """Closed-form parameter counts for `cfg` (used by tests and to size sweeps without building a model).

    non_embedding = n_layer·(4d² + 2·d·d_ff + 2d) + d   [+ biases: n_layer·(3d + d + d_ff + d + 2d) + d]
    embedding = V·d + n_ctx·d  [+ V·d for an untied head]
    """
    d, ff, L, V, T = cfg.d_model, cfg.d_ff, cfg.n_layer, cfg.vocab_size, cfg.block_size
    non_emb = L * (4 * d * d + 2 * d * ff + 2 * d) + d
    if cfg.bias:
        non_emb += L * (3 * d + d + ff + d + 2 * d) + d
    emb = V * d + T * d + (0 if cfg.tie_weights else V * d)
    return {"non_embedding": non_emb, "embedding": emb, "total": non_emb + emb}
