"""Config-hash cache for expensive artefacts (teachers, pretrained checkpoints, sweep points).

`cached("teacher", cfg, build)` returns `build()`'s result, stored at `runs/cache/<kind>/<hash>.pt`
(`LOSSBOOK_CACHE_DIR` overrides the root) where hash = sha256 of the canonical JSON of `cfg`.
Hits and misses are printed and counted on the active MLflow run (`cache/<kind>_hits`, `_misses`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from lossbook import REPO_ROOT

T = TypeVar("T")
_counts: dict[str, int] = {}


def cache_dir() -> Path:
    """`LOSSBOOK_CACHE_DIR` if set, else `<repo>/runs/cache`."""
    return Path(os.environ.get("LOSSBOOK_CACHE_DIR") or REPO_ROOT / "runs" / "cache")


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of sha256 over the config's canonical JSON (sorted keys; non-JSON values via str)."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _count(kind: str, what: str) -> None:
    key = f"cache/{kind}_{what}"
    _counts[key] = _counts.get(key, 0) + 1
    import mlflow  # here, not at the top: importing the cache costs no mlflow start-up

    if mlflow.active_run() is not None:
        mlflow.log_metric(key, _counts[key])


def cached(kind: str, config: Mapping[str, Any], build: Callable[[], T], *, refresh: bool = False) -> T:
    """Load the artefact for (`kind`, `config`) or build, save and return it. `refresh` forces a rebuild.

    The artefact must be tensors, state dicts and dicts/lists of numbers and strings: files load with
    `weights_only=True`, so a tampered cache file cannot run code. A corrupt or unloadable file
    is rebuilt. The config is saved beside it as JSON so the cache can be inspected by hand.
    """
    path = cache_dir() / kind / f"{config_hash(config)}.pt"
    if path.exists() and not refresh:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            print(f"cache hit: {kind} {path.name}")
            _count(kind, "hits")
            return obj
        except Exception as e:  # noqa: BLE001 - truncated or corrupt file: rebuild it
            print(f"cache file {path} unreadable ({e}); rebuilding")
    print(f"cache miss: {kind} {path.name}; building")
    _count(kind, "misses")
    obj = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(dict(config), sort_keys=True, default=str, indent=1))
    return obj
