"""Record a notebook's claims: the paper's statement and number, ours, the threshold, the verdict.

`record(...)` logs metric `claim/<name>` (1 reproduced, 0 not reproduced, 0.5 inconclusive), a tag
`verdict/<name>`, and rewrites the run's `claims.json` artifact with every claim recorded so far.
Thresholds are written in the notebook before the run and never moved to make a claim pass.
Under the `smoke` profile every verdict is marked not meaningful.
"""

from __future__ import annotations

import math
from typing import Any

import mlflow

from lossbook import tracking

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
DEMONSTRATED, NOT_DEMONSTRATED, EXPLORATORY = "demonstrated", "not demonstrated", "exploratory"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, DEMONSTRATED, NOT_DEMONSTRATED, EXPLORATORY)
_recorded: dict[str, list[dict[str, Any]]] = {}


def verdict_of(passed: bool | None, kind: str = "reproduction") -> str:
    """True -> reproduced, False -> not reproduced, None -> inconclusive. A demonstration (an identity or a
    construction) is demonstrated / not demonstrated instead, so the scoreboard never counts it as a
    reproduction; an exploratory row is recorded as exploratory."""
    if kind == "exploratory":
        return EXPLORATORY
    if passed is None:
        return INCONCLUSIVE
    if kind == "demonstration":
        return DEMONSTRATED if passed else NOT_DEMONSTRATED
    return REPRODUCED if passed else NOT_REPRODUCED


def decide(reproduced: bool, refuted: bool) -> bool | None:
    """A three-way verdict from two rules written before the run: True when the reproduce rule holds,
    False when the refute rule holds, None (inconclusive) when neither does, e.g. a CI that straddles 0.

    Raises ValueError when both hold: the two rules contradict each other and must be rewritten.
    """
    if reproduced and refuted:
        raise ValueError("the reproduce and refute rules both hold; they must be mutually exclusive")
    return True if reproduced else False if refuted else None


def _num(x: Any) -> Any:
    if isinstance(x, bool | int | str):
        return x
    try:
        f = float(x)
    except (TypeError, ValueError):
        return x
    return f if math.isfinite(f) else str(f)


def record(
    name: str,
    statement: str,
    paper: str,
    measured: Any,
    threshold: str,
    passed: bool | None,
    *,
    paper_value: str = "",
    details: dict[str, Any] | None = None,
    protocol: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record one claim and print a one-line verdict.

    name: short id (`[a-z0-9_]`), statement: the claim in words, paper: the citation, measured: our number
    (or a short string), threshold: the rule written before the run (e.g. "T* > 1 in >= 4 of 5 seeds"),
    passed: the rule's outcome (None = inconclusive, e.g. a CI that includes 0), paper_value: the paper's
    number for the scoreboard. `protocol` holds the replication-protocol fields written by
    `lossbook.replicate.record` (n_replicates, replicates, ci, guards, diagnosis, kind, why); they are merged
    into the entry and mirrored to the run as metrics `claim/<name>/n_replicates|ci_low|ci_high` and tags
    `kind/<name>`, `guards_failed/<name>`, `diagnosis/<name>`. Returns the entry written to `claims.json`.
    """
    if not name.replace("_", "").isalnum():
        raise ValueError(f"claim name {name!r} must be letters, digits and underscores")
    if passed is not None and not isinstance(passed, bool):
        passed = bool(passed)
    profile = tracking.active_profile()
    entry = {
        "name": name,
        "statement": statement,
        "paper": paper,
        "paper_value": paper_value,
        "measured": _num(measured),
        "threshold": threshold,
        "passed": passed,
        "verdict": verdict_of(passed, (protocol or {}).get("kind", "reproduction")),
        "profile": profile,
        "meaningful": profile != "smoke",
        "details": details or {},
        **(protocol or {}),
    }
    run = mlflow.active_run()
    key = run.info.run_id if run else ""
    entries = [e for e in _recorded.setdefault(key, []) if e["name"] != name] + [entry]
    _recorded[key] = entries
    if run is not None:
        mlflow.log_metric(f"claim/{name}", {True: 1.0, False: 0.0, None: 0.5}[passed])
        mlflow.set_tag(f"verdict/{name}", entry["verdict"] + ("" if entry["meaningful"] else " (smoke)"))
        if protocol:
            _log_protocol(name, protocol)
        mlflow.log_dict(entries, "claims.json")
    note = "" if entry["meaningful"] else "  [smoke profile: not meaningful]"
    n = f" (n = {protocol['n_replicates']})" if protocol else ""
    why = f"\n    {protocol['why']}" if protocol and protocol.get("why") else ""
    print(f"[{entry['verdict'].upper()}] {name}: measured {entry['measured']} vs threshold {threshold}{n}{note}{why}")
    return entry


def _log_protocol(name: str, p: dict[str, Any]) -> None:
    metrics = {f"claim/{name}/n_replicates": float(p["n_replicates"])}
    if p.get("ci"):
        metrics |= {f"claim/{name}/ci_low": float(p["ci"]["low"]), f"claim/{name}/ci_high": float(p["ci"]["high"])}
    tracking.log_metrics(metrics)
    failed = ", ".join(g["name"] for g in p.get("guards", []) if not g["passed"])
    mlflow.set_tags({f"kind/{name}": p.get("kind", ""), f"guards_failed/{name}": failed or "none",
                     f"diagnosis/{name}": (p.get("diagnosis") or {}).get("text", "")[:5000]})


def recorded() -> list[dict[str, Any]]:
    """Claims recorded in this process for the active run."""
    run = mlflow.active_run()
    return list(_recorded.get(run.info.run_id if run else "", []))
