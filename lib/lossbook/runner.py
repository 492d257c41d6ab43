"""Run one notebook end to end: resolve params, create the MLflow run, execute with papermill, log, report.

`run("temperature_scaling", "default", {"seed": 3})`:
1. `params.resolve` checks the notebook, profile, keys and types (ParamsError before anything runs).
2. An MLflow run is created in the family's experiment with flattened params, env tags and pip freeze.
3. The jupytext source is converted in memory and executed by papermill on the `lossbook` kernel with
   cwd = repo root, `mlflow_run_id` and `profile` injected, the output saved as each cell starts (and as it
   ends, if it ran for SHORT_CELL_S or more) to `runs/<family>/<name>/<profile>-seed<k>-<time>-<run id[:8]>.ipynb`.
   The notebook's own output (prints, per-epoch lines, tqdm bars) streams to the terminal (`log_output`).
4. The executed notebook and its HTML export are logged under `notebook/`; the run ends FINISHED,
   FAILED (cell error, dead kernel) or KILLED (SIGINT/Ctrl-C, SIGTERM, SIGHUP), the partial notebook kept and
   logged either way; the exit code of `lossbook run` for a signal is 128 + its number (130, 143, 129).

The store is checked before anything runs (`tracking.check_store`). Heavy modules (papermill, mlflow,
nbconvert) are imported when a run needs them, so bad input fails in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossbook import REPO_ROOT, params, tracking

KERNEL_NAME = "lossbook"
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
"""Kernel command-line extras: silences ipykernel's per-start "running over TCP without encryption" warning
(the kernel listens on 127.0.0.1 only) and its other start-up chatter; errors still show."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SIGNAL_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived; `signum` says which (exit code 128 + signum)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(SIGNAL_NAMES.get(signum, f"signal {signum}"))
        self.signum = signum


WARM_MODULES = ("torch", "mlflow.tracking", "lossbook.tracking", "matplotlib")
"""Imported by the kernel as it starts (sys.modules only, no names in the notebook's namespace), while this process
imports mlflow and creates the run: the two start-ups overlap instead of running one after the other."""


def start_kernel(cwd: Path) -> Any:
    """Start the `lossbook` kernel now (it warms WARM_MODULES up) and return its manager, for papermill to use."""
    import json as _json

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    warm = [f"for _lossbook_m in {WARM_MODULES!r}:\n    try:\n        __import__(_lossbook_m)\n    except Exception:\n        pass",
            "del _lossbook_m"]
    km = AsyncKernelManager(kernel_name=KERNEL_NAME)
    args = [*KERNEL_ARGS, "--HistoryManager.hist_file=:memory:",  # as nbclient does: no shared history db
            "--IPKernelApp.exec_lines=" + _json.dumps(warm)]
    run_sync(km.start_kernel)(cwd=str(cwd), extra_arguments=args)
    return km


def stop_kernel(km: Any) -> None:
    """Kill the kernel (papermill has read all it sent; the runner ends the run); never raises."""
    from jupyter_core.utils import run_sync

    try:
        run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 - already dead
        pass


def _interrupt(km: Any) -> bool:
    """Send SIGINT to the kernel (KeyboardInterrupt in its running cell); False if it is not running."""
    proc = getattr(getattr(km, "provisioner", None), "process", None)
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        return True
    return False


class _Signals:
    """While a run is live, SIGINT, SIGTERM and SIGHUP all stop it the same way.

    mode "raise": with a kernel running, interrupt its cell (the cell ends with KeyboardInterrupt, papermill
    stops, saves the partial notebook and shuts the kernel down cleanly) and stop before any further cell;
    with none (still starting), raise Interrupted at once. A second signal raises Interrupted regardless.
    mode "defer": remember the signal, raise nothing (while the run is created, and while it is being
    logged and closed, so a second Ctrl-C or a `kill` cannot leave it RUNNING). No-op off the main thread.
    """

    def __init__(self) -> None:
        self.received = 0
        self.mode = "defer"
        self.old: dict[int, Any] = {}
        self.km: Any = None
        """The kernel executing the notebook (set once papermill runs it)."""

    def before_cell(self, **_: Any) -> None:
        """nbclient's on_cell_start hook: no new cell once a signal has arrived."""
        if self.received:
            raise Interrupted(self.received)

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)

    def _handle(self, signum: int, frame: object) -> None:
        first = not self.received
        self.received = self.received or signum
        if self.mode == "raise":
            if first and self.km is not None and _interrupt(self.km):
                print(f"\n{SIGNAL_NAMES.get(signum, signum)}: interrupting the running cell ...", file=sys.stderr, flush=True)
                return
            self.mode = "defer"
            raise Interrupted(signum)
        if not first:
            print(f"{SIGNAL_NAMES.get(signum, signum)}: still recording the run's end state; one moment.", file=sys.stderr, flush=True)

    def raise_pending(self) -> None:
        if self.received:
            raise Interrupted(self.received)


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
    signal: int = 0
    """The signal that stopped a KILLED run (2 SIGINT, 15 SIGTERM, 1 SIGHUP); 0 otherwise."""


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


SHORT_CELL_S = 2.0
"""A cell that ran for less than this is not saved when it ends: the next cell's start saves it (papermill saves at
every cell's start and end; the start save is the one that shows a long cell as running in the partial notebook)."""


def _engine_name() -> str:
    """Register (once) and name the papermill engine that saves the output notebook less often for short cells."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    if "lossbook" in papermill_engines._engines:
        return "lossbook"

    class FewerSaves(NotebookExecutionManager):
        _t0 = 0.0
        _skip = False

        def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            self._t0 = time.monotonic()
            super().cell_start(cell, cell_index, **kwargs)

        def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            failed = cell.metadata.papermill.get("status") == self.FAILED
            self._skip = not failed and time.monotonic() - self._t0 < SHORT_CELL_S
            try:
                super().cell_complete(cell, cell_index, **kwargs)
            finally:
                self._skip = False

        def save(self, **kwargs: Any) -> None:
            if not self._skip:
                super().save(**kwargs)

    class Engine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None, progress_bar: bool = True,
                             log_output: bool = False, autosave_cell_every: int = 30, **kwargs: Any) -> Any:
            nb_man = FewerSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register("lossbook", Engine)
    return "lossbook"


def _quiet_papermill_parameter_checks() -> None:
    """Drop papermill's own parameters-cell warnings ("Unable to parse line ...", "Passed unknown parameter ..."):
    params.resolve has already checked every key, type and range, and papermill's regex misreads any parameter
    line whose comment holds an `=` (it still injects the values)."""
    import logging

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith(("Unable to parse line", "Passed unknown parameter"))

    for name in ("papermill", "papermill.translators", "papermill.parameterize"):
        log = logging.getLogger(name)
        if not any(isinstance(f, Drop) for f in log.filters):
            log.addFilter(Drop())


def output_path(family: str, name: str, run_name: str) -> Path:
    """`runs/<family>/<name>/<profile>-seed<k>-<time>-<run id[:8]>.ipynb` from the run's (unique) name."""
    stem = run_name.split("/", 1)[1].replace("/", "-")
    return runs_dir() / family / name / f"{stem}.ipynb"


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

    Raises params.ParamsError for bad input and tracking.StoreError for an unusable store, both before any
    run is created. `progress`: papermill's per-cell bar; `log_output`: stream the notebook's own output.
    SIGINT, SIGTERM and SIGHUP end the run KILLED with what ran logged (RunFailed.result.signal says which).
    """
    root = root or params.book_root()
    resolved = params.resolve(name, profile, overrides, root)
    nb = resolved.notebook
    if not resolved.params_file_found:
        print(f"note: {nb.params_path} not found; running with the notebook's defaults.")
    tracking.check_store()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    km = None
    with _Signals() as sig:
        try:
            sig.mode = "raise"  # nothing recorded yet: an interrupt here just stops (cli prints one line)
            ensure_kernel()
            km = start_kernel(root)  # boots and imports while this process imports mlflow and creates the run
            import papermill as pm

            client = tracking.configure()
            sig.mode = "defer"  # the run exists from here on: it must end KILLED, not RUNNING
            run_id = tracking.create_run(name, nb.family, profile, resolved.params, {"launched_by": "lossbook run"})
        except BaseException:
            if km is not None:
                stop_kernel(km)
            raise
        run_name = client.get_run(run_id).info.run_name
        out = output_path(nb.family, name, run_name)
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"running {nb.family}/{name} [{profile}] -> {out}\nMLflow run {run_id} ({run_name})", flush=True)
        inject = {**resolved.injected, "mlflow_run_id": run_id, "profile": profile}
        t0 = time.time()
        status, error = "FINISHED", ""
        # log_output: the notebook's own stdout/stderr (prints, per-epoch lines, tqdm bars with their \r), raw,
        # as it arrives; results and figures stay in the notebook. Replaces papermill's per-cell bar.
        streams = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if log_output else {}
        try:
            sig.raise_pending()
            sig.km = km
            sig.mode = "raise"
            _quiet_papermill_parameter_checks()
            pm.execute_notebook(
                to_notebook(nb.path), str(out), parameters=inject, kernel_name=KERNEL_NAME, cwd=str(root),
                progress_bar=progress and not log_output, request_save_on_cell_execute=True, **streams,
                execution_timeout=execution_timeout, km=km, on_cell_start=sig.before_cell, engine_name=_engine_name(),
            )
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", sig.received or signal.SIGINT)
            sig.received = signum
            status, error = "KILLED", f"interrupted by {SIGNAL_NAMES.get(signum, signum)}"
        except pm.PapermillExecutionError as e:
            status, error = "FAILED", f"{e.ename}: {e.evalue}"
        except Exception as e:  # noqa: BLE001 - dead kernel, timeouts: keep what ran, mark the run failed
            status, error = "FAILED", f"{type(e).__name__}: {e}"
        finally:
            sig.mode = "defer"
            stop_kernel(km)
        if sig.received and status != "KILLED":  # a signal raced the end of the last cell
            status, error = "KILLED", f"interrupted by {SIGNAL_NAMES.get(sig.received, sig.received)}"
        seconds = time.time() - t0
        if status == "KILLED":
            print(f"\n{error}: kernel stopped; recording the run as KILLED ...", file=sys.stderr, flush=True)
        if out.exists():
            client.log_artifact(run_id, str(out), "notebook")
            try:
                html = export_html(out)
                client.log_artifact(run_id, str(html), "notebook")
                tracking.link_notebook(run_id, f"notebook/{html.name}", out)
            except Exception as e:  # noqa: BLE001 - never lose the run over the HTML export
                print(f"warning: HTML export failed: {e}")
        client.set_tag(run_id, "wall_seconds", f"{seconds:.1f}")
        if error:
            client.set_tag(run_id, "error", error[:5000])
        claims = _claims(client, run_id)
        tracking.tag_verdicts(run_id, claims)
        client.set_terminated(run_id, status)
    result = RunResult(name, profile, run_id, status, out, claims, seconds, error, sig.received if status == "KILLED" else 0)
    if status != "FINISHED":
        where = _failing_cell(out) if status == "FAILED" else ""
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
    family = params.find_notebook(result.notebook).family
    lines.append(f"  compare runs: make ui, then {tracking.ui_url(family)}  (store {tracking.tracking_uri()})")
    return "\n".join(lines)
