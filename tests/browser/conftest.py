"""Browser tests: playwright (PyPI) driving Debian's chromium, over one smoke run, its book site and an MLflow UI.

One session builds everything once (< 1 min on 2 cores): a temp MLflow store holding one smoke run of
SITE_NOTEBOOK, the book site built from it (`site.build(profile="smoke")`) and an `mlflow server` over that store
on a free 127.0.0.1 port. Screenshots go to `$LOSSBOOK_SCREENSHOTS` (default: a pytest temp dir, printed at the
end). Without chromium or playwright the tests skip with HOWTO, which `make test` prints in its summary.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lossbook import REPO_ROOT

SITE_NOTEBOOK = "calibration_metrics"
"""The notebook whose smoke run the tests make: a few seconds, five claims, four figures."""
HOWTO = ("browser tests skipped: they need Debian's chromium (`sudo apt-get install -y chromium`, or set LOSSBOOK_CHROMIUM "
         "to a chromium binary) and playwright from PyPI (`make setup` installs the dev extra); never `playwright install`.")
SERVER_START_S = 120
"""How long `mlflow server` may take to answer /health (it boots its workers; slow on a busy 2-core machine)."""


def chromium_path() -> str:
    """`$LOSSBOOK_CHROMIUM`, else `chromium` on PATH, else "" (absent)."""
    return os.environ.get("LOSSBOOK_CHROMIUM") or shutil.which("chromium") or ""


def missing() -> str:
    """Why the browser tests cannot run here ("" when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return HOWTO
    return "" if chromium_path() else HOWTO


_SHOTS: list[Path] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if any("tests/browser" in str(getattr(r, "nodeid", "")) for r in terminalreporter.stats.get("skipped", [])) and missing():
        terminalreporter.write_line(HOWTO, yellow=True)
    if _SHOTS:
        terminalreporter.write_line(f"browser screenshots: {_SHOTS[0]}")


@dataclass(frozen=True)
class Book:
    store: Path
    site: Path
    run_id: str
    experiment_id: str
    ui: str
    """The MLflow UI's base address (http://127.0.0.1:<port>)."""
    claims: list[dict]
    shots: Path
    notebook: str = SITE_NOTEBOOK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    why = missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])  # containers, root in CI
        yield b
        b.close()


@pytest.fixture(scope="session")
def book(browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Book]:
    """One smoke run in a temp store, the book site from it, an MLflow server over the store (stopped at the end)."""
    from lossbook import report, runner, site, tracking

    root = tmp_path_factory.mktemp("browser_book")
    shots = Path(os.environ.get("LOSSBOOK_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    _SHOTS[:] = [shots]
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "LOSSBOOK_RUNS_DIR": str(root / "runs"),
                     "LOSSBOOK_CACHE_DIR": str(root / "cache"), "LOSSBOOK_ROOT": str(REPO_ROOT), "LOSSBOOK_UI_URL": ui,
                     "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "TQDM_DISABLE": "1"}.items():
            mp.setenv(k, v)
        tracking.experiment_id("calibration")  # the store's schema exists before the server and the run share it
        server = subprocess.Popen(  # boots while the notebook runs
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--default-artifact-root", str(root / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("w"), start_new_session=True)
        try:
            result = runner.run(SITE_NOTEBOOK, "smoke", progress=False, execution_timeout=300)
            run = tracking.configure().get_run(result.run_id)
            site.build(root / "site", profile="smoke")
            assert report.run_url(run).startswith(ui)
        except BaseException:
            os.killpg(server.pid, signal.SIGTERM)
            raise
    try:
        wait_healthy(ui, server, SERVER_START_S)
        yield Book(root, root / "site", result.run_id, run.info.experiment_id, ui, result.claims, shots)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started (its own process group)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    p = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield p
    p.close()
