"""The replication protocol: every claim is judged on independent replicates, behind guards, with a diagnosis.

A notebook records a claim in three steps, all written before the run:

1. **Replicates.** Measure the claim's statistic once per independent replicate (a fresh data draw, world,
   teacher or initialisation: whatever the paper's variance is about) -> ``values``.
2. **A rule over replicates** -> an ``Outcome`` (``passed`` True / False / None):
   ``mean_ci_rule`` (Student-t CI of the mean, e.g. of paired differences, against a threshold),
   ``mean_within_rule`` (the same CI inside an interval: equivalence), ``median_ci_rule``
   (distribution-free order-statistic CI of the median) and ``k_of_n_rule`` ("≥ k of n replicates");
   ``all_of`` combines them. Each refuses n < 2 unless the profile is ``smoke``.
3. **Guards** (``converged``, ``plateaued``, ``budget_stable``, ``progress_reached``, ``not_at_boundary``, ``bracketed``), checked
   before the rule is read: a failed guard makes the verdict *inconclusive*, names the guard and says what
   would fix it. A *not reproduced* verdict needs a ``Diagnosis`` backed by an ablation in the notebook;
   without one ``record`` writes it down as inconclusive.

Which curve a guard reads. ``converged`` / ``plateaued`` belong on a *held-out* curve: a model that memorises its
labels lowers its training loss forever (the guard can never pass) while its held-out loss has turned. Under a
decaying learning-rate schedule the last stretch of any curve also falls because the lr anneals, not because the
run is short; there, and wherever the claim reads a fitted quantity (an exponent, an optimum) rather than the curve,
``budget_stable`` is the direct test: the claim's own statistic, re-measured at a longer budget by an ablation in
the notebook, moved by less than a tolerance stated before the run.

``record`` writes all of it to ``claims.json`` (``n_replicates``, ``replicates``, ``ci``, ``guards``,
``diagnosis``, ``kind``) and the run's tags/metrics through ``lossbook.claims``. ``kind="demonstration"``
marks a row that shows an identity or a construction (it can only fail through a bug) rather than
reproducing a finding; ``kind="exploratory"`` a row recorded without a verdict.

Why a t-interval for the mean: replicates are few (3-10) and independent, and a percentile bootstrap of a
mean under-covers at that size (with n = 3 its 95% interval is "all three on one side"). The t-interval is
exact for normal replicate statistics and conservative enough otherwise; the order-statistic interval of
the median makes no distributional assumption at all (its attainable level is recorded: with n = 3 the
widest interval [min, max] covers the median with probability 75%).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

from lossbook import claims, tracking

Direction = Literal["above", "below"]
KINDS = ("reproduction", "demonstration", "exploratory")


@dataclass(frozen=True)
class CI:
    """A confidence interval: ``[low, high]`` at ``level`` by ``method``."""

    low: float
    high: float
    level: float
    method: str


@dataclass(frozen=True)
class Outcome:
    """A rule's result over replicates: the statistic, its CI (if the rule is statistical) and ``passed``
    (True: reproduced, False: refuted, None: the evidence cannot decide), with the rule in words."""

    passed: bool | None
    statistic: float
    n: int
    rule: str
    ci: CI | None = None


@dataclass(frozen=True)
class Guard:
    """A validity check read before the rule: ``passed``, what was seen (``detail``), what would fix it."""

    name: str
    passed: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """Why a claim did not reproduce, and the ablation in the notebook that supports it."""

    text: str
    ablation: str


def _values(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"{what}: replicate values must be finite and non-empty, got {v.tolist()}")
    if v.size < 2 and tracking.active_profile() != "smoke":
        raise ValueError(
            f"{what}: a rule over replicates needs n >= 2 (got {v.size}); only the smoke profile may use 1 replicate."
        )
    return v


def _decide(low: float, high: float, threshold: float, direction: Direction) -> bool | None:
    if direction == "above":
        return True if low > threshold else False if high < threshold else None
    return True if high < threshold else False if low > threshold else None


def mean_ci_rule(
    values: Sequence[float] | np.ndarray, threshold: float = 0.0, direction: Direction = "above", level: float = 0.95
) -> Outcome:
    """Student-t CI of the mean over replicates, ``mean ± t_{n−1, (1+level)/2} · s/√n``, against ``threshold``.

    ``direction="above"``: reproduced when the whole CI is above the threshold, refuted when the whole CI is
    below it, inconclusive when it straddles (and the reverse for ``"below"``). Pass paired differences
    (``a − b`` per replicate) to test "a beats b". With n = 1 (smoke only) the CI is the point and the
    outcome is None.
    """
    v = _values(values, "mean_ci_rule")
    m = float(v.mean())
    if v.size < 2:
        return Outcome(None, m, 1, f"t-CI of the mean {direction} {threshold:g} (n = 1: undecided)", CI(m, m, level, "t"))
    half = float(sps.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    lo, hi = m - half, m + half
    rule = f"{100 * level:.0f}% t-CI of the mean over {v.size} replicates {direction} {threshold:g}"
    return Outcome(_decide(lo, hi, threshold, direction), m, int(v.size), rule, CI(lo, hi, level, "t"))


def median_ci_rule(
    values: Sequence[float] | np.ndarray, threshold: float = 0.0, direction: Direction = "above", level: float = 0.95
) -> Outcome:
    """Distribution-free CI of the median: order statistics ``[x_(k), x_(n+1−k)]`` with the largest k whose
    coverage ``1 − 2·P(Binom(n, ½) < k)`` is ≥ ``level`` (or ``[min, max]`` when n is too small, with its
    actual coverage recorded as the level), against ``threshold`` as in ``mean_ci_rule``."""
    v = np.sort(_values(values, "median_ci_rule"))
    n, med = v.size, float(np.median(v))
    k, cover = 1, 1 - 2 * sps.binom.cdf(0, n, 0.5)
    for j in range(2, n // 2 + 1):
        c = 1 - 2 * sps.binom.cdf(j - 1, n, 0.5)
        if c < level:
            break
        k, cover = j, c
    lo, hi = float(v[k - 1]), float(v[n - k])
    got = float(cover) if n > 1 else 0.0
    rule = f"order-statistic CI of the median over {n} replicates (coverage {100 * got:.1f}%) {direction} {threshold:g}"
    passed = _decide(lo, hi, threshold, direction) if n > 1 else None
    return Outcome(passed, med, int(n), rule, CI(lo, hi, got, "order statistics"))


def k_of_n_rule(flags: Sequence[bool] | np.ndarray, k: int) -> Outcome:
    """"≥ k of n replicates": reproduced when at least ``k`` flags hold, refuted otherwise. The statistic is
    the share; the CI is its Clopper-Pearson 95% interval (so a reader sees how little n replicates say)."""
    f = np.asarray(flags, dtype=bool).ravel()
    if f.size < 2 and tracking.active_profile() != "smoke":
        raise ValueError(f"k_of_n_rule: needs n >= 2 replicates (got {f.size}); only the smoke profile may use 1.")
    if not 1 <= k <= max(f.size, 1):
        raise ValueError(f"k_of_n_rule: k must be in [1, n = {f.size}], got {k}")
    hits = int(f.sum())
    ci = sps.binomtest(hits, f.size).proportion_ci(0.95, method="exact")
    return Outcome(hits >= k, hits / f.size, int(f.size), f">= {k} of {f.size} replicates", CI(float(ci.low), float(ci.high), 0.95, "Clopper-Pearson"))


def mean_within_rule(values: Sequence[float] | np.ndarray, low: float, high: float, level: float = 0.95) -> Outcome:
    """Equivalence: the Student-t CI of the mean over replicates lies inside ``[low, high]`` (reproduced),
    entirely outside it (refuted), or overlaps an edge (inconclusive). E.g. "the exponent is −1/2 ± 0.1"."""
    o = mean_ci_rule(values, low, "above", level)
    lo, hi = o.ci.low, o.ci.high
    passed = None if o.n < 2 else True if (low <= lo and hi <= high) else False if (hi < low or lo > high) else None
    rule = f"{100 * level:.0f}% t-CI of the mean over {o.n} replicates inside [{low:g}, {high:g}]"
    return Outcome(passed, o.statistic, o.n, rule, o.ci)


def all_of(*outcomes: Outcome) -> Outcome:
    """A compound rule: reproduced when every part is, refuted when any part is refuted, else inconclusive.
    The statistic and CI reported are the first part's; every part must have seen the same n."""
    if len({o.n for o in outcomes}) != 1:
        raise ValueError(f"all_of: the parts saw different replicate counts {[o.n for o in outcomes]}")
    ps = [o.passed for o in outcomes]
    passed = False if False in ps else True if all(p is True for p in ps) else None
    return Outcome(passed, outcomes[0].statistic, outcomes[0].n, " AND ".join(o.rule for o in outcomes), outcomes[0].ci)


# --------------------------------------------------------------------------------------------------- guards
def converged(curve: Sequence[float], *, maximize: bool = True, last_frac: float = 0.1, name: str = "converged") -> Guard:
    """The best epoch (arg-max, or arg-min with ``maximize=False``; first on ties) is not in the last
    ``last_frac`` of the budget. A best epoch at the very end means the run was still improving."""
    c = np.asarray(curve, dtype=float)
    n = c.size
    best = int(np.argmax(c) if maximize else np.argmin(c)) + 1
    cut = n - max(1, math.ceil(last_frac * n))
    ok = best <= cut
    detail = f"best epoch {best} of {n} (guard: <= {cut})"
    return Guard(name, ok, detail, "" if ok else f"a longer budget (e.g. {2 * n} epochs) so the best epoch falls before the last {100 * last_frac:.0f}%")


def plateaued(curve: Sequence[float], *, last_frac: float = 0.25, max_gain: float = 0.005, name: str = "plateaued") -> Guard:
    """The last ``last_frac`` of the curve (a quantity to maximise, e.g. accuracy) gained less than
    ``max_gain`` (absolute, in the curve's units: 0.005 = half a point of accuracy)."""
    c = np.asarray(curve, dtype=float)
    i = max(0, c.size - 1 - max(1, math.ceil(last_frac * c.size)))
    gain = float(c[-1] - c[i])
    ok = gain < max_gain
    return Guard(name, ok, f"gain over the last {100 * last_frac:.0f}%: {gain:+.4f} (guard: < {max_gain:g})",
                 "" if ok else "a longer budget: the curve is still rising")


def progress_reached(
    value: float, target: float, *, lower_is_better: bool = True, what: str = "loss", name: str = "progress", fix: str = ""
) -> Guard:
    """The run reached the progress the effect needs (e.g. a target loss), or a measurement covers what the
    rule needs (e.g. the decades of n a slope is read over), stated before the run. `fix` says what would
    satisfy it (default: "train until <what> <op> <target>")."""
    ok = value <= target if lower_is_better else value >= target
    op = "<=" if lower_is_better else ">="
    return Guard(name, bool(ok), f"{what} {value:.4g} (target {op} {target:g})", "" if ok else (fix or f"train until {what} {op} {target:g}"))


def not_at_boundary(value: float, low: float, high: float, *, what: str, rtol: float = 1e-3, name: str = "not_at_boundary") -> Guard:
    """A fitted or searched value lies strictly inside its allowed range ``[low, high]`` (relative margin
    ``rtol`` of the range): a value on the boundary was not found, it was clipped."""
    margin = rtol * (high - low)
    ok = low + margin < value < high - margin
    return Guard(name, bool(ok), f"{what} = {value:.4g} in [{low:g}, {high:g}]", "" if ok else f"widen the range of {what}")


def bracketed(x_best: float, grid: Sequence[float], *, what: str, name: str = "bracketed") -> Guard:
    """An optimum chosen on a grid is not at either end of it (the minimum is bracketed)."""
    g = sorted(float(x) for x in grid)
    ok = g[0] < x_best < g[-1]
    return Guard(name, ok, f"{what} optimum {x_best:g} on grid [{g[0]:g} … {g[-1]:g}]", "" if ok else f"extend the {what} grid past {x_best:g}")


def budget_stable(value: float, longer: float, *, tol: float, what: str, relative: bool = False,
                  name: str = "budget_stable") -> Guard:
    """The claim's statistic at the run's budget (``value``) and re-measured at a longer one (``longer``, from an
    ablation in the notebook, e.g. twice the steps) differ by at most ``tol``: |longer − value| ≤ tol, or
    ≤ tol·|value| with ``relative=True``. What the claim reads has converged, whatever the curve still does."""
    delta = float(longer) - float(value)
    bound = tol * abs(float(value)) if relative else tol
    ok = bool(abs(delta) <= bound)
    unit = f"{100 * tol:g}% of {value:.4g}" if relative else f"{tol:g}"
    return Guard(name, ok, f"{what} {value:.4g} -> {longer:.4g} at the longer budget (change {delta:+.4g}; guard: |change| <= {unit})",
                 "" if ok else f"a longer budget: {what} still moves with the budget")


# --------------------------------------------------------------------------------------------------- record
def verdict_of(outcome: Outcome, guards: Sequence[Guard], diagnosis: Diagnosis | None) -> tuple[bool | None, str]:
    """(passed, why): guards first (any failure -> None, naming it and its fix), then the rule; a refuted
    rule without a diagnosis is inconclusive."""
    failed = [g for g in guards if not g.passed]
    if failed:
        return None, "guard failed: " + "; ".join(f"{g.name} ({g.detail}; fix: {g.fix})" for g in failed)
    if outcome.passed is False and diagnosis is None:
        return None, "not reproduced by the rule, but no diagnosis (ablation) supports it"
    return outcome.passed, ""


def record(
    name: str,
    statement: str,
    paper: str,
    *,
    values: Sequence[float] | np.ndarray,
    outcome: Outcome,
    guards: Sequence[Guard] = (),
    diagnosis: Diagnosis | None = None,
    paper_value: str = "",
    measured: str | float | None = None,
    threshold: str | None = None,
    kind: str = "reproduction",
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record a claim through the protocol and return its ``claims.json`` entry.

    ``values``: the per-replicate statistic (what the rule saw); ``outcome``: the rule's result on them;
    ``threshold``: the rule in words (default: ``outcome.rule``); ``measured``: our number in words
    (default: the statistic and its CI). An exploratory row is recorded with ``passed=None`` whatever
    the rule says.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    v = np.asarray(values, dtype=float).ravel()
    if v.size != outcome.n:
        raise ValueError(f"{name}: {v.size} replicate values but the rule saw n = {outcome.n}")
    passed, why = verdict_of(outcome, guards, diagnosis)
    if kind == "exploratory":
        passed, why = None, "exploratory: recorded, not judged"
    ci = asdict(outcome.ci) if outcome.ci else None
    if measured is None:
        measured = f"{outcome.statistic:.4g}" + (f" [{outcome.ci.low:.4g}, {outcome.ci.high:.4g}]" if outcome.ci else "") + f" (n = {outcome.n})"
    extra = {
        "kind": kind,
        "n_replicates": int(outcome.n),
        "replicates": [float(x) for x in v],
        "statistic": float(outcome.statistic),
        "rule_passed": outcome.passed,
        "ci": ci,
        "guards": [asdict(g) for g in guards],
        "diagnosis": asdict(diagnosis) if diagnosis else None,
        "why": why,
    }
    return claims.record(name, statement, paper, measured, threshold or outcome.rule, passed,
                         paper_value=paper_value, details=details, protocol=extra)
