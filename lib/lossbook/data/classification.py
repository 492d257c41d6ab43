"""Classification datasets: generated (MNIST-1D), shipped (scikit-learn digits), and external (CIFAR).

MNIST-1D comes from the `mnist1d` package's procedural generator (`make_dataset`, canonical seed 42:
4000 train / 1000 test signals of length 40, 10 classes); its download path is never used. Digits are
scikit-learn's 8x8 images (1797) flattened to 64 values in [0, 1]. `data_seed` draws a fresh data set
(MNIST-1D: a new generator seed; digits: a new train/test partition) so that replicates of a claim are
independent; `None` is the canonical draw. CIFAR-10/100 are read from the
python-pickle batches a user has at home (`root=`), with a clear error when they are not there.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

GENERATED = ("mnist1d", "digits")
EXTERNAL = ("cifar10", "cifar100")


@dataclass
class Split:
    """Train/validation/test tensors (x float32, y int64) and what they are."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    input_shape: tuple[int, ...]
    name: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


@functools.lru_cache(maxsize=16)
def _mnist1d(num_samples: int, data_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, data_seed
    state = np.random.get_state()  # make_dataset reseeds numpy's global RNG; leave the caller's alone
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return d["x"], d["y"], d["x_test"], d["y_test"]


def _digits(data_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(data_seed)  # the train/test partition, independent of the run's seed
    perm = rng.permutation(len(y))
    n_test = 360
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def _cifar(name: str, root: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    base = Path(root) / folder if root else None
    if base is None or not base.is_dir():
        raise FileNotFoundError(
            f"dataset {name!r} is not generated here; it is read from your own copy. Pass data_root=<dir> holding "
            f"'{folder}/' (the python version from the CIFAR website, extracted). Looked in: {base or '(no data_root given)'}."
        )
    files = (
        ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels")
        if name == "cifar10"
        else (["train"], ["test"], b"fine_labels")
    )

    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for n in names:
            with open(base / n, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            xs.append(np.asarray(d[b"data"], dtype=np.float32).reshape(-1, 3, 32, 32) / 255.0)
            ys.append(np.asarray(d[files[2]]))
        return np.concatenate(xs), np.concatenate(ys)

    x, y = read(files[0])
    xt, yt = read(files[1])
    return x, y, xt, yt


def load_dataset(
    name: str = "mnist1d",
    *,
    seed: int = 0,
    data_seed: int | None = None,
    n_train: int | None = None,
    val_fraction: float = 0.2,
    num_samples: int = 5000,
    data_root: str | Path | None = None,
) -> Split:
    """Load `name`, hold out `val_fraction` of the training set for validation (shuffled by `seed`).

    data_seed draws the data set itself (None: the canonical draw, MNIST-1D seed 42 / digits partition 0;
    CIFAR is fixed and accepts only None). n_train caps the training set after the split (None: all).
    num_samples sets MNIST-1D's size (train 80%, test 20%). The test set depends on `data_seed`, never on `seed`.
    """
    if name == "mnist1d":
        x, y, xt, yt = _mnist1d(num_samples, 42 if data_seed is None else data_seed)
    elif name == "digits":
        x, y, xt, yt = _digits(0 if data_seed is None else data_seed)
    elif name in EXTERNAL and data_seed is not None:
        raise ValueError(f"{name} is a fixed data set read from disk: data_seed must be None, got {data_seed}.")
    elif name in EXTERNAL:
        x, y, xt, yt = _cifar(name, data_root)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(GENERATED + EXTERNAL)}.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(val_fraction * len(y)))
    va, tr = perm[:n_val], perm[n_val:]
    if n_train is not None:
        tr = tr[:n_train]

    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

    n_classes = int(max(y.max(), yt.max()) + 1)
    return Split(
        t(x[tr], torch.float32), t(y[tr], torch.long),
        t(x[va], torch.float32), t(y[va], torch.long),
        t(xt, torch.float32), t(yt, torch.long),
        n_classes, tuple(x.shape[1:]), name,
    )
