"""Run one notebook end to end: resolve params, create the MLflow run, execute with papermill, log, report.

`run("temperature_scaling", "default", {"seed": 3})`:
1. `params.resolve` checks the notebook, profile, keys and types (ParamsError before anything runs).
2. An MLflow run is created in the family's experiment with flattened params, env tags and pip freeze.
3. The jupytext source is converted in memory and executed by papermill on the `lossbook` kernel with
   cwd = repo root, `mlflow_run_id` and `profile` injected, the output saved after every cell to
   `runs/<family>/<name>/<profile>-seed<k>-<time>.ipynb`.
4. The executed notebook and its HTML export are logged under `notebook/`; the run ends FINISHED,
   FAILED (cell error, dead kernel) or KILLED (Ctrl-C), the partial notebook kept and logged either way.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossbook import REPO_ROOT, params, tracking

KERNEL_NAME = "lossbook"


class RunFailed(RuntimeError):
    """The notebook raised, its kernel died, or the run was interrupted; the message says where to look."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class RunResult:
    notebook: str
    profile: str
    run_id: str
    status: str
    output_path: Path
    claims: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


def runs_dir() -> Path:
    """`LOSSBOOK_RUNS_DIR` if set, else `<repo>/runs`."""
    return Path(os.environ.get("LOSSBOOK_RUNS_DIR") or REPO_ROOT / "runs")


def ensure_kernel() -> None:
    """Register the `lossbook` Jupyter kernel for this interpreter if it is not registered yet."""
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL_NAME in KernelSpecManager().find_kernel_specs():
        return
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (lossbook)", prefix=sys.prefix)


def to_notebook(path: Path):
    """The jupytext py:percent source as an nbformat notebook on the `lossbook` kernel."""
    import jupytext

    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python (lossbook)", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def export_html(ipynb: Path) -> Path:
    """Export an executed notebook to self-contained HTML beside it (images embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(ipynb, as_version=4))
    out = ipynb.with_suffix(".html")
    out.write_text(body)
    return out


def _claims(client, run_id: str) -> list[dict[str, Any]]:
    try:
        local = client.download_artifacts(run_id, "claims.json")
    except Exception:  # noqa: BLE001 - no claims recorded (e.g. failed early)
        return []
    return json.loads(Path(local).read_text())


def _failing_cell(ipynb: Path) -> str:
    """'cell N: <first lines of source>' of the cell whose papermill status is failed, if any."""
    import nbformat

    try:
        nb = nbformat.read(ipynb, as_version=4)
    except Exception:  # noqa: BLE001
        return ""
    for i, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("papermill", {}).get("exception") or any(
            o.get("output_type") == "error" for o in cell.get("outputs", [])
        ):
            src = "\n    ".join(cell.source.splitlines()[:6])
            return f"cell {i}:\n    {src}"
    return ""


def run(
    name: str,
    profile: str = "default",
    overrides: dict[str, Any] | None = None,
    *,
    progress: bool = True,
    log_output: bool = False,
    execution_timeout: int | None = None,
    root: Path | None = None,
) -> RunResult:
    """Execute notebook `name` under `profile` with `overrides`; return the result or raise RunFailed.

    Raises params.ParamsError for bad input before any run is created.
    """
    import papermill as pm

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    root = root or params.book_root()
    resolved = params.resolve(name, profile, overrides, root)
    nb = resolved.notebook
    if not resolved.params_file_found:
        print(f"note: {nb.params_path} not found; running with the notebook's defaults.")
    ensure_kernel()
    client = tracking.configure()
    run_id = tracking.create_run(name, nb.family, profile, resolved.params, {"launched_by": "lossbook run"})
    run_name = client.get_run(run_id).info.run_name
    stem = run_name.split("/", 1)[1].replace("/", "-")
    out = runs_dir() / nb.family / name / f"{stem}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"running {nb.family}/{name} [{profile}] -> {out}\nMLflow run {run_id} ({run_name})")
    inject = {**resolved.injected, "mlflow_run_id": run_id, "profile": profile}
    t0 = time.time()
    status, error = "FINISHED", ""
    try:
        pm.execute_notebook(
            to_notebook(nb.path), str(out), parameters=inject, kernel_name=KERNEL_NAME, cwd=str(root),
            progress_bar=progress, log_output=log_output, request_save_on_cell_execute=True,
            execution_timeout=execution_timeout,
        )
    except KeyboardInterrupt:
        status, error = "KILLED", "interrupted (Ctrl-C)"
    except pm.PapermillExecutionError as e:
        status, error = "FAILED", f"{e.ename}: {e.evalue}"
    except Exception as e:  # noqa: BLE001 - dead kernel, timeouts: keep what ran, mark the run failed
        status, error = "FAILED", f"{type(e).__name__}: {e}"
    seconds = time.time() - t0
    if out.exists():
        client.log_artifact(run_id, str(out), "notebook")
        try:
            client.log_artifact(run_id, str(export_html(out)), "notebook")
        except Exception as e:  # noqa: BLE001 - never lose the run over the HTML export
            print(f"warning: HTML export failed: {e}")
    client.set_tag(run_id, "wall_seconds", f"{seconds:.1f}")
    if error:
        client.set_tag(run_id, "error", error[:5000])
    client.set_terminated(run_id, status)
    result = RunResult(name, profile, run_id, status, out, _claims(client, run_id), seconds, error)
    if status != "FINISHED":
        where = _failing_cell(out)
        raise RunFailed(
            f"{name} [{profile}] {status}: {error}\n" + (f"  failing {where}\n" if where else "")
            + f"  partial notebook: {out}\n  MLflow run {run_id} is marked {status}; nothing logged so far was lost.",
            result,
        )
    return result


def summary(result: RunResult) -> str:
    """What a user needs after a run: notebook path, run id, claims with verdicts, how to look."""
    lines = [f"\n{result.notebook} [{result.profile}] finished in {result.seconds:.1f}s", f"  executed notebook: {result.output_path}",
             f"  MLflow run: {result.run_id}"]
    if result.claims:
        lines.append("  claims:")
        for c in result.claims:
            tag = "" if c.get("meaningful", True) else " (smoke: not meaningful)"
            lines.append(f"    [{c['verdict']}]{tag} {c['name']}: ours {c['measured']} | rule {c['threshold']} | paper {c.get('paper_value', '')}")
    lines.append(f"  compare runs: make ui  (MLflow UI at http://127.0.0.1:5000, store {tracking.tracking_uri()})")
    return "\n".join(lines)
