"""`lossbook sweep`: one `lossbook run` per point of a parameter grid, as Ray tasks, under one parent MLflow run.

    lossbook sweep dpo_displacement --grid "beta=0.05,0.1 seed=0,1,2" --profile default [--address ray://head:10001]

The grid is the cartesian product of its axes (`key=v1,v2`, separated by spaces; commas inside brackets belong to
the value, e.g. `seeds=[0,1],[2,3]`); every value is parsed and checked exactly as `lossbook run key=value` does
(`params.parse_overrides` + `params.resolve`), for every point, before anything is submitted.

A point is the plain `lossbook run NOTEBOOK --profile P k=v ...` in a subprocess (`run_point`), inside a Ray task
(or in this process with `workers=0`, the same function): the same code path as a single run (papermill, signals,
the run's end state), one kernel per point, and a crash of the notebook cannot take the Ray worker with it. The
subprocess logs to the driver's `MLFLOW_TRACKING_URI` (forwarded with every `MLFLOW_*`/`LOSSBOOK_*` variable) and
tags its run, through `LOSSBOOK_RUN_TAGS`, with `mlflow.parentRunId` (the sweep's parent run: the grid, commit
and per-point outcome `sweep/points.json`), `sweep_point` and `sweep_attempt`. It dies with its Ray worker
(PR_SET_PDEATHSIG: SIGTERM, so the runner records KILLED).

Resources: `cpus` per point (also its OMP/MKL thread count); a GPU when the point's `device` param is `cuda...`,
or `auto` on a cluster that has GPUs (`gpus` overrides). Locally Ray starts with `workers * cpus` CPUs.
Retries: an attempt that exits non-zero or whose worker dies is run again, up to `retries` more times; every attempt
is its own child run (a run its process left RUNNING is marked KILLED). Resume: a point whose params (all of them,
as logged) already have a FINISHED run of the same notebook and profile at this commit, with no uncommitted changes
or the same `git_diff_sha`, is skipped and reported (on a tree being edited the sha moves, so fewer points match).
Ctrl-C / SIGTERM: running points are cancelled, and what is still RUNNING after INTERRUPT_WAIT_S is marked KILLED;
the parent ends KILLED (exit 130/143). A point's process writes to a temp file, not a pipe, in its own session, so
a dying worker cannot break its last writes; on a cluster we started, Ray leaves a dead worker's children to
their SIGTERM (`RAY_kill_child_processes_on_worker_exit=0`).
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import importlib.util
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lossbook import REPO_ROOT, params, tracking

FORWARD_PREFIXES = ("MLFLOW_", "LOSSBOOK_")
"""Environment variables of the driver that every point gets (store, book root, runs and cache dirs)."""
INTERRUPT_WAIT_S = 30.0
"""After Ctrl-C, how long the sweep waits for its running points to record their runs KILLED."""
RAY_HINT = "ray is not installed: `pip install 'ray[client]'` (or `make setup`), or run the points here with --workers 0."


@dataclass(frozen=True)
class Point:
    """One grid point: `tokens` are the `key=value` overrides `lossbook run` gets (--set ones first)."""

    index: int
    """1-based position in the grid."""
    tokens: tuple[str, ...]
    grid_tokens: tuple[str, ...]
    params: dict[str, str]
    """The resolved parameters, flattened as the run logs them (what resume compares)."""
    device: str

    @property
    def label(self) -> str:
        return " ".join(self.grid_tokens)


@dataclass(frozen=True)
class PointTask:
    """What a worker needs to run one attempt of one point (plain data, picklable)."""

    notebook: str
    profile: str
    tokens: tuple[str, ...]
    env: dict[str, str]
    commit: str


@dataclass
class Outcome:
    """One attempt as the worker saw it: exit code (None: the worker died), time, node and the process's output."""

    rc: int | None
    seconds: float
    node: str = ""
    output: str = ""


@dataclass
class Attempt:
    attempt: int
    status: str
    rc: int | None
    seconds: float
    run_id: str = ""
    node: str = ""
    verdicts: str = ""
    error: str = ""


@dataclass
class PointResult:
    point: Point
    status: str = "PENDING"
    """FINISHED, SKIPPED (already finished: `run_id` is that run), FAILED or KILLED (every attempt failed)."""
    run_id: str = ""
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class SweepResult:
    parent_run_id: str
    points: list[PointResult]
    seconds: float

    def count(self, status: str) -> int:
        return sum(p.status == status for p in self.points)

    @property
    def retries(self) -> int:
        return sum(max(0, len(p.attempts) - 1) for p in self.points)

    @property
    def ok(self) -> bool:
        return all(p.status in ("FINISHED", "SKIPPED") for p in self.points)


def split_top(text: str, sep: str | None) -> list[str]:
    """Split on `sep` (None: whitespace) outside brackets and quotes: "[0,1],[2,3]" -> ["[0,1]", "[2,3]"]."""
    out, cur, depth, quote = [], "", 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif depth == 0 and (ch.isspace() if sep is None else ch == sep):
            out.append(cur)
            cur = ""
            continue
        cur += ch
    out.append(cur)
    return [t.strip() for t in out if t.strip()] if sep is None else [t.strip() for t in out]


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """`["beta=0.05,0.1 seed=0,1,2"]` -> [("beta", ["0.05", "0.1"]), ("seed", ["0", "1", "2"])] (values unparsed)."""
    axes: list[tuple[str, list[str]]] = []
    for axis in (a for spec in specs for a in split_top(spec, None)):
        key, eq, values = axis.partition("=")
        vals = split_top(values, ",") if eq else []
        if not key.strip() or not vals or any(v == "" for v in vals):
            raise params.ParamsError(f"grid axis {axis!r} must look like key=v1,v2,... (e.g. --grid \"beta=0.05,0.1 seed=0,1,2\").")
        if key.strip() in (k for k, _ in axes):
            raise params.ParamsError(f"grid key {key.strip()!r} appears twice; give each key one axis.")
        axes.append((key.strip(), vals))
    if not axes:
        raise params.ParamsError('--grid is empty; give at least one axis, e.g. --grid "seed=0,1,2".')
    return axes


def plan(notebook: str, profile: str, axes: list[tuple[str, list[str]]], fixed: list[str] | None = None) -> list[Point]:
    """Every point of the grid, each resolved and checked like `lossbook run` (ParamsError before anything runs)."""
    fixed = list(fixed or [])
    clash = set(params.parse_overrides(fixed)) & {k for k, _ in axes}
    if clash:
        raise params.ParamsError(f"{', '.join(sorted(clash))} is both a grid axis and a --set value; keep it in one place.")
    points = []
    for i, combo in enumerate(itertools.product(*(vals for _, vals in axes)), start=1):
        grid_tokens = tuple(f"{k}={v}" for (k, _), v in zip(axes, combo))
        resolved = params.resolve(notebook, profile, params.parse_overrides([*fixed, *grid_tokens]))
        flat = tracking.flatten({k: v for k, v in resolved.params.items() if k != "mlflow_run_id"})
        points.append(Point(i, (*fixed, *grid_tokens), grid_tokens, flat, str(resolved.params.get("device", "cpu"))))
    return points


def gpus_for(device: str, cluster_gpus: float) -> float:
    """GPUs a point asks for: 1 for `cuda...`, 1 for `auto` when the cluster has a GPU, else 0."""
    if device.startswith("cuda"):
        return 1.0
    return 1.0 if device == "auto" and cluster_gpus > 0 else 0.0


def code_state() -> dict[str, str]:
    """This checkout's commit, dirty flag and diff sha, as `tracking.environment` tags a run."""
    tags, _ = tracking.environment()
    return {k: tags.get(k, "") for k in ("git_commit", "git_dirty", "git_diff_sha")}


def finished_runs(notebook: str, profile: str, points: list[Point], code: dict[str, str]) -> dict[int, str]:
    """point index -> a FINISHED run with the same notebook, profile, params and code (commit + diff sha)."""
    client = tracking.configure()
    family = params.find_notebook(notebook).family
    exp = client.get_experiment_by_name(family)
    if exp is None or not code["git_commit"] or code["git_commit"] == "unknown":
        return {}
    flt = (f"tags.notebook = '{notebook}' and tags.profile = '{profile}' and tags.git_commit = '{code['git_commit']}' "
           "and attributes.status = 'FINISHED'")
    runs = client.search_runs([exp.experiment_id], flt, max_results=5000, order_by=["attributes.start_time DESC"])
    same_code = [r for r in runs if r.data.tags.get("git_dirty") == code["git_dirty"]
                 and r.data.tags.get("git_diff_sha", "") == code["git_diff_sha"]]
    found = {}
    for p in points:
        match = next((r for r in same_code if r.data.params == p.params), None)
        if match is not None:
            found[p.index] = match.info.run_id
    return found


_PRCTL = ctypes.CDLL(None).prctl if platform.system() == "Linux" else None
"""libc's prctl, looked up here: the child between fork and exec only calls it."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The point process gets SIGTERM when its worker dies (Linux), so the runner records the run KILLED."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def run_point(task: PointTask) -> Outcome:
    """One attempt of one point: `python -m lossbook.cli run NOTEBOOK --profile P --quiet k=v ...` in the repo root."""
    here = tracking.git_commit()
    if task.commit and here and here != task.commit:
        return Outcome(2, 0.0, platform.node(), f"this worker's checkout {REPO_ROOT} is at {here}, the sweep's at "
                                                f"{task.commit}; check out the same commit on every node.")
    cmd = [sys.executable, "-m", "lossbook.cli", "run", task.notebook, "--profile", task.profile, "--quiet", *task.tokens]
    t0 = time.time()
    # Output to a file, not a pipe: if this worker dies, the point's last writes (recording its run KILLED) must not
    # hit a broken pipe. Its own session: a kill of the worker's process group does not reach it (pdeathsig does).
    with tempfile.TemporaryFile("w+", errors="replace") as log:
        with subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, **task.env}, stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent, start_new_session=True) as proc:
            try:
                while True:  # in 1 s steps: Ray's cancel raises in this thread only between bytecodes
                    try:
                        proc.wait(1.0)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            except BaseException:  # interrupted: SIGTERM lets the runner record the run KILLED (SIGKILL leaves it RUNNING)
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise
        log.seek(0)
        output = log.read()
    return Outcome(proc.returncode, time.time() - t0, platform.node(), output[-20000:])


def forwarded_env(cpus: float, tags: dict[str, str]) -> dict[str, str]:
    """The driver's MLFLOW_*/LOSSBOOK_* variables, its store, the point's tags and thread counts."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARD_PREFIXES)}
    threads = str(max(1, int(cpus)))
    env.update({"MLFLOW_TRACKING_URI": tracking.tracking_uri(), tracking.RUN_TAGS_ENV: json.dumps(tags),
                "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    return env


def _child_run(client: Any, exp_id: str, parent: str, point: int, attempt: int) -> Any:
    flt = f"tags.sweep_parent = '{parent}' and tags.sweep_point = '{point}' and tags.sweep_attempt = '{attempt}'"
    runs = client.search_runs([exp_id], flt, max_results=1)
    return runs[0] if runs else None


def record_attempt(client: Any, exp_id: str, parent: str, point: Point, attempt: int, out: Outcome) -> Attempt:
    """The attempt's end state from its run in the store; a run its dead process left RUNNING is marked KILLED."""
    run = _child_run(client, exp_id, parent, point.index, attempt)
    status = "FINISHED" if out.rc == 0 else ("FAILED" if out.rc in (1, 2) else "KILLED")
    lines = [ln for ln in out.output.strip().splitlines() if ln.strip()]
    error = "" if out.rc == 0 else next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else "")
    if out.rc is None:
        error = f"the worker died ({out.output.strip()[:300]})"
    elif out.rc < 0:
        error = f"the point's process was killed by signal {-out.rc}"
    if run is not None and run.info.status == "RUNNING" and out.rc != 0:  # its process died before ending it
        client.set_tag(run.info.run_id, "error", error[:5000])
        client.set_terminated(run.info.run_id, "KILLED")
        status = "KILLED"
    elif run is not None:
        status = run.info.status
    verdicts = run.data.tags.get("verdicts", "") if run is not None else ""
    return Attempt(attempt, status, out.rc, round(out.seconds, 1), run.info.run_id if run else "", out.node, verdicts, error[:2000])


class _Local:
    """`workers=0`: each attempt runs `run_point` here, one after the other (the same function Ray runs)."""

    def submit(self, task: PointTask, cpus: float, gpus: float) -> cf.Future:
        fut: cf.Future = cf.Future()
        fut.set_result(run_point(task))
        return fut

    def cancel(self, fut: cf.Future) -> None:
        pass

    def close(self) -> None:
        pass


class _Ray:
    """Ray tasks: `ray.init()` locally with `workers * cpus` CPUs, or the cluster at `address` ("auto", "ray://...")."""

    def __init__(self, address: str | None, workers: int, cpus: float) -> None:
        try:
            import ray
        except ImportError:
            raise params.ParamsError(RAY_HINT) from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kw: dict[str, Any] = {"address": address} if address else {"num_cpus": max(1, int(workers * cpus))}
            if not address:  # our cluster: a dead worker's point process gets SIGTERM (pdeathsig) and records its run
                os.environ.setdefault("RAY_kill_child_processes_on_worker_exit", "0")  # KILLED, instead of a SIGKILL
            ray.init(**kw, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        self.refs: dict[cf.Future, Any] = {}
        self.remote = ray.remote(max_retries=0)(run_point)  # retries are ours: each attempt is a recorded run

    def cluster_gpus(self) -> float:
        return float(self.ray.cluster_resources().get("GPU", 0))

    def submit(self, task: PointTask, cpus: float, gpus: float) -> cf.Future:
        ref = self.remote.options(num_cpus=cpus, num_gpus=gpus).remote(task)
        fut = ref.future()
        self.refs[fut] = ref
        return fut

    def cancel(self, fut: cf.Future) -> None:
        """Kill the task's worker: its point process gets SIGTERM (pdeathsig) and records its run KILLED."""
        ref = self.refs.get(fut)
        if ref is not None:
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _say(quiet: bool) -> Callable[[str], None]:
    return (lambda _: None) if quiet else (lambda s: print(f"[sweep] {s}", flush=True))


def sweep(notebook: str, profile: str, grid: list[str], fixed: list[str] | None = None, *, workers: int | None = None,
          cpus: float = 1.0, gpus: float | None = None, address: str | None = None, retries: int = 2,
          resume: bool = True, quiet: bool = False) -> SweepResult:
    """Run every grid point of `notebook` under `profile` (see the module docstring); returns what happened.

    Raises params.ParamsError (bad grid, key, type, range; ray missing) or tracking.StoreError before anything runs.
    `workers`: points at once (None: all CPUs locally, no cap on a cluster; 0: here, without Ray).
    """
    say = _say(quiet)
    axes = parse_grid(grid)
    points = plan(notebook, profile, axes, fixed)
    tracking.check_store()
    if workers != 0 and importlib.util.find_spec("ray") is None:
        raise params.ParamsError(RAY_HINT)
    if address and address.startswith("ray://") and tracking.tracking_uri().startswith(("sqlite:", "file:")):
        raise tracking.StoreError(f"the cluster at {address} cannot write to the local store {tracking.tracking_uri()}; start "
                                  "a tracking server (`make server`) and set MLFLOW_TRACKING_URI=http://host:port.")
    t0 = time.time()
    code = code_state()
    family = params.find_notebook(notebook).family
    client = tracking.configure()
    exp_id = tracking.experiment_id(family)
    done = finished_runs(notebook, profile, points, code) if resume else {}
    results = {p.index: PointResult(p) for p in points}
    if workers is None and not address:  # locally: as many points at once as the CPUs hold
        workers = max(1, (os.cpu_count() or 1) // max(1, int(cpus)))
    parent = tracking.create_parent_run(
        family, f"sweep/{notebook}/{profile}/{time.strftime('%Y%m%d-%H%M%S')}",
        {"notebook": notebook, "profile": profile, "grid": " ".join(grid), "set": " ".join(fixed or []),
         "points": len(points), "workers": workers if workers is not None else "cluster", "cpus_per_point": cpus,
         "gpus_per_point": "auto" if gpus is None else gpus, "retries": retries, "address": address or "local", "resume": resume},
        {"lossbook.sweep": "parent", "sweep_notebook": notebook, "sweep_profile": profile, "launched_by": "lossbook sweep"},
    )
    client.log_dict(parent, {"axes": dict(axes), "points": [{"index": p.index, "overrides": list(p.tokens)} for p in points]},
                    "sweep/grid.json")
    say(f"{notebook} [{profile}]: {len(points)} points ({' x '.join(f'{k}:{len(v)}' for k, v in axes)}), "
        f"parent run {parent} in experiment {family}, store {tracking.tracking_uri()}")
    for i, rid in done.items():
        results[i].status, results[i].run_id = "SKIPPED", rid
        say(f"skip  {i}/{len(points)} {points[i - 1].label}: already FINISHED at this commit as run {rid}")
    todo = deque((p, 1) for p in points if p.index not in done)
    status = "FINISHED"
    executor: Any = None
    try:
        if todo:
            executor = _Local() if workers == 0 else _Ray(address, workers or 1, cpus)
            status = _drive(executor, todo, results, client, exp_id, parent, notebook, profile, code["git_commit"],
                            workers, cpus, gpus, retries, say)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if executor is not None:
            executor.close()
        res = SweepResult(parent, [results[p.index] for p in points], time.time() - t0)
        _close_parent(client, res, status if status == "KILLED" else ("FINISHED" if res.ok else "FAILED"))
    uri = tracking.tracking_uri()
    where = f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{parent}" if uri.startswith("http") else f"{parent} in {uri}"
    say(f"done in {res.seconds:.1f}s: {res.count('FINISHED')} finished, {res.count('SKIPPED')} skipped, "
        f"{len(points) - res.count('FINISHED') - res.count('SKIPPED')} failed, {res.retries} retries; parent run {where}")
    return res


def _drive(executor: Any, todo: deque, results: dict[int, PointResult], client: Any, exp_id: str, parent: str,
           notebook: str, profile: str, commit: str, workers: int | None, cpus: float, gpus: float | None,
           retries: int, say: Callable[[str], None]) -> str:
    """Submit attempts (at most `workers` at once), record each as it ends, queue a retry for a failed one."""
    n = len(results)
    cluster_gpus = executor.cluster_gpus() if hasattr(executor, "cluster_gpus") else 0.0
    inflight: dict[cf.Future, tuple[Point, int]] = {}
    cap = 1 if workers == 0 else workers  # workers=0: _Local runs each attempt as it is submitted
    current: tuple[Point, int] | None = None  # the attempt being submitted (with _Local: being run)
    try:
        while todo or inflight:
            while todo and (cap is None or len(inflight) < cap):
                p, k = todo.popleft()
                tags = {"mlflow.parentRunId": parent, "sweep_parent": parent, "sweep_point": str(p.index),
                        "sweep_attempt": str(k), "launched_by": "lossbook sweep"}
                g = gpus if gpus is not None else gpus_for(p.device, cluster_gpus)
                say(f"start {p.index}/{n} {p.label}" + (f" (attempt {k})" if k > 1 else "") + (f" [{g:g} GPU]" if g else ""))
                task = PointTask(notebook, profile, p.tokens, forwarded_env(cpus, tags), commit)
                current = (p, k)
                inflight[executor.submit(task, cpus, g)] = (p, k)
                current = None
            finished, _ = cf.wait(list(inflight), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                p, k = inflight.pop(fut)
                try:
                    out = fut.result()
                except Exception as e:  # noqa: BLE001 - the worker died (node lost, OOM kill): a failed attempt
                    out = Outcome(None, 0.0, "", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                a = record_attempt(client, exp_id, parent, p, k, out)
                results[p.index].attempts.append(a)
                client.log_text(parent, out.output, f"sweep/logs/point{p.index}-attempt{k}.txt")
                results[p.index].status, results[p.index].run_id = a.status, a.run_id
                tail = f"| {a.verdicts}" if a.status == "FINISHED" else f"(exit {a.rc}) {a.error}"
                say(f"end   {p.index}/{n} {p.label}: {a.status} in {a.seconds:.1f}s run {a.run_id or '-'} {tail}".rstrip())
                if a.status != "FINISHED" and k <= retries:
                    say(f"retry {p.index}/{n} {p.label}: attempt {k + 1} of {retries + 1}")
                    todo.append((p, k + 1))
    except KeyboardInterrupt:  # each running point gets SIGTERM (its run ends KILLED); what is still RUNNING after
        for fut in inflight:     # INTERRUPT_WAIT_S is marked KILLED here
            executor.cancel(fut)
        say(f"interrupted: stopping {len(inflight) + bool(current)} running point(s) ...")
        stopping = [*inflight.values(), *([current] if current else [])]
        t0 = time.monotonic()
        while time.monotonic() - t0 < INTERRUPT_WAIT_S and any(
                getattr(_child_run(client, exp_id, parent, p.index, k), "info", None) is not None
                and _child_run(client, exp_id, parent, p.index, k).info.status == "RUNNING" for p, k in stopping):
            time.sleep(1.0)
        for p, k in stopping:
            out = Outcome(128 + int(signal.SIGINT), 0.0, output="interrupted: the sweep was stopped")
            results[p.index].attempts.append(record_attempt(client, exp_id, parent, p, k, out))
            results[p.index].status = "KILLED"
        raise
    return "FINISHED"


def _close_parent(client: Any, res: SweepResult, status: str) -> None:
    """The parent's outcome: `sweep/points.json`, counts as metrics and tags, its end state."""
    from mlflow.entities import Metric, RunTag

    rows = [{"index": r.point.index, "overrides": list(r.point.grid_tokens), "status": r.status, "run_id": r.run_id,
             "attempts": [asdict(a) for a in r.attempts]} for r in res.points]
    client.log_dict(res.parent_run_id, rows, "sweep/points.json")
    now = int(time.time() * 1000)
    counts = {"points": len(res.points), "points_finished": res.count("FINISHED"), "points_skipped": res.count("SKIPPED"),
              "points_failed": len(res.points) - res.count("FINISHED") - res.count("SKIPPED"),
              "attempts": sum(len(r.attempts) for r in res.points), "retries": res.retries, "wall_seconds": res.seconds}
    summary = f"{counts['points_finished']} finished, {counts['points_skipped']} skipped, {counts['points_failed']} failed"
    client.log_batch(res.parent_run_id, metrics=[Metric(k, float(v), now, 0) for k, v in counts.items()],
                     tags=[RunTag("sweep_outcome", summary), RunTag("wall_seconds", f"{res.seconds:.1f}")])
    client.set_terminated(res.parent_run_id, status)
