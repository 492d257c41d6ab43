"""Self-knowledge distillation without a teacher: PS-KD (progressive self-targets) and USKD (customised soft labels).

**PS-KD** (Kim, Ji, Yoon, Hwang, ICCV 2021, "Self-Knowledge Distillation with Progressive Refinement of
Targets"; official code ``lgcnsai/PS-KD-Pytorch``, ``main.py`` and ``loss/pskd_loss.py``). At epoch t of T
the target of example i is

    ỹ_i^(t) = (1 − α_t)·onehot(y_i) + α_t·p̂_i^(t−1),      α_t = α_T · t / T   (t = 1 … T),

where p̂_i^(t−1) is the model's own softmax on example i recorded in the previous epoch: a per-example buffer
(``PredictionBuffer``) written during the training forward pass (train mode, before the optimizer step)
and holding one-hot labels before the first epoch (the official code sets the buffer to the one-hot target
in epoch 0, so the first epoch trains on hard labels). The loss is the soft-target cross-entropy
``−Σ_c ỹ_c log softmax(z)_c`` averaged over the batch (``soft_cross_entropy``). Its gradient in the logits is

    ∂ℓ/∂z_c = p_c − (1 − α)·y_c − α·p̂_c                                   (``pskd_logit_grad``)

so on the target class (GT) it is ``(p_GT − 1) − α(p̂_GT − 1)`` against CE's ``p_GT − 1``: PS-KD rescales the
target-class gradient by

    r = ∂_GT^{PS-KD} / ∂_GT^{CE} = 1 − α·(1 − p̂_GT)/(1 − p_GT)             (``pskd_rescaling``),

and when every non-target gradient ``p_c − α p̂_c`` is ≥ 0 the L1 norm of the whole logit gradient is
rescaled by the same r (both norms are twice the target-class magnitude). The paper (§3.2) reads r as hard-
example mining: the rescaling depends on how confident the model was on the example (p̂_GT).

**USKD** (Yang, Zeng, Yuan, Li, ICCV 2023, "From Knowledge Distillation to Self-Knowledge Distillation: A
Unified Approach with Normalized Loss and Customized Soft Labels"; official code ``yzd-v/cls_KD``,
``mmcls/models/dis_losses/uskd.py``), added to the usual CE. With s = softmax(z) of the final head and w =
softmax(z_w) of a "weak" linear head on an intermediate feature:

* target part: ``L_t = −mean_b p̃_t·log s_t`` with the detached soft target ``p̃_t = s_t² + 1 − mean_batch(s_t²)``;
* weak head: ``L_weak = −μ·mean_b Σ_c q_c log w_c`` with label-smoothed ``q = 0.9·onehot + 0.1/C``;
* non-target part: ``L_non = −mean_b Σ_{c≠y} ζ_c log softmax(z_{¬y})_c``, Zipf labels ``ζ_c ∝ 1/rank_c``
  (normalised over the non-target classes) with ranks from the descending order of
  ``w/(1 − w_t) + log s/(1 − log s_t)`` over all C classes (the target class takes a rank too);
* total ``α·L_t + β·L_non + L_weak`` (CIFAR config ``res18_sd_cifar.py``: α = β = μ = 0.1).

Transcription note: in the released code the final-head half of the ranking score uses the *log*-softmax
(``s_i`` is overwritten by ``log_softmax`` before the rank is computed), although the paper describes
normalised probabilities; we follow the code (``uskd_terms``) and say so here.

``train_self_kd`` trains one student on one of ``SELF_KD_LOSSES`` with ``train.loop.fit``; the stacked trainer
(``distillation.stacked``) does not fit: its teacher logits are fixed for the whole run, while PS-KD's targets
change every epoch and USKD needs an intermediate-feature head.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbook import registry, repro
from lossbook.data.classification import Split
from lossbook.distillation.replicates import t_halfwidth
from lossbook.models.mlp import MLP
from lossbook.tracking import MetricLogger
from lossbook.train.loop import BatchLoss, Fit, fit, predict_logits
from lossbook.train.losses import label_smoothing_loss, reduce

__all__ = [
    "SELF_KD_LOSSES",
    "PredictionBuffer",
    "SelfKDRun",
    "SelfKDSpec",
    "WeakHeadMLP",
    "augment_signals",
    "logits_callback",
    "metric_table",
    "pskd_alpha",
    "pskd_logit_grad",
    "pskd_rescaling",
    "pskd_targets",
    "run_replicates",
    "run_self_kd",
    "score_runs",
    "soft_cross_entropy",
    "train_self_kd",
    "uskd_terms",
    "variants",
    "zipf_non_target_labels",
]


# --------------------------------------------------------------------------------------------------- PS-KD
def pskd_alpha(epoch: int, epochs: int, alpha_T: float) -> float:
    """PS-KD's schedule ``α_t = α_T · t / T`` for the 1-based epoch t of T (official: ``α_T·(e + 1)/E``, e 0-based)."""
    if not 1 <= epoch <= epochs:
        raise ValueError(f"epoch must be in [1, {epochs}], got {epoch}")
    return max(0.0, alpha_T * epoch / epochs)


def soft_cross_entropy(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy with a soft target, ``−Σ_c q_c log softmax(z)_c`` per example (PS-KD's
    ``Custom_CrossEntropy_PSKD``: ``(−q·log p).mean(0).sum()`` is the batch mean of this). ``target`` is constant."""
    return reduce(-(target.detach() * F.log_softmax(logits, dim=-1)).sum(-1), reduction)


def pskd_targets(y: Tensor, p_prev: Tensor, alpha: float) -> Tensor:
    """PS-KD's target ``(1 − α)·onehot(y) + α·p̂`` for labels y (B,) and past predictions p̂ (B, C)."""
    return (1 - alpha) * F.one_hot(y, p_prev.shape[-1]).to(p_prev.dtype) + alpha * p_prev


def pskd_logit_grad(logits: Tensor, y: Tensor, p_prev: Tensor, alpha: float) -> Tensor:
    """Closed-form gradient of the per-example PS-KD loss in the logits: ``p − (1 − α)·onehot(y) − α·p̂`` (B, C)."""
    return torch.softmax(logits, -1) - pskd_targets(y, p_prev, alpha)


def pskd_rescaling(logits: Tensor, y: Tensor, p_prev: Tensor, alpha: float) -> Tensor:
    """PS-KD's rescaling of the target-class gradient relative to CE, per example:
    ``r = 1 − α·(1 − p̂_GT)/(1 − p_GT)`` (= ∂_GT^{PS-KD}/∂_GT^{CE}; module docstring)."""
    p_gt = torch.softmax(logits, -1).gather(1, y[:, None]).squeeze(1)
    ph_gt = p_prev.gather(1, y[:, None]).squeeze(1)
    return 1 - alpha * (1 - ph_gt) / (1 - p_gt)


class PredictionBuffer:
    """PS-KD's per-example store of the model's own softmax from the previous epoch (official ``all_predictions``):
    starts at ``onehot(y_train)``; ``read(idx)`` returns p̂ for a batch, ``write(idx, probs)`` records this epoch's."""

    def __init__(self, y_train: Tensor, n_classes: int) -> None:
        self.p = F.one_hot(y_train, n_classes).float()

    def read(self, idx: Tensor) -> Tensor:
        return self.p[idx]

    def write(self, idx: Tensor, probs: Tensor) -> None:
        self.p[idx] = probs.detach().float().cpu()

    def target_confidence(self, y: Tensor) -> float:
        """Mean p̂(target) over the training set: how soft the self-teacher is (1.0: one-hot)."""
        return float(self.p.gather(1, y[:, None]).mean())


# ---------------------------------------------------------------------------------------------------- USKD
def zipf_non_target_labels(score: Tensor, y: Tensor) -> Tensor:
    """USKD's Zipf soft labels over the C − 1 non-target classes (B, C − 1): rank every class by ``score``
    (descending; rank 1 = largest), give class c the weight 1/rank_c, drop the target class, normalise to sum 1."""
    b, c = score.shape
    order = torch.sort(score, descending=True, dim=-1).indices
    pos = torch.argsort(order, dim=-1)
    z = 1.0 / (pos.to(score.dtype) + 1.0)
    mask = torch.ones_like(score).scatter_(1, y[:, None], 0).bool()
    nz = z[mask].reshape(b, c - 1)
    return nz / nz.sum(1, keepdim=True)


def uskd_terms(logits: Tensor, weak_logits: Tensor, y: Tensor, *, alpha: float = 0.1, beta: float = 0.1, mu: float = 0.1,
               weak_eps: float = 0.1) -> dict[str, Tensor]:
    """USKD's three terms (module docstring), hard labels only: ``{"uskd_target": α·L_t, "uskd_non_target": β·L_non,
    "uskd_weak": L_weak}`` (μ is inside L_weak, as in the official code). Add CE to get the paper's loss."""
    b, c = logits.shape
    s = torch.softmax(logits, 1)
    s_t = s.gather(1, y[:, None])
    p_t = s_t**2
    p_t = (p_t + 1 - p_t.mean(0, keepdim=True)).detach()
    logs = F.log_softmax(logits, 1)
    log_st = logs.gather(1, y[:, None])
    loss_t = -(p_t * log_st).sum(1).mean()
    q = torch.zeros_like(logits).scatter_(1, y[:, None], 1 - weak_eps) + weak_eps / c
    log_w = F.log_softmax(weak_logits, 1)
    loss_weak = -(mu * q * log_w).sum(1).mean()
    w = log_w.exp()
    w_t = w.gather(1, y[:, None])
    score = w / (1 - w_t + 1e-6) + logs / (1 - log_st + 1e-6)
    zeta = zipf_non_target_labels(score.detach(), y).detach()
    mask = torch.ones_like(logits).scatter_(1, y[:, None], 0).bool()
    loss_non = -(zeta * F.log_softmax(logits[mask].reshape(b, c - 1), 1)).sum(1).mean()
    return {"uskd_target": alpha * loss_t, "uskd_non_target": beta * loss_non, "uskd_weak": loss_weak}


class WeakHeadMLP(nn.Module):
    """An ``MLP`` plus USKD's weak linear head on the output of its first hidden block (the analogue of the
    official code's head on the second-to-last ResNet stage). ``forward`` is the MLP's (the weak head is a
    training device only); ``forward_weak`` returns (final logits, weak logits)."""

    def __init__(self, mlp: MLP) -> None:
        super().__init__()
        self.mlp = mlp
        first = next(m for m in mlp.body if isinstance(m, nn.Linear))
        self.weak = nn.Linear(first.out_features, mlp.head.out_features)
        self.split_at = 3  # [Linear, ReLU, Dropout] of the first block

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)

    def forward_weak(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mid = self.mlp.body[: self.split_at](x.flatten(1))
        return self.mlp.head(self.mlp.body[self.split_at :](mid)), self.weak(mid)


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class SelfKDSpec:
    """What a student minimises: ``kind`` in ``SELF_KD_LOSSES`` ("ce", "ls" with ``ls_eps``, "pskd" with ``alpha_T``,
    "uskd" with ``uskd_alpha``/``uskd_beta``/``uskd_mu``), and ``augment``: random circular shifts of up to
    ``shift`` samples and Gaussian noise ``noise`` (in input units) on every training batch (0/0: none)."""

    kind: str = "ce"
    ls_eps: float = 0.1
    alpha_T: float = 0.8
    uskd_alpha: float = 0.1
    uskd_beta: float = 0.1
    uskd_mu: float = 0.1
    shift: int = 0
    noise: float = 0.0

    def __post_init__(self) -> None:
        registry.lookup(SELF_KD_LOSSES, self.kind, "self-KD loss")


def augment_signals(x: Tensor, shift: int, noise: float, generator: torch.Generator) -> Tensor:
    """A batch of 1-D signals (B, L) rolled by an independent integer shift in [−shift, shift] each and
    perturbed by N(0, noise²) (the MNIST-1D family of transformations); identity when both are 0."""
    if shift == 0 and noise == 0:
        return x
    s = torch.randint(-shift, shift + 1, (x.shape[0],), generator=generator)
    idx = (torch.arange(x.shape[-1])[None, :] - s[:, None]) % x.shape[-1]
    out = x.flatten(1).gather(1, idx.to(x.device)).view_as(x)
    return out + noise * torch.randn(out.shape, generator=generator).to(x.device) if noise else out


def _ce_loss(spec: SelfKDSpec, split: Split, epochs: int, state: dict[str, Any]) -> BatchLoss:
    def batch_loss(m: nn.Module, x: Tensor, y: Tensor, idx: Tensor, epoch: int):
        z = m(state["aug"](x))
        return {"ce": F.cross_entropy(z, y)}, z
    return batch_loss


def _ls_loss(spec: SelfKDSpec, split: Split, epochs: int, state: dict[str, Any]) -> BatchLoss:
    def batch_loss(m: nn.Module, x: Tensor, y: Tensor, idx: Tensor, epoch: int):
        z = m(state["aug"](x))
        return {"ce": label_smoothing_loss(z, y, spec.ls_eps)}, z
    return batch_loss


def _pskd_loss(spec: SelfKDSpec, split: Split, epochs: int, state: dict[str, Any]) -> BatchLoss:
    buf = state["buffer"] = PredictionBuffer(split.y_train, split.n_classes)

    def batch_loss(m: nn.Module, x: Tensor, y: Tensor, idx: Tensor, epoch: int):
        z = m(state["aug"](x))
        target = pskd_targets(y, buf.read(idx).to(z.device), pskd_alpha(epoch, epochs, spec.alpha_T))
        buf.write(idx, torch.softmax(z.detach(), -1))
        return {"pskd": soft_cross_entropy(z, target)}, z
    return batch_loss


def _uskd_loss(spec: SelfKDSpec, split: Split, epochs: int, state: dict[str, Any]) -> BatchLoss:
    def batch_loss(m: nn.Module, x: Tensor, y: Tensor, idx: Tensor, epoch: int):
        z, zw = m.forward_weak(state["aug"](x))
        terms = uskd_terms(z, zw, y, alpha=spec.uskd_alpha, beta=spec.uskd_beta, mu=spec.uskd_mu)
        return {"ce": F.cross_entropy(z, y), **terms}, z
    return batch_loss


SELF_KD_LOSSES: dict[str, Callable[[SelfKDSpec, Split, int, dict[str, Any]], BatchLoss]] = {
    "ce": _ce_loss,
    "ls": _ls_loss,
    "pskd": _pskd_loss,
    "uskd": _uskd_loss,
}
"""Name -> factory ``(spec, split, epochs, state) -> train.loop.BatchLoss``; ``state`` receives run state (PS-KD's buffer)."""


def logits_callback(x: Tensor, y: Tensor, metrics: Mapping[str, Callable[[Tensor, Tensor], float]], every: int = 1,
                    device: str | torch.device = "cpu") -> Callable[[int, nn.Module], dict[str, float]]:
    """An ``epoch_callback`` for ``fit``: ``{name: fn(logits(x), y)}`` at epoch 1 and every ``every`` epochs (NaN between)."""
    def cb(epoch: int, model: nn.Module) -> dict[str, float]:
        if epoch != 1 and epoch % every:
            return {k: float("nan") for k in metrics}
        z = predict_logits(model, x, device=device)
        return {k: float(fn(z, y)) for k, fn in metrics.items()}
    return cb


def train_self_kd(
    model: nn.Module, split: Split, spec: SelfKDSpec, *, epochs: int, lr: float, seed: int = 0, state: dict[str, Any] | None = None,
    **kw: Any,
) -> Fit:
    """Train ``model`` (a ``WeakHeadMLP`` for "uskd") on ``spec``'s loss with ``train.loop.fit`` (``kw``: batch_size,
    optimizer, weight_decay, schedule, final_frac, device, logger, epoch_callback, progress); best epoch by
    validation accuracy, test evaluated every epoch. ``state`` (a dict) receives PS-KD's ``buffer``."""
    state = {} if state is None else state
    g = torch.Generator().manual_seed(10_007 + seed)
    state["aug"] = lambda x: augment_signals(x, spec.shift, spec.noise, g)
    batch_loss = registry.lookup(SELF_KD_LOSSES, spec.kind, "self-KD loss")(spec, split, epochs, state)
    return fit(model, split, epochs=epochs, lr=lr, batch_loss=batch_loss, eval_test=True, seed=seed, desc=spec.kind, **kw)


@dataclass
class SelfKDRun:
    """One trained run: its ``Fit``, the logits on val and test at the best-validation and the final weights
    (``logits[which][part]``), and (PS-KD) the mean p̂(target) of its buffer after the last epoch."""

    fit: Fit
    logits: dict[str, dict[str, Tensor]]
    buffer_p_target: float = float("nan")


def run_self_kd(
    split: Split, specs: Mapping[str, SelfKDSpec], *, make_student: Callable[[], MLP], seed: int, epochs: int, lr: float,
    log_prefix: str = "", epoch_metrics: Mapping[str, Callable[[Tensor, Tensor], float]] | None = None, metrics_every: int = 1,
    device: str | torch.device = "cpu", **kw: Any,
) -> tuple[pd.DataFrame, dict[str, SelfKDRun]]:
    """Every method of ``specs`` on one replicate (``split``, ``seed``), paired: each starts from the same initial MLP
    (``make_student()`` right after ``repro.seed_everything(seed)``; USKD's weak head is created after it) and the
    same batch order. ``epoch_metrics`` (name -> fn(test logits, y)) are computed on the test split by an epoch
    callback and logged as curves. Returns one row per method (test_acc at the best-validation epoch,
    train_acc there, final_train_acc, best_epoch, epochs, seconds, buffer_p_target, spec fields) and the runs
    keyed by method name."""
    rows, runs = [], {}
    for name, spec in specs.items():
        repro.seed_everything(seed)
        model: nn.Module = make_student()
        if spec.kind == "uskd":
            model = WeakHeadMLP(model)
        cb = logits_callback(split.x_test, split.y_test, epoch_metrics, metrics_every, device) if epoch_metrics else None
        state: dict[str, Any] = {}
        f = train_self_kd(model, split, spec, epochs=epochs, lr=lr, seed=seed, state=state, device=device, epoch_callback=cb,
                          logger=MetricLogger(prefix=f"{log_prefix}{name}/seed{seed}/", every=500), **kw)
        logits = {"final": {p: predict_logits(model, getattr(split, f"x_{p}"), device=device) for p in ("val", "test")}}
        best = copy.deepcopy(model)
        best.load_state_dict(f.best_state)
        logits["best"] = {p: predict_logits(best, getattr(split, f"x_{p}"), device=device) for p in ("val", "test")}
        buf = state.get("buffer")
        runs[name] = SelfKDRun(f, logits, buf.target_confidence(split.y_train) if buf is not None else float("nan"))
        rows.append({"method": name, "seed": seed, "test_acc": f.test_acc, "final_test_acc": f.final_test_acc, "best_val_acc": f.best_val_acc,
                     "train_acc": f.at_best("train_acc"), "final_train_acc": f.curves["train_acc"][-1], "best_epoch": f.best_epoch, "epochs": epochs, "seconds": f.seconds,
                     "buffer_p_target": runs[name].buffer_p_target, **{f"spec.{k}": v for k, v in asdict(spec).items()}})
    return pd.DataFrame(rows), runs


def score_runs(
    runs: Mapping[tuple[str, int], SelfKDRun], labels: Mapping[int, Tensor], metrics: Mapping[str, Callable[[Tensor, Tensor], float]],
    *, which: str, temperatures: Mapping[tuple[str, int], float] | None = None,
) -> pd.DataFrame:
    """One row per (method, seed) run: ``{name: fn(probs, y_test)}`` on the test softmax at ``which`` weights
    ("best" | "final"), at temperature T (``temperatures[(method, seed)]``, default 1: softmax(z / T))."""
    rows = []
    for (m, s), r in runs.items():
        t = 1.0 if temperatures is None else float(temperatures.get((m, s), 1.0))
        p = torch.softmax(r.logits[which]["test"].double() / t, -1)
        rows.append({"method": m, "seed": s, "T": t, **{k: float(fn(p, labels[s])) for k, fn in metrics.items()}})
    return pd.DataFrame(rows)


def variants(specs: Mapping[str, SelfKDSpec], names: Sequence[str], **changes: Any) -> dict[str, SelfKDSpec]:
    """The specs in ``names`` with ``changes`` applied (``dataclasses.replace``): ablation settings of the primary ones."""
    return {n: replace(specs[n], **changes) for n in names}


def run_replicates(
    splits: Mapping[int, Split], specs: Mapping[str, SelfKDSpec], *, epochs: int, log_prefix: str = "", **kw: Any
) -> tuple[pd.DataFrame, dict[tuple[str, int], SelfKDRun]]:
    """``run_self_kd`` on every replicate (``splits``: seed -> its data draw and split); runs keyed by (method, seed)."""
    frames, runs = [], {}
    for seed, split in splits.items():
        df, rs = run_self_kd(split, specs, seed=seed, epochs=epochs, log_prefix=log_prefix, **kw)
        frames.append(df)
        runs.update({(m, seed): r for m, r in rs.items()})
    return pd.concat(frames, ignore_index=True), runs


def metric_table(df: pd.DataFrame, metrics: Sequence[str], scale: Mapping[str, float] | None = None, digits: int = 2) -> pd.DataFrame:
    """Per method (first-appearance order) and metric: ``mean ± t-CI half-width`` over replicates (95%, Student t;
    ``distillation.replicates.t_halfwidth``), each metric multiplied by ``scale[metric]`` (default 1), and n."""
    rows = []
    for m in dict.fromkeys(df["method"]):
        d = df[df["method"] == m]
        row: dict[str, Any] = {"method": m, "n": len(d)}
        for k in metrics:
            f = (scale or {}).get(k, 1.0)
            row[k] = f"{f * d[k].mean():.{digits}f} ± {f * t_halfwidth(d[k]):.{digits}f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")
