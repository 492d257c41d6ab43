"""Runner fixed cost: whole-process wall time of `lossbook run trivial` against the same notebook as plain python.

    .venv/bin/python benchmarks/runner_overhead.py [--repeats 5] [--profile default]

Both sides are timed the same way: a fresh process from start to exit, so interpreter start and every
import count on both sides. The trivial notebook (tests/fixtures) does almost nothing, so the runner's
time is its fixed cost: params, MLflow run creation (+ env capture), kernel start, cells, artifact
logging and the HTML export. The reference is the notebook run as a plain `python` file (imports + its
own MLflow run by hand). Runs are paired (runner, plain; then plain, runner; ...) so a change of machine
load hits both sides alike; the 1-minute load average is recorded before and after. The store is created
once before timing (a one-off, not part of a run). Goal (issue 11): <= 5 s per run on an idle 2-core machine.
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


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5, help="paired samples (each: one runner process, one plain process)")
    ap.add_argument("--profile", default="default")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "LOSSBOOK_RUNS_DIR": str(tmp / "runs"),
           "LOSSBOOK_ROOT": str(FIXTURES), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "TQDM_DISABLE": "1",
           "MPLBACKEND": "Agg"}
    runner_cmd = [sys.executable, "-m", "lossbook.cli", "run", "trivial", "--profile", args.profile, "--quiet"]
    plain_cmd = [sys.executable, str(FIXTURES / "notebooks/calibration/trivial.py")]
    imports_cmd = [sys.executable, "-c", "import lossbook.cli"]
    load_before = load()
    print(f"load average before: {load_before}  ({os.cpu_count()} CPUs)")
    t = time.perf_counter()
    timed(plain_cmd, env)  # creates the store and the experiment; a one-off, not timed as a run
    print(f"warm-up (store creation + one plain run): {time.perf_counter() - t:.2f}s")
    runs, plains, cli_imports = [], [], []
    for i in range(args.repeats):
        order = [("runner", runner_cmd), ("plain", plain_cmd)]
        for what, cmd in order if i % 2 == 0 else order[::-1]:
            (runs if what == "runner" else plains).append(timed(cmd, env))
        cli_imports.append(timed(imports_cmd, env))
    diffs = [r - p for r, p in zip(runs, plains, strict=True)]
    med = statistics.median

    def fmt(v: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in v)

    print(f"lossbook run trivial (whole process), median of {args.repeats}: {med(runs):.2f}s  [{fmt(runs)}]")
    print(f"plain python trivial.py (whole process), median of {args.repeats}: {med(plains):.2f}s  [{fmt(plains)}]")
    print(f"`import lossbook.cli` (what bad input pays before its error): {med(cli_imports):.2f}s  [{fmt(cli_imports)}]")
    print(f"runner minus plain, paired: median {med(diffs):.2f}s  [{fmt(diffs)}]; ratio {med(runs) / med(plains):.2f}x")
    print(f"load average after: {load()} (before: {load_before})")
    print(f"fixed cost per run {med(runs):.2f}s; goal <= 5 s on an idle 2-core machine: {'OK' if med(runs) <= 5 else 'OVER'}")


if __name__ == "__main__":
    main()
