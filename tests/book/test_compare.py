"""lossbook.compare: run selection, grouping by run/seed/commit/param, pooled replicates with the book's bootstrap,
metrics over runs, the params that differ, curves from the metric history, the markdown/PNG and the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from lossbook import cli, compare, tracking

NB = "compare_fixture"
"""The runs' notebook: a name of its own, so the session store's other runs never mix in (family scaling)."""
BASE = {"seed": 0, "steps": 3, "lr": 0.1, "fail_at": -1, "mode": "ok", "seeds": [0, 1], "use_bias": True}


def make_run(profile: str, overrides: dict, replicates: list[float], acc: float, loss: list[float], status: str = "FINISHED",
             commit: str = "1111111111") -> str:
    """A run of NB as the runner makes it (params, tags; the git commit given), with one replicated claim, a legacy
    claim, a summary metric `acc` and a per-step `loss`."""
    rid = tracking.create_run(NB, "scaling", profile, {**BASE, **overrides}, {"git_commit": commit, "git_dirty": "False"})
    client = tracking.configure()
    claims = [{"name": "rep", "verdict": "reproduced", "measured": "x", "replicates": replicates, "meaningful": profile != "smoke"},
              {"name": "legacy", "verdict": "inconclusive", "measured": acc, "meaningful": True}]
    client.log_text(rid, json.dumps(claims), "claims.json")
    client.log_metric(rid, "acc", acc)
    client.log_metric(rid, "claim/rep", 1.0)
    for step, v in enumerate(loss):
        client.log_metric(rid, "loss", v, step=step)
    client.set_terminated(rid, status)
    time.sleep(0.02)  # distinct start times: the newest-first order is well defined
    return rid


@pytest.fixture(scope="module")
def runs(session_store: Path) -> dict[str, str]:
    """The runs, in the session's store (a store of its own would cost its creation, many seconds on a busy machine)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{session_store / 'mlflow.db'}")
        mp.setattr(tracking, "environment", lambda with_torch=False: ({}, {}))  # no pip freeze or git per run: fast
        ids = {"a": make_run("default", {}, [1, 2, 3], 0.5, [3, 2, 1]),
               "b": make_run("default", {"seed": 1}, [2, 3, 4], 0.7, [4, 2, 0.5]),
               "c": make_run("default", {"steps": 5}, [5, 6], 0.9, [5, 4, 3, 2, 1], commit="2222222222"),
               "smoke": make_run("smoke", {}, [9], 0.1, [1, 1]),
               "failed": make_run("default", {}, [9], 0.1, [1, 1], status="FAILED")}
    return ids


@pytest.fixture
def book_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A book holding NB (a copy of the fixture notebook), for the CLI's notebook check."""
    src = Path(__file__).parents[1] / "fixtures" / "notebooks" / "calibration" / "trivial.py"
    (tmp_path / "notebooks" / "scaling").mkdir(parents=True)
    (tmp_path / "notebooks" / "scaling" / f"{NB}.py").write_text(src.read_text())
    monkeypatch.setenv("LOSSBOOK_ROOT", str(tmp_path))
    return tmp_path


def bootstrap_mean_ci(values: list[float], n_boot: int = 10000, alpha: float = 0.05) -> tuple[float, float, float]:
    """The documented procedure written out: rng(0).integers(0, n, (n_boot, n)), percentile interval of the means."""
    v = np.asarray(values, float)
    means = v[np.random.default_rng(0).integers(0, v.size, (n_boot, v.size))].mean(1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(v.mean()), float(lo), float(hi)


def test_default_selection_is_finished_nonsmoke_runs_newest_first(runs: dict[str, str]) -> None:
    cmp = compare.compare(NB)
    assert [r.info.run_id for r in cmp.runs] == [runs["c"], runs["b"], runs["a"]]
    with_smoke = compare.compare(NB, include_smoke=True)
    assert runs["smoke"] in [r.info.run_id for r in with_smoke.runs] and runs["failed"] not in [r.info.run_id for r in with_smoke.runs]
    assert [r.info.run_id for r in compare.compare(NB, profile="smoke").runs] == [runs["smoke"]]
    assert [r.info.run_id for r in compare.compare(NB, runs=[runs["a"], runs["failed"]]).runs] == [runs["a"], runs["failed"]]


def test_by_param_pools_replicates_and_reports_the_bootstrap_ci(runs: dict[str, str]) -> None:
    cmp = compare.compare(NB, by="param")
    assert cmp.groups == {"steps=5": [runs["c"]], "steps=3": [runs["b"], runs["a"]]}  # seed differs too, but is not a param group
    m, lo, hi = bootstrap_mean_ci([2, 3, 4, 1, 2, 3])
    assert cmp.claims["rep"]["steps=3"] == f"{m:.4g} [{lo:.4g}, {hi:.4g}] (n = 6); reproduced, reproduced"
    assert lo < m < hi
    m5, lo5, hi5 = bootstrap_mean_ci([5, 6])
    assert cmp.claims["rep"]["steps=5"].startswith(f"{m5:.4g} [{lo5:.4g}, {hi5:.4g}] (n = 2)")
    assert cmp.claims["legacy"]["steps=5"] == "0.9 (n = 1); inconclusive"  # no replicates: its measured number
    mm, mlo, mhi = bootstrap_mean_ci([0.7, 0.5])
    assert cmp.metrics["acc"]["steps=3"] == f"{mm:.4g} [{mlo:.4g}, {mhi:.4g}] (n = 2)"  # a metric: mean over the runs
    assert "claim/rep" not in cmp.metrics and "loss" in cmp.metrics


def test_by_seed_commit_and_run(runs: dict[str, str]) -> None:
    by_seed = compare.compare(NB, by="seed")
    assert by_seed.groups == {"seed=0, seeds=[0, 1]": [runs["c"], runs["a"]], "seed=1, seeds=[0, 1]": [runs["b"]]}
    assert compare.compare(NB, by="commit").groups == {"22222222": [runs["c"]], "11111111": [runs["b"], runs["a"]]}
    assert len(compare.compare(NB, by="run").groups) == 3
    with pytest.raises(ValueError, match="by must be one of"):
        compare.compare(NB, by="colour")
    with pytest.raises(ValueError, match="no FINISHED runs"):
        compare.compare("no_such_notebook")


def test_params_that_differ_in_run_order(runs: dict[str, str]) -> None:
    cmp = compare.compare(NB)
    assert cmp.params_differ == {"seed": ["0", "1", "0"], "steps": ["5", "3", "3"],
                                 "tag git_commit": ["2222222222", "1111111111", "1111111111"]}
    assert compare.compare(NB, runs=[runs["a"], runs["smoke"]]).params_differ == {"tag profile": ["default", "smoke"]}


def test_curves_come_from_the_metric_history_and_are_written(runs: dict[str, str], tmp_path: Path) -> None:
    cmp = compare.compare(NB)
    assert list(cmp.curves) == ["loss"]  # `acc` has one value: a table entry, not a curve
    fig = cmp.figure()
    lines = fig.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[5, 4, 3, 2, 1], [4, 2, 0.5], [3, 2, 1]]
    assert fig.axes[0].get_xlabel() == "step" and fig.axes[0].get_ylabel() == "loss"
    md, png = cmp.write(tmp_path)
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "| claim | default " in text and "| seed | 0 | 1 | 0 |" in text and f"]({png.name})" in text
    assert compare.compare(NB, curves=[]).figure() is None


def test_cli_compare(runs: dict[str, str], book_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", NB, "--by", "param", "--out", str(tmp_path)]) == 0
    assert "steps=3" in capsys.readouterr().out
    assert (tmp_path / f"compare-{NB}.md").exists() and (tmp_path / f"compare-{NB}.png").exists()
    assert cli.main(["compare", NB, "--runs", runs["a"], "--metric", "acc", "--out", str(tmp_path)]) == 0
    assert "| acc | 0.5 (n = 1) |" in (tmp_path / f"compare-{NB}.md").read_text()
    assert cli.main(["compare", "no_such_notebook"]) == 2
