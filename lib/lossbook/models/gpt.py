"""A tiny decoder-only transformer (GPT-2 shape) for the alignment and scaling families.

Learned absolute positions, pre-LayerNorm blocks, fused QKV, `F.scaled_dot_product_attention(is_causal=True)`
(or, opt-in, `attn="bmm"`: the same attention as two batched matmuls, `bmm_attention`), GELU MLP, a final
LayerNorm and an (optionally tied) unembedding. `forward(idx, return_hidden=True)` also returns the
final-LayerNorm output, which is exactly what the unembedding consumes: `logits == hidden @ model.unembedding().T`
(+ no bias).

Parameter counting follows Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", §2.1 and
Table 1): N counts *non-embedding* parameters, i.e. it excludes the token embedding (n_vocab·d_model) and
the position embedding (n_ctx·d_model). GPT-2 ties the unembedding to the token embedding, so Kaplan's N
excludes it too; when `tie_weights=False` we count the separate lm_head as embedding as well (it is the
transpose-shaped twin of the token embedding and scales with the vocabulary, not with depth/width). Unlike
Kaplan's approximation N ≈ 12·n_layer·d_model², our count is exact: it includes LayerNorm gains (and biases
when `bias=True`), so `num_params()` = n_layer·(4d² + 2·d·d_ff + 2d [+ biases]) + d for the final LayerNorm.

FLOP counting (`flops_per_token`) is exact for the matmuls, including attention scores and the
unembedding (not only 6N): see that method's docstring.

`StackedGPT` holds K same-shape GPTs as stacked weights (one `bmm` per Linear over the model axis) so that
replicates, seeds or an LR sweep of one shape train as one module (`train.lm.train_lm_stacked`); it computes
what the K separate GPTs compute (tested). It pays where the per-model step is small enough that per-op
overhead dominates (see `benchmarks/lm_throughput.py` for the measured ratios).
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


ATTNS = ("sdpa", "bmm")
"""Attention kernels: "sdpa" (`F.scaled_dot_product_attention(is_causal=True)`, the default) or "bmm" (`bmm_attention`:
the same softmax(q kᵀ/√hd + causal mask) v written as two batched matmuls; faster on a bf16 CPU under autocast)."""


def _check_attn(attn: str) -> str:
    if attn not in ATTNS:
        raise ValueError(f"attn must be one of {ATTNS}, got {attn!r}")
    return attn


def bmm_attention(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0) -> Tensor:
    """Causal attention of [.., T, hd] heads as two batched matmuls (Vaswani et al. 2017, eq. 1):
    softmax(q kᵀ / √hd + M) v with M[i, j] = −∞ for j > i, dropout on the attention weights as SDPA's.
    The same function as `F.scaled_dot_product_attention(q, k, v, is_causal=True)` (tested: forward and
    gradients to fp32 rounding). On one CPU thread (T = 32, head dim 16, contiguous heads) its fp32 forward +
    backward takes ~0.65x of the flash kernel's time, but a GPT's heads are strided views that the reshape
    copies, so in fp32 training it measured 0.75-1.02x of SDPA's step rate (0.99-1.17x for stacked d = 32);
    under bf16 autocast it runs the scores and the weighted sum as native bf16 matmuls and measured 1.0-1.4x
    of the fp32 flash kernel's (`benchmarks/lm_throughput.py`, rows "+bmm")."""
    *lead, T, hd = q.shape
    q3, k3, v3 = q.reshape(-1, T, hd), k.reshape(-1, T, hd), v.reshape(-1, T, hd)
    mask = torch.full((T, T), float("-inf"), device=q.device, dtype=q.dtype).triu_(1)
    w = torch.baddbmm(mask, q3, k3.transpose(1, 2), alpha=1.0 / math.sqrt(hd)).softmax(-1)
    if dropout_p > 0:
        w = F.dropout(w, dropout_p)
    return torch.bmm(w, v3).view(*lead, T, hd)


def attention(q: Tensor, k: Tensor, v: Tensor, dropout_p: float, fp32: bool, impl: str = "sdpa") -> Tensor:
    """Causal attention of [.., h, T, hd] heads with kernel `impl` (`ATTNS`). `fp32` (under autocast only): run
    the kernel in float32 — on CPU the bf16 flash-attention backward is ~10x slower than the fp32 one
    (measured, `benchmarks/lm_throughput.py`)."""
    if fp32 and torch.is_autocast_enabled(q.device.type):
        with torch.autocast(q.device.type, enabled=False):
            return attention(q.float(), k.float(), v.float(), dropout_p, False, impl)
    if impl == "bmm":
        return bmm_attention(q, k, v, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, attn_fp32: bool = False, attn: str = "sdpa") -> None:
        super().__init__()
        self.attn_fp32, self.attn = attn_fp32, _check_attn(attn)
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
        if self.attn_fp32 or self.attn != "sdpa":
            y = attention(q, k, v, self.dropout if self.training else 0.0, self.attn_fp32, self.attn)
        else:  # today's call, unchanged
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


GELUS = ("tanh", "exact")
"""The MLP's GELU forms: "tanh" (GPT-2's approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the
default) or "exact" (x·Φ(x) with the erf; Hendrycks & Gimpel 2016). They differ by < 1e-3 per activation."""


def _check_gelu(gelu: str) -> str:
    if gelu not in GELUS:
        raise ValueError(f"gelu must be one of {GELUS}, got {gelu!r}")
    return "none" if gelu == "exact" else "tanh"


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig, gelu: str = "tanh") -> None:
        super().__init__()
        self.approximate = _check_gelu(gelu)
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x), approximate=self.approximate)))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, cfg: GPTConfig, gelu: str = "tanh", attn_fp32: bool = False, attn: str = "sdpa") -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, attn_fp32, attn)
        self.ln2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg, gelu)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer LM. `forward(idx) -> logits [B, T, V]`, or `(logits, hidden [B, T, d])`.

    Init as GPT-2 / nanoGPT: N(0, 0.02) for weights, residual output projections scaled by 1/sqrt(2·n_layer),
    zero biases, LayerNorm gains 1. `gelu` ("tanh", GPT-2's form and the default, or "exact", the erf form:
    its forward + backward costs 1/1.6–1/2.9 of the tanh form's on this CPU build) is a constructor argument,
    not a `GPTConfig` field, so configs (and the cache keys hashed from them, e.g. the alignment checkpoints')
    are unchanged; the same seed gives the same initial weights for either form. `attn_fp32=True` runs the
    attention kernel in float32 under autocast (no effect without autocast; see `attention`); default off.
    `attn="bmm"` (opt-in; `ATTNS`) computes attention with `bmm_attention` instead of SDPA (same function,
    different rounding); like `gelu`, a constructor argument that leaves configs and cache keys unchanged.
    """

    def __init__(self, cfg: GPTConfig, *, gelu: str = "tanh", attn_fp32: bool = False, attn: str = "sdpa") -> None:
        super().__init__()
        _check_gelu(gelu)
        self.cfg = cfg
        self.gelu, self.attn_fp32, self.attn = gelu, attn_fp32, _check_attn(attn)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, gelu, attn_fp32, attn) for _ in range(cfg.n_layer)])
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


class StackedGPT(nn.Module):
    """K same-shape GPTs evaluated as one module: every Linear is a batched matmul over a leading model axis.

    Model k computes what `GPT` computes with its own weights: the token ids `idx[k]` [B, T] go through
    embedding + positions, pre-LN blocks (fused QKV, causal SDPA over the K·B sequences, GELU MLP) and the final
    LayerNorm to logits `h_k W_head,kᵀ`. Linear weights are stored transposed, [K, d_in, d_out], so each product
    is one `torch.bmm` (`baddbmm` with biases). The models share no parameter, so the gradient of Σ_k L_k in
    model k's slice is ∇L_k alone, and an elementwise optimizer (AdamW) updates each slice as it would update
    model k trained by itself (equal up to floating-point summation order; tested).

    `forward(idx [K, B, T]) -> logits [K, B, T, V]` (`return_hidden=True`: also the final-LN output
    [K, B, T, d]). Build one from freshly initialised (or trained) GPTs with `from_models` (weights are copied),
    and read model k back with `state_dict_of(k)` (the keys of `GPT.state_dict()`) or `to_models()`.
    Dropout masks come from torch's global generator: with dropout > 0 a stacked run matches K separate runs
    in distribution, not draw for draw.
    """

    def __init__(self, cfg: GPTConfig, k: int, *, gelu: str = "tanh", attn_fp32: bool = False, attn: str = "sdpa") -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.approximate = _check_gelu(gelu)
        self.cfg, self.k, self.gelu, self.attn_fp32, self.attn = cfg, k, gelu, attn_fp32, _check_attn(attn)
        with torch.device("meta"):
            shapes = {n: p.shape for n, p in GPT(cfg).named_parameters()}  # de-duplicates the tied head
        self._keys = list(shapes)
        self.params = nn.ParameterDict(
            {self._slot(n): nn.Parameter(torch.zeros(k, *(s[::-1] if self._is_linear(n) else s))) for n, s in shapes.items()}
        )
        self.register_buffer("_offsets", (torch.arange(k) * cfg.vocab_size).view(k, 1, 1), persistent=False)
        with torch.device("meta"):
            ref = GPT(cfg)
        self._n_params = (ref.num_params(True), ref.num_params(False))

    @staticmethod
    def _slot(name: str) -> str:
        return name.replace(".", "__")

    @staticmethod
    def _is_linear(name: str) -> bool:
        """Stored transposed ([K, d_in, d_out]): every Linear weight except the tied/untied head's (kept [K, V, d])."""
        return name.endswith("weight") and (".qkv." in name or ".proj." in name or ".fc." in name)

    def p(self, name: str) -> Tensor:
        """The stacked parameter for `GPT` parameter `name` (Linear weights transposed: [K, d_in, d_out])."""
        return self.params[self._slot(name)]

    def matrices(self) -> list[nn.Parameter]:
        """The stacked parameters that are matrices per model (weights, embeddings): AdamW decays these only."""
        return [self.p(n) for n in self._keys if self.p(n).dim() >= 3]

    def gains(self) -> list[nn.Parameter]:
        """The stacked LayerNorm gains and biases (vectors per model): not decayed."""
        return [self.p(n) for n in self._keys if self.p(n).dim() < 3]

    def _linear(self, x: Tensor, name: str) -> Tensor:
        w = self.p(f"{name}.weight")
        b = f"{name}.bias"
        if self._slot(b) in self.params:
            return torch.baddbmm(self.p(b).unsqueeze(1), x, w)
        return torch.bmm(x, w)

    def _ln(self, x: Tensor, name: str) -> Tensor:
        y = F.layer_norm(x, (self.cfg.d_model,)) * self.p(f"{name}.weight").unsqueeze(1)
        b = f"{name}.bias"
        return y + self.p(b).unsqueeze(1) if self._slot(b) in self.params else y

    def forward(self, idx: Tensor, return_hidden: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits [K, B, T, V] for token ids `idx` [K, B, T]; with `return_hidden`, also the final-LN output."""
        c = self.cfg
        K, B, T = idx.shape
        if K != self.k:
            raise ValueError(f"idx has {K} models on its leading axis, the stack has {self.k}")
        if T > c.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={c.block_size}; crop the input or raise block_size.")
        d, h, V = c.d_model, c.n_head, c.vocab_size
        tok = self.p("tok_emb.weight")
        x = F.embedding(idx + self._offsets, tok.reshape(K * V, d)).view(K, B * T, d)
        x = (x.view(K, B, T, d) + self.p("pos_emb.weight")[:, :T].unsqueeze(1)).view(K, B * T, d)
        drop = (lambda t: F.dropout(t, c.dropout, self.training)) if c.dropout > 0 else (lambda t: t)
        x = drop(x)
        for i in range(c.n_layer):
            pre = f"blocks.{i}"
            q, k_, v = self._linear(self._ln(x, f"{pre}.ln1"), f"{pre}.attn.qkv").split(d, dim=2)
            q, k_, v = (t.reshape(K * B, T, h, d // h).transpose(1, 2) for t in (q, k_, v))
            y = attention(q, k_, v, c.dropout if self.training else 0.0, self.attn_fp32, self.attn)
            y = y.transpose(1, 2).reshape(K, B * T, d)
            x = x + drop(self._linear(y, f"{pre}.attn.proj"))
            hdn = F.gelu(self._linear(self._ln(x, f"{pre}.ln2"), f"{pre}.mlp.fc"), approximate=self.approximate)
            x = x + drop(self._linear(hdn, f"{pre}.mlp.proj"))
        hidden = self._ln(x, "ln_f")
        head = self.p("tok_emb.weight" if c.tie_weights else "lm_head.weight")
        logits = torch.bmm(hidden, head.transpose(1, 2)).view(K, B, T, V)
        hidden = hidden.view(K, B, T, d)
        return (logits, hidden) if return_hidden else logits

    @classmethod
    def from_models(cls, models: list[GPT]) -> StackedGPT:
        """Stack GPTs of one config, GELU form, `attn_fp32` and `attn`; weights are copied, not shared."""
        m0 = models[0]
        if any(m.cfg != m0.cfg or m.gelu != m0.gelu or m.attn_fp32 != m0.attn_fp32 or m.attn != m0.attn for m in models):
            raise ValueError("StackedGPT stacks GPTs of one GPTConfig, one gelu form, one attn_fp32 and one attn")
        out = cls(m0.cfg, len(models), gelu=m0.gelu, attn_fp32=m0.attn_fp32, attn=m0.attn)
        with torch.no_grad():
            for n in out._keys:
                t = out.p(n)
                for j, m in enumerate(models):
                    v = m.get_parameter(n).detach()
                    t[j] = v.t() if cls._is_linear(n) else v
        return out.to(m0.tok_emb.weight.device)

    def state_dict_of(self, j: int) -> dict[str, Tensor]:
        """Model j's weights (CPU copies) under the keys of `GPT.state_dict()` (the tied head included)."""
        sd: dict[str, Tensor] = {}
        with torch.no_grad():
            for n in self._keys:
                v = self.p(n)[j]
                sd[n] = (v.t() if self._is_linear(n) else v).detach().cpu().clone().contiguous()
            if self.cfg.tie_weights:
                sd["lm_head.weight"] = sd["tok_emb.weight"]
        return sd

    def to_models(self) -> list[GPT]:
        """The K models as separate `GPT`s on CPU (weights copied)."""
        out = []
        for j in range(self.k):
            m = GPT(self.cfg, gelu=self.gelu, attn_fp32=self.attn_fp32, attn=self.attn)
            m.load_state_dict(self.state_dict_of(j))
            out.append(m)
        return out

    def flops_per_token(self, seq_len: int | None = None, training: bool = True, causal: bool = True) -> float:
        """Per model and token: `GPT.flops_per_token` (the stack does K times this per token position)."""
        return GPT.flops_per_token(self, seq_len, training, causal)  # type: ignore[arg-type]  # reads self.cfg only

    def num_params(self, non_embedding: bool = True) -> int:
        """Per model: `GPT.num_params`."""
        return self._n_params[0 if non_embedding else 1]
