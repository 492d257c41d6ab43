"""MetricLogger batching and NaN stop, claims bookkeeping, the config-hash cache."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from lossbook import cache, claims, tracking


@pytest.fixture
def run(isolated_store: Path):
    tracking.configure()
    mlflow.set_experiment("calibration")
    with mlflow.start_run() as r:
        mlflow.set_tag("profile", "default")
        yield r


def test_metric_logger_batches_and_keeps_history(run, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tracking.MetricLogger(prefix="train/", every=5)
    calls = []
    real = log.client.log_batch
    monkeypatch.setattr(log.client, "log_batch", lambda *a, **k: (calls.append(len(k["metrics"])), real(*a, **k)))
    for step in range(12):
        log.log(step, loss=1.0 / (step + 1), acc=step / 12)
    log.flush()
    assert calls == [6, 6, 6, 6]  # 12 steps x 2 metrics sent in 4 batches of >= 5 values, not 24 calls
    hist = MlflowClient(tracking.tracking_uri()).get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in hist] == list(range(12))
    assert log.history["acc"][-1] == (11, 11 / 12)


def test_metric_logger_nan_flushes_then_raises(run) -> None:
    log = tracking.MetricLogger(every=100)
    log.log(0, loss=2.0)
    log.log(1, loss=1.5, grad_norm=float("inf"))  # only `loss` is checked
    with pytest.raises(tracking.NonFiniteLossError, match=r"non-finite loss=nan at step 2.*'loss': 1.5"):
        log.log(2, loss=float("nan"))
    hist = MlflowClient(tracking.tracking_uri()).get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in hist] == [(0, 2.0), (1, 1.5)]


def test_flatten_and_run_name() -> None:
    assert tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x"}) == {"a.b": "1", "a.c": "[1, 2]", "d": "x"}
    assert tracking.run_name("nb", "smoke", {"seeds": [4, 5]}).startswith("nb/smoke/seed4/")
    assert tracking.run_name("nb", "default", {"seed": 7}).startswith("nb/default/seed7/")


def test_claims_record_writes_claims_json(run) -> None:
    claims.record("a", "s", "p", 0.3, "> 0.2", 0.3 > 0.2, paper_value="0.5")
    claims.record("b", "s", "p", "CI [-0.1, 0.2]", "CI excludes 0", None)
    claims.record("a", "s", "p", 0.1, "> 0.2", 0.1 > 0.2)  # re-recording replaces
    client = MlflowClient(tracking.tracking_uri())
    data = json.loads(Path(client.download_artifacts(run.info.run_id, "claims.json")).read_text())
    assert [(c["name"], c["verdict"]) for c in data] == [("b", "inconclusive"), ("a", "not reproduced")]
    assert all(c["meaningful"] for c in data)
    m = client.get_run(run.info.run_id).data.metrics
    assert m["claim/a"] == 0.0 and m["claim/b"] == 0.5
    with pytest.raises(ValueError, match="letters, digits"):
        claims.record("bad name!", "s", "p", 1, "t", True)


def test_cache_hit_miss_and_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path))
    assert cache.config_hash({"a": 1, "b": [1, 2]}) == cache.config_hash({"b": [1, 2], "a": 1})
    assert cache.config_hash({"a": 1}) != cache.config_hash({"a": 2})
    built = []

    def build():
        built.append(1)
        return {"w": torch.arange(3.0)}

    a = cache.cached("thing", {"a": 1}, build)
    b = cache.cached("thing", {"a": 1}, build)
    assert len(built) == 1 and torch.equal(a["w"], b["w"])
    cache.cached("thing", {"a": 1}, build, refresh=True)
    assert len(built) == 2
    path = next((tmp_path / "thing").glob("*.pt"))
    path.write_bytes(b"garbage")
    cache.cached("thing", {"a": 1}, build)  # a corrupt file is rebuilt, not fatal
    assert len(built) == 3 and json.loads(path.with_suffix(".json").read_text()) == {"a": 1}


def test_decide_three_way_verdict() -> None:
    assert claims.decide(reproduced=True, refuted=False) is True
    assert claims.decide(reproduced=False, refuted=True) is False
    assert claims.decide(reproduced=False, refuted=False) is None
    with pytest.raises(ValueError, match="mutually exclusive"):
        claims.decide(reproduced=True, refuted=True)


class _RunsCode:
    """Unpickling this calls exec: what a tampered cache file would do with `torch.load(weights_only=False)`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_tampered_cache_file_does_not_run_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Issue 11.10: the cache loads with weights_only=True; a file whose pickle runs code is refused and rebuilt."""
    import pickle

    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    cfg = {"a": 1}
    path = tmp_path / "cache" / "thing" / f"{cache.config_hash(cfg)}.pt"
    path.parent.mkdir(parents=True)
    payload = {"w": torch.zeros(2), "evil": _RunsCode(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError):  # sanity: what the file holds is refused by the safe loader
        torch.load(path, weights_only=True)
    assert not marker.exists()
    built = []
    out = cache.cached("thing", cfg, lambda: built.append(1) or {"w": torch.ones(2)})
    assert not marker.exists(), "loading the cache file ran code"
    assert built == [1] and torch.equal(out["w"], torch.ones(2))  # refused, rebuilt, and replaced by a clean file
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
