"""Issue 11: every fault leaves a true run state, every user error one clear paragraph.

Signals (SIGTERM, SIGHUP; SIGINT is in test_runner.py) sent to a real `lossbook run` process mid-cell, Ctrl-C
before a run exists, an unusable store refused before anything runs, unique run names and notebook paths.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from lossbook import runner, tracking

CLI = [sys.executable, "-m", "lossbook.cli"]


def _client() -> MlflowClient:
    return MlflowClient(tracking.tracking_uri())


def _sleep_cell_running(out_dir: Path, before: set[Path]) -> Path | None:
    for f in set(out_dir.glob("*.ipynb")) - before if out_dir.exists() else []:
        try:
            cells = json.loads(f.read_text())["cells"]
        except (json.JSONDecodeError, KeyError, OSError):
            continue
        if any("time.sleep(60)" in "".join(c["source"]) and c["metadata"].get("papermill", {}).get("status") == "running"
               for c in cells):
            return f
    return None


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_mid_cell_mark_the_run_killed_and_log_the_partial_notebook(
        fixture_root: Path, isolated_store: Path, sig: int, code: int) -> None:
    """Issue 11.2: SIGTERM (kill, a CI timeout) used to kill the runner at once, leaving the run RUNNING forever."""
    out_dir = isolated_store / "runs" / "calibration" / "trivial"
    before = set(out_dir.glob("*.ipynb")) if out_dir.exists() else set()
    env = {**os.environ, "LOSSBOOK_ROOT": str(fixture_root)}
    p = subprocess.Popen([*CLI, "run", "trivial", "--profile", "smoke", "mode=sleep", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline, partial = time.time() + 120, None
    while time.time() < deadline and partial is None:  # wait until papermill has saved the sleeping cell as running
        partial = _sleep_cell_running(out_dir, before)
        time.sleep(0.3)
    assert partial is not None, "the sleep cell never started"
    kernels = psutil.Process(p.pid).children(recursive=True)
    assert kernels, "no kernel process under the runner"
    t = time.time()
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    took = time.time() - t
    assert p.returncode == code, err
    assert "KILLED" in err and "partial notebook" in err and "Traceback" not in err and took < 30
    run_id = out.split("MLflow run ")[1].split()[0]
    run = _client().get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["error"] == f"interrupted by {runner.SIGNAL_NAMES[sig]}"
    arts = [a.path for a in _client().list_artifacts(run_id, "notebook")]
    assert any(a.endswith(".ipynb") for a in arts) and any(a.endswith(".html") for a in arts)
    logged = json.loads(Path(_client().download_artifacts(run_id, f"notebook/{partial.name}")).read_text())
    sleep_cell = next(c for c in logged["cells"] if "time.sleep(60)" in "".join(c["source"]))
    assert sleep_cell["metadata"]["papermill"]["status"] != "completed"  # the partial notebook, stopped in that cell
    assert [m.step for m in _client().get_metric_history(run_id, "loss")] == [0, 1]  # what ran before is kept
    time.sleep(1)
    assert not [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], "kernel still running"


def test_ctrl_c_before_a_run_exists_is_one_line(fixture_root: Path, isolated_store: Path) -> None:
    """Issue 11.2: Ctrl-C while the runner starts (imports, kernel start) printed a 30-line traceback."""
    env = {**os.environ, "LOSSBOOK_ROOT": str(fixture_root)}
    p = subprocess.Popen([*CLI, "run", "trivial", "--profile", "smoke", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.6)  # inside main(): importing papermill/mlflow takes seconds, the run is not created yet
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    assert "Traceback" not in err
    if "MLflow run " in out:  # slow machine: the run had been created; then it must be KILLED, not RUNNING
        assert _client().get_run(out.split("MLflow run ")[1].split()[0]).info.status == "KILLED"
    else:
        assert err.strip().splitlines() == ["interrupted by SIGINT (Ctrl-C) before a run was created; nothing was recorded."]


def _bad_stores(tmp: Path) -> list[tuple[str, str]]:
    (tmp / "file.txt").write_text("x")
    (tmp / "notdb").mkdir()
    (tmp / "notdb" / "mlflow.db").write_text("this is not sqlite\n")
    cases = [
        (f"sqlite:///{tmp}/missing/deeper/mlflow.db", f"the directory {tmp}/missing/deeper does not exist"),
        (f"sqlite:///{tmp}/file.txt/mlflow.db", f"{tmp}/file.txt is a file, not a directory"),
        (f"sqlite:///{tmp}/notdb/mlflow.db", "exists but is not an sqlite database"),
        ("http://127.0.0.1:9", "the tracking server does not answer"),
        (f"file://{tmp}/file.txt/mlruns", "is a file, not a directory"),
    ]
    try:  # a directory nobody may write to: sysfs refuses new files even to root (chmod does not stop root)
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        cases.append(("sqlite:////sys/mlflow.db", "the directory /sys is not writable"))
    if os.geteuid() != 0:
        ro = tmp / "readonly"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append((f"sqlite:///{ro}/mlflow.db", f"the directory {ro} is not writable"))
    return cases


def test_unusable_store_is_refused_before_anything_runs(fixture_root: Path, tmp_path: Path) -> None:
    """Issue 11.3: a missing/read-only store gave a 59-186-line traceback after up to two minutes, never naming it."""
    runs = tmp_path / "runs"
    for uri, needle in _bad_stores(tmp_path):
        env = {**os.environ, "LOSSBOOK_ROOT": str(fixture_root), "MLFLOW_TRACKING_URI": uri, "LOSSBOOK_RUNS_DIR": str(runs)}
        t = time.time()
        p = subprocess.run([*CLI, "run", "trivial", "--profile", "smoke"], capture_output=True, text=True, env=env, timeout=60)
        took = time.time() - t
        assert p.returncode == 2, (uri, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: cannot use the MLflow store {uri} (from MLFLOW_TRACKING_URI): "), p.stderr
        assert needle in lines[0] and "Nothing was run" in lines[0], (uri, p.stderr)
        assert took < 5, (uri, took)
        assert not runs.exists() and not (tmp_path / "missing").exists()
    assert (tmp_path / "notdb" / "mlflow.db").read_text() == "this is not sqlite\n"


def test_runner_api_checks_the_store_too(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/nope/mlflow.db")
    with pytest.raises(tracking.StoreError, match="does not exist"):
        runner.run("trivial", "smoke", progress=False)


def test_a_usable_store_passes(isolated_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracking.check_store()  # the session's store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/new.db")  # not there yet, directory writable
    tracking.check_store()
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind


def test_two_runs_in_the_same_second_get_distinct_names_and_paths(isolated_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11.6: same notebook, profile and seed in one second used to share a run name and a notebook path."""
    monkeypatch.setattr(tracking.time, "strftime", lambda fmt, *a: "20260101-000000")
    p = {"seed": 3, "profile": "smoke"}
    ids = [tracking.create_run("trivial", "calibration", "smoke", p) for _ in range(2)]
    names = [_client().get_run(i).info.run_name for i in ids]
    assert names == [f"trivial/smoke/seed3/20260101-000000-{i[:8]}" for i in ids] and names[0] != names[1]
    assert [_client().get_run(i).data.tags["mlflow.runName"] for i in ids] == names
    paths = [runner.output_path("calibration", "trivial", n) for n in names]
    assert paths[0] != paths[1] and paths[0].name == f"smoke-seed3-20260101-000000-{ids[0][:8]}.ipynb"


def test_experiments_open_as_model_training_and_runs_carry_list_columns(isolated_store: Path) -> None:
    """Issue 11.8: MLflow 3's UI reads the experiment tag mlflow.experimentKind; without it, it guesses GenAI."""
    exp = _client().get_experiment(tracking.experiment_id("calibration"))
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(exp.tags["mlflow.sharedViewState.lossbook"])  # the runs list's columns, opened by ui_url
    assert view["selectedColumns"][:3] == ["tags.`profile`", "tags.`notebook`", "tags.`verdicts`"]
    assert tracking.ui_url("calibration").endswith(
        f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey=lossbook")
    rid = tracking.create_run("trivial", "calibration", "smoke", {"seed": 0})
    claims = [{"verdict": "reproduced", "meaningful": False}, {"verdict": "inconclusive", "meaningful": False},
              {"verdict": "reproduced", "meaningful": False}, {"verdict": "demonstrated", "meaningful": False}]
    tracking.tag_verdicts(rid, claims)
    run = _client().get_run(rid)
    assert run.data.tags["verdicts"] == "2 reproduced, 1 inconclusive, 1 demonstrated (smoke)"
    assert run.data.metrics == {"verdicts/reproduced": 2.0, "verdicts/not_reproduced": 0.0, "verdicts/inconclusive": 1.0,
                                "verdicts/demonstrated": 1.0}
    assert run.data.tags["profile"] == "smoke" and run.data.tags["notebook"] == "trivial"
    tracking.link_notebook(rid, "notebook/x.html", Path("/tmp/x.ipynb"))
    run = _client().get_run(rid)
    assert run.data.tags["notebook_html"] == "notebook/x.html" and "notebook/x.html" in run.data.tags["mlflow.note.content"]
