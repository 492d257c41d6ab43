"""The correctness-aware calibration experiment (Liu et al. 2024, "Optimizing Calibration by Gaining Aware of
Prediction Correctness", arXiv 2404.13016): the cached over-trained base model, the unweighted-CA control, the
optimum of the class-balanced CA loss, and the evaluation of one calibrator's test probabilities.

The calibrators themselves (`TemperatureScaler`, `PerSampleCalibrator` with the CA / CE / MSE losses, the
view features) live in `calibration.posthoc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from lossbook import repro
from lossbook.cache import cached
from lossbook.calibration import metrics as cm
from lossbook.calibration.posthoc import PerSampleCalibrator
from lossbook.data.classification import Split, load_dataset
from lossbook.models import build_classifier
from lossbook.tracking import MetricLogger
from lossbook.train.classify import train_classifier

__all__ = ["BaseModel", "UnweightedCACalibrator", "balanced_optimum", "cached_base_model", "evaluate_calibrated"]


@dataclass(frozen=True)
class BaseModel:
    """The cached base classifier (eval mode), its split and its final-epoch train accuracy."""

    model: nn.Module
    split: Split
    train_acc: float


def cached_base_model(
    dataset: str,
    architecture: str,
    seed: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    data_seed: int | None = None,
    n_train: int | None = None,
    device: str | torch.device = "cpu",
    log_prefix: str = "base/",
) -> BaseModel:
    """The base classifier: `architecture` trained with cross-entropy and no weight decay for `epochs` on the
    `seed` split of `dataset` (drawn by `data_seed`; None: the canonical draw), final weights (over-trained, as
    in Guo et al. 2017).

    Cached by configuration under `runs/cache/ca_base_model/` (`cache.cached`; the key is dataset, arch, seed,
    epochs, lr, batch_size, n_train (0 = all), loss "ce", weight_decay 0.0, and data_seed when it is not None,
    so caches of the canonical draw stay valid). On a miss the run is seeded with `repro.seed_everything(seed)`
    and its curves are logged under ``<log_prefix>seed<seed>/``.
    """
    split = load_dataset(dataset, seed=seed, data_seed=data_seed, n_train=n_train)
    cfg = {"dataset": dataset, "arch": architecture, "seed": seed, "epochs": epochs, "lr": lr,
           "batch_size": batch_size, "n_train": n_train or 0, "loss": "ce", "weight_decay": 0.0}
    if data_seed is not None:
        cfg["data_seed"] = data_seed

    def build() -> dict[str, Any]:
        repro.seed_everything(seed)
        m = build_classifier(architecture, split.input_shape, split.n_classes)
        h = train_classifier(m, split, epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed,
                             logger=MetricLogger(prefix=f"{log_prefix}seed{seed}/"), progress=False)
        return {"state": {k: v.cpu() for k, v in m.state_dict().items()}, "train_acc": h.curves["train_acc"][-1]}

    art = cached("ca_base_model", cfg, build)
    model = build_classifier(architecture, split.input_shape, split.n_classes)
    model.load_state_dict(art["state"])
    return BaseModel(model.eval(), split, float(art["train_acc"]))


class UnweightedCACalibrator(PerSampleCalibrator):
    """The control for the CA loss's class-balanced weights: the same per-sample-temperature calibrator
    (`posthoc.PerSampleCalibrator`, features, steps, init) trained on the **unweighted** squared error of the
    calibrated top-1 confidence against correctness,

    L = (1/n) Σ_i (c̃_i − a_i)²,

    i.e. `posthoc.ca_loss` with every w_i = 1 (Liu et al. 2024 weight correct samples by 1 − acc and wrong ones
    by acc). Its optimum for a group of samples with accuracy r is c = r: calibration in the usual sense.
    """

    def __init__(self, hidden: int = 5, steps: int = 500, lr: float = 1e-2, seed: int = 0) -> None:
        super().__init__("ca", hidden=hidden, steps=steps, lr=lr, seed=seed)

    def _objective(self, z: torch.Tensor, feats: torch.Tensor, y: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        conf = torch.softmax(z / self.net(feats)[:, None], 1).max(1).values
        return ((conf - correct.to(conf.dtype)) ** 2).mean()


def balanced_optimum(r: float | np.ndarray, overall_acc: float) -> float | np.ndarray:
    """The confidence c* minimising the class-balanced CA loss on a group of samples with accuracy `r`, in a
    validation set of accuracy A = `overall_acc` (weights 1 − A on correct, A on wrong samples; Liu et al. 2024):

    minimise (1 − A)·r·(1 − c)² + A·(1 − r)·c²  ->  c* = (1 − A) r / ((1 − A) r + A (1 − r)).

    At r = A it is 1/2 whatever A: the calibrator is pulled towards 0.5 wherever accuracy exceeds 50%.
    """
    num = (1 - overall_acc) * np.asarray(r, dtype=float)
    out = num / (num + overall_acc * (1 - np.asarray(r, dtype=float)))
    return float(out) if np.ndim(out) == 0 else out


def evaluate_calibrated(
    probs: np.ndarray,
    labels: torch.Tensor,
    p_true_ts: np.ndarray,
    *,
    narrow_low: float = 0.3,
    narrow_high: float = 0.5,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Metrics of one calibrator's test probabilities `probs` (n, C) against `labels`.

    `metrics.summary_metrics` (accuracy, confidence, ECE equal-width / equal-mass, classwise ECE, NLL, Brier,
    Balance), plus what Liu et al. 2024 look at:

    * ``auroc``: AUROC of the top-1 confidence c_i for separating correct from wrong predictions (NaN when
      all predictions are right or all wrong);
    * narrow misses: wrong predictions whose true-class probability after temperature scaling, `p_true_ts`,
      lies in [`narrow_low`, `narrow_high`] (the same samples for every calibrator); ``narrow_conf_sum`` =
      sum of their confidences and ``narrow_n`` their count, so seeds and test sets can be pooled;
    * ``wrong_conf``: mean confidence of the wrong predictions (NaN if there are none); ``correct_conf_sum``
      and ``correct_n``: the sum of the correct predictions' confidences and their count (the selectivity
      contrast of the narrow-miss test, poolable like the narrow-miss sums);
    * ``argmax``: the predicted classes (to check the calibrator left them unchanged).
    """
    yy = labels.numpy()
    conf, correct = probs.max(1), probs.argmax(1) == yy
    narrow = (~correct) & (p_true_ts >= narrow_low) & (p_true_ts <= narrow_high)
    auroc = roc_auc_score(correct, conf) if 0 < correct.sum() < len(correct) else float("nan")
    return {
        **cm.summary_metrics(probs, yy, n_bins),
        "auroc": float(auroc),
        "narrow_conf_sum": float(conf[narrow].sum()),
        "narrow_n": int(narrow.sum()),
        "wrong_conf": float(conf[~correct].mean()) if (~correct).any() else float("nan"),
        "correct_conf_sum": float(conf[correct].sum()),
        "correct_n": int(correct.sum()),
        "argmax": probs.argmax(1),
    }
