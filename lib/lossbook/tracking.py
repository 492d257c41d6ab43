"""MLflow: the store, one experiment per family, runs that look the same from `make run` and by hand.

Store: `MLFLOW_TRACKING_URI` if set (a shared server), else `sqlite:///<repo>/mlflow.db` with artifacts
in `<repo>/mlartifacts/<family>` — absolute paths, so JupyterLab, papermill and the UI share one store.
MLflow records no git information inside a kernel (it looks at sys.argv[0]); we tag it ourselves.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from lossbook import REPO_ROOT


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the repo's sqlite store (absolute path)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def artifact_root() -> Path:
    """Where a local store keeps artifacts: `mlartifacts/` beside the sqlite file (the repo's by default)."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return REPO_ROOT / "mlartifacts"


def configure() -> MlflowClient:
    """Point mlflow at the book's store and return a client."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def experiment_id(family: str) -> str:
    """Id of the experiment named after `family`, created (with an absolute artifact root) if missing."""
    client = configure()
    exp = client.get_experiment_by_name(family)
    if exp is not None:
        return exp.experiment_id
    location = (artifact_root() / family).as_uri() if _is_local(tracking_uri()) else None
    try:
        return client.create_experiment(family, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently
        return client.get_experiment_by_name(family).experiment_id


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def environment() -> tuple[dict[str, str], dict[str, str]]:
    """(tags, text artifacts) describing where a run ran: git commit and dirty flag, versions, device, packages."""
    import torch

    commit = _git("rev-parse", "HEAD").strip()
    status = _git("status", "--porcelain", "--untracked-files=no").strip()
    tags = {
        "mlflow.source.git.commit": commit or "unknown",
        "git_commit": commit or "unknown",
        "git_dirty": str(bool(status)),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda": str(torch.version.cuda),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "platform": platform.platform(),
    }
    freeze = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions() if d.metadata["Name"])
    texts = {"env/requirements.txt": "\n".join(freeze) + "\n"}
    if status:
        texts["env/git.diff"] = _git("diff", "HEAD")
    return tags, texts


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; values stringified and cut to MLflow's 6000-char limit."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def run_name(notebook: str, profile: str, params: Mapping[str, Any]) -> str:
    """`<notebook>/<profile>/seed<k>/<YYYYmmdd-HHMMSS>`."""
    seed = params.get("seed", (params.get("seeds") or [0])[0] if isinstance(params.get("seeds"), list) else 0)
    return f"{notebook}/{profile}/seed{seed}/{time.strftime('%Y%m%d-%H%M%S')}"


def create_run(notebook: str, family: str, profile: str, params: Mapping[str, Any], extra_tags: Mapping[str, str] | None = None) -> str:
    """Create (not start) a run for `notebook` with its params, tags and environment; return its id."""
    client = configure()
    tags, texts = environment()
    tags.update({"notebook": notebook, "family": family, "profile": profile, "mlflow.runName": run_name(notebook, profile, params)})
    tags.update(extra_tags or {})
    run = client.create_run(experiment_id(family), tags=tags, run_name=tags["mlflow.runName"])
    rid = run.info.run_id
    flat = flatten({k: v for k, v in params.items() if k != "mlflow_run_id"})
    items = list(flat.items())
    for i in range(0, len(items), 100):
        client.log_batch(rid, params=[mlflow.entities.Param(k, v) for k, v in items[i : i + 100]])
    for path, text in texts.items():
        client.log_text(rid, text, path)
    return rid


def attach(mlflow_run_id: str, notebook: str, namespace: Mapping[str, Any] | None = None) -> mlflow.ActiveRun:
    """Make the notebook's run active: the runner's (`mlflow_run_id`), or a new one when run by hand.

    By hand, the run gets the same params and tags as `make run` would give it: the values of the
    notebook's parameters cell read from `namespace` (pass `globals()`), profile "interactive".
    """
    from lossbook.params import find_notebook, parameters_cell

    configure()
    if mlflow.active_run() is not None:
        mlflow.end_run()
    if not mlflow_run_id:
        nb = find_notebook(notebook)
        names = parameters_cell(nb.path)
        ns = namespace or {}
        params = {k: ns.get(k, v) for k, v in names.items()}
        profile = str(params.get("profile") or "interactive")
        mlflow_run_id = create_run(notebook, nb.family, profile, params, {"launched_by": "interactive"})
    run = mlflow.start_run(run_id=mlflow_run_id)
    print(f"MLflow run {mlflow_run_id} ({run.info.run_name})")
    return run


def active_profile() -> str:
    """The active run's profile tag ("" when no run is active)."""
    run = mlflow.active_run()
    if run is None:
        return ""
    return MlflowClient(tracking_uri()).get_run(run.info.run_id).data.tags.get("profile", "")


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or inf; the message names the step and the last finite metrics."""


class MetricLogger:
    """Buffer per-step metrics and send them to the active run in batches (one call per `every` steps).

    `log(step, loss=..., acc=...)`; `flush()` at the end (also done on a non-finite loss). `check` names
    metrics that must stay finite (`check_finite`, also callable per batch). `to_run=False` gives a logger
    that keeps history and guards but sends nothing (what a trainer uses when given no logger).
    """

    def __init__(self, prefix: str = "", every: int = 200, check: tuple[str, ...] = ("loss",), to_run: bool = True) -> None:
        self.prefix, self.every, self.check = prefix, every, check
        self.buffer: list[Metric] = []
        self.last: dict[str, float] = {}
        self.history: dict[str, list[tuple[int, float]]] = {}
        run = mlflow.active_run() if to_run else None
        self.run_id = run.info.run_id if run else None
        self.client = MlflowClient(tracking_uri()) if run else None

    def log(self, step: int, **metrics: float) -> None:
        now = int(time.time() * 1000)
        for k, v in metrics.items():
            v = float(v)
            if k in self.check and not math.isfinite(v):
                continue
            self.history.setdefault(k, []).append((step, v))
            self.last[k] = v
            if self.client is not None and math.isfinite(v):
                self.buffer.append(Metric(self.prefix + k, v, now, step))
        self.check_finite(step, **{k: v for k, v in metrics.items() if k in self.check})
        if len(self.buffer) >= self.every:
            self.flush()

    def check_finite(self, step: int, where: str = "", **values: float) -> None:
        """The book's one non-finite guard: if any of `values` is NaN/inf, flush what is buffered (the last
        finite metrics reach the store), tag the run `nonfinite_loss_step` and raise NonFiniteLossError
        naming the step (`where` adds detail, e.g. the batch) and the last finite metrics."""
        bad = {k: float(v) for k, v in values.items() if not math.isfinite(float(v))}
        if not bad:
            return
        self.flush()
        if self.client is not None:
            self.client.set_tag(self.run_id, "nonfinite_loss_step", str(step))
        raise NonFiniteLossError(
            f"non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step {step}{' (' + where + ')' if where else ''}"
            f"{' (metric prefix ' + repr(self.prefix) + ')' if self.prefix else ''}; last finite metrics, already logged: "
            f"{ {k: round(v, 6) for k, v in self.last.items()} }. Lower the learning rate or check the inputs."
        )

    def flush(self) -> None:
        if self.client is None:
            return
        while self.buffer:
            chunk, self.buffer = self.buffer[:1000], self.buffer[1000:]
            self.client.log_batch(self.run_id, metrics=chunk)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log a few summary metrics to the active run (no-op without one); non-finite values are skipped."""
    if mlflow.active_run() is None:
        return
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}, step=step)


def log_figure(fig: Any, name: str) -> None:
    """Log a matplotlib figure as `figures/<name>.png` of the active run (no-op without one)."""
    if mlflow.active_run() is None:
        return
    mlflow.log_figure(fig, f"figures/{name}.png" if not name.endswith(".png") else f"figures/{name}")


def log_dict(d: Any, path: str) -> None:
    """Log a JSON-able object as an artifact of the active run (no-op without one)."""
    if mlflow.active_run() is not None:
        mlflow.log_dict(d, path)


if __name__ == "__main__":  # pragma: no cover
    print(tracking_uri(), file=sys.stderr)
