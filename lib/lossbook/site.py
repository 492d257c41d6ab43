"""The book site: static HTML built from the MLflow store, readable from `file://` or any static host.

    lossbook book                     # site/ from the latest finished non-smoke run of every notebook
    lossbook book --profile smoke     # the same from smoke runs (a store that holds nothing else; not meaningful)

Pages (relative links only, no script, no server):

- `index.html`, the paper index: verdict totals per family, then paper -> notebook -> claims (the paper's
  number, ours, the rule, the verdict, n_replicates, the CI, failed guards, the diagnosis) -> the run (a link into
  the MLflow UI when `report.ui_base()` knows one, else its id); measured notebooks first, never-run ones in
  one compact table at the end;
- `family/<family>.html`: the family's totals and its notebooks' claims;
- `notebook/<name>.html`: the run (id, profile, git commit, time), the claims, a comparison of the notebook's
  recent runs when there are several (`lossbook.compare`, its curves as `notebook/<name>/compare.png`), the
  params used and the executed notebook itself (the run's `notebook/*.ipynb` artifact through nbconvert's
  `basic` template: figures are inline data: images).

Which run a notebook shows is `lossbook.report`'s rule (`report.entries`), the same as the scoreboard's.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lossbook import REPO_ROOT, compare, params, report, tracking

DEFAULT_DIR = REPO_ROOT / "site"
VERDICT_ORDER = ("reproduced", "not reproduced", "inconclusive", "demonstrated", "not demonstrated", "exploratory")
COMPARE_RUNS = 5
"""At most this many recent runs (of the shown selection) are compared on a notebook page."""

CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1300px;padding:0 16px 40px;color:#222;line-height:1.4}
nav{padding:8px 0;border-bottom:1px solid #ddd;margin-bottom:12px}nav a{margin-right:14px}
table{border-collapse:collapse;margin:6px 0 14px}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}
th{background:#f3f3f3;text-align:left}.num{text-align:right}.muted{color:#777}.small{font-size:12px}
section.paper{border-left:4px solid #9bb;padding:2px 0 2px 12px;margin:18px 0}
section.paper h3{margin:4px 0;font-size:15px}h4{margin:8px 0 4px}
.verdict{font-weight:600;white-space:nowrap}.banner{background:#fff2c0;padding:6px 10px;border:1px solid #e5d48a}
.executed{border-top:2px solid #ccc;margin-top:24px}.executed img{max-width:100%}
.executed .jp-InputArea,.executed .input_area{background:#f7f7f7;border:1px solid #e3e3e3;margin:4px 0;overflow-x:auto}
.executed .jp-InputPrompt,.executed .jp-OutputPrompt{color:#999;font-size:11px}
.executed pre{margin:2px 4px;white-space:pre-wrap;font-size:12px}
img.curves{max-width:100%;border:1px solid #ddd}a.anchor-link{display:none}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _md(text: str) -> str:
    """Inline markdown (links, emphasis, code) to HTML, without the wrapping paragraph."""
    from nbconvert.filters.markdown import markdown2html

    out = markdown2html(text).strip()
    return out.removeprefix("<p>").removesuffix("</p>") if out.count("<p>") == 1 else out


def _page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    nav = f"<nav><a href='{up}index.html'>paper index</a>" + "".join(
        f"<a href='{up}family/{f}.html'>{f}</a>" for f in params.FAMILIES) + "</nav>"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<link rel='stylesheet' href='{up}style.css'></head><body>{nav}{body}</body></html>\n")


def _verdict(c: dict[str, Any]) -> str:
    smoke = "" if c.get("meaningful", True) else " (smoke)"
    color = report.VERDICT_COLORS.get(c["verdict"], "#eee")
    return f"<td class='verdict' style='background:{color}'>{_e(c['verdict'] + smoke)}</td>"


def run_ref(run: Any) -> str:
    """The run as HTML: a link to its MLflow UI page when a UI is known, else its id."""
    url = report.run_url(run)
    rid = run.info.run_id
    return f"<a class='run' href='{_e(url)}'>{rid[:8]}</a>" if url else f"<code class='run' title='MLflow run id'>{rid}</code>"


def claims_table(e: report.Entry) -> str:
    """The entry's claims: the book's claim columns, the verdict coloured."""
    if not e.claims:
        return "<p class='muted'>no claims recorded by this run</p>"
    cols = [c for c in report.CLAIM_COLUMNS if c != "verdict"]
    head = "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "<th>verdict</th></tr>"
    body = ""
    for c in e.claims:
        cells = report.claim_cells(c)
        tds = "".join(f"<td title='{_e(cells['statement'])}'><code>{_e(cells[k])}</code></td>" if k == "claim" else
                      f"<td class='num'>{_e(cells[k])}</td>" if k == "n" else f"<td>{_e(cells[k])}</td>" for k in cols)
        body += f"<tr class='claim' data-claim='{_e(c['name'])}'>{tds}{_verdict(c)}</tr>"
    return f"<table class='claims'>{head}{body}</table>"


def totals(es: Sequence[report.Entry]) -> dict[str, dict[str, int]]:
    """family -> {notebooks, run, not run, <verdict>: claims with it}."""
    out: dict[str, dict[str, int]] = {}
    for e in es:
        t = out.setdefault(e.notebook.family, {"notebooks": 0, "run": 0, report.NOT_RUN: 0})
        t["notebooks"] += 1
        t["run" if e.run is not None else report.NOT_RUN] += 1
        for c in e.claims:
            t[c["verdict"]] = t.get(c["verdict"], 0) + 1
    return out


def totals_table(es: Sequence[report.Entry], depth: int) -> str:
    t = totals(es)
    kinds = [v for v in VERDICT_ORDER if any(v in x for x in t.values())]
    kinds += sorted({k for x in t.values() for k in x} - {*kinds, "notebooks", "run", report.NOT_RUN})
    head = "<tr><th>family</th><th>notebooks</th><th>run</th><th>not run</th>" + "".join(
        f"<th style='background:{report.VERDICT_COLORS.get(k, '#eee')}'>{_e(k)}</th>" for k in kinds) + "</tr>"
    body = "".join(
        f"<tr class='family' data-family='{f}'><td><a href='{'../' * depth}family/{f}.html'>{f}</a></td>"
        + "".join(f"<td class='num'>{x.get(k, 0)}</td>" for k in ("notebooks", "run", report.NOT_RUN, *kinds)) + "</tr>"
        for f, x in sorted(t.items(), key=lambda kv: params.FAMILIES.index(kv[0]) if kv[0] in params.FAMILIES else 99))
    return f"<table class='totals'>{head}{body}</table><p class='small muted'>verdict columns count claims</p>"


def _entry_block(e: report.Entry, depth: int) -> str:
    """One measured notebook: its title linked to its page, family, profile, run, then its claims."""
    nb = e.notebook
    return (f"<div class='notebook' data-notebook='{nb.name}'><h4><a href='{'../' * depth}notebook/{nb.name}.html'>{_e(nb.name)}</a>"
            f" <span class='muted small'>{_e(nb.title)} · {nb.family} · {_e(e.profile)} · {_e(e.verdicts)} · run {run_ref(e.run)}</span></h4>"
            f"{claims_table(e)}</div>")


def not_run_table(es: Sequence[report.Entry], depth: int) -> str:
    rows = "".join(
        f"<tr class='notrun' data-notebook='{e.name}'><td><a href='{'../' * depth}notebook/{e.name}.html'>{_e(e.name)}</a></td>"
        f"<td>{e.notebook.family}</td><td>{_md(e.notebook.paper)}</td></tr>" for e in es)
    return f"<table class='notrun'><tr><th>notebook</th><th>family</th><th>paper</th></tr>{rows}</table>" if es else ""


def _selection(profile: str | None) -> str:
    if profile == "smoke":
        return ("<p class='banner'>Showing the latest <b>smoke</b> run of each notebook: smoke runs prove the code path, "
                "their verdicts are <b>not meaningful</b>. <code>make book</code> (no profile) shows the latest "
                "finished run of any other profile.</p>")
    rule = f"the latest finished <b>{_e(profile)}</b> run" if profile else "the latest finished run that is not a smoke run"
    return f"<p class='small muted'>Each notebook shows {rule}.</p>"


def index_page(es: Sequence[report.Entry], profile: str | None) -> str:
    measured = [e for e in es if e.run is not None]
    papers: dict[str, list[report.Entry]] = {}
    for e in measured:
        papers.setdefault(e.notebook.paper or "(no paper)", []).append(e)
    sections = "".join(f"<section class='paper'><h3>{_md(p)}</h3>{''.join(_entry_block(e, 0) for e in group)}</section>"
                       for p, group in papers.items())
    not_run = [e for e in es if e.run is None]
    built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"<h1>lossbook: the paper index</h1>{_selection(profile)}<p class='small muted'>built {built} from "
            f"<code>{_e(tracking.tracking_uri())}</code></p><h2>Totals</h2>{totals_table(es, 0)}"
            f"<h2>Papers ({len(papers)} measured)</h2>{sections or '<p>No notebook has a run yet.</p>'}"
            + (f"<h2>Not run yet ({len(not_run)})</h2>{not_run_table(not_run, 0)}" if not_run else ""))
    return _page("lossbook: paper index", body, 0)


def family_page(family: str, es: Sequence[report.Entry], profile: str | None) -> str:
    mine = [e for e in es if e.notebook.family == family]
    measured = "".join(_entry_block(e, 1) for e in mine if e.run is not None)
    not_run = [e for e in mine if e.run is None]
    body = (f"<h1>{family}</h1>{_selection(profile)}{totals_table(mine, 1) if mine else '<p>No notebooks yet.</p>'}{measured}"
            + (f"<h2>Not run yet</h2>{not_run_table(not_run, 1)}" if not_run else ""))
    return _page(f"lossbook: {family}", body, 1)


def executed_html(run_id: str) -> str:
    """The run's executed notebook (its `notebook/*.ipynb` artifact) as body HTML, figures inline; "" if absent."""
    import nbformat
    from nbconvert import HTMLExporter

    client = tracking.configure()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, "notebook", tmp))
        except Exception:  # noqa: BLE001 - a run that logged no notebook
            return ""
        found = sorted(local.glob("*.ipynb"))
        if not found:
            return ""
        body, _ = HTMLExporter(template_name="basic").from_notebook_node(nbformat.read(found[0], as_version=4))
    return body


def _compare_section(e: report.Entry, out_dir: Path, profile: str | None, max_runs: int) -> str:
    try:
        cmp = compare.compare(e.name, profile=profile, max_runs=max_runs, include_smoke=profile == "smoke")
    except ValueError:
        return ""
    if len(cmp.runs) < 2:
        return ""
    _, png = cmp.write(out_dir / "notebook" / e.name, "compare")
    md = cmp.markdown().split("\n", 2)[2].replace("## ", "### ")  # without its title: the section has one
    img = f"<img class='curves' alt='curves of the compared runs' src='{e.name}/compare.png'>" if png else ""
    return f"<h2>The last {len(cmp.runs)} runs compared</h2><div class='compare'>{_md(md)}</div>{img}"


def notebook_page(e: report.Entry, out_dir: Path, profile: str | None, max_runs: int = COMPARE_RUNS) -> str:
    nb = e.notebook
    head = (f"<h1>{_e(nb.title or nb.name)}</h1><p><b>Notebook:</b> <code>{nb.family}/{nb.name}</code></p>"
            f"<p><b>Claim:</b> {_md(nb.claim)}</p><p><b>Paper:</b> {_md(nb.paper)}</p>{_selection(profile)}")
    if e.run is None:
        return _page(f"lossbook: {nb.name}", head + f"<p class='notrun'>Not run yet. <code>make run NOTEBOOK={nb.name}</code> "
                     "runs it (the default profile), then <code>make book</code>.</p>", 1)
    r, t = e.run, e.run.data.tags
    commit = t.get("git_commit", "unknown") + (" (dirty tree: the run's env/git.diff artifact holds the diff)" if t.get("git_dirty") == "True" else "")
    started = datetime.fromtimestamp(r.info.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = {"run": run_ref(r), "run name": _e(r.info.run_name), "profile": _e(e.profile), "verdicts": _e(e.verdicts),
            "git commit": f"<code>{_e(commit)}</code>", "started": started, "wall seconds": _e(t.get("wall_seconds", "")),
            "device": _e(t.get("device", ""))}
    exp_url = report.experiment_url(r.info.experiment_id)
    if exp_url:
        info["MLflow"] = f"<a class='experiment' href='{_e(exp_url)}'>the {nb.family} experiment's runs</a>"
    info_table = "<table class='runinfo'>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in info.items()) + "</table>"
    params_table = "<table class='params'><tr><th>param</th><th>value</th></tr>" + "".join(
        f"<tr><td><code>{_e(k)}</code></td><td>{_e(v)}</td></tr>" for k, v in sorted(r.data.params.items())) + "</table>"
    executed = executed_html(r.info.run_id)
    body = (head + info_table + f"<h2>Claims</h2>{claims_table(e)}" + _compare_section(e, out_dir, profile, max_runs)
            + f"<h2>Params used</h2>{params_table}<h2>The executed notebook</h2>"
            + (f"<div class='executed'>{executed}</div>" if executed else "<p class='muted'>the run logged no executed notebook</p>"))
    return _page(f"lossbook: {nb.name}", body, 1)


def _style() -> str:
    from pygments.formatters import HtmlFormatter

    return CSS + HtmlFormatter(style="default").get_style_defs(".highlight")


def build(out_dir: Path | None = None, profile: str | None = None, max_compare: int = COMPARE_RUNS) -> Path:
    """Build the site into `out_dir` (default `<repo>/site`; its family/ and notebook/ are rewritten) from `report.entries(profile)`;
    return the path of its index.html."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    out = Path(out_dir) if out_dir is not None else DEFAULT_DIR
    es = report.entries(profile)
    for sub in ("family", "notebook"):  # only what a build writes: `out` itself may hold other files
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    (out / "style.css").write_text(_style())
    (out / "index.html").write_text(index_page(es, profile))
    for f in params.FAMILIES:
        (out / "family" / f"{f}.html").write_text(family_page(f, es, profile))
    for e in es:
        (out / "notebook" / f"{e.name}.html").write_text(notebook_page(e, out, profile, max_compare))
    return out / "index.html"
