"""Shared fixtures: every test writes to a temporary MLflow store, runs folder and cache, never the repo's."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def session_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(autouse=True)
def isolated_store(session_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One sqlite store, runs dir and cache per test session (creating a store costs ~2 s)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{session_store / 'mlflow.db'}")
    monkeypatch.setenv("LOSSBOOK_RUNS_DIR", str(session_store / "runs"))
    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(session_store / "cache"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run()
    return session_store


@pytest.fixture
def fixture_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point notebook discovery at tests/fixtures (holds the `trivial` notebook)."""
    monkeypatch.setenv("LOSSBOOK_ROOT", str(FIXTURES))
    return FIXTURES
