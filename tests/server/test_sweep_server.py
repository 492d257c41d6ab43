"""A Ray sweep into a throwaway PostgreSQL-backed MLflow server: every point FINISHED with its params, metrics and
artifacts in the server, grouped under the parent run; a killed point (its Ray worker, or its own process) retried;
resume skips what already finished. Prints the numbers the issue asks for (points, wall time with 1 and 2 workers,
retries). Skipped, saying how to install them, without PostgreSQL's binaries or ray.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from lossbook import grid, server, tracking

pytest.importorskip("ray", reason="ray is not installed: pip install 'ray[client]' (the dev extra: make setup)")
pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install psycopg2-binary (the dev extra: make setup)")
if not server.available():
    pytest.skip(server.INSTALL_HINT, allow_module_level=True)

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking_server():
    """PostgreSQL in a temp dir on a free port, `mlflow server` on it; both stopped at the end, even on failure."""
    root = Path(tempfile.mkdtemp(prefix="lossbook-pg-"))
    root.chmod(0o711)  # PostgreSQL runs as an unprivileged user when we are root: it must enter this directory
    pg = server.Postgres(root / "postgres", server.free_port())
    proc = None
    try:
        pg.start()
        port = server.free_port()
        with open(root / "mlflow.log", "w") as log:
            proc = subprocess.Popen(server.mlflow_command(pg.url, root / "artifacts", port=port), stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        server.wait_healthy(url, proc)
        yield url
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg.stop()
        assert not pg.running()
        shutil.rmtree(root, ignore_errors=True)


def _children(client, parent: str) -> list:
    exp = client.get_experiment_by_name("calibration")
    return client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=100)


def _check_sweep(client, res: grid.SweepResult, kind: str) -> None:
    """Every point FINISHED with its params, metrics and claims.json; exactly one point needed a second attempt."""
    assert res.ok and res.count("FINISHED") == len(res.points), [(p.point.label, p.status, p.attempts) for p in res.points]
    parent = client.get_run(res.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["lossbook.sweep"] == "parent" and not {"notebook", "profile"} & set(parent.data.tags)
    assert parent.data.tags["git_commit"] == tracking.git_commit() and parent.data.params["grid"]
    assert parent.data.metrics["points_finished"] == len(res.points) and parent.data.metrics["retries"] == 1
    rows = json.loads(Path(client.download_artifacts(res.parent_run_id, "sweep/points.json")).read_text())
    assert [len(r["attempts"]) for r in rows].count(2) == 1 and all(len(r["attempts"]) in (1, 2) for r in rows)
    children = {r.info.run_id: r for r in _children(client, res.parent_run_id)}
    assert len(children) == len(res.points) + 1  # the killed attempt is a run of its own
    for p in res.points:
        run = children[p.run_id]
        assert run.info.status == "FINISHED" and run.data.tags["sweep_point"] == str(p.point.index)
        for token in p.point.grid_tokens:
            key, value = token.split("=")
            assert float(run.data.params[key]) == float(value)
        assert run.data.metrics["loss"] < 1.0
        claims = json.loads(Path(client.download_artifacts(p.run_id, "claims.json")).read_text())
        assert [c["name"] for c in claims] == ["decays"]
        assert any(a.path.endswith(".ipynb") for a in client.list_artifacts(p.run_id, "notebook"))
    retried = next(p for p in res.points if len(p.attempts) == 2)
    first = children[retried.attempts[0].run_id]
    assert first.info.status == "KILLED" and first.data.tags["sweep_attempt"] == "1"
    assert retried.attempts[0].rc is None if kind == "worker" else retried.attempts[0].rc == -9
    assert retried.attempts[1].status == "FINISHED"


def test_ray_sweep_into_postgres_server(tracking_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setenv("LOSSBOOK_ROOT", str(FIXTURES))
    client = tracking.configure()
    times = {}
    for workers, seeds, kind in ((2, "0,1", "worker"), (1, "2,3", "point")):
        monkeypatch.setenv("LOSSBOOK_PROBE_KILL_ONCE", f"{tmp_path / kind}:{seeds[-1]}:{kind}")
        t0 = time.time()
        res = grid.sweep("sweep_probe", "smoke", [f"seed={seeds}", "lr=0.1,0.2"], workers=workers, retries=1)
        times[workers] = time.time() - t0
        _check_sweep(client, res, kind)
    monkeypatch.delenv("LOSSBOOK_PROBE_KILL_ONCE")
    code = grid.code_state()
    again = grid.sweep("sweep_probe", "smoke", ["seed=0,1,2,3 lr=0.1"], workers=2)
    assert again.ok
    exp_id = client.get_experiment_by_name("calibration").experiment_id
    for p in again.points:  # skipped exactly when an earlier run of its params ran this code (always, on a clean checkout)
        flt = (f"params.seed = '{p.point.params['seed']}' and params.lr = '{p.point.params['lr']}' and "
               f"attributes.status = 'FINISHED' and tags.sweep_parent != '{again.parent_run_id}'")
        same = [r for r in client.search_runs([exp_id], flt) if all(r.data.tags.get(k, "") == v for k, v in code.items())]
        assert (p.status == "SKIPPED") == bool(same), (p.point.label, p.status, code)
        assert p.status != "SKIPPED" or p.run_id == same[0].info.run_id
    if code["git_dirty"] == "False":
        assert again.count("SKIPPED") == 4
    print(f"\nsweep test: 4 points + 1 killed attempt per sweep; wall {times[1]:.1f}s with 1 worker, {times[2]:.1f}s with "
          f"2 workers; retries 1 + 1 (a killed Ray worker, a killed point process); resume skipped "
          f"{again.count('SKIPPED')}/4 in {again.seconds:.1f}s (tree dirty: {code['git_dirty']})")
