"""The book as a reader meets it, in a real browser: the paper index, a notebook page, the MLflow UI.

Fixtures (one smoke run of a notebook, its book site, an MLflow server) are in conftest.py; each test saves a
screenshot into the screenshots directory (`$LOSSBOOK_SCREENSHOTS`).
"""

from __future__ import annotations

from typing import Any

from lossbook import REPO_ROOT, params, report, tracking

UI_TIMEOUT_MS = 60_000
"""The MLflow UI's first page load compiles a large bundle; slow on a busy machine."""
ML_NAV, GENAI_NAV = "Model registry", "Evaluation runs"
"""Side-navigation entries only the model-training view shows, and only the GenAI view shows (MLflow 3.17)."""


def close_assistant(page: Any) -> None:
    """Close the UI's side panel (the assistant opens in a fresh browser) so the screenshot shows the page."""
    button = page.locator("button[aria-label='Close']")
    if button.count() == 1 and button.is_visible():
        button.click()


def test_index_lists_every_notebook_with_its_verdicts(book: Any, page: Any) -> None:
    page.goto((book.site / "index.html").as_uri())
    for name in params.discover(REPO_ROOT):  # measured or in the compact not-run table: every notebook is there
        assert page.locator(f"[data-notebook='{name}']").count() >= 1, name
    measured = page.locator(f"div.notebook[data-notebook='{book.notebook}']")
    assert measured.count() == 1 and page.locator(f"tr.notrun[data-notebook='{book.notebook}']").count() == 0
    assert tracking.verdict_counts(book.claims) in measured.inner_text()
    for c in book.claims:
        row = measured.locator(f"tr.claim[data-claim='{c['name']}']")
        assert row.locator("td.verdict").inner_text() == f"{c['verdict']} (smoke)"
    families = page.locator("table.totals tr.family")
    assert families.count() == len({nb.family for nb in params.discover(REPO_ROOT).values()})
    assert "not meaningful" in page.locator("p.banner").inner_text()  # smoke runs shown only with the banner
    page.screenshot(path=str(book.shots / "book_index.png"))
    measured.locator("h4 a").first.click()  # a relative link, followed from file://
    assert page.url.endswith(f"/notebook/{book.notebook}.html")


def test_notebook_page_shows_its_figures(book: Any, page: Any) -> None:
    page.goto((book.site / "notebook" / f"{book.notebook}.html").as_uri())
    assert page.locator("table.claims tr.claim").count() == len(book.claims)
    assert book.run_id[:8] in page.locator("table.runinfo").inner_text()
    imgs = page.locator(".executed img")
    assert imgs.count() >= 1
    sizes = imgs.evaluate_all("els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
    assert all(done and w > 0 and h > 0 for done, w, h in sizes), sizes
    page.screenshot(path=str(book.shots / "notebook_page.png"))
    imgs.first.scroll_into_view_if_needed()
    page.screenshot(path=str(book.shots / "notebook_figure.png"))


def test_mlflow_ui_shows_the_verdict_tags_and_the_model_training_view(book: Any, page: Any) -> None:
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto((book.site / "index.html").as_uri())
    link = page.locator(f"div.notebook[data-notebook='{book.notebook}'] a.run")
    assert link.get_attribute("href") == (f"{book.ui}/#/experiments/{book.experiment_id}/runs/{book.run_id}"
                                          "?workflowType=machine_learning")
    link.click()  # from the book into the UI's run page
    counts = tracking.verdict_counts(book.claims)
    page.get_by_text(counts, exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    text = page.inner_text("body")
    for c in book.claims:  # every claim's verdict tag, with its value
        assert f"verdict/{c['name']}" in text and f"{c['verdict']} (smoke)" in text, c["name"]
    assert ML_NAV in text and GENAI_NAV not in text, "the run page is not in the model-training view"
    close_assistant(page)
    page.screenshot(path=str(book.shots / "mlflow_run.png"))

    page.goto(report.experiment_url(book.experiment_id, book.ui))  # the experiment, as the book links it
    page.get_by_text(book.notebook, exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)  # our run in the runs table
    text = page.inner_text("body")
    assert "/runs?" in page.url and "workflowType=machine_learning" in page.url
    assert ML_NAV in text and GENAI_NAV not in text, "the experiment did not open in the model-training view"
    assert all(col in text for col in ("profile", "notebook", "verdicts/inconclusive")), "the book's saved columns are missing"
    close_assistant(page)
    page.screenshot(path=str(book.shots / "mlflow_experiment.png"))
