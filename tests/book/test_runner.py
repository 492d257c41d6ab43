"""The runner end to end on a fixture notebook: success, cell error, dead kernel, NaN loss, Ctrl-C, by hand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lossbook import REPO_ROOT, report, runner, tracking


def _client() -> MlflowClient:
    return MlflowClient(tracking.tracking_uri())


def _artifacts(run_id: str, path: str = "") -> list[str]:
    out = []
    for a in _client().list_artifacts(run_id, path):
        out += _artifacts(run_id, a.path) if a.is_dir else [a.path]
    return out


def test_success_logs_everything(fixture_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import papermill.engines

    saves: list[str] = []
    real_write = papermill.engines.write_ipynb
    monkeypatch.setattr(papermill.engines, "write_ipynb", lambda nb, path: (saves.append(path), real_write(nb, path)))
    r = runner.run("trivial", "default", {"seed": 3}, progress=False)
    n_cells = len(json.loads(r.output_path.read_text())["cells"])
    assert len(saves) <= n_cells + 4 < 2 * n_cells + 2  # issue 11.11: short cells are not saved twice
    run = _client().get_run(r.run_id)
    assert r.status == "FINISHED" and run.info.status == "FINISHED"
    assert run.data.params["steps"] == "3" and run.data.params["seed"] == "3" and run.data.params["profile"] == "default"
    tags = run.data.tags
    assert tags["profile"] == "default" and tags["family"] == "calibration" and tags["notebook"] == "trivial"
    assert tags["git_dirty"] in {"True", "False"} and tags["torch_version"] and tags["python_version"]
    assert run.info.run_name.startswith("trivial/default/seed3/")
    hist = _client().get_metric_history(r.run_id, "loss")
    assert [m.step for m in hist] == [0, 1, 2] and hist[1].value == pytest.approx(0.9)
    arts = _artifacts(r.run_id)
    assert "claims.json" in arts and "figures/line.png" in arts and "env/requirements.txt" in arts
    assert any(a.startswith("notebook/") and a.endswith(".ipynb") for a in arts)
    assert any(a.startswith("notebook/") and a.endswith(".html") for a in arts)
    assert [c["verdict"] for c in r.claims] == ["reproduced", "reproduced"] and r.claims[0]["meaningful"]
    assert r.claims[1]["n_replicates"] == 2 and r.claims[1]["ci"]["method"] == "t" and r.claims[1]["guards"][0]["passed"]
    assert r.output_path.exists() and "trivial [default] finished" in runner.summary(r)
    nb = json.loads(r.output_path.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "mlflow_run_id" in "".join(injected[0]["source"])


def test_smoke_verdicts_are_marked_not_meaningful(fixture_root: Path) -> None:
    r = runner.run("trivial", "smoke", progress=False)
    assert r.claims[0]["meaningful"] is False
    assert _client().get_run(r.run_id).data.tags["verdict/arith"] == "reproduced (smoke)"


def test_cell_error_marks_run_failed_and_keeps_partial_notebook(fixture_root: Path) -> None:
    with pytest.raises(runner.RunFailed) as e:
        runner.run("trivial", "default", {"mode": "raise"}, progress=False)
    res = e.value.result
    msg = str(e.value)
    assert "FAILED" in msg and "ValueError: boom from the fixture" in msg and 'raise ValueError("boom' in msg
    assert res.output_path.exists()
    run = _client().get_run(res.run_id)
    assert run.info.status == "FAILED" and "boom" in run.data.tags["error"]
    assert len(_client().get_metric_history(res.run_id, "loss")) == 3  # what ran before the error is kept
    assert any(a.endswith(".ipynb") for a in _artifacts(res.run_id, "notebook"))


def test_dead_kernel_marks_run_failed(fixture_root: Path) -> None:
    with pytest.raises(runner.RunFailed) as e:
        runner.run("trivial", "default", {"mode": "die"}, progress=False)
    res = e.value.result
    assert res.status == "FAILED" and _client().get_run(res.run_id).info.status == "FAILED"
    assert "Dead" in res.error or "died" in res.error.lower()
    assert res.output_path.exists()


def test_nan_loss_stops_with_step_and_last_finite_metrics(fixture_root: Path) -> None:
    with pytest.raises(runner.RunFailed) as e:
        runner.run("trivial", "default", {"fail_at": 2, "steps": 5}, progress=False)
    res = e.value.result
    assert "NonFiniteLossError" in res.error and "at step 2" in res.error and "'loss': 0.9" in res.error
    hist = _client().get_metric_history(res.run_id, "loss")
    assert [m.step for m in hist] == [0, 1]  # the last finite values reached the store before the stop
    assert _client().get_run(res.run_id).data.tags["nonfinite_loss_step"] == "2"


def _sleep_cell_running(out_dir: Path) -> bool:
    for f in out_dir.glob("*.ipynb") if out_dir.exists() else []:
        try:
            cells = json.loads(f.read_text())["cells"]
        except (json.JSONDecodeError, KeyError):
            continue
        if any("time.sleep(60)" in "".join(c["source"]) and c["metadata"].get("papermill", {}).get("status") == "running"
               for c in cells):
            return True
    return False


def test_ctrl_c_marks_run_killed(fixture_root: Path, isolated_store: Path) -> None:
    env = {**os.environ, "LOSSBOOK_ROOT": str(fixture_root)}
    p = subprocess.Popen([sys.executable, "-m", "lossbook.cli", "run", "trivial", "mode=sleep", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out_dir = isolated_store / "runs" / "calibration" / "trivial"
    deadline = time.time() + 90
    while time.time() < deadline:  # wait until papermill has saved the sleeping cell as running
        if _sleep_cell_running(out_dir):
            break
        time.sleep(0.5)
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "KILLED" in err and "partial notebook" in err
    run_id = err.split("MLflow run ")[1].split()[0]
    assert _client().get_run(run_id).info.status == "KILLED"


def test_run_by_hand_starts_its_own_run_with_the_same_params(fixture_root: Path) -> None:
    src = fixture_root / "notebooks" / "calibration" / "trivial.py"
    env = {**os.environ, "LOSSBOOK_ROOT": str(fixture_root), "MPLBACKEND": "Agg"}
    p = subprocess.run([sys.executable, str(src)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    run_id = p.stdout.split("MLflow run ")[1].split()[0]
    run = _client().get_run(run_id)
    assert run.data.tags["profile"] == "interactive" and run.data.tags["launched_by"] == "interactive"
    assert set(run.data.params) == {"profile", "seed", "steps", "lr", "fail_at", "mode", "seeds", "use_bias"}
    assert "claims.json" in _artifacts(run_id)


def test_report_lists_latest_nonsmoke_run_and_not_run(fixture_root: Path, isolated_store: Path) -> None:
    r = runner.run("trivial", "default", progress=False)
    runner.run("trivial", "smoke", progress=False)  # newer, but smoke: not on the scoreboard
    md, html = report.write(isolated_store / "report")
    text = md.read_text()
    assert f"| calibration | trivial | arith | none | 4 | 4 | == 4 |  |  |  |  | reproduced | default | {r.run_id} |" in text
    row = next(line for line in text.splitlines() if "arith_replicated" in line).split(" | ")
    assert row[7:9] == ["2", "[1.415, 2.685] (95%, t)"] and row[11] == "reproduced"  # 2.05 ± 12.706 · 0.05, above 1
    assert "reproduced" in html.read_text()


def test_cli_list_and_sweep(fixture_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lossbook import cli

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "calibration" in out and "trivial" in out and "two plus two is four." in out and "(no notebooks yet)" in out
    assert cli.main(["sweep", "trivial", "--grid", "steps=1,2", "--profile", "smoke", "--quiet"]) == 0
    runs = _client().search_runs(
        [tracking.experiment_id("calibration")], "tags.profile = 'smoke'", order_by=["attributes.start_time DESC"], max_results=2
    )
    assert sorted(r.data.params["steps"] for r in runs) == ["1", "2"]
    assert cli.main(["sweep", "trivial", "--grid", "steps"]) == 2


def test_make_run_with_params_as_the_readme_types_it(fixture_root: Path, isolated_store: Path) -> None:
    """`make run NOTEBOOK=x PROFILE=smoke PARAMS="k=v k=v"`: the Makefile puts the overrides after --profile."""
    env = {**os.environ, "LOSSBOOK_ROOT": str(fixture_root)}
    p = subprocess.run(["make", "-s", "-C", str(REPO_ROOT), "run", "NOTEBOOK=trivial", "PROFILE=smoke", "PARAMS=steps=2 lr=0.5"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    run = _client().get_run(p.stdout.split("MLflow run ")[1].split()[0])
    assert run.data.params["steps"] == "2" and run.data.params["lr"] == "0.5" and run.data.tags["profile"] == "smoke"
    # issue 11.7: the notebook's own output reaches the terminal as it runs (here the claim lines it prints),
    # without the kernel's "running over TCP without encryption" warning or papermill's parse warnings
    assert "[REPRODUCED] arith:" in p.stdout.split("MLflow run ")[2]
    assert "without encryption" not in p.stdout + p.stderr and "Unable to parse" not in p.stdout + p.stderr


def test_list_wraps_to_the_terminal_and_prints_plain_text() -> None:
    """Issue 11.9: `make list` printed 200-400-character lines with raw markdown."""
    env = {k: v for k, v in os.environ.items() if k != "LOSSBOOK_ROOT"}
    p = subprocess.run([sys.executable, "-m", "lossbook.cli", "list"], capture_output=True, text=True, timeout=60,
                       env={**env, "COLUMNS": "72"})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert max(len(line) for line in lines) <= 72 and "temperature_scaling" in p.stdout and "    claim: " in p.stdout
    assert not any(m in p.stdout for m in ("**", "`", "](")), p.stdout
    from lossbook import cli

    assert cli.plain("**Paper:** [Guo et al.](https://x.y) `T*` *2017*") == "Paper: Guo et al. T* 2017"
