"""Seeds, devices and determinism.

CPU runs are bitwise repeatable for the same seed: `seed_everything` seeds python, numpy and torch and
turns on torch's deterministic algorithms. On a GPU, `CUBLAS_WORKSPACE_CONFIG` is set before CUDA starts.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed `random`, numpy and torch (all devices); return a torch.Generator seeded with `seed`.

    With `deterministic`, `torch.use_deterministic_algorithms(True, warn_only=True)` and cuDNN benchmark off.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def set_threads(n: int) -> int:
    """Set torch's intra-op CPU threads to `n` (0 keeps torch's default); return the count in force.

    The book's models are tiny: one thread is usually fastest, and with several runs sharing a 2-core
    machine more threads oversubscribe the cores (we measured 10-20x slowdowns). Every notebook exposes
    this as its `threads` parameter.
    """
    if n < 0:
        raise ValueError(f"threads must be >= 0 (0 keeps torch's default), got {n}")
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def get_device(device: str = "auto") -> torch.device:
    """Resolve a device string: "auto" -> cuda if available, else mps, else cpu; others are checked.

    Raises ValueError naming the device when it was asked for explicitly but is not available.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available here; use device='auto' or 'cpu'.")
    return dev


def autocast(device: torch.device, dtype: str = "float32") -> contextlib.AbstractContextManager:
    """Autocast context for `dtype` in {"float32", "bfloat16", "float16"}; float32 is a no-op.

    bf16 autocast is what the `full` profiles use on a GPU; on CPU it is allowed but rarely faster.
    """
    if dtype == "float32":
        return contextlib.nullcontext()
    table = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype must be one of float32, bfloat16, float16, got {dtype!r}")
    return torch.autocast(device_type=device.type, dtype=table[dtype])
