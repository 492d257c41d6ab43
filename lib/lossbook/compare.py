"""Compare runs of one notebook: claims and key metrics across runs, the params that differ, overlaid curves.

    cmp = compare.compare("temperature_scaling", by="seed")      # from a notebook or a script
    cmp.markdown(); cmp.figure(); cmp.write(out_dir)              # markdown table + PNG of the curves
    lossbook compare temperature_scaling --by commit --metric val/loss

Runs: the notebook's FINISHED runs (newest first, `max_runs` of them; `profile` narrows to one profile, smoke
runs are left out unless asked for), or exactly the ids in `runs`. Everything is read through `MlflowClient`
(`search_runs`, `get_run`, `get_metric_history`, the run's `claims.json` artifact), never from the store's files.

Columns are groups of runs, chosen by `by`: "run" (one per run), "seed" (runs with the same seed parameters:
`seed`, `seeds`, `*_seed`, `*_seeds`), "commit" (the git commit; `*<diff sha>` when the tree was dirty) or "param" (the
combination of the parameters that differ between the runs, seeds excepted). A claim's cell pools the
replicates of every run in the group (`replicates` of claims.json; a claim without them contributes its
measured number) and shows their mean with a percentile bootstrap CI of the mean (`lossbook.stats.mean_ci`,
Efron & Tibshirani 1993, ch. 13), n, and the verdicts the runs recorded. A metric's cell is the mean over the
group's runs of each run's latest value, with the same CI over runs when the group holds two or more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossbook import params, report, stats, tracking

BY = ("run", "seed", "commit", "param")
SKIP_METRIC_PREFIXES = ("claim/", "verdicts/")
"""Metrics that restate the claims (already in the claims table) rather than measure anything."""
MAX_CURVES = 4
"""Curves drawn when none are named: the first metrics (by name) with more than one logged step."""


def is_seed_param(key: str) -> bool:
    """`seed`, `seeds`, `world_seeds`, `data_seed`, ...: the parameters that draw replicates."""
    return key in ("seed", "seeds") or key.endswith(("_seed", "_seeds"))


def find_runs(notebook: str, runs: Sequence[str] = (), profile: str | None = None, max_runs: int = 20,
              include_smoke: bool = False) -> list[Any]:
    """The runs to compare: exactly `runs` (ids, in that order), else the notebook's FINISHED runs, newest first."""
    client = tracking.configure()
    if runs:
        return [client.get_run(r) for r in runs]
    exps = report.book_experiments(client)
    if not exps:
        return []
    filt = f"attributes.status = 'FINISHED' and tags.notebook = '{notebook}'"
    if profile:
        filt += f" and tags.profile = '{profile}'"
    elif not include_smoke:
        filt += " and tags.profile != 'smoke'"
    return list(client.search_runs(exps, filt, order_by=["attributes.start_time DESC"], max_results=max_runs))


def run_label(run: Any) -> str:
    """`<profile> <run id[:8]>`: short and unique."""
    return f"{run.data.tags.get('profile', '?')} {run.info.run_id[:8]}"


def differing_params(runs: Sequence[Any]) -> dict[str, list[str]]:
    """param -> its value in each run (in order), for the params whose values are not all equal ("" = absent)."""
    keys = sorted({k for r in runs for k in r.data.params} - set(params.RUNNER_PARAMS) - {"mlflow_run_id"})
    table = {k: [r.data.params.get(k, "") for r in runs] for k in keys}
    return {k: v for k, v in table.items() if len(set(v)) > 1}


def group_key(run: Any, by: str, differ: Sequence[str]) -> str:
    """The column a run falls in under `by` (see the module docstring)."""
    p, t = run.data.params, run.data.tags
    if by == "run":
        return run_label(run)
    if by == "seed":
        return ", ".join(f"{k}={p[k]}" for k in sorted(p) if is_seed_param(k)) or "(no seed param)"
    if by == "commit":
        dirty = "*" + t.get("git_diff_sha", "")[:6] if t.get("git_dirty") == "True" else ""
        return t.get("git_commit", "unknown")[:8] + dirty
    if by == "param":
        return ", ".join(f"{k}={p.get(k, '')}" for k in differ if not is_seed_param(k)) or "(same params)"
    raise ValueError(f"by must be one of {BY}, got {by!r}")


def _values(claim: dict[str, Any]) -> list[float]:
    """The claim's replicate values; a legacy claim without them: its measured number, if it is one."""
    if claim.get("replicates"):
        return [float(x) for x in claim["replicates"]]
    try:
        v = float(claim.get("statistic", claim.get("measured")))
    except (TypeError, ValueError):
        return []
    return [v] if math.isfinite(v) else []


def summarize(values: Sequence[float]) -> str:
    """`mean [low, high] (n = k)` with the bootstrap CI of the mean when n >= 2; `value (n = 1)`; "" when empty."""
    if not values:
        return ""
    if len(values) < 2:
        return f"{values[0]:.4g} (n = 1)"
    ci = stats.mean_ci(values)
    return f"{ci.diff:.4g} [{ci.low:.4g}, {ci.high:.4g}] (n = {ci.n})"


@dataclass
class Comparison:
    """What `compare` found; `markdown()`, `figure()` and `write()` present it."""

    notebook: str
    by: str
    runs: list[Any]
    groups: dict[str, list[str]]
    """column -> run ids in it."""
    claims: dict[str, dict[str, str]]
    """claim -> column -> `mean [low, high] (n = k); verdicts`."""
    metrics: dict[str, dict[str, str]]
    """metric -> column -> mean over the column's runs (with its CI for >= 2 runs)."""
    params_differ: dict[str, list[str]]
    """param (and the tags profile, git_commit) -> value in each run, only where they differ."""
    curves: dict[str, dict[str, tuple[list[int], list[float]]]] = field(default_factory=dict)
    """metric -> run label -> (steps, values)."""

    def markdown(self, png: str = "") -> str:
        """The comparison as markdown (a run legend, the claims and metrics tables, the params that differ)."""
        cols = list(self.groups)
        n = len(self.runs)
        out = [f"# {self.notebook}: {n} run{'s' if n != 1 else ''} compared by {self.by}", "",
               "Runs: " + "; ".join(f"`{run_label(r)}` ({r.info.run_name})" for r in self.runs), ""]

        def table(title: str, first: str, data: dict[str, dict[str, str]]) -> list[str]:
            if not data:
                return [f"## {title}", "", "(none)", ""]
            head = ["| " + " | ".join([first, *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
            body = ["| " + " | ".join([k, *(v.get(c, "").replace("|", "\\|") for c in cols)]) + " |" for k, v in data.items()]
            return [f"## {title}", "", *head, *body, ""]

        out += table("Claims (mean [95% bootstrap CI] over the pooled replicates; the runs' verdicts)", "claim", self.claims)
        out += table("Metrics (latest value; mean [95% CI] over the group's runs)", "metric", self.metrics)
        labels = [run_label(r) for r in self.runs]
        if self.params_differ:
            out += ["## What differs between the runs", "", "| param | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
            out += ["| " + " | ".join([k, *v]) + " |" for k, v in self.params_differ.items()] + [""]
        else:
            out += ["## What differs between the runs", "", "Nothing: same params, profile and commit.", ""]
        if png and self.curves:
            out += ["## Curves", "", f"![{', '.join(self.curves)}]({png})", ""]
        return "\n".join(out)

    def figure(self) -> Any:
        """One panel per curve metric, one line per run (None when no metric has a history)."""
        if not self.curves:
            return None
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.curves), figsize=(4.5 * len(self.curves), 3.6), squeeze=False)
        for ax, (metric, series) in zip(axes[0], self.curves.items()):
            for label, (x, y) in series.items():
                ax.plot(x, y, label=label)
            ax.set_xlabel("step")
            ax.set_ylabel(metric)
            ax.set_title(metric)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{self.notebook}: {len(self.runs)} runs")
        fig.tight_layout()
        return fig

    def write(self, out_dir: Path, stem: str = "") -> tuple[Path, Path | None]:
        """Write `<stem>.md` and, when there are curves, `<stem>.png` (stem: `compare-<notebook>`)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = stem or f"compare-{self.notebook}"
        png: Path | None = None
        fig = self.figure()
        if fig is not None:
            import matplotlib.pyplot as plt

            png = out_dir / f"{stem}.png"
            fig.savefig(png, dpi=100)
            plt.close(fig)
        md = out_dir / f"{stem}.md"
        md.write_text(self.markdown(png.name if png else ""))
        return md, png


def _curves(client: Any, runs: Sequence[Any], metrics: Sequence[str]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for m in metrics:
        for r in runs:
            hist = sorted(client.get_metric_history(r.info.run_id, m), key=lambda h: (h.step, h.timestamp))
            if hist:
                out.setdefault(m, {})[run_label(r)] = ([h.step for h in hist], [h.value for h in hist])
    return out


def _default_curves(client: Any, runs: Sequence[Any], limit: int = MAX_CURVES) -> list[str]:
    """The first `limit` metrics (by name) of the newest run that were logged at more than one step."""
    picked: list[str] = []
    for m in sorted(runs[0].data.metrics):
        if m.startswith(SKIP_METRIC_PREFIXES):
            continue
        if len(client.get_metric_history(runs[0].info.run_id, m)) > 1:
            picked.append(m)
        if len(picked) >= limit:
            break
    return picked


def compare(notebook: str, *, runs: Sequence[str] = (), by: str = "run", metrics: Sequence[str] | None = None,
            curves: Sequence[str] | None = None, profile: str | None = None, max_runs: int = 20,
            include_smoke: bool = False) -> Comparison:
    """Compare runs of `notebook` (see the module docstring). `metrics`: the metrics tabulated (default: every
    metric but claim/* and verdicts/*); `curves`: the metrics drawn over steps (default: up to MAX_CURVES with a
    history). Raises ValueError when no run matches or `by` is unknown."""
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")
    client = tracking.configure()
    found = find_runs(notebook, runs, profile, max_runs, include_smoke)
    if not found:
        raise ValueError(f"no FINISHED runs of {notebook!r} to compare (profile {profile or 'any but smoke'}; "
                         f"store {tracking.tracking_uri()})")
    differ = differing_params(found)
    groups: dict[str, list[str]] = {}
    for r in found:
        groups.setdefault(group_key(r, by, list(differ)), []).append(r.info.run_id)
    col_of = {rid: col for col, ids in groups.items() for rid in ids}
    pooled: dict[str, dict[str, list[float]]] = {}
    verdicts: dict[str, dict[str, list[str]]] = {}
    for r in found:
        for c in report.run_claims(client, r.info.run_id):
            col = col_of[r.info.run_id]
            pooled.setdefault(c["name"], {}).setdefault(col, []).extend(_values(c))
            verdicts.setdefault(c["name"], {}).setdefault(col, []).append(c["verdict"] + ("" if c.get("meaningful", True) else " (smoke)"))
    claim_cells = {
        name: {col: "; ".join(x for x in (summarize(pooled[name].get(col, [])), ", ".join(verdicts[name].get(col, []))) if x)
               for col in groups}
        for name in pooled
    }
    keys = metrics if metrics is not None else sorted({m for r in found for m in r.data.metrics if not m.startswith(SKIP_METRIC_PREFIXES)})
    by_id = {r.info.run_id: r for r in found}
    metric_cells: dict[str, dict[str, str]] = {}
    for m in keys:
        cells = {col: summarize([by_id[i].data.metrics[m] for i in ids if m in by_id[i].data.metrics]) for col, ids in groups.items()}
        if any(cells.values()):
            metric_cells[m] = cells
    tags = {t: [r.data.tags.get(t, "") for r in found] for t in ("profile", "git_commit")}
    params_differ = {**differ, **{f"tag {t}": v for t, v in tags.items() if len(set(v)) > 1}}
    drawn = list(curves) if curves is not None else _default_curves(client, found)
    return Comparison(notebook, by, found, groups, claim_cells, metric_cells, params_differ, _curves(client, found, drawn))

