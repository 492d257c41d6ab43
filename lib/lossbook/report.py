"""The book's one reader of the store: the latest finished run of every notebook, its claims, the scoreboard.

`entries(profile)` is what the scoreboard (`make report`), the book site (`lossbook.site`), `lossbook list` and
`lossbook compare` read: one `Entry` per discovered notebook with its latest FINISHED run and that run's
`claims.json`. Which runs count (`run_filter`): by default every profile but smoke (smoke verdicts are not
meaningful), so a `default` or `full` run -- or an interactive one -- is shown; `profile="smoke"` (or any
profile name) selects exactly that profile instead, for a store that holds only smoke runs.

`write` puts `runs/report.md` and `runs/report.html` (one table) there. Notebooks never run show "not run".
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossbook import params, tracking

COLUMNS = ("family", "notebook", "claim", "paper", "paper's number", "ours", "rule", "n", "CI", "failed guards", "diagnosis", "verdict", "profile", "run")
CLAIM_COLUMNS = ("claim", "paper's number", "ours", "rule", "n", "CI", "failed guards", "diagnosis", "verdict")
"""The per-claim columns (what the book site's tables show)."""
NOT_RUN = "not run"


def run_filter(profile: str | None = None) -> str:
    """The search filter of the runs that count: FINISHED and not smoke (default), or FINISHED of `profile`."""
    which = "tags.profile != 'smoke'" if not profile else f"tags.profile = '{profile}'"
    return f"attributes.status = 'FINISHED' and {which}"


def book_experiments(client: Any) -> list[str]:
    """Ids of the family experiments (one per `params.FAMILIES` entry that exists in the store)."""
    return [e.experiment_id for e in client.search_experiments() if e.name in params.FAMILIES]


def latest_runs(profile: str | None = None) -> dict[str, Any]:
    """notebook name -> its latest run that counts (`run_filter(profile)`), newest start time first."""
    client = tracking.configure()
    exps = book_experiments(client)
    if not exps:
        return {}
    runs = client.search_runs(exps, run_filter(profile), order_by=["attributes.start_time DESC"], max_results=5000)
    latest: dict[str, Any] = {}
    for r in runs:
        latest.setdefault(r.data.tags.get("notebook", ""), r)
    return latest


def run_claims(client: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's `claims.json` ([] when it recorded none or the artifact cannot be read)."""
    try:
        return json.loads(Path(client.download_artifacts(run_id, "claims.json")).read_text())
    except Exception:  # noqa: BLE001 - no claims recorded (failed early, old run)
        return []


@dataclass(frozen=True)
class Entry:
    """One notebook and the run the book shows for it (None: never run under the selection)."""

    notebook: params.Notebook
    run: Any = None
    claims: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.notebook.name

    @property
    def profile(self) -> str:
        return self.run.data.tags.get("profile", "") if self.run is not None else ""

    @property
    def verdicts(self) -> str:
        """"2 reproduced, 1 inconclusive", "no claims recorded" or "not run"."""
        if self.run is None:
            return NOT_RUN
        return tracking.verdict_counts(self.claims) if self.claims else "no claims recorded"


def entries(profile: str | None = None) -> list[Entry]:
    """Every discovered notebook (by family order, then name) with its latest counted run and claims."""
    client = tracking.configure()
    latest = latest_runs(profile)
    order = {f: i for i, f in enumerate(params.FAMILIES)}
    books = sorted(params.discover().values(), key=lambda nb: (order.get(nb.family, len(order)), nb.name))
    return [Entry(nb, latest.get(nb.name), run_claims(client, latest[nb.name].info.run_id) if nb.name in latest else [])
            for nb in books]


def protocol_cells(c: dict[str, Any]) -> dict[str, str]:
    """The replication-protocol columns of one claim: n, CI, failed guards, diagnosis ('' for legacy claims)."""
    ci = c.get("ci") or {}
    failed = [f"{g['name']}: {g['detail']}" for g in c.get("guards", []) if not g["passed"]]
    diag = c.get("diagnosis") or {}
    return {
        "n": str(c.get("n_replicates", "")),
        "CI": f"[{ci['low']:.4g}, {ci['high']:.4g}] ({100 * ci['level']:.0f}%, {ci['method']})" if ci else "",
        "failed guards": "; ".join(failed),
        "diagnosis": f"{diag['text']} (ablation: {diag['ablation']})" if diag else "",
    }


def claim_cells(c: dict[str, Any]) -> dict[str, str]:
    """One claim as the book's text cells: CLAIM_COLUMNS plus its paper and statement."""
    return {"claim": c["name"], "paper": c.get("paper", ""), "statement": c.get("statement", ""),
            "paper's number": str(c.get("paper_value", "")), "ours": str(c.get("measured", "")),
            "rule": str(c.get("threshold", "")), **protocol_cells(c), "verdict": c["verdict"]}


def rows(profile: str | None = None) -> list[dict[str, str]]:
    """The scoreboard: one row per claim of each notebook's counted run; one row per notebook without claims."""
    out: list[dict[str, str]] = []
    for e in entries(profile):
        base = {"family": e.notebook.family, "notebook": e.name}
        if e.run is None:
            out.append({**base, "claim": "", "paper": e.notebook.paper, "verdict": NOT_RUN})
            continue
        run = {"profile": e.profile, "run": e.run.info.run_id}
        if not e.claims:
            out.append({**base, "verdict": "no claims recorded", **run})
        out += [{**base, **{k: v for k, v in claim_cells(c).items() if k != "statement"}, **run} for c in e.claims]
    return out


def ui_base() -> str:
    """The MLflow UI address runs link to: `LOSSBOOK_UI_URL`, else `MLFLOW_TRACKING_URI` when it is an http(s)
    server (its UI is at the same address), else "" (a local store: no UI known, runs are named by id)."""
    explicit = os.environ.get("LOSSBOOK_UI_URL", "")
    uri = explicit or tracking.tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else ""


def run_url(run: Any, base: str | None = None) -> str:
    """The run's page in the MLflow UI's model-training view (see `experiment_url`), "" without a UI."""
    base = ui_base() if base is None else base
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning" if base else ""


def experiment_url(experiment_id: str, base: str | None = None) -> str:
    """The experiment's runs list in the MLflow UI (`tracking.experiment_page`), "" without a UI."""
    base = ui_base() if base is None else base
    return tracking.experiment_page(experiment_id, base) if base else ""


VERDICT_COLORS = {"reproduced": "#d4f4d4", "not reproduced": "#f8d0d0", "inconclusive": "#fff2c0", "demonstrated": "#e0ecf8",
                  "not demonstrated": "#f8d0d0", "exploratory": "#f0f0f0"}


def write(out_dir: Path, profile: str | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html into `out_dir`; return their paths."""
    table = rows(profile)
    out_dir.mkdir(parents=True, exist_ok=True)

    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    md = ["# lossbook scoreboard", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(cell(r.get(c, "")) for c in COLUMNS) + " |" for r in table]
    counts: dict[str, int] = {}
    for r in table:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    md += ["", "Totals: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    body = "".join(
        f"<tr style='background:{VERDICT_COLORS.get(r['verdict'], '#eee')}'>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in COLUMNS) + "</tr>"
        for r in table
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>lossbook scoreboard</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;font-size:13px}table{border-collapse:collapse}</style>"
        "<h1>lossbook scoreboard</h1><table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS) + "</tr>" + body + "</table>"
        f"<p>{html.escape(md[-1])}</p>"
    )
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    return md_path, html_path
