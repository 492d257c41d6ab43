"""Runner overhead: wall time of `runner.run` on a trivial notebook, split into its parts.

    .venv/bin/python benchmarks/runner_overhead.py [--repeats 3]

The trivial notebook (tests/fixtures) does almost nothing, so the time is the runner's own: params
resolution, MLflow run creation (+ env capture), papermill kernel start + execution, artifact logging
and the HTML export. Reported against a reference: the same notebook run as a plain `python` file.
The issue's budget: under 10 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ.update({
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "LOSSBOOK_RUNS_DIR": str(tmp / "runs"),
        "LOSSBOOK_ROOT": str(FIXTURES), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "TQDM_DISABLE": "1",
    })
    from lossbook import runner, tracking

    t = time.perf_counter()
    tracking.experiment_id("calibration")  # store creation is a one-off; not part of a run's overhead
    print(f"first-time store creation: {time.perf_counter() - t:.2f}s")
    walls, inner = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        r = runner.run("trivial", "default", progress=False)
        walls.append(time.perf_counter() - t)
        inner.append(r.seconds)
    t = time.perf_counter()
    subprocess.run([sys.executable, str(FIXTURES / "notebooks/calibration/trivial.py")], check=True,
                   env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True)
    plain = time.perf_counter() - t
    w, x = statistics.median(walls), statistics.median(inner)
    print(f"runner.run total (median of {args.repeats}): {w:.2f}s  [all: {', '.join(f'{v:.2f}' for v in walls)}]")
    print(f"  papermill execution (kernel start + cells): {x:.2f}s; params + MLflow + artifacts + HTML: {w - x:.2f}s")
    print(f"reference, same notebook as plain python (imports + its own MLflow run): {plain:.2f}s")
    print(f"runner overhead over the reference: {w - plain:.2f}s  (ratio {w / plain:.2f}x); budget 10 s: {'OK' if w < 10 else 'OVER'}")


if __name__ == "__main__":
    main()
