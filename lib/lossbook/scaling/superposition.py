"""The toy model of superposition as a scaling testbed (Liu, Liu & Gore 2025, "Superposition Yields Robust
Neural Scaling", arXiv 2505.10465; the model is Elhage et al. 2022's "Toy Models of Superposition").

Data: n sparse features, ``x_i = u_i · v_i`` with ``u_i ~ Bernoulli(p_i)``, ``v_i ~ U(0, 2)`` and power-law
frequencies ``p_i = E · i^(−α) / Σ_j j^(−α)`` (activation density ``E = Σ_i p_i``, 1 in the paper's runs).
Model: ``x̂ = ReLU(W Wᵀ x + b)`` with ``W ∈ R^{n×m}`` (row ``W_i`` is feature i's representation),
loss ``L = mean_{batch, i} (x̂_i − x_i)²`` (``nn.MSELoss``, as the official code).

The degree of superposition is set by a decoupled weight decay γ on W applied before each Adam step at the
current lr η_t (the official ``exp/adamw.py``):
``W_i ← W_i (1 − η_t γ)`` for γ ≥ 0 (shrinks rare features' rows to 0: *weak* superposition) and
``W_i ← W_i + η_t γ W_i (1 − 1/‖W_i‖)`` for γ < 0 (pulls every row to unit norm: *strong* superposition).

Many small models are trained at once: K models of one width m are one ``(K, n, m)`` tensor, the forward is
two ``bmm`` and Adam is elementwise, so each model's trajectory is the one it would have alone (tested).
Statistics: the represented fraction ``φ_{1/2} = |{i: ‖W_i‖ > 1/2}| / n``, the mean squared overlap of the
normalised represented rows ``⟨(Ŵ_i·Ŵ_j)²⟩_{i≠j}`` (1/m for random unit vectors in R^m), the weak-regime
prediction ``L_weak(k) = ⟨v²⟩/n · Σ_{i>k} p_i`` (the k most frequent features represented, the rest lost,
``⟨v²⟩ = 4/3``) and least-squares slopes in log–log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lossbook.optim import make_optimizer
from lossbook.optim.schedules import lr_multiplier

V2_MEAN = 4.0 / 3.0  # ⟨v²⟩ for v ~ U(0, 2)


def feature_probs(n: int, alpha: float, density: float = 1.0) -> torch.Tensor:
    """``p_i = E · i^(−α) / Σ_{j≤n} j^(−α)``, i = 1..n (float64 for the sum, returned as float32)."""
    i = torch.arange(1, n + 1, dtype=torch.float64)
    w = i.pow(-float(alpha))
    return (density * w / w.sum()).float()


def weak_loss_prediction(p: torch.Tensor | np.ndarray, k: int | float) -> float:
    """The weak-superposition loss when the ``k`` most frequent features are represented perfectly and the rest
    are dropped: ``L = ⟨v²⟩/n · Σ_{i>k} p_i`` (MSE averaged over the n outputs; Liu et al. 2025, Sec. 4)."""
    q = np.asarray(p, dtype=float)
    k = int(round(float(k)))
    return float(V2_MEAN * q[k:].sum() / q.size)


def forward(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x̂ = ReLU(x W Wᵀ + b)`` batched over models: x (K, B, n), W (K, n, m), b (K, n) -> (K, B, n)."""
    h = torch.bmm(x, W)
    return torch.relu(torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2)))


def model_losses(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-model MSE ``mean_{B, n} (x̂ − x)²`` -> (K,)."""
    return (forward(x, W, b) - x).pow(2).mean(dim=(1, 2))


@torch.no_grad()
def decay_step(W: torch.Tensor, gamma: torch.Tensor, lr: float, eps: float = 1e-8) -> None:
    """The paper's decoupled weight decay / growth on W (K, n, m) in place, per model γ (K,):
    γ ≥ 0: ``W ← W (1 − η γ)``; γ < 0: ``W ← W + η γ W (1 − 1/(‖W_i‖ + ε))`` (rows pulled to unit norm)."""
    g = gamma.view(-1, 1, 1).to(W)
    norms = W.norm(dim=2, keepdim=True) + eps
    grow = W * (g * (1 - 1 / norms)) * lr
    shrink = -W * g * lr
    W.add_(torch.where(g >= 0, shrink, grow))


def sample_features(u: torch.Tensor, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``x = 1[u < p] · 2v`` from uniforms u, v (K, B, n) and frequencies p (K, n) -> (K, B, n)."""
    return torch.where(u < p.unsqueeze(1), 2 * v, 0.0)


def init_weights(seeds: Sequence[int], n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official init per model: ``W ~ N(0, 1/m)`` (n, m), ``b ~ N(0, 1)`` (n), from ``Generator(seed·1009 + m)``."""
    Ws, bs = [], []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s) * 1009 + m)
        Ws.append(torch.randn(n, m, generator=g) / math.sqrt(m))
        bs.append(torch.randn(n, generator=g))
    return torch.stack(Ws), torch.stack(bs)


def loss_and_grads(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-model loss (K,) and its exact gradients, by hand (fewer passes over the (K, B, n) tensors than autograd).

    With ``h = xW``, ``z = hWᵀ + b``, ``r = ReLU(z) − x`` and ``L_k = mean_{B,n} r²``:
    ``g = (2/(Bn)) · r · 1[z > 0]``, ``∂L/∂W = gᵀh + xᵀ(gW)``, ``∂L/∂b = Σ_B g``.
    """
    B, n = x.shape[1], x.shape[2]
    h = torch.bmm(x, W)
    z = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
    r = torch.relu(z).sub_(x)
    loss = r.square().mean(dim=(1, 2))
    g = torch.ops.aten.threshold_backward(r, z, 0.0)  # r · 1[z > 0], the ReLU backward kernel
    c = 2.0 / (B * n)
    dW = (torch.bmm(g.transpose(1, 2), h) + torch.bmm(x.transpose(1, 2), torch.bmm(g, W))).mul_(c)
    return loss, dW, g.sum(dim=1).mul_(c)


@dataclass
class ToyRun:
    """K trained toy models of one width m: final weights, eval loss per model (K,), the training-loss curve
    (n_windows, K), each row the mean over a window of ``steps // n_windows`` steps."""

    m: int
    W: torch.Tensor
    b: torch.Tensor
    eval_loss: np.ndarray
    curve: np.ndarray


def train_toys(
    probs: torch.Tensor,
    gammas: Sequence[float],
    model_seeds: Sequence[int],
    widths: Sequence[int],
    *,
    steps: int,
    batch: int,
    lr: float = 1e-2,
    warmup_frac: float = 0.1,
    final_frac: float = 0.05,
    n_windows: int = 20,
    eval_batches: int = 4,
    inits: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[int, ToyRun]:
    """Train K = len(gammas) toy models at every width in ``widths``: one batched (K, n, m) tensor per width.

    Adam (``make_optimizer``; lr ``lr`` warmed up linearly over ``warmup_frac`` of the steps then cosine to
    ``final_frac``·lr, the official schedule) on the hand gradients of ``loss_and_grads``, with the decoupled
    decay ``decay_step(γ_k)`` on W (not on b) before each step. ``probs`` (K, n): each model's frequencies.
    Fresh data every step, shared by all widths; models with the same seed share uniforms (common random
    numbers) and init stream, so a seed is one independent replicate. Eval: ``eval_batches`` fresh batches.
    Init is drawn on the CPU (the same models on every device); data streams live on ``device``.
    """
    dev = torch.device(device)
    probs = probs.to(dev)
    K, n = probs.shape
    seeds = [int(s) for s in model_seeds]
    uniq = sorted(set(seeds))
    idx = torch.tensor([uniq.index(s) for s in seeds], device=dev)
    params, opts = {}, {}
    for m in widths:
        W0, b0 = inits[m] if inits and m in inits else init_weights(seeds, n, m)
        params[m] = (W0.to(dev).clone().requires_grad_(True), b0.to(dev).clone().requires_grad_(True))
        opts[m] = make_optimizer(list(params[m]), "adam", lr)
    gam = torch.tensor([float(g) for g in gammas], device=dev)
    gens = [torch.Generator(device=dev).manual_seed(10_000 + s) for s in uniq]
    warm = int(round(warmup_frac * steps))
    win = max(steps // n_windows, 1)
    curves = {m: [] for m in widths}
    acc = {m: torch.zeros(K, device=dev) for m in widths}
    for t in tqdm(range(steps), desc=f"toy models m={list(widths)}", disable=not progress, mininterval=5):
        u = torch.stack([torch.rand(batch, n, generator=g, device=dev) for g in gens])
        v = torch.stack([torch.rand(batch, n, generator=g, device=dev) for g in gens])
        x = sample_features(u[idx], v[idx], probs)
        eta = lr * lr_multiplier("cosine", t, steps, warm, final_frac=final_frac)
        for m in widths:
            W, b = params[m]
            loss, W.grad, b.grad = loss_and_grads(x, W.detach(), b.detach())
            for group in opts[m].param_groups:
                group["lr"] = eta
            decay_step(W.data, gam, eta)
            opts[m].step()
            acc[m] += loss
            if (t + 1) % win == 0:
                curves[m].append((acc[m] / win).cpu().numpy())
                acc[m].zero_()
    out = {}
    for m in widths:
        W, b = (p.detach() for p in params[m])
        ev = evaluate(probs, W, b, seeds, batch, eval_batches)
        out[m] = ToyRun(m, W.cpu(), b.cpu(), ev, np.array(curves[m]))
    return out


@torch.no_grad()
def evaluate(probs: torch.Tensor, W: torch.Tensor, b: torch.Tensor, seeds: Sequence[int], batch: int, n_batches: int) -> np.ndarray:
    """Mean MSE per model over ``n_batches`` fresh batches (eval streams seeded ``20_000 + seed``)."""
    K, n = probs.shape
    dev = W.device
    probs = probs.to(dev)
    gens = [torch.Generator(device=dev).manual_seed(20_000 + int(s)) for s in seeds]
    tot = torch.zeros(K, device=dev)
    for _ in range(n_batches):
        u = torch.stack([torch.rand(batch, n, generator=g, device=dev) for g in gens])
        v = torch.stack([torch.rand(batch, n, generator=g, device=dev) for g in gens])
        tot += model_losses(sample_features(u, v, probs), W, b.to(dev))
    return (tot / n_batches).cpu().numpy()


def row_norms(W: torch.Tensor) -> torch.Tensor:
    """‖W_i‖ for every feature: (..., n, m) -> (..., n)."""
    return W.norm(dim=-1)


def represented_fraction(W: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``φ = |{i: ‖W_i‖ > threshold}| / n`` per model (the paper's φ_{1/2}): (..., n, m) -> (...)."""
    return (row_norms(W) > threshold).float().mean(dim=-1)


def mean_sq_overlap(W: torch.Tensor, threshold: float = 0.5) -> float:
    """Mean squared overlap ``⟨(Ŵ_i · Ŵ_j)²⟩`` over ordered pairs i ≠ j of the represented rows
    (‖W_i‖ > threshold) of one model's W (n, m), rows normalised to unit length. NaN with < 2 represented."""
    keep = row_norms(W) > threshold
    V = W[keep]
    k = V.shape[0]
    if k < 2:
        return float("nan")
    V = V / V.norm(dim=1, keepdim=True)
    G = (V @ V.T).pow(2)
    return float((G.sum() - G.diagonal().sum()) / (k * (k - 1)))


@dataclass(frozen=True)
class Slope:
    """A least-squares line ``log y = a + s · log x``: slope s, intercept a, R², standard error of s."""

    slope: float
    intercept: float
    r2: float
    stderr: float


def loglog_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> Slope:
    """Ordinary least squares of ``log y`` on ``log x`` (natural logs; the slope is base-free), over the points
    with finite positive x and y; all NaN when fewer than 2 such points remain."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return Slope(float("nan"), float("nan"), float("nan"), float("nan"))
    lx, ly = np.log(x[ok]), np.log(y[ok])
    A = np.vstack([np.ones_like(lx), lx]).T
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    res = ly - A @ coef
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1 - float((res**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    dof = max(lx.size - 2, 1)
    se = math.sqrt(float((res**2).sum()) / dof / float(((lx - lx.mean()) ** 2).sum()))
    return Slope(float(coef[1]), float(coef[0]), r2, se)


def slopes_by(df: pd.DataFrame, by: Sequence[str], x: str, y: str) -> pd.DataFrame:
    """``loglog_slope(df[x], df[y])`` within every group of ``by``: one row per group with slope, intercept,
    r2 and stderr (e.g. the loss exponent of one (regime, α, seed) replicate over its widths)."""
    rows = []
    for key, g in df.groupby(list(by), sort=True):
        f = loglog_slope(g[x].to_numpy(), g[y].to_numpy())
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), **asdict(f)})
    return pd.DataFrame(rows)


def top_k_share(W: torch.Tensor, threshold: float = 0.5) -> float:
    """Of the k represented features (‖W_i‖ > threshold) of one model's W (n, m), with features sorted by
    frequency (row 0 the most frequent), the share that are among the k most frequent: 1 when exactly the top
    k are kept (the weak-superposition picture), about k/n when the kept set ignores frequency. NaN if k = 0."""
    keep = row_norms(W) > threshold
    k = int(keep.sum())
    return float(keep[:k].float().mean()) if k else float("nan")
