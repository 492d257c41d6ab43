"""Self-distillation in closed form: kernel ridge regression (Borup & Andersen) and ridge with label noise (Das & Sanghavi).

Borup & Andersen (2021), "Even your Teacher Needs Guidance: Ground-Truth Targets Dampen Regularization Imposed
by Self-Distillation", NeurIPS. Step τ fits kernel ridge regression (KRR) to ``α y + (1 − α) f^(τ−1)(X)``:

    f^(τ)(X) = K (K + λI)⁻¹ (α y + (1 − α) f^(τ−1)(X)),   f^(0)(X) = y,

so step 1 is plain KRR. In the eigenbasis of K = V D Vᵀ the fitted values are V B^(τ) Vᵀ y with
``B^(1) = A``, ``B^(τ) = A((1 − α) B^(τ−1) + α I)``, ``A = D (D + λI)⁻¹``; the limit is
``f^(∞)(x) = α k(x)ᵀ (α K + λI)⁻¹ y`` (KRR with λ/α), and 0 when α = 0 (Mobahi, Farajtabar, Bartlett 2020).

Das & Sanghavi (2023), "Understanding Self-Distillation in the Presence of Label Noise", ICML. Ridge teacher
``θ_T = (XᵀX + λI)⁻¹ Xᵀ y``; student on ``ξ X θ_T + (1 − ξ) y``:
``θ_S(ξ) = (XᵀX + λI)⁻¹ Xᵀ (ξ X θ_T + (1 − ξ) y)``, convex in θ for every ξ (the weights on the two squared
errors sum to 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- Borup & Andersen: KRR self-distillation

BORUP_GAMMA, BORUP_LAMBDA = 80.0, 0.2


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """``k(a, b) = exp(−γ ‖a − b‖²)`` for rows of a (n, d) and b (m, d) -> (n, m)."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(d2, 0.0))


def borup_x(n: int = 11) -> np.ndarray:
    """The toy's inputs: ``n`` equispaced points on [0, 1] (``np.arange(0, 1.1, 0.1)`` for n = 11), shape (n, 1)."""
    return np.linspace(0.0, 1.0, n).reshape(-1, 1)


def load_borup_toy(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of Borup & Andersen's toy: X = 11 points on [0, 1], y read from ``path`` (11 numbers, text or .npy).

    The 11 targets are a hard-coded list in the authors' notebook (``Kennethborup/self_distillation:
    toy_example.ipynb``, the values of Mobahi et al. 2020); the repository has no licence, so the book does not
    ship them. Save them yourself, one number per line, and pass the path.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"Borup toy targets not found at {str(p)!r}. The 11 y-values are hard-coded in the authors' notebook "
            "(github.com/Kennethborup/self_distillation, toy_example.ipynb, variable Y) and are not shipped with the "
            "book (no licence). Copy them into a text file, one number per line, and pass its path "
            "(parameter borup_data_path)."
        )
    y = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None)
    y = np.asarray(y, dtype=float).ravel()
    if y.size != 11:
        raise ValueError(f"expected 11 targets in {p}, found {y.size}")
    return borup_x(11), y.reshape(-1, 1)


def make_toy_like(n: int = 11, noise: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generated data of the toy's shape: ``y = sin(2πx) + N(0, noise²)`` at n equispaced points on [0, 1]."""
    x = borup_x(n)
    rng = np.random.default_rng(seed)
    return x, np.sin(2 * np.pi * x) + rng.normal(0.0, noise, size=x.shape)


@dataclass
class KRRDistillation:
    """Predictions of the self-distillation steps on a grid, the closed-form limit, and their MSE to sin(2πx)."""

    x_eval: np.ndarray
    preds: list[np.ndarray]  # f^(1..steps)(x_eval)
    limit: np.ndarray  # f^(∞)(x_eval)
    train_fits: list[np.ndarray]  # f^(1..steps)(X)
    mse: list[float]
    mse_limit: float


def krr_self_distillation(
    X: np.ndarray,
    y: np.ndarray,
    *,
    alpha: float,
    steps: int,
    gamma: float = BORUP_GAMMA,
    lam: float = BORUP_LAMBDA,
    x_eval: np.ndarray | None = None,
    truth=lambda x: np.sin(2 * np.pi * x),
) -> KRRDistillation:
    """Run ``steps`` KRR self-distillation steps with ground-truth weight ``alpha`` (Borup & Andersen 2021).

    Step τ regresses ``α y + (1 − α) f^(τ−1)(X)`` (``f^(0)(X) = y``) with ``K (K + λI)⁻¹``; the limit is
    ``α k(x)ᵀ (αK + λI)⁻¹ y``. MSE is ``mean_x (f(x) − truth(x))²`` on ``x_eval`` (default: 0, 0.01, …, 1, the
    authors' grid).
    """
    X = np.asarray(X, float).reshape(len(X), -1)
    y = np.asarray(y, float).reshape(-1, 1)
    x_eval = np.arange(0, 1.01, 0.01).reshape(-1, 1) if x_eval is None else np.asarray(x_eval, float).reshape(-1, X.shape[1])
    n = len(y)
    K = rbf_kernel(X, X, gamma)
    Kx = rbf_kernel(x_eval, X, gamma)
    solve = np.linalg.inv(K + lam * np.eye(n))
    prev = y.copy()
    preds, fits = [], []
    for _ in range(steps):
        target = alpha * y + (1 - alpha) * prev
        coef = solve @ target
        preds.append(Kx @ coef)
        prev = K @ coef
        fits.append(prev)
    limit = alpha * Kx @ np.linalg.inv(alpha * K + lam * np.eye(n)) @ y
    t = truth(x_eval)
    mse = [float(np.mean((p - t) ** 2)) for p in preds]
    return KRRDistillation(x_eval, preds, limit, fits, mse, float(np.mean((limit - t) ** 2)))


def b_diagonals(X: np.ndarray, *, alpha: float, steps: int, gamma: float = BORUP_GAMMA, lam: float = BORUP_LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """Diagonals of ``B^(1..steps)`` (rows) and of the limit ``B^(∞) = αD (αD + λI)⁻¹``, eigenvalues of K descending.

    ``B^(1) = A = D(D + λI)⁻¹``, ``B^(τ) = A((1 − α)B^(τ−1) + αI)`` (Borup & Andersen 2021, Thm. 4.1).
    """
    K = rbf_kernel(X, X, gamma)
    d = np.sort(np.linalg.eigvalsh(K))[::-1]
    a = d / (d + lam)
    b = a.copy()
    rows = [b.copy()]
    for _ in range(steps - 1):
        b = a * ((1 - alpha) * b + alpha)
        rows.append(b.copy())
    return np.array(rows), alpha * d / (alpha * d + lam)


# ---------------------------------------------------------------- Das & Sanghavi: ridge self-distillation


def ridge(X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """``(XᵀX + λI)⁻¹ Xᵀ y``."""
    d = X.shape[1]
    return np.linalg.solve(X.T @ X + lam * np.eye(d), X.T @ y)


def ridge_self_distill(X: np.ndarray, y: np.ndarray, lam: float, xi: float) -> tuple[np.ndarray, np.ndarray]:
    """(θ_T, θ_S(ξ)): ridge teacher on y; student ridge on ``ξ X θ_T + (1 − ξ) y`` (Das & Sanghavi 2023, eq. 2)."""
    th_t = ridge(X, y, lam)
    return th_t, ridge(X, xi * X @ th_t + (1 - xi) * y, lam)


def optimal_xi(X: np.ndarray, y: np.ndarray, lam: float, theta_star: np.ndarray) -> float:
    """The ξ minimising ``‖θ_S(ξ) − θ*‖²`` in closed form.

    ``θ_S(ξ) = θ_T + ξ v`` with ``v = (M − I) θ_T``, ``M = (XᵀX + λI)⁻¹ XᵀX``, so
    ``ξ* = −(θ_T − θ*)·v / ‖v‖²``.
    """
    th_t = ridge(X, y, lam)
    v = ridge(X, X @ th_t, lam) - th_t
    return float(-(th_t - theta_star) @ v / (v @ v))


def ridge_xi_curve(
    *, n: int, d: int, sigma: float, lam: float, xis: np.ndarray, n_draws: int = 50, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean parameter error ``E‖θ_S(ξ) − θ*‖²`` over draws, for each ξ; and the per-draw optimal ξ*.

    Design: anisotropic Gaussian rows ``x_i ~ N(0, diag(s_k))`` with ``s_k = 1/k`` (so ridge shrinks directions
    unequally), planted ``θ* ~ N(0, I/d)``, noisy responses
    ``y = Xθ* + σ ε``.
    """
    rng = np.random.default_rng(seed)
    scales = np.arange(1, d + 1, dtype=float) ** -0.5
    errs = np.zeros((n_draws, len(xis)))
    xstar = np.zeros(n_draws)
    for r in range(n_draws):
        X = rng.normal(size=(n, d)) * scales
        th = rng.normal(size=d) / np.sqrt(d)
        y = X @ th + sigma * rng.normal(size=n)
        th_t = ridge(X, y, lam)
        v = ridge(X, X @ th_t, lam) - th_t
        for j, xi in enumerate(xis):
            errs[r, j] = np.sum((th_t + xi * v - th) ** 2)
        xstar[r] = -(th_t - th) @ v / (v @ v)
    return errs.mean(0), xstar


# ---------------------------------------------------------------- Das & Sanghavi: softmax student, label noise


def symmetric_label_noise(y: torch.Tensor, rate: float, n_classes: int, seed: int = 0) -> torch.Tensor:
    """Replace each label, with probability ``rate``, by a uniformly drawn *different* class."""
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(len(y), generator=g) < rate
    shift = torch.randint(1, n_classes, (len(y),), generator=g)
    return torch.where(flip, (y + shift) % n_classes, y)


def self_distill_targets(p_teacher: torch.Tensor, y: torch.Tensor, xi: float) -> torch.Tensor:
    """Soft targets ``q = ξ p_T + (1 − ξ) e_y``; rows sum to 1, entries go negative when ξ > 1.

    ``ξ CE(p_T, p) + (1 − ξ) CE(e_y, p) = CE(q, p)`` (cross-entropy is linear in its target). For ξ > 1,
    ``q_y = ξ p_T,y + 1 − ξ < 0`` wherever ``p_T,y < 1 − 1/ξ``: that example pushes its (noisy) label *down*.
    """
    return xi * p_teacher + (1 - xi) * F.one_hot(y, p_teacher.shape[1]).to(p_teacher.dtype)


def fit_softmax_regression(
    x: torch.Tensor, targets: torch.Tensor, *, weight_decay: float, steps: int = 300, lr: float = 0.1, seed: int = 0
) -> torch.nn.Linear:
    """Multinomial logistic regression on soft (possibly negative) targets: ``min −mean_i Σ_c q_ic log p_ic + wd ‖W‖²``.

    Full-batch Adam for a fixed number of steps. With negative targets the cross-entropy alone is unbounded
    below (p_y → 0 sends ``−q_y log p_y`` to −∞); for a linear model ``log p`` grows at most linearly in ‖W‖,
    so the quadratic penalty keeps the objective bounded below and the minimiser finite (Das & Sanghavi 2023
    train with weight decay and a fixed budget).
    """
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], targets.shape[1])
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = -(targets * F.log_softmax(lin(x), 1)).sum(1).mean() + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        opt.step()
    return lin
