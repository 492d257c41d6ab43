"""The book site (lossbook.site) and the one store reader under it (lossbook.report.entries): which run a notebook
shows, the paper index's order and totals, the claim columns, relative links that resolve, the notebook page
(executed notebook with inline figures, params, commit, run comparison), `lossbook book` and `lossbook list`."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest

from lossbook import cli, report, site, tracking

NOTEBOOKS = {"site_measured": "distillation", "site_smoke_only": "scaling", "site_never": "alignment"}
"""Names of their own, so the session store's other runs never show (only these are discovered); not in calibration,
whose newest runs other tests read."""
GUARD = {"name": "converged", "passed": False, "detail": "loss still falling", "value": 1.0, "target": 0.0}
CLAIMS = [
    {"name": "up", "statement": "it goes up", "paper": "Doe 2020", "paper_value": "+3 pp", "measured": "2.5 [1.5, 3.5] (n = 3)",
     "threshold": "t-CI above 0", "verdict": "reproduced", "n_replicates": 3, "replicates": [2, 2.5, 3],
     "ci": {"low": 1.5, "high": 3.5, "level": 0.95, "method": "t"}, "guards": [], "diagnosis": None, "meaningful": True},
    {"name": "flat", "statement": "it stays", "paper": "Doe 2020", "paper_value": "0", "measured": "0.1", "threshold": "within 0.05",
     "verdict": "not reproduced", "n_replicates": 3, "replicates": [0.1, 0.1, 0.1], "ci": None, "guards": [],
     "diagnosis": {"text": "our world is too small", "ablation": "width x4"}, "meaningful": True},
    {"name": "slow", "statement": "it converges", "paper": "Doe 2020", "paper_value": "", "measured": "nan", "threshold": "rule",
     "verdict": "inconclusive", "n_replicates": 3, "replicates": [1, 2, 3], "ci": None, "guards": [GUARD], "diagnosis": None,
     "meaningful": True},
]


def header(name: str) -> str:
    return (f'# %% [markdown]\n# # Title of {name}\n# **Paper:** Doe (2020), "A paper about {name}".\n# **Claim:** {name} holds.\n\n'
            '# %% tags=["parameters"]\nmlflow_run_id = ""\nprofile = "interactive"\nseed = 0\n')


def executed_notebook(path: Path) -> Path:
    """A small executed notebook with one PNG output (what the runner logs as notebook/*.ipynb)."""
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    cell = nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output(
        "display_data", data={"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": "<Figure>"})])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Executed"), cell])
    nbformat.write(nb, path)
    return path


def make_run(name: str, profile: str, claims: list[dict], tmp: Path, seed: int = 0, loss: tuple[float, ...] = ()) -> str:
    rid = tracking.create_run(name, NOTEBOOKS[name], profile, {"seed": seed}, {"git_commit": "abc1234def", "git_dirty": "False"})
    client = tracking.configure()
    client.log_text(rid, json.dumps(claims), "claims.json")
    client.log_artifact(rid, str(executed_notebook(tmp / f"{rid}.ipynb")), "notebook")
    for step, v in enumerate(loss):
        client.log_metric(rid, "loss", v, step=step)
    client.set_terminated(rid, "FINISHED")
    time.sleep(0.02)
    return rid


@pytest.fixture(scope="module")
def book(session_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("site_book")
    for name, family in NOTEBOOKS.items():
        (root / "notebooks" / family).mkdir(parents=True, exist_ok=True)
        (root / "notebooks" / family / f"{name}.py").write_text(header(name))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{session_store / 'mlflow.db'}")
        mp.setattr(tracking, "environment", lambda with_torch=False: ({}, {}))  # no pip freeze or git per run: fast
        older = make_run("site_measured", "default", CLAIMS[:1], root, seed=1, loss=(3, 2))
        latest = make_run("site_measured", "default", CLAIMS, root, loss=(4, 3, 1))
        newer_smoke = make_run("site_measured", "smoke", [{**CLAIMS[0], "meaningful": False}], root)
        smoke = make_run("site_smoke_only", "smoke", [{**CLAIMS[0], "meaningful": False}], root)
    return {"root": root, "older": older, "latest": latest, "newer_smoke": newer_smoke, "smoke": smoke}


@pytest.fixture(scope="module")
def built(book: dict, session_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site of `book`, default selection, no UI known."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{session_store / 'mlflow.db'}")
        mp.setenv("LOSSBOOK_ROOT", str(book["root"]))
        mp.delenv("LOSSBOOK_UI_URL", raising=False)
        return site.build(tmp_path_factory.mktemp("site")).parent


def test_entries_show_the_latest_finished_nonsmoke_run(book: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBOOK_ROOT", str(book["root"]))
    shown = {e.name: e for e in report.entries()}
    assert list(shown) == ["site_never", "site_measured", "site_smoke_only"]  # params.FAMILIES order, then name
    assert shown["site_measured"].run.info.run_id == book["latest"]  # not the newer smoke run
    assert shown["site_smoke_only"].run is None and shown["site_never"].verdicts == "not run"
    assert shown["site_measured"].verdicts == "1 reproduced, 1 not reproduced, 1 inconclusive"
    smoke = {e.name: e for e in report.entries("smoke")}
    assert smoke["site_measured"].run.info.run_id == book["newer_smoke"] and smoke["site_smoke_only"].run.info.run_id == book["smoke"]


def test_index_is_a_paper_index_measured_first_with_family_totals(built: Path, book: dict) -> None:
    page = (built / "index.html").read_text()
    measured, not_run = page.index("data-notebook='site_measured'"), page.index("<tr class='notrun' data-notebook='site_never'")
    assert measured < not_run and page.index("Not run yet (2)") < not_run
    assert "<tr class='notrun' data-notebook='site_smoke_only'" in page  # smoke runs do not count by default
    paper, first = page.split("<section class='paper'>")[1].split("</h3>")[:2]
    assert "A paper about site_measured" in paper and first.startswith("<div class='notebook' data-notebook='site_measured'>")
    totals = dict(re.findall(r"<tr class='family' data-family='(\w+)'>(.*?)</tr>", page))
    cells = re.findall(r"<td class='num'>(\d+)</td>", totals["distillation"])
    assert cells[:3] == ["1", "1", "0"]  # notebooks, run, not run
    head = page.split("<table class='totals'>")[1].split("</tr>")[0]
    kinds = re.findall(r"<th[^>]*>([^<]+)</th>", head)[4:]
    assert dict(zip(kinds, cells[3:])) == {"reproduced": "1", "not reproduced": "1", "inconclusive": "1"}
    assert re.findall(r"<td class='num'>(\d+)</td>", totals["scaling"])[:3] == ["1", "0", "1"]


def test_claim_rows_carry_the_protocol_columns(built: Path, book: dict) -> None:
    page = (built / "index.html").read_text()
    rows = dict(re.findall(r"<tr class='claim' data-claim='(\w+)'>(.*?)</tr>", page))
    assert set(rows) == {"up", "flat", "slow"}
    up = re.findall(r"<td[^>]*>(.*?)</td>", rows["up"])
    assert up == ["<code>up</code>", "+3 pp", "2.5 [1.5, 3.5] (n = 3)", "t-CI above 0", "3", "[1.5, 3.5] (95%, t)", "", "",
                  "reproduced"]
    assert "our world is too small (ablation: width x4)" in rows["flat"] and ">not reproduced</td>" in rows["flat"]
    assert "converged: loss still falling" in rows["slow"]
    assert f"<code class='run' title='MLflow run id'>{book['latest']}</code>" in page  # no UI known: the run id


def test_every_relative_link_resolves_and_none_is_absolute(built: Path) -> None:
    pages = sorted(built.rglob("*.html"))
    assert {p.relative_to(built).as_posix() for p in pages} >= {"index.html", "family/distillation.html", "family/scaling.html",
                                                                  "notebook/site_measured.html", "notebook/site_never.html"}
    for p in pages:
        for link in re.findall(r"(?:href|src)=['\"]([^'\"]+)['\"]", p.read_text()):
            if link.startswith(("data:", "#", "http://", "https://")):
                continue
            assert not link.startswith(("/", "file:")), f"{p}: absolute link {link}"
            assert (p.parent / link.split("#")[0]).resolve().is_file(), f"{p}: {link} does not resolve"


def test_notebook_page_holds_the_run_claims_comparison_params_and_executed_notebook(built: Path, book: dict) -> None:
    page = (built / "notebook" / "site_measured.html").read_text()
    assert "abc1234def" in page and book["latest"] in page and "<td><code>seed</code></td><td>0</td>" in page
    assert page.count("<tr class='claim'") == 3
    assert "The last 2 runs compared" in page and "src='site_measured/compare.png'" in page  # both default runs
    assert (built / "notebook" / "site_measured" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    executed = page.split("<div class='executed'>")[1]
    assert re.search(r'<img [^>]*src="data:image/png;base64,', executed) and "Executed" in executed
    never = (built / "notebook" / "site_never.html").read_text()
    assert "Not run yet" in never and "make run NOTEBOOK=site_never" in never


def test_smoke_profile_shows_smoke_runs_under_a_banner(book: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBOOK_ROOT", str(book["root"]))
    page = site.build(tmp_path / "s", profile="smoke").read_text()
    assert "not meaningful" in page and "<div class='notebook' data-notebook='site_smoke_only'>" in page
    assert ">reproduced (smoke)</td>" in page


def test_run_links_go_to_the_ui_when_one_is_known(book: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBOOK_ROOT", str(book["root"]))
    monkeypatch.setenv("LOSSBOOK_UI_URL", "http://127.0.0.1:5999/")
    page = site.build(tmp_path / "s").read_text()
    run = tracking.configure().get_run(book["latest"])
    url = f"http://127.0.0.1:5999/#/experiments/{run.info.experiment_id}/runs/{book['latest']}?workflowType=machine_learning"
    assert report.run_url(run) == url and f"href='{url}'" in page
    assert report.experiment_url("7", "http://h:1") == "http://h:1/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=lossbook"


def test_cli_book_and_list(book: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOSSBOOK_ROOT", str(book["root"]))
    assert cli.main(["book", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "index.html").is_file() and "book site:" in capsys.readouterr().out
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"latest: 1 reproduced, 1 not reproduced, 1 inconclusive [default, run {book['latest'][:8]}]" in out
    assert f"latest: 1 reproduced (smoke) [smoke, run {book['smoke'][:8]}]" in out and "latest: not run" in out


def test_cli_book_run_runs_every_notebook_then_shows_those_runs(book: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBOOK_ROOT", str(book["root"]))
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(cli, "_run", lambda ns: calls.append((ns.notebook, ns.profile)) or 0)
    assert cli.main(["book", "--run", "--profile", "smoke", "--out", str(tmp_path / "b")]) == 0
    assert sorted(calls) == sorted((n, "smoke") for n in NOTEBOOKS)
    assert "not meaningful" in (tmp_path / "b" / "index.html").read_text()  # the smoke runs it made are the ones shown
    calls.clear()
    monkeypatch.setattr(cli, "_run", lambda ns: calls.append((ns.notebook, ns.profile)) or 130)  # Ctrl-C in the first run
    assert cli.main(["book", "--run", "--out", str(tmp_path / "c")]) == 130
    assert len(calls) == 1 and calls[0][1] == "default" and not (tmp_path / "c").exists()
