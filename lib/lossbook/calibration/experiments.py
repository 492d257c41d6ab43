"""Train one classifier and measure its calibration before and after temperature scaling.

The experiment behind the `temperature_scaling` (Guo, Pleiss, Sun, Weinberger 2017, "On Calibration of
Modern Neural Networks", ICML) and `calibration_losses` (Mukhoti et al. 2020, "Calibrating Deep Neural
Networks using Focal Loss", NeurIPS) notebooks, one (architecture, loss, seed) at a time:

1. seed everything, load the split (the seed draws the validation split), optionally corrupt the training
   labels, build the classifier (`seeded_split_and_model`);
2. train it for a fixed budget and keep the **final** weights, not the best-validation checkpoint: the
   papers' point is what (over-)training does (`train_to_logits`);
3. fit T* = argmin_T NLL(softmax(z_val / T), y_val) on the validation logits and measure the test split
   with `metrics.summary_metrics` at T = 1 and at T* (`temperature_scaled_metrics`);
4. for the loss comparison (`loss_calibration_run`), also record the budget curve (T* and ECE at checkpoint
   epochs), the validation-selected epoch's test accuracy and top-k accuracies.

Same seed, same configuration -> bitwise the same numbers on CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lossbook import repro
from lossbook.calibration import metrics as cm
from lossbook.calibration.losses import symmetric_label_noise
from lossbook.calibration.posthoc import (
    apply_temperature,
    fit_temperature,
    fit_temperature_ece_grid,
    nll_curve,
)
from lossbook.data.classification import Split, load_dataset
from lossbook.models import build_classifier
from lossbook.tracking import MetricLogger
from lossbook.train.classify import predict_logits, train_classifier
from lossbook.train.loop import Fit

__all__ = [
    "TS_METRICS",
    "LossCalibrationRun",
    "TemperatureScalingRun",
    "TrainedClassifier",
    "epoch_test_metrics",
    "loss_calibration_run",
    "probs_at",
    "seeded_split_and_model",
    "temperature_scaled_metrics",
    "temperature_scaling_run",
    "topk_accuracy",
    "train_to_logits",
]

EpochCallback = Callable[[int, nn.Module], dict[str, float]]


def probs_at(logits: Tensor, temperature: float = 1.0) -> np.ndarray:
    """softmax(z / T) as a float64 numpy array (computed by `posthoc.apply_temperature`, i.e. float32 values)."""
    return apply_temperature(logits, temperature).double().numpy()


def seeded_split_and_model(
    dataset: str,
    architecture: str,
    seed: int,
    *,
    data_seed: int | None = None,
    n_train: int | None = None,
    label_noise: float | None = None,
) -> tuple[Split, nn.Module]:
    """`repro.seed_everything(seed)`, then the split of `dataset` for `seed` (capped at `n_train` training
    examples; None: all) and a freshly initialised `architecture` classifier for it. `data_seed` draws the data
    set itself (`load_dataset`; None: the canonical draw shared by every seed).

    With `label_noise`, that fraction of the *training* labels is replaced by a different class drawn
    uniformly (`losses.symmetric_label_noise`, seeded by `seed`; Zhang & Sabuncu 2018); validation and test
    labels stay clean.
    """
    repro.seed_everything(seed)
    split = load_dataset(dataset, seed=seed, data_seed=data_seed, n_train=n_train)
    if label_noise is not None:
        split = dataclasses.replace(
            split, y_train=symmetric_label_noise(split.y_train, label_noise, split.n_classes, seed=seed)
        )
    return split, build_classifier(architecture, split.input_shape, split.n_classes)


def epoch_test_metrics(split: Split, *, n_bins: int = 15, device: str | torch.device = "cpu") -> EpochCallback:
    """An `epoch_callback` recording the over-training curves of Guo et al. 2017, Fig. 3, on the test split:
    ``test_err`` = 1 - accuracy, ``test_nll`` = -(1/n) sum_i log p_{i,y_i} and ``test_ece`` (`n_bins`
    equal-width bins) of softmax(z). Only plotted: nothing is selected on the test split."""
    y_test = split.y_test

    def per_epoch(epoch: int, model: nn.Module) -> dict[str, float]:
        z = predict_logits(model, split.x_test, device=device)
        p = probs_at(z)
        return {
            "test_err": 1.0 - float((z.argmax(1) == y_test).float().mean()),
            "test_nll": cm.nll(p, y_test),
            "test_ece": cm.ece(p, y_test, n_bins),
        }

    return per_epoch


@dataclass(frozen=True)
class TrainedClassifier:
    """A classifier trained for a fixed budget (final weights), its split, its training curves and its
    validation and test logits (CPU float32)."""

    split: Split
    model: nn.Module
    fit: Fit
    val_logits: Tensor
    test_logits: Tensor


def train_to_logits(
    dataset: str,
    architecture: str,
    seed: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    data_seed: int | None = None,
    n_train: int | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    label_noise: float | None = None,
    test_curves_bins: int | None = None,
    device: str | torch.device = "cpu",
    logger: MetricLogger | None = None,
    progress: bool = True,
) -> TrainedClassifier:
    """`seeded_split_and_model`, then `train.classify.train_classifier` (Adam, `loss_fn` default cross-entropy,
    batch order seeded by `seed`) for `epochs`, then the final model's validation and test logits.

    With `test_curves_bins`, the fit's curves also hold the per-epoch ``test_err``, ``test_nll`` and
    ``test_ece`` (`epoch_test_metrics` with that many bins).
    """
    split, model = seeded_split_and_model(dataset, architecture, seed, data_seed=data_seed, n_train=n_train, label_noise=label_noise)
    callback = None if test_curves_bins is None else epoch_test_metrics(split, n_bins=test_curves_bins, device=device)
    fit = train_classifier(
        model, split, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, loss_fn=loss_fn,
        device=device, seed=seed, logger=logger, epoch_callback=callback, progress=progress,
    )
    z_val = predict_logits(model, split.x_val, device=device)
    z_test = predict_logits(model, split.x_test, device=device)
    return TrainedClassifier(split, model, fit, z_val, z_test)


def temperature_scaled_metrics(
    val_logits: Tensor, val_labels: Tensor, test_logits: Tensor, test_labels: Tensor, n_bins: int = 15
) -> tuple[float, dict[str, float], dict[str, float]]:
    """(T*, test metrics before, test metrics after) temperature scaling (Guo et al. 2017).

    T* = argmin_T -(1/n) sum_i log softmax(z_i / T)_{y_i} on the validation logits (`posthoc.fit_temperature`);
    the metrics are `metrics.summary_metrics` (accuracy, mean confidence, ECE equal-width and equal-mass,
    classwise ECE, NLL, Brier, Balance) of softmax(z_test) and softmax(z_test / T*).
    """
    t_star = fit_temperature(val_logits, val_labels)
    before = cm.summary_metrics(probs_at(test_logits, 1.0), test_labels, n_bins)
    after = cm.summary_metrics(probs_at(test_logits, t_star), test_labels, n_bins)
    return t_star, before, after


TS_METRICS = ("acc", "conf", "ece", "ece_q", "cw_ece", "nll", "brier")
"""The `summary_metrics` keys in a `temperature_scaling_run` row (the notebook has never reported Balance)."""


@dataclass(frozen=True)
class TemperatureScalingRun:
    """One (architecture, seed) of the temperature-scaling experiment.

    `row`: arch, seed, T (NLL fit), T_ece_grid (the ECE-grid fit of Mukhoti et al.), train_acc (final epoch),
    same_argmax (softmax(z/T*) keeps every test arg-max), then ``<metric>_before`` / ``<metric>_after`` for
    each of `TS_METRICS`, and ``ece_floor_after`` / ``ece_q_floor_after``: the plug-in ECE the scaled
    predictions would score if perfectly calibrated (`metrics.ece_floor`), the estimator's floor. `fit` holds the per-epoch curves (with test_err, test_nll, test_ece). The NLL curves
    are over the run's temperature grid; `rel*` are reliability diagrams on the test split (equal-width,
    and `relq*` equal-mass) before and after scaling.
    """

    row: dict[str, Any]
    fit: Fit
    split_sizes: dict[str, int]
    val_nll_curve: np.ndarray
    test_nll_curve: np.ndarray
    rel_before: cm.ReliabilityData
    rel_after: cm.ReliabilityData
    relq_before: cm.ReliabilityData
    relq_after: cm.ReliabilityData


def temperature_scaling_run(
    dataset: str,
    architecture: str,
    seed: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    data_seed: int | None = None,
    n_train: int | None = None,
    n_bins: int = 15,
    temperature_grid: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    logger: MetricLogger | None = None,
    progress: bool = True,
) -> TemperatureScalingRun:
    """Train `architecture` with cross-entropy for `epochs` (over-training it, Guo et al. 2017), fit T* on the
    validation NLL and measure the test split before and after p = softmax(z / T*).

    T > 0 rescales every logit of a sample by one factor, so the arg-max (and accuracy) cannot change;
    ``same_argmax`` checks it. `temperature_grid` (default: 121 log-spaced values in [0.25, 16]) is where the
    validation and test NLL curves are evaluated.
    """
    grid = np.exp(np.linspace(np.log(0.25), np.log(16.0), 121)) if temperature_grid is None else temperature_grid
    r = train_to_logits(
        dataset, architecture, seed, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
        data_seed=data_seed, n_train=n_train, test_curves_bins=n_bins, device=device, logger=logger, progress=progress,
    )
    split, z_val, z_test, y_test = r.split, r.val_logits, r.test_logits, r.split.y_test
    t_star, before, after = temperature_scaled_metrics(z_val, split.y_val, z_test, y_test, n_bins)
    same_argmax = bool(torch.equal(z_test.argmax(1), apply_temperature(z_test, t_star).argmax(1)))
    row = {
        "arch": architecture, "seed": seed, "data_seed": data_seed, "T": t_star,
        "T_ece_grid": fit_temperature_ece_grid(z_val, split.y_val, n_bins=n_bins),
        "train_acc": r.fit.curves["train_acc"][-1], "same_argmax": same_argmax,
        **{f"{k}_before": before[k] for k in TS_METRICS}, **{f"{k}_after": after[k] for k in TS_METRICS},
    }
    p1, pt = probs_at(z_test), probs_at(z_test, t_star)
    row["ece_floor_after"] = cm.ece_floor(pt, n_bins, "uniform", seed=seed)
    row["ece_q_floor_after"] = cm.ece_floor(pt, n_bins, "quantile", seed=seed)
    return TemperatureScalingRun(
        row=row, fit=r.fit, split_sizes=split.sizes(),
        val_nll_curve=nll_curve(z_val, split.y_val, grid), test_nll_curve=nll_curve(z_test, y_test, grid),
        rel_before=cm.reliability_diagram(p1, y_test, n_bins), rel_after=cm.reliability_diagram(pt, y_test, n_bins),
        relq_before=cm.reliability_diagram(p1, y_test, n_bins, "quantile"),
        relq_after=cm.reliability_diagram(pt, y_test, n_bins, "quantile"),
    )


@dataclass(frozen=True)
class LossCalibrationRun:
    """One (loss, replicate) of the `calibration_losses` experiment.

    `row`: the final-epoch numbers (T* fitted on validation NLL, final train accuracy and its mean over the
    last 10% of epochs ``train_acc_tail``, test ``<metric>_before`` / ``<metric>_after`` for every
    `summary_metrics` key, ``ece_floor_after`` (the plug-in floor of the scaled predictions),
    ``top<k>_acc`` for each k of `topk`) plus the validation-selected epoch: ``best_epoch`` (first epoch with
    the best validation accuracy) and ``sel_test_acc`` (test accuracy there), and ``n_classes``. `curves`: per-epoch
    train/val/test accuracy and test ECE. `budget`: one dict per checkpoint epoch (``epoch``, ``T``,
    ``acc``, ``ece_before``, ``ece_after``, ``nll_before``, ``nll_after``, ``train_acc``), the same
    measurements a run stopped at that epoch would give (constant learning rate, so the checkpoint *is*
    that shorter run).
    """

    row: dict[str, Any]
    curves: dict[str, list[float]]
    budget: list[dict[str, float]]


def topk_accuracy(logits: Tensor, labels: Tensor, k: int) -> float:
    """Top-k accuracy (1/n) Σ_i 1[y_i ∈ the k largest logits of z_i] (the ranking score de Brébisson &
    Vincent 2016 report for the Z-loss). Ties at the k-th place are broken by `torch.topk`'s order."""
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k must be in [1, {logits.shape[1]}], got {k}")
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(1).float().mean())


def _budget_point(epoch: int, model: nn.Module, split: Split, n_bins: int, device: str | torch.device) -> dict[str, float]:
    z_val = predict_logits(model, split.x_val, device=device)
    z_test = predict_logits(model, split.x_test, device=device)
    t_star, before, after = temperature_scaled_metrics(z_val, split.y_val, z_test, split.y_test, n_bins)
    return {"epoch": float(epoch), "T": t_star, "acc": before["acc"], "ece_before": before["ece"],
            "ece_after": after["ece"], "nll_before": before["nll"], "nll_after": after["nll"]}


def loss_calibration_run(
    dataset: str,
    architecture: str,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    seed: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    data_seed: int | None = None,
    n_train: int | None = None,
    label_noise: float | None = None,
    n_bins: int = 15,
    budget_epochs: tuple[int, ...] | list[int] = (),
    topk: tuple[int, ...] | list[int] = (),
    device: str | torch.device = "cpu",
    logger: MetricLogger | None = None,
) -> LossCalibrationRun:
    """Train `architecture` on `loss_fn(logits, targets)` for `epochs` (Mukhoti et al. 2020 compare focal,
    Brier, label smoothing ... against cross-entropy at one shared set of hyper-parameters; Adam at a constant
    `lr`), optionally with symmetric `label_noise` on the training labels (validation and test stay clean),
    on the data set drawn by `data_seed`, and measure the **final** model (see `LossCalibrationRun`).

    At every epoch the test accuracy and ECE are recorded (curves only; the validation-selected epoch is chosen
    on validation accuracy, `train.loop.fit`); at each epoch of `budget_epochs` (≤ `epochs`) T* is fitted on the
    validation logits of that moment and the test split is measured before and after scaling (the budget
    curve). T* = argmin_T NLL(softmax(z_val / T), y_val) (`posthoc.fit_temperature`).
    """
    if any(not 1 <= e <= epochs for e in budget_epochs):
        raise ValueError(f"budget_epochs must lie in [1, epochs = {epochs}], got {list(budget_epochs)}")
    split, model = seeded_split_and_model(dataset, architecture, seed, data_seed=data_seed, n_train=n_train, label_noise=label_noise)
    checkpoints = set(budget_epochs)
    budget: list[dict[str, float]] = []

    def per_epoch(epoch: int, m: nn.Module) -> dict[str, float]:
        z = predict_logits(m, split.x_test, device=device)
        if epoch in checkpoints:
            budget.append(_budget_point(epoch, m, split, n_bins, device))
        return {"test_acc": float((z.argmax(1) == split.y_test).float().mean()), "test_ece": cm.ece(probs_at(z), split.y_test, n_bins)}

    fit = train_classifier(
        model, split, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, loss_fn=loss_fn,
        device=device, seed=seed, logger=logger, epoch_callback=per_epoch, progress=False,
    )
    z_val = predict_logits(model, split.x_val, device=device)
    z_test = predict_logits(model, split.x_test, device=device)
    t_star, before, after = temperature_scaled_metrics(z_val, split.y_val, z_test, split.y_test, n_bins)
    tail = fit.curves["train_acc"][-max(1, -(-epochs // 10)):]
    for b in budget:
        b["train_acc"] = fit.curves["train_acc"][int(b["epoch"]) - 1]
    row = {"T": t_star, "train_acc": fit.curves["train_acc"][-1], "train_acc_tail": float(np.mean(tail)),
           **{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()},
           "ece_floor_after": cm.ece_floor(probs_at(z_test, t_star), n_bins, "uniform", seed=seed),
           **{f"top{k}_acc": topk_accuracy(z_test, split.y_test, k) for k in topk},
           "best_epoch": fit.best_epoch, "sel_test_acc": fit.at_best("test_acc"), "n_classes": split.n_classes}
    keep = ("train_acc", "val_acc", "test_acc", "test_ece")
    return LossCalibrationRun(row, {k: list(fit.curves[k]) for k in keep}, budget)
