"""lossbook.replicate: the CI rules against scipy and closed forms, the guards, the verdict logic, claims.json."""

from __future__ import annotations

import json
import math

import mlflow
import numpy as np
import pytest
from scipy import stats as sps

from lossbook import claims, replicate, tracking
from lossbook.replicate import Diagnosis, Guard


@pytest.fixture
def smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "active_profile", lambda: "smoke")


def test_mean_rule_is_the_t_interval() -> None:
    v = np.array([0.8, 1.3, 0.9, 1.1])
    o = replicate.mean_ci_rule(v, 0.0)
    lo, hi = sps.t.interval(0.95, 3, loc=v.mean(), scale=sps.sem(v))
    assert o.ci.low == pytest.approx(lo) and o.ci.high == pytest.approx(hi) and o.ci.method == "t"
    assert o.passed is True and o.n == 4 and o.statistic == pytest.approx(1.025)
    assert replicate.mean_ci_rule(-v, 0.0).passed is False
    assert replicate.mean_ci_rule([-0.5, 0.4, 0.3], 0.0).passed is None  # straddles 0: undecided
    assert replicate.mean_ci_rule(v, 2.0, direction="below").passed is True


def test_mean_rule_coverage_at_three_replicates() -> None:
    rng = np.random.default_rng(0)
    hits = sum(replicate.mean_ci_rule(rng.normal(0.3, 1.0, 3), 0.3).passed is None for _ in range(2000))
    assert 0.93 <= hits / 2000 <= 0.97  # the true mean lies inside the CI ~95% of the time


def test_within_and_all_of() -> None:
    v = [-0.51, -0.49, -0.50, -0.52, -0.48]
    assert replicate.mean_within_rule(v, -0.6, -0.4).passed is True
    assert replicate.mean_within_rule(v, -0.3, 0.0).passed is False
    assert replicate.mean_within_rule([-0.45, -0.30, -0.62], -0.6, -0.4).passed is None  # CI overlaps an edge
    yes, no, maybe = (replicate.mean_ci_rule(x) for x in ([1.0, 1.1, 0.9], [-1.0, -1.1, -0.9], [-1.0, 1.1, 0.2]))
    assert replicate.all_of(yes, yes).passed is True and replicate.all_of(yes, no).passed is False
    assert replicate.all_of(yes, maybe).passed is None and " AND " in replicate.all_of(yes, maybe).rule
    with pytest.raises(ValueError, match="different replicate counts"):
        replicate.all_of(yes, replicate.mean_ci_rule([1.0, 2.0]))


def test_one_replicate_only_under_smoke(smoke: None) -> None:
    assert replicate.mean_ci_rule([0.7], 0.0).passed is None
    assert replicate.k_of_n_rule([True], 1).passed is True


def test_one_replicate_is_refused_otherwise() -> None:
    for rule in (lambda: replicate.mean_ci_rule([0.7]), lambda: replicate.median_ci_rule([0.7]), lambda: replicate.k_of_n_rule([True], 1)):
        with pytest.raises(ValueError, match="n >= 2"):
            rule()
    with pytest.raises(ValueError, match="finite"):
        replicate.mean_ci_rule([1.0, float("nan")])


def test_median_rule_order_statistics() -> None:
    o = replicate.median_ci_rule([3.0, 1.0, 2.0], 0.5)
    assert (o.ci.low, o.ci.high, o.statistic) == (1.0, 3.0, 2.0)
    assert o.ci.level == pytest.approx(0.75) and o.passed is True  # [min, max] covers the median w.p. 1 - 2/8
    x = np.arange(10.0)
    o = replicate.median_ci_rule(x, 0.5)  # k = 2: coverage 1 - 2·P(Bin(10, ½) <= 1) = 1 - 22/1024
    assert (o.ci.low, o.ci.high) == (1.0, 8.0) and o.ci.level == pytest.approx(1 - 22 / 1024) and o.passed is True
    assert replicate.median_ci_rule(x - 4.5, 0.0).passed is None


def test_k_of_n_rule() -> None:
    o = replicate.k_of_n_rule([True, True, False, True, True], 4)
    assert o.passed is True and o.statistic == 0.8 and o.n == 5
    assert o.ci.low == pytest.approx(sps.beta.ppf(0.025, 4, 2)) and o.ci.high == pytest.approx(sps.beta.ppf(0.975, 5, 1))
    assert replicate.k_of_n_rule([True, False, False], 2).passed is False
    with pytest.raises(ValueError, match="k must be"):
        replicate.k_of_n_rule([True, False], 3)


def test_guards() -> None:
    still_rising = [0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9]
    g = replicate.converged(still_rising)
    assert not g.passed and "best epoch 10 of 10" in g.detail and "20 epochs" in g.fix
    assert replicate.converged([0.1, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]).passed
    assert replicate.converged([3.0, 1.0, 2.0, 2.0, 2.0], maximize=False).passed
    assert not replicate.plateaued(still_rising).passed
    assert replicate.plateaued([0.5] * 8 + [0.502, 0.503]).passed
    assert replicate.progress_reached(0.49, 0.5).passed and not replicate.progress_reached(0.58, 0.5).passed
    assert not replicate.progress_reached(0.7, 0.9, lower_is_better=False, what="acc").passed
    assert not replicate.not_at_boundary(0.05, 0.05, 10.0, what="T").passed and replicate.not_at_boundary(2.0, 0.05, 10.0, what="T").passed
    assert not replicate.bracketed(1e-3, [1e-5, 1e-4, 1e-3], what="lr").passed and replicate.bracketed(1e-4, [1e-5, 1e-4, 1e-3], what="lr").passed
    # budget_stable: absolute and relative tolerance, either direction of the change, the boundary itself included
    assert replicate.budget_stable(1.10, 1.08, tol=0.05, what="exponent").passed
    assert not replicate.budget_stable(1.44, 1.68, tol=0.05, what="exponent").passed
    assert not replicate.budget_stable(1.44, 1.20, tol=0.05, what="exponent").passed
    assert replicate.budget_stable(2.0, 2.09, tol=0.05, what="E", relative=True).passed
    assert not replicate.budget_stable(-2.0, -2.2, tol=0.05, what="E", relative=True).passed
    assert replicate.budget_stable(0.5, 0.75, tol=0.25, what="x").passed
    g = replicate.budget_stable(1.44, 1.68, tol=0.05, what="exponent")
    assert "+0.24" in g.detail and "longer budget" in g.fix


def test_verdict_logic() -> None:
    yes = replicate.mean_ci_rule([1.0, 1.1, 0.9])
    no = replicate.mean_ci_rule([-1.0, -1.1, -0.9])
    bad = Guard("converged", False, "best epoch 30 of 30", "60 epochs")
    assert replicate.verdict_of(yes, [Guard("converged", True, "")], None) == (True, "")
    passed, why = replicate.verdict_of(yes, [bad], None)
    assert passed is None and "converged" in why and "60 epochs" in why
    assert replicate.verdict_of(no, [], None)[0] is None  # refuted without a diagnosis: inconclusive
    assert replicate.verdict_of(no, [], Diagnosis("budget-limited", "budget curve"))[0] is False


def test_record_writes_the_protocol_fields() -> None:
    with mlflow.start_run(tags={"profile": "default"}) as run:
        vals = [0.02, 0.03, 0.025]
        o = replicate.mean_ci_rule(vals, 0.0)
        e = replicate.record("gain", "A beats B", "Someone 2024", values=vals, outcome=o, guards=[Guard("converged", True, "ok")],
                             paper_value="+1.0")
        n = replicate.record("loss", "C beats D", "Someone 2024", values=[-1.0, -1.2, -0.9], outcome=replicate.mean_ci_rule([-1.0, -1.2, -0.9]))
        x = replicate.record("explore", "E", "", values=vals, outcome=o, kind="exploratory")
        assert e["verdict"] == "reproduced" and e["n_replicates"] == 3 and e["replicates"] == vals and e["ci"]["method"] == "t"
        assert n["verdict"] == "inconclusive" and "no diagnosis" in n["why"] and x["verdict"] == "exploratory"
        d = replicate.record("identity", "a = a", "", values=[True, True, True], outcome=replicate.k_of_n_rule([True] * 3, 3), kind="demonstration")
        assert d["verdict"] == "demonstrated" and d["passed"] is True
        stored = json.loads(open(mlflow.get_artifact_uri("claims.json").removeprefix("file://")).read())
        assert [c["name"] for c in stored] == ["gain", "loss", "explore", "identity"] and stored[0]["guards"][0]["name"] == "converged"
        with pytest.raises(ValueError, match="replicate values"):
            replicate.record("bad", "", "", values=[1.0, 2.0], outcome=o)
    r = mlflow.get_run(run.info.run_id)
    assert r.data.metrics["claim/gain/n_replicates"] == 3 and math.isclose(r.data.metrics["claim/gain/ci_low"], o.ci.low)
    assert r.data.tags["guards_failed/gain"] == "none" and r.data.tags["kind/explore"] == "exploratory"
    assert claims.recorded() == []  # the run has ended
