"""Post-hoc calibrators: temperature scaling (and friends), fitted on a held-out validation split.

Temperature scaling (Guo, Pleiss, Sun, Weinberger 2017, "On Calibration of Modern Neural Networks", ICML):
p = softmax(z / T) with one scalar T > 0 chosen to minimise the validation NLL

    T* = argmin_T  -(1/n) sum_i log softmax(z_i / T)_{y_i}.

Because T > 0 rescales every logit of a sample by the same factor, argmax_k z_k / T = argmax_k z_k:
accuracy is unchanged by construction. We minimise over log T with a bounded scalar search
(scipy `minimize_scalar(method="bounded")`), which cannot stop early the way the LBFGS loop in the
reference implementation (lr 0.01, 50 iterations) can. The NLL in T is smooth and, in 1/T, convex
(it is a log-sum-exp of linear functions of 1/T minus a linear term), so the search finds the optimum.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from lossbook.calibration.metrics import ArrayLike, as_numpy

__all__ = [
    "CALIBRATORS",
    "HistogramBinning",
    "IsotonicCalibrator",
    "MatrixScaler",
    "PerSampleCalibrator",
    "PerSampleTemperature",
    "TemperatureScaler",
    "VIEWS_1D",
    "VectorScaler",
    "apply_temperature",
    "ca_loss",
    "corrupt_signals",
    "fit_temperature",
    "fit_temperature_ece_grid",
    "nll_at_temperature",
    "nll_curve",
    "signal_view",
    "view_features",
]


def _logits_labels(logits: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    z = as_numpy(logits)
    y = as_numpy(labels, np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"logits must be (n, C) and labels (n,), got {z.shape} and {y.shape}")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or inf")
    return z, y


def nll_at_temperature(logits: ArrayLike, labels: ArrayLike, temperature: float) -> float:
    """Mean NLL of softmax(z / T) at the true labels, computed stably in float64."""
    z, y = _logits_labels(logits, labels)
    s = z / float(temperature)
    m = s.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(1))
    return float(np.mean(lse - s[np.arange(len(y)), y]))


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    bounds: tuple[float, float] = (1e-3, 1e3),
    xatol: float = 1e-6,
) -> float:
    """Temperature T* = argmin_T NLL(softmax(z / T), y) (Guo et al. 2017), by bounded search on log T.

    logits (n, C) and labels (n,) must come from a validation split, never the test split. Returns a
    python float in `bounds`; a value at a bound (e.g. perfectly separable validation data drives T -> 0)
    is returned as is, and a warning is printed so the caller can see it.
    """
    z, y = _logits_labels(logits, labels)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    res = minimize_scalar(
        lambda lt: nll_at_temperature(z, y, math.exp(lt)), bounds=(lo, hi), method="bounded", options={"xatol": xatol}
    )
    t = float(math.exp(res.x))
    if min(res.x - lo, hi - res.x) < 1e-3:
        print(f"fit_temperature: T* = {t:.4g} is at the search bound {bounds}; the validation NLL keeps falling there.")
    return t


def apply_temperature(logits: torch.Tensor | np.ndarray, temperature: float) -> torch.Tensor:
    """softmax(z / T) as a float tensor (n, C)."""
    z = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
    return torch.softmax(z.double() / float(temperature), dim=-1).float()


def nll_curve(logits: ArrayLike, labels: ArrayLike, temperatures: ArrayLike) -> np.ndarray:
    """NLL at each temperature in `temperatures` (for the NLL-vs-T figure)."""
    z, y = _logits_labels(logits, labels)
    return np.array([nll_at_temperature(z, y, float(t)) for t in as_numpy(temperatures).ravel()])


def fit_temperature_ece_grid(
    logits: ArrayLike,
    labels: ArrayLike,
    grid: ArrayLike | None = None,
    n_bins: int = 15,
) -> float:
    """T on a grid minimising validation ECE, as `focal_calibration` (Mukhoti et al. 2020) picks it.

    Default grid 0.1, 0.2, ..., 10.0. Reported next to the NLL fit; ECE is piecewise constant in T
    and noisy, which is why Guo et al. fit NLL instead.
    """
    from lossbook.calibration.metrics import ece

    z, y = _logits_labels(logits, labels)
    ts = np.round(np.arange(1, 101) * 0.1, 10) if grid is None else as_numpy(grid).ravel()
    zt = torch.as_tensor(z)
    errs = [ece(torch.softmax(zt / float(t), -1).numpy(), y, n_bins) for t in ts]
    return float(ts[int(np.argmin(errs))])


# ---------------------------------------------------------------------------------------------------
# Calibrators with a common interface: fit(logits, labels) -> self; predict_proba(logits) -> (n, C) numpy
# ---------------------------------------------------------------------------------------------------
def _softmax_np(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class TemperatureScaler:
    """Temperature scaling (Guo et al. 2017) as a calibrator object: p = softmax(z / T*)."""

    name = "temperature"

    def __init__(self) -> None:
        self.temperature = 1.0

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> TemperatureScaler:
        self.temperature = fit_temperature(logits, labels)
        return self

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        return _softmax_np(as_numpy(logits) / self.temperature)


class _AffineScaler:
    """Shared LBFGS fit of an affine map of the logits by validation NLL (float64, strong-Wolfe search)."""

    name = "affine"

    def __init__(self, reg: float = 0.0, max_iter: int = 500) -> None:
        self.reg, self.max_iter = reg, max_iter
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def _init(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _apply(self, z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _penalty(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), dtype=torch.float64)

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> _AffineScaler:
        z, y = _logits_labels(logits, labels)
        zt, yt = torch.as_tensor(z), torch.as_tensor(y)
        # start from temperature scaling, so the fit can only improve on it
        t = fit_temperature(z, y)
        w, b = self._init(z.shape[1])
        with torch.no_grad():
            w /= t
        w.requires_grad_(True)
        b.requires_grad_(True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(self._apply(zt, w, b), yt) + self.reg * self._penalty(w, b)
            loss.backward()
            return loss

        opt.step(closure)
        self.weight, self.bias = w.detach(), b.detach()
        return self

    def transform(self, logits: ArrayLike) -> torch.Tensor:
        if self.weight is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(val_logits, val_labels) first.")
        return self._apply(torch.as_tensor(as_numpy(logits)), self.weight, self.bias)

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        return torch.softmax(self.transform(logits), -1).numpy()


class VectorScaler(_AffineScaler):
    """Vector scaling (Guo et al. 2017, §4.2): z' = w ⊙ z + b with w, b ∈ R^C fitted on validation NLL.

    Can change the arg-max (so accuracy), unlike temperature scaling. `reg` adds
    reg·(Σ_k (w_k - mean(w))² + ‖b‖²), a pull towards a single temperature; 0 by default, as in the paper.
    """

    name = "vector"

    def _init(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)

    def _apply(self, z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return z * w + b

    def _penalty(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((w - w.detach().mean()) ** 2).sum() + (b**2).sum()


class MatrixScaler(_AffineScaler):
    """Matrix scaling (Guo et al. 2017, §4.2): z' = W z + b, W ∈ R^{C×C}, fitted on validation NLL.

    C² + C parameters: it overfits when the validation set is small relative to C² (Guo's Table 1:
    25.49% ECE on CIFAR-100). `reg` adds the off-diagonal and intercept penalty reg·(Σ_{i≠j} W_ij² + ‖b‖²)
    of Kull et al. 2019 (ODIR); 0 by default, as in Guo et al.
    """

    name = "matrix"

    def _init(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.eye(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)

    def _apply(self, z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return z @ w.T + b

    def _penalty(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        off = w - torch.diag(torch.diagonal(w))
        return (off**2).sum() + (b**2).sum()


def _renormalise(q: np.ndarray) -> np.ndarray:
    s = q.sum(1, keepdims=True)
    out = np.where(s > 0, q / np.where(s > 0, s, 1.0), 1.0 / q.shape[1])
    return out


class HistogramBinning:
    """Histogram binning (Zadrozny & Elkan 2001; multiclass one-vs-rest as in Guo et al. 2017, §4.1).

    For each class k, the validation probabilities p_k are cut into `n_bins` equal-width bins and each bin
    predicts θ_bk = the fraction of its validation samples whose label is k (an empty bin keeps its
    centre). A test probability p_k is replaced by θ of its bin; rows are renormalised to sum to 1
    (a row of zeros becomes uniform). Can change the arg-max.
    """

    name = "histogram"

    def __init__(self, n_bins: int = 15) -> None:
        self.n_bins = n_bins
        self.theta: np.ndarray | None = None

    def _bins(self, p: np.ndarray) -> np.ndarray:
        return np.minimum(np.floor(p * self.n_bins), self.n_bins - 1).astype(np.int64).clip(0)

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> HistogramBinning:
        z, y = _logits_labels(logits, labels)
        p = _softmax_np(z)
        c = p.shape[1]
        centres = (np.arange(self.n_bins) + 0.5) / self.n_bins
        self.theta = np.tile(centres[:, None], (1, c))
        for k in range(c):
            idx = self._bins(p[:, k])
            cnt = np.bincount(idx, minlength=self.n_bins)
            hit = np.bincount(idx, weights=(y == k).astype(float), minlength=self.n_bins)
            self.theta[cnt > 0, k] = hit[cnt > 0] / cnt[cnt > 0]
        return self

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        if self.theta is None:
            raise RuntimeError("HistogramBinning is not fitted; call fit(val_logits, val_labels) first.")
        p = _softmax_np(as_numpy(logits))
        q = np.stack([self.theta[self._bins(p[:, k]), k] for k in range(p.shape[1])], 1)
        return _renormalise(q)


class IsotonicCalibrator:
    """Isotonic regression (Zadrozny & Elkan 2002; one-vs-rest as in Guo et al. 2017, §4.1): a monotone
    step function per class fitted to (p_k, 1[y = k]) on validation (sklearn `IsotonicRegression`,
    clipped outside the fitted range), rows renormalised. Can change the arg-max."""

    name = "isotonic"

    def __init__(self) -> None:
        self.models: list = []

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> IsotonicCalibrator:
        from sklearn.isotonic import IsotonicRegression

        z, y = _logits_labels(logits, labels)
        p = _softmax_np(z)
        self.models = [
            IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p[:, k], (y == k).astype(float))
            for k in range(p.shape[1])
        ]
        return self

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        if not self.models:
            raise RuntimeError("IsotonicCalibrator is not fitted; call fit(val_logits, val_labels) first.")
        p = _softmax_np(as_numpy(logits))
        q = np.stack([m.predict(p[:, k]) for k, m in enumerate(self.models)], 1)
        return _renormalise(q)


CALIBRATORS = {
    "temperature": TemperatureScaler,
    "vector": VectorScaler,
    "matrix": MatrixScaler,
    "histogram": HistogramBinning,
    "isotonic": IsotonicCalibrator,
}
"""Registry of post-hoc calibrators: name -> class with fit(logits, labels) and predict_proba(logits)."""


# ---------------------------------------------------------------------------------------------------
# Correctness-aware (CA) per-sample temperature (Liu et al., arXiv 2404.13016)
# ---------------------------------------------------------------------------------------------------
VIEWS_1D = ("shift", "scale", "noise", "flip")


def signal_view(x: torch.Tensor, kind: str, *, seed: int = 0, strength: float = 1.0) -> torch.Tensor:
    """A transformed view of 1-D signals x (n, L) for the CA calibrator's input features.

    shift: circular shift by round(3·strength) samples; scale: amplitude × (1 + 0.3·strength);
    noise: + N(0, (0.25·strength·std(x))²) with a generator seeded by `seed`; flip: time reversal.
    These play the role of the paper's rotation / greyscale / colour-jitter views of images.
    """
    if kind == "shift":
        return torch.roll(x, shifts=int(round(3 * strength)), dims=-1)
    if kind == "scale":
        return x * (1.0 + 0.3 * strength)
    if kind == "noise":
        g = torch.Generator().manual_seed(seed)
        return x + 0.25 * strength * x.std() * torch.randn(x.shape, generator=g, dtype=x.dtype)
    if kind == "flip":
        return torch.flip(x, dims=[-1])
    raise ValueError(f"unknown view {kind!r}; choose one of {', '.join(VIEWS_1D)}.")


def corrupt_signals(x: torch.Tensor, severity: float = 1.0, *, seed: int = 0) -> torch.Tensor:
    """A covariate-shifted copy of 1-D signals (the 'shifted test set'): each signal gets a random circular
    shift of up to ±round(4·severity) samples, an amplitude factor in [1 - 0.3s, 1 + 0.3s] and additive
    Gaussian noise of std 0.3·severity·std(x). Deterministic given `seed`."""
    g = torch.Generator().manual_seed(seed)
    n, length = x.shape[0], x.shape[-1]
    m = int(round(4 * severity))
    shifts = torch.randint(-m, m + 1, (n,), generator=g)
    idx = (torch.arange(length)[None, :] - shifts[:, None]) % length
    out = x.gather(-1, idx.expand(n, length)) if x.dim() == 2 else x
    amp = 1.0 + 0.3 * severity * (2 * torch.rand(n, 1, generator=g, dtype=x.dtype) - 1)
    return out * amp + 0.3 * severity * x.std() * torch.randn(x.shape, generator=g, dtype=x.dtype)


@torch.no_grad()
def view_features(
    model: torch.nn.Module,
    x: torch.Tensor,
    views: tuple[str, ...] | list[str] = VIEWS_1D,
    *,
    k: int = 4,
    seed: int = 0,
    batch_size: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits of x, CA calibrator features).

    With views: for each view v, softmax(model(v(x))) read off at the top-k classes of the original
    prediction -> len(views)·k features (the paper's `src/run_cal.py` uses 3 views × top-4 = 12).
    Without views (`views=()`): the original softmax's own top-k probabilities (k features), the
    ablation in which the calibrator sees only what temperature scaling sees.
    """
    was = model.training
    model.eval()

    def logits_of(inp: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(inp[i : i + batch_size]).float() for i in range(0, len(inp), batch_size)])

    z = logits_of(x)
    top = z.topk(k, dim=1).indices
    if not views:
        feats = torch.softmax(z, 1).gather(1, top)
    else:
        feats = torch.cat([torch.softmax(logits_of(signal_view(x, v, seed=seed)), 1).gather(1, top) for v in views], 1)
    model.train(was)
    return z, feats


class PerSampleTemperature(torch.nn.Module):
    """g_θ: features -> T(x) = clamp(Linear(d, h) -> ReLU -> Linear(h, 1), 0.1, 10) (Liu et al.'s
    `Temperature_adaptive`, h = 5). We start the output bias at 1 with small weights, so T(x) ≈ 1 at
    initialisation (the reference starts near the 0.1 clamp)."""

    def __init__(self, in_dim: int, hidden: int = 5) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU())
        self.out = torch.nn.Linear(hidden, 1)
        with torch.no_grad():
            self.out.weight.mul_(0.01)
            self.out.bias.fill_(1.0)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.out(self.body(feats)), 0.1, 10.0).squeeze(-1)


def ca_loss(conf: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Correctness-aware loss (Liu et al., arXiv 2404.13016, as in `temperature_scaling_CA.py`):

    L_CA = Σ_i w_i (c̃_i - a_i)² / Σ_i w_i, with w_i = 1 - acc for correct samples and acc for wrong
    ones (acc = the batch's accuracy), so both groups weigh the same in total. c̃ is the calibrated
    top-1 confidence, a the 0/1 correctness of the (unchanged) prediction.
    """
    a = correct.to(conf.dtype)
    acc = a.mean()
    w = torch.where(correct.bool(), 1 - acc, acc)
    return (w * (conf - a) ** 2).sum() / w.sum().clamp_min(1e-12)


class PerSampleCalibrator:
    """A per-sample-temperature calibrator p̃ = softmax(z / T(x)), T(x) = g_θ(features), trained on a
    validation split with one of three losses:

    * "ca": `ca_loss` on the calibrated top-1 confidence (correctness-aware; Liu et al.);
    * "ce": cross-entropy -log p̃_y (pushes up p_y, like temperature scaling);
    * "mse": Brier score Σ_k (p̃_k - 1[k=y])² (also pushes up p_y).

    T(x) > 0 rescales a sample's logits, so the arg-max and accuracy never change. Trained full-batch
    with Adam (`steps`, `lr`), seeded.
    """

    def __init__(self, loss: Literal["ca", "ce", "mse"] = "ca", hidden: int = 5, steps: int = 500,
                 lr: float = 1e-2, seed: int = 0) -> None:
        if loss not in ("ca", "ce", "mse"):
            raise ValueError(f"loss must be 'ca', 'ce' or 'mse', got {loss!r}")
        self.loss, self.hidden, self.steps, self.lr, self.seed = loss, hidden, steps, lr, seed
        self.net: PerSampleTemperature | None = None
        self.history: list[float] = []

    def _objective(self, z: torch.Tensor, feats: torch.Tensor, y: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        t = self.net(feats)
        logp = torch.log_softmax(z / t[:, None], 1)
        if self.loss == "ce":
            return F.nll_loss(logp, y)
        p = logp.exp()
        if self.loss == "mse":
            return ((p - F.one_hot(y, z.shape[1]).to(p.dtype)) ** 2).sum(1).mean()
        return ca_loss(p.max(1).values, correct)

    def fit(self, logits: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor) -> PerSampleCalibrator:
        z, f, y = logits.double(), feats.double(), labels.long()
        correct = z.argmax(1) == y
        torch.manual_seed(self.seed)
        self.net = PerSampleTemperature(f.shape[1], self.hidden).double()
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.history = []
        for _ in range(self.steps):
            opt.zero_grad()
            loss = self._objective(z, f, y, correct)
            loss.backward()
            opt.step()
            self.history.append(loss.item())
        return self

    @torch.no_grad()
    def temperatures(self, feats: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            raise RuntimeError("PerSampleCalibrator is not fitted; call fit(logits, features, labels) first.")
        return self.net(feats.double())

    @torch.no_grad()
    def predict_proba(self, logits: torch.Tensor, feats: torch.Tensor) -> np.ndarray:
        t = self.temperatures(feats)
        return torch.softmax(logits.double() / t[:, None], 1).numpy()
