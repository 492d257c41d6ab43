"""Shared fixtures: every test writes to a temporary MLflow store, runs folder and cache, never the repo's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Small tensors and models: one torch intra-op thread and one BLAS thread (on a shared 2-core machine
    more threads only add contention, often many times slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


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
