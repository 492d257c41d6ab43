"""The scoreboard: one row per claim of the latest finished non-smoke run of every notebook.

Writes `runs/report.md` and `runs/report.html`. Notebooks never run (at `default` or `full`) show as
"not run". Reads `claims.json` from each chosen run's artifacts.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from lossbook import params, tracking

COLUMNS = ("family", "notebook", "claim", "paper", "paper's number", "ours", "rule", "n", "CI", "failed guards", "diagnosis", "verdict", "profile", "run")


def latest_runs() -> dict[str, Any]:
    """notebook name -> latest FINISHED run whose profile is not smoke/interactive-smoke."""
    client = tracking.configure()
    exps = [e.experiment_id for e in client.search_experiments() if e.name in params.FAMILIES]
    if not exps:
        return {}
    runs = client.search_runs(
        exps, "attributes.status = 'FINISHED' and tags.profile != 'smoke'", order_by=["attributes.start_time DESC"], max_results=5000
    )
    latest: dict[str, Any] = {}
    for r in runs:
        latest.setdefault(r.data.tags.get("notebook", ""), r)
    return latest


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


def rows() -> list[dict[str, str]]:
    client = tracking.configure()
    latest = latest_runs()
    out: list[dict[str, str]] = []
    for name, nb in sorted(params.discover().items(), key=lambda kv: (kv[1].family, kv[0])):
        r = latest.get(name)
        base = {"family": nb.family, "notebook": name}
        if r is None:
            out.append({**base, "claim": "", "paper": nb.paper, "verdict": "not run"})
            continue
        try:
            claims = json.loads(Path(client.download_artifacts(r.info.run_id, "claims.json")).read_text())
        except Exception:  # noqa: BLE001
            claims = []
        if not claims:
            out.append({**base, "verdict": "no claims recorded", "profile": r.data.tags.get("profile", ""), "run": r.info.run_id})
        for c in claims:
            out.append({
                **base, "claim": c["name"], "paper": c.get("paper", ""), "paper's number": c.get("paper_value", ""),
                "ours": str(c.get("measured", "")), "rule": c.get("threshold", ""), **protocol_cells(c), "verdict": c["verdict"],
                "profile": r.data.tags.get("profile", ""), "run": r.info.run_id,
            })
    return out


def write(out_dir: Path) -> tuple[Path, Path]:
    """Write report.md and report.html into `out_dir`; return their paths."""
    table = rows()
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
    colors = {"reproduced": "#d4f4d4", "not reproduced": "#f8d0d0", "inconclusive": "#fff2c0", "demonstrated": "#e0ecf8", "exploratory": "#f0f0f0"}
    body = "".join(
        f"<tr style='background:{colors.get(r['verdict'], '#eee')}'>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in COLUMNS) + "</tr>"
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
