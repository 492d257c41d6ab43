"""Every notebook under notebooks/ runs through the real runner (papermill + MLflow) with its smoke profile.

Auto-discovered: a new notebook without params/<name>.yaml holding a `smoke` profile fails here.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from lossbook import REPO_ROOT, claims, params, runner, tracking

BOOKS = params.discover(REPO_ROOT)


def test_there_are_notebooks() -> None:
    assert BOOKS, "no notebooks found under notebooks/<family>/"


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_notebook_header_and_smoke_profile(name: str) -> None:
    nb = BOOKS[name]
    assert nb.title and nb.claim and nb.paper, f"{nb.path}: the first markdown cell needs '# Title', **Claim:** and **Paper:**"
    profiles, found = params.load_profiles(nb)
    assert found, f"{nb.path} has no params/{name}.yaml"
    assert "smoke" in profiles, f"params/{name}.yaml has no smoke profile"
    assert set(profiles) >= {"smoke", "default", "full"}, f"params/{name}.yaml needs smoke, default and full profiles"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BOOKS))
def test_smoke_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBOOK_ROOT", str(REPO_ROOT))
    try:
        r = runner.run(name, "smoke", progress=False, execution_timeout=300)
    except runner.RunFailed as e:
        pytest.fail(str(e))
    run = MlflowClient(tracking.tracking_uri()).get_run(r.run_id)
    assert run.info.status == "FINISHED"
    assert r.claims, f"{name} recorded no claims"
    assert all(not c["meaningful"] for c in r.claims)
    assert all(c["verdict"] in set(claims.VERDICTS) for c in r.claims)
