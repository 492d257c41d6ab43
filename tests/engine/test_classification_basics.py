"""Datasets (generated, shipped, external with a clear error), classifiers, and the classification loop."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lossbook import repro
from lossbook.data.classification import load_dataset
from lossbook.models import build_classifier
from lossbook.tracking import NonFiniteLossError
from lossbook.train.classify import predict_logits, train_classifier


def test_mnist1d_and_digits_splits() -> None:
    s = load_dataset("mnist1d", seed=0)
    assert s.sizes() == {"train": 3200, "val": 800, "test": 1000} and s.input_shape == (40,) and s.n_classes == 10
    assert abs(float(s.x_train.mean())) < 0.1  # mnist1d standardises its signals
    s1 = load_dataset("mnist1d", seed=1, n_train=500)
    assert len(s1.y_train) == 500 and torch.equal(s.x_test, s1.x_test)  # test set independent of the seed
    assert not torch.equal(s.y_val, s1.y_val)
    d = load_dataset("digits")
    assert d.input_shape == (64,) and d.n_classes == 10 and float(d.x_train.max()) <= 1.0
    assert sum(d.sizes().values()) == 1797


def test_data_seed_draws_independent_data() -> None:
    canon, again = load_dataset("mnist1d"), load_dataset("mnist1d", data_seed=42)
    assert torch.equal(canon.x_test, again.x_test)  # None is the canonical generator seed 42
    fresh, fresh2 = load_dataset("mnist1d", data_seed=1), load_dataset("mnist1d", data_seed=1)
    assert torch.equal(fresh.x_test, fresh2.x_test) and not torch.equal(fresh.x_test, canon.x_test)
    assert fresh.sizes() == canon.sizes() and np.bincount(fresh.y_test.numpy(), minlength=10).min() > 50
    d0, d1 = load_dataset("digits"), load_dataset("digits", data_seed=1)
    assert torch.equal(d0.x_test, load_dataset("digits", data_seed=0).x_test) and not torch.equal(d0.x_test, d1.x_test)
    with pytest.raises(ValueError, match="data_seed must be None"):
        load_dataset("cifar10", data_seed=1)


def test_unknown_and_missing_external_datasets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist2d'"):
        load_dataset("mnist2d")
    with pytest.raises(FileNotFoundError, match="Pass data_root=<dir> holding 'cifar-10-batches-py/'"):
        load_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_dataset("cifar10", data_root=tmp_path)


def test_cifar10_loader_reads_python_batches(tmp_path: Path) -> None:
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 4))}, f)
    s = load_dataset("cifar10", data_root=tmp_path, val_fraction=0.25)
    assert s.input_shape == (3, 32, 32) and s.sizes() == {"train": 15, "val": 5, "test": 4}
    assert 0.0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1.0


@pytest.mark.parametrize("name", ["mlp", "cnn1d"])
def test_classifiers_expose_features_and_head(name: str) -> None:
    torch.manual_seed(0)
    m = build_classifier(name, (40,), 10)
    x = torch.randn(5, 40)
    logits, f = m(x, return_features=True)
    assert logits.shape == (5, 10) and f.shape == (5, m.feature_dim)
    torch.testing.assert_close(m.head(f), logits)
    torch.testing.assert_close(m(x), logits)


def test_training_learns_and_is_bitwise_repeatable() -> None:
    s = load_dataset("digits", seed=0)
    runs = []
    for _ in range(2):
        repro.seed_everything(0)
        m = build_classifier("mlp", s.input_shape, s.n_classes, hidden=(64,))
        h = train_classifier(m, s, epochs=4, lr=3e-3, progress=False, epoch_callback=lambda e, m: {"e2": e * 2.0})
        runs.append((m, h))
    (m1, h1), (m2, h2) = runs
    c1, c2 = h1.curves, h2.curves
    assert c1["val_acc"][-1] > 0.85 and c1["train_loss"][-1] < c1["train_loss"][0]
    assert c1["train_loss"] == c2["train_loss"] and torch.equal(predict_logits(m1, s.x_test), predict_logits(m2, s.x_test))
    assert c1["e2"] == [2.0, 4.0, 6.0, 8.0] and h1.best_state is not None and 1 <= h1.best_epoch <= 4
    assert h1.best_val_acc == max(c1["val_acc"]) and "loss" not in c1  # one train-loss curve, not two


def test_nan_loss_stops_training() -> None:
    s = load_dataset("digits", seed=0, n_train=64)
    m = build_classifier("mlp", s.input_shape, s.n_classes, hidden=(8,))
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        train_classifier(m, s, epochs=2, lr=1e-3, progress=False, loss_fn=lambda z, y: z.sum() * float("nan"))


def test_device_resolution() -> None:
    assert repro.get_device("cpu").type == "cpu"
    assert repro.get_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            repro.get_device("cuda")


def test_set_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert repro.set_threads(1) == 1
        assert repro.set_threads(0) == 1  # 0 keeps what is in force
        with pytest.raises(ValueError, match="threads must be >= 0"):
            repro.set_threads(-1)
    finally:
        torch.set_num_threads(before)
