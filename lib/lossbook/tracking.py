"""MLflow: the store, one experiment per family, runs that look the same from `make run` and by hand.

Store: `MLFLOW_TRACKING_URI` if set (a shared server), else `sqlite:///<repo>/mlflow.db` with artifacts
in `<repo>/mlartifacts/<family>` — absolute paths, so JupyterLab, papermill and the UI share one store.
MLflow records no git information inside a kernel (it looks at sys.argv[0]); we tag it ourselves.

`check_store()` is what `lossbook run` calls before anything runs: a missing or read-only directory, a path
under a regular file, a file that is not an sqlite database or an unreachable server becomes one StoreError
paragraph naming the URI, instead of a long traceback minutes later. mlflow and torch are imported when
first needed (`import lossbook.tracking` is cheap; the runner process never imports torch).

In the MLflow UI (3.x) the book's experiments are tagged `mlflow.experimentKind=custom_model_development`
(the model-training view, not the GenAI one); each run carries the tags profile, notebook and verdicts
(counts, e.g. "2 reproduced, 1 inconclusive"), metrics verdicts/<verdict>, and a description linking its
executed notebook's HTML (the Artifacts tab renders it). `ui_url(family)` opens the runs list with those
columns selected (a saved view, experiment tag `mlflow.sharedViewState.lossbook`).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossbook import REPO_ROOT

if TYPE_CHECKING:
    import mlflow
    from mlflow.tracking import MlflowClient

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""The experiment tag MLflow 3's UI reads to pick its view: model training (runs, metrics), not GenAI traces."""
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
VIEW_KEY = "lossbook"
"""MLflow 3's UI loads a saved runs-table view from the experiment tag `mlflow.sharedViewState.<key>` (plain JSON
is accepted) when the page is opened with `?viewStateShareKey=<key>`; `ui_url` gives that address."""
VIEW_STATE = {"selectedColumns": [*(f"tags.`{t}`" for t in ("profile", "notebook", "verdicts")),
                                  *(f"metrics.`verdicts/{v.replace(' ', '_')}`" for v in VERDICTS)]}


def _experiment_tags() -> dict[str, str]:
    import json

    return {**EXPERIMENT_KIND, f"mlflow.sharedViewState.{VIEW_KEY}": json.dumps(VIEW_STATE, separators=(",", ":"))}


def experiment_page(exp_id: str, base: str) -> str:
    """An experiment's runs list in the MLflow UI's model-training view with the book's columns.

    MLflow 3.17's UI ignores the experiment tag `mlflow.experimentKind` when it picks a view: the view is the
    address's `workflowType` (else the browser's last choice, GenAI in a fresh browser), and the saved columns
    (`viewStateShareKey`) are read on the runs page only, so both go into a `/runs` address.
    """
    return f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


def ui_url(family: str, base: str = "http://127.0.0.1:5000") -> str:
    """The family's runs list in the MLflow UI with the book's columns: profile, notebook, verdict counts."""
    return experiment_page(experiment_id(family), base)


def __getattr__(name: str) -> Any:  # `tracking.mlflow` / `tracking.MlflowClient` still work, imported on first use
    if name == "mlflow":
        import mlflow

        return mlflow
    if name == "MlflowClient":
        from mlflow.tracking import MlflowClient

        return MlflowClient
    raise AttributeError(name)


def _mlflow():
    import mlflow

    return mlflow


class StoreError(RuntimeError):
    """The MLflow store cannot be used; the message names the URI, what is wrong and what to do."""


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


def _store_problem(uri: str) -> str:
    """What is wrong with the store at `uri` ("" if it looks usable). Writes nothing that stays."""
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3).close()
        except urllib.error.HTTPError:
            return ""  # it answers: a server that has no /health, or wants a login, is reachable
        except (OSError, ValueError) as e:
            return f"the tracking server does not answer ({getattr(e, 'reason', e)})"
        return ""
    if uri.startswith("sqlite:"):
        path = uri.removeprefix("sqlite:///").split("?")[0] if uri.startswith("sqlite:///") else ""
        if path in ("", ":memory:"):
            return ""  # in-memory
        db = Path(path if path.startswith("/") else Path.cwd() / path)
        dirs = [db.parent, artifact_root()]
    elif uri.startswith("file:") or "://" not in uri:
        db = None
        dirs = [Path(uri.removeprefix("file://").removeprefix("file:"))]
    else:
        return ""  # databricks, postgres, ...: left to mlflow
    for d in dirs:
        existing = next((p for p in (d, *d.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            return f"{existing} is a file, not a directory, so {d} cannot be created"
        if existing != d and d == dirs[0]:
            return f"the directory {d} does not exist (nearest existing: {existing})"
        try:
            tempfile.TemporaryFile(dir=existing).close()
        except OSError as e:
            return f"the directory {existing} is not writable ({e.strerror})"
    if db is not None and db.exists():
        if db.is_dir():
            return f"{db} is a directory, not an sqlite file"
        try:
            with open(db, "r+b") as f:
                head = f.read(16)
        except OSError as e:
            return f"{db} cannot be opened for writing ({e.strerror})"
        if head and head != b"SQLite format 3\x00":
            return f"{db} exists but is not an sqlite database"
    return ""


def check_store() -> None:
    """Raise StoreError (one paragraph: the URI, what is wrong, what to do) unless the store looks usable."""
    uri = tracking_uri()
    problem = _store_problem(uri)
    if problem:
        src = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default store"
        raise StoreError(
            f"cannot use the MLflow store {uri} (from {src}): {problem}. Nothing was run. Point "
            f"MLFLOW_TRACKING_URI at a writable directory or a running server (e.g. sqlite:////abs/path/mlflow.db), "
            f"or unset it to use the repo's mlflow.db."
        )


def configure() -> MlflowClient:
    """Point mlflow at the book's store and return a client."""
    mlflow = _mlflow()
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def experiment_id(family: str) -> str:
    """Id of the experiment named after `family`, created (with an absolute artifact root) if missing."""
    client = configure()
    exp = client.get_experiment_by_name(family)
    if exp is not None:
        for k, v in _experiment_tags().items():  # experiments made before these tags existed get them now
            if exp.tags.get(k) != v:
                client.set_experiment_tag(exp.experiment_id, k, v)
        return exp.experiment_id
    location = (artifact_root() / family).as_uri() if _is_local(tracking_uri()) else None
    try:
        return client.create_experiment(family, artifact_location=location, tags=_experiment_tags())
    except _mlflow().exceptions.MlflowException:  # created concurrently
        return client.get_experiment_by_name(family).experiment_id


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def device_tags() -> dict[str, str]:
    """torch version, CUDA and device: set by `attach` inside the kernel, where torch is imported anyway."""
    import torch

    return {
        "torch_version": torch.__version__,
        "cuda": str(torch.version.cuda),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
    }


def environment(with_torch: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """(tags, text artifacts) describing where a run ran: git commit and dirty flag, versions, device, packages.

    Without `with_torch` (the runner process) torch is not imported: torch_version comes from the package
    metadata and the kernel's `attach` adds cuda and device.
    """
    commit = _git("rev-parse", "HEAD").strip()
    status = _git("status", "--porcelain", "--untracked-files=no").strip()
    tags = {
        "mlflow.source.git.commit": commit or "unknown",
        "git_commit": commit or "unknown",
        "git_dirty": str(bool(status)),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }
    if status:  # what the dirty tree differs by: same commit and same sha = same code (a sweep's resume reads it)
        import hashlib

        tags["git_diff_sha"] = hashlib.sha256(_git("diff", "HEAD").encode()).hexdigest()[:16]
    if with_torch:
        tags.update(device_tags())
    else:
        try:
            tags["torch_version"] = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            tags["torch_version"] = "not installed"
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


def run_name(notebook: str, profile: str, params: Mapping[str, Any], run_id: str = "") -> str:
    """`<notebook>/<profile>/seed<k>/<YYYYmmdd-HHMMSS>[-<run id[:8]>]`: the id suffix makes it unique."""
    seed = params.get("seed", (params.get("seeds") or [0])[0] if isinstance(params.get("seeds"), list) else 0)
    return f"{notebook}/{profile}/seed{seed}/{time.strftime('%Y%m%d-%H%M%S')}" + (f"-{run_id[:8]}" if run_id else "")


def create_run(notebook: str, family: str, profile: str, params: Mapping[str, Any], extra_tags: Mapping[str, str] | None = None,
               *, with_torch: bool = False) -> str:
    """Create (not start) a run for `notebook` with its params, tags and environment; return its id.

    Its name ends in the run id's first 8 hex digits, so two runs started in the same second differ.
    """
    mlflow = _mlflow()
    client = configure()
    tags, texts = environment(with_torch)
    tags.update({"notebook": notebook, "family": family, "profile": profile, "verdicts": "(running)"})
    tags.update(extra_tags or {})
    tags.update(env_run_tags())
    run = client.create_run(experiment_id(family), tags=tags, run_name=run_name(notebook, profile, params))
    rid = run.info.run_id
    client.update_run(rid, name=run_name(notebook, profile, params, rid))
    flat = flatten({k: v for k, v in params.items() if k != "mlflow_run_id"})
    items = list(flat.items())
    for i in range(0, len(items), 100):
        client.log_batch(rid, params=[mlflow.entities.Param(k, v) for k, v in items[i : i + 100]])
    for path, text in texts.items():
        client.log_text(rid, text, path)
    return rid


RUN_TAGS_ENV = "LOSSBOOK_RUN_TAGS"
"""A JSON object of extra tags `create_run` gives the run (how `lossbook sweep` tags a point's run with its parent,
point and attempt while the point runs the plain `lossbook run`); unset: no extra tags."""


def env_run_tags() -> dict[str, str]:
    """The tags in `LOSSBOOK_RUN_TAGS` ({} when unset or empty)."""
    import json

    text = os.environ.get(RUN_TAGS_ENV, "").strip()
    return {str(k): str(v) for k, v in json.loads(text).items()} if text else {}


def git_commit() -> str:
    """The checkout's HEAD commit ("" outside git)."""
    return _git("rev-parse", "HEAD").strip()


def create_parent_run(family: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    """Create (not start) a run that groups others (a sweep): environment tags (commit, dirty flag, diff sha),
    `tags`, flattened `params`; no `notebook` or `profile` tag, so no search for a notebook's runs (the book's
    latest run per notebook, `tags.profile = ...` filters) ever picks it.
    Its children carry `mlflow.parentRunId` = its id (the UI nests them under it). Returns its id."""
    mlflow = _mlflow()
    client = configure()
    env_tags, texts = environment()
    run = client.create_run(experiment_id(family), tags={**env_tags, "family": family, **tags}, run_name=name)
    rid = run.info.run_id
    client.update_run(rid, name=f"{name}-{rid[:8]}")
    items = list(flatten(params).items())
    for i in range(0, len(items), 100):
        client.log_batch(rid, params=[mlflow.entities.Param(k, v) for k, v in items[i : i + 100]])
    for path, text in texts.items():
        client.log_text(rid, text, path)
    return rid


def verdict_counts(claims: list[Mapping[str, Any]]) -> str:
    """"2 reproduced, 1 inconclusive" (smoke runs: "... (smoke)"); "no claims" if none."""
    kinds = [*VERDICTS, *sorted({str(c.get("verdict")) for c in claims} - set(VERDICTS))]  # e.g. "demonstrated"
    counts = {v: sum(c.get("verdict") == v for c in claims) for v in kinds}
    text = ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "no claims"
    return text + (" (smoke)" if any(not c.get("meaningful", True) for c in claims) else "")


def tag_verdicts(run_id: str, claims: list[Mapping[str, Any]]) -> None:
    """Tag the run `verdicts` (counts) and log `verdicts/<verdict>` counts as metrics: columns in the UI's runs list."""
    from mlflow.entities import Metric, RunTag

    client = configure()
    now = int(time.time() * 1000)
    kinds = [*VERDICTS, *sorted({str(c.get("verdict")) for c in claims} - set(VERDICTS))]
    metrics = [Metric(f"verdicts/{v.replace(' ', '_')}", float(sum(c.get("verdict") == v for c in claims)), now, 0) for v in kinds]
    client.log_batch(run_id, metrics=metrics if claims else [], tags=[RunTag("verdicts", verdict_counts(claims))])


def link_notebook(run_id: str, html_artifact: str, local: Path) -> None:
    """The run's description (shown on its MLflow page): where its executed notebook is, as HTML and .ipynb."""
    client = configure()
    run = client.get_run(run_id)
    uri = f"{run.info.artifact_uri.rstrip('/')}/{html_artifact}"
    tags = run.data.tags
    client.set_tag(run_id, "notebook_html", html_artifact)
    client.set_tag(run_id, "mlflow.note.content", (
        f"**{tags.get('notebook', '')}** [{tags.get('profile', '')}]: executed notebook in the Artifacts tab, "
        f"`{html_artifact}` (open it there, or in a browser: {uri}); local copy `{local}`."
    ))


def attach(mlflow_run_id: str, notebook: str, namespace: Mapping[str, Any] | None = None) -> mlflow.ActiveRun:
    """Make the notebook's run active: the runner's (`mlflow_run_id`), or a new one when run by hand.

    By hand, the run gets the same params and tags as `make run` would give it: the values of the
    notebook's parameters cell read from `namespace` (pass `globals()`), profile "interactive".
    """
    from lossbook.params import find_notebook, parameters_cell

    mlflow = _mlflow()
    client = configure()
    if mlflow.active_run() is not None:
        mlflow.end_run()
    if not mlflow_run_id:
        nb = find_notebook(notebook)
        names = parameters_cell(nb.path)
        ns = namespace or {}
        params = {k: ns.get(k, v) for k, v in names.items()}
        profile = str(params.get("profile") or "interactive")
        mlflow_run_id = create_run(notebook, nb.family, profile, params, {"launched_by": "interactive"}, with_torch=True)
    else:
        client.log_batch(mlflow_run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in device_tags().items()])
    run = mlflow.start_run(run_id=mlflow_run_id)
    print(f"MLflow run {mlflow_run_id} ({run.info.run_name})")
    return run


def active_profile() -> str:
    """The active run's profile tag ("" when no run is active)."""
    run = _mlflow().active_run()
    if run is None:
        return ""
    return configure().get_run(run.info.run_id).data.tags.get("profile", "")


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
        self.buffer: list[Any] = []  # mlflow.entities.Metric
        self.last: dict[str, float] = {}
        self.history: dict[str, list[tuple[int, float]]] = {}
        run = _mlflow().active_run() if to_run else None
        self.run_id = run.info.run_id if run else None
        self.client = configure() if run else None

    def log(self, step: int, **metrics: float) -> None:
        from mlflow.entities import Metric

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
    mlflow = _mlflow()
    if mlflow.active_run() is None:
        return
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}, step=step)


def log_figure(fig: Any, name: str) -> None:
    """Log a matplotlib figure as `figures/<name>.png` of the active run (no-op without one)."""
    mlflow = _mlflow()
    if mlflow.active_run() is None:
        return
    mlflow.log_figure(fig, f"figures/{name}.png" if not name.endswith(".png") else f"figures/{name}")


def log_dict(d: Any, path: str) -> None:
    """Log a JSON-able object as an artifact of the active run (no-op without one)."""
    mlflow = _mlflow()
    if mlflow.active_run() is not None:
        mlflow.log_dict(d, path)


if __name__ == "__main__":  # pragma: no cover
    print(tracking_uri(), file=sys.stderr)
