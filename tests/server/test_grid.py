"""`lossbook.grid` without Ray or a server: grid parsing, per-point validation, GPU requests, resume matching, the
retry loop (with a scripted `run_point`), the point's tags through `LOSSBOOK_RUN_TAGS`, one real in-process point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lossbook import grid, params, tracking

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def probe_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBOOK_ROOT", str(FIXTURES))


def test_parse_grid_axes_and_bracketed_values() -> None:
    assert grid.parse_grid(["beta=0.05,0.1 seed=0,1,2"]) == [("beta", ["0.05", "0.1"]), ("seed", ["0", "1", "2"])]
    assert grid.parse_grid(["seeds=[0,1],[2, 3]", "lr=1e-3"]) == [("seeds", ["[0,1]", "[2, 3]"]), ("lr", ["1e-3"])]
    assert grid.split_top("a='x,y',b", ",") == ["a='x,y'", "b"]


@pytest.mark.parametrize("spec, words", [("beta", "key=v1,v2"), ("beta=", "key=v1,v2"), ("beta=1,,2", "key=v1,v2"),
                                         ("a=1 a=2", "twice"), ("  ", "empty")])
def test_parse_grid_rejects_malformed_axes(spec: str, words: str) -> None:
    with pytest.raises(params.ParamsError, match=words):
        grid.parse_grid([spec])


def test_plan_is_the_cartesian_product_resolved_like_run() -> None:
    points = grid.plan("sweep_probe", "smoke", grid.parse_grid(["seed=0,1 lr=0.1,0.2"]), ["steps=4"])
    assert [p.grid_tokens for p in points] == [("seed=0", "lr=0.1"), ("seed=0", "lr=0.2"), ("seed=1", "lr=0.1"), ("seed=1", "lr=0.2")]
    assert points[3].tokens == ("steps=4", "seed=1", "lr=0.2") and points[3].index == 4
    resolved = params.resolve("sweep_probe", "smoke", {"steps": 4, "seed": 1, "lr": 0.2})
    assert points[3].params == tracking.flatten({k: v for k, v in resolved.params.items() if k != "mlflow_run_id"})


@pytest.mark.parametrize("axis, fixed, words", [("lrr=0.1", [], "unknown parameter 'lrr'.*Did you mean lr"),
                                                ("seed=0,x", [], "parameter 'seed'.*int"),
                                                ("lr=0.5,2", [], "lr"),
                                                ("seed=0,1", ["seed=3"], "both a grid axis and a --set")])
def test_plan_fails_on_any_bad_point_before_anything_runs(axis: str, fixed: list[str], words: str) -> None:
    with pytest.raises(params.ParamsError, match=words):
        grid.plan("sweep_probe", "smoke", grid.parse_grid([axis]), fixed)


def test_gpu_request_follows_the_device_param() -> None:
    assert grid.gpus_for("cuda", 0) == 1 and grid.gpus_for("cuda:1", 4) == 1
    assert grid.gpus_for("auto", 2) == 1 and grid.gpus_for("auto", 0) == 0 and grid.gpus_for("cpu", 8) == 0


def test_run_tags_env_reaches_create_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracking.RUN_TAGS_ENV, json.dumps({"mlflow.parentRunId": "abc", "sweep_attempt": 2}))
    rid = tracking.create_run("sweep_probe", "calibration", "smoke", {"seed": 0})
    tags = tracking.configure().get_run(rid).data.tags
    assert tags["mlflow.parentRunId"] == "abc" and tags["sweep_attempt"] == "2"
    assert ("git_diff_sha" in tags) == (tags["git_dirty"] == "True")


def test_resume_matches_params_profile_and_code(monkeypatch: pytest.MonkeyPatch) -> None:
    client = tracking.configure()
    points = grid.plan("sweep_probe", "smoke", grid.parse_grid(["seed=10,11,12"]))
    code = grid.code_state()

    def make(point: grid.Point, status: str, **tags: str) -> str:
        rid = tracking.create_run("sweep_probe", "calibration", "smoke", dict(point.params), tags)
        client.set_terminated(rid, status)
        return rid

    done = make(points[0], "FINISHED")
    make(points[1], "FAILED")
    make(points[2], "FINISHED", git_commit="0" * 40)
    assert grid.finished_runs("sweep_probe", "smoke", points, code) == {1: done}
    assert grid.finished_runs("sweep_probe", "default", points, code) == {}
    assert grid.finished_runs("sweep_probe", "smoke", points, {**code, "git_diff_sha": "other"}) == {}


def test_failed_points_are_retried_and_every_attempt_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    def scripted(task: grid.PointTask) -> grid.Outcome:  # seed=1: killed once; seed=2: always fails
        calls.append(task.tokens)
        tags = json.loads(task.env[tracking.RUN_TAGS_ENV])
        assert tags["sweep_point"] and task.env["MLFLOW_TRACKING_URI"] == tracking.tracking_uri()
        if "seed=1" in task.tokens and tags["sweep_attempt"] == "1":
            return grid.Outcome(-9, 0.1)
        return grid.Outcome(1, 0.1, output="error: boom") if "seed=2" in task.tokens else grid.Outcome(0, 0.1)

    monkeypatch.setattr(grid, "run_point", scripted)
    res = grid.sweep("sweep_probe", "smoke", ["seed=20,1,2"], workers=0, retries=2, resume=False, quiet=True)
    assert [p.status for p in res.points] == ["FINISHED", "FINISHED", "FAILED"] and not res.ok
    assert [[a.status for a in p.attempts] for p in res.points] == [["FINISHED"], ["KILLED", "FINISHED"], ["FAILED"] * 3]
    assert res.points[2].attempts[0].error == "error: boom" and res.retries == 3 and len(calls) == 6
    client = tracking.configure()
    parent = client.get_run(res.parent_run_id)
    assert parent.info.status == "FAILED" and parent.data.metrics["points_failed"] == 1 and parent.data.metrics["attempts"] == 6
    rows = json.loads(Path(client.download_artifacts(res.parent_run_id, "sweep/points.json")).read_text())
    assert [len(r["attempts"]) for r in rows] == [1, 2, 3]


@pytest.mark.slow
def test_one_point_in_process_is_a_plain_run_under_the_parent() -> None:
    res = grid.sweep("sweep_probe", "smoke", ["seed=30"], workers=0, quiet=True)
    assert res.ok and res.count("FINISHED") == 1
    run = tracking.configure().get_run(res.points[0].run_id)
    assert run.data.tags["mlflow.parentRunId"] == res.parent_run_id and run.data.tags["launched_by"] == "lossbook sweep"
    assert run.data.params["seed"] == "30" and run.data.tags["verdicts"].startswith("1 reproduced")
