"""Stacked students vs one at a time, and the second core: wall and CPU seconds of training K MLP students of kd_classics' shape.

K jobs (``--methods`` loss specs × ``--replicates`` data draws, each replicate its own batch order) are trained
for ``--epochs`` epochs (a) one at a time with ``distillation.train.train_student`` and (b) as one
``StackedMLP`` with ``distillation.stacked.train_stacked``, in the same run, at each of ``--threads`` torch
intra-op thread counts; (c) with ``--workers`` (e.g. 2), the stack is also split over that many processes
(``train_stacked(workers=)``, 1 thread each; the pool is started and warmed before the measurement, as a notebook
reuses it). CPU seconds include the worker processes (read from /proc; NaN elsewhere). The data are random
signals of MNIST-1D's shape (6400/1600/2000 × 40, 10 classes) with random teacher logits: time does not depend on
the values. Printed, as JSON lines and a table: the ratio one-at-a-time / stacked (> 1: stacking is faster), the
ratio of the 1-thread stack's wall time to each two-core variant's, and the 1-minute load average before and
after each measurement (on a machine shared with other jobs, the wall ratios of two-core variants are bounded
by the cores the others leave free; the CPU ratios say what each variant costs).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stacked_students.py                 # 7 methods x 4 replicates, 2 epochs
    .venv/bin/python benchmarks/stacked_students.py --threads 1 2 --workers 2 --replicates 4 --epochs 2 --skip-one-at-a-time
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

from lossbook.data.classification import Split
from lossbook.distillation import stacked as S
from lossbook.distillation import train as T
from lossbook.models.mlp import MLP

SPECS = {
    "student": T.LossSpec("ce"), "kd": T.LossSpec("kd", ce_weight=0.1, kd_weight=0.9, T=4.0),
    "dkd": T.LossSpec("dkd", beta=8.0, T=4.0, warmup_epochs=1), "dist": T.LossSpec("dist", T=1.0),
    "kd_T1": T.LossSpec("kd", ce_weight=0.1, kd_weight=0.9, T=1.0), "dkd_imagenet": T.LossSpec("dkd", beta=0.5, T=1.0, warmup_epochs=1),
    "dist_tau4": T.LossSpec("dist", T=4.0),
}


def _split(seed: int, n: tuple[int, int, int] = (6400, 1600, 2000), d: int = 40, c: int = 10) -> Split:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(m, d, generator=g) for m in n]
    ys = [torch.randint(0, c, (m,), generator=g) for m in n]
    return Split(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], c, (d,), "random")


def _worker_cpu() -> float:
    """CPU seconds (user + system) used so far by the processes of ``train_stacked``'s worker pools (Linux /proc)."""
    tot = 0.0
    for pool in S._POOLS.values():
        for pid in list(pool._processes or {}):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                return math.nan
            tot += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return tot


def _timed(fn) -> tuple[float, float, float, float]:
    load0 = os.getloadavg()[0]
    w0, c0, k0 = time.perf_counter(), time.process_time(), _worker_cpu()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0 + _worker_cpu() - k0, load0, os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=list(SPECS), choices=list(SPECS))
    ap.add_argument("--replicates", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--workers", type=int, nargs="*", default=[], help="also split the 1-thread stack over this many processes")
    ap.add_argument("--skip-one-at-a-time", action="store_true", help="measure the stacked variants only")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    splits = [_split(r) for r in range(a.replicates)]
    teachers = [3 * torch.randn(6400, 10, generator=torch.Generator().manual_seed(100 + r)) for r in range(a.replicates)]

    def init(r: int) -> MLP:
        torch.manual_seed(r)
        return MLP(40, 10, hidden=(a.hidden, a.hidden))

    jobs = [S.StackedJob(splits[r], SPECS[m], teachers[r], seed=r, init=init(r)) for r in range(a.replicates) for m in a.methods]
    kw = {"epochs": a.epochs, "lr": 1e-3, "batch_size": 128, "schedule": "cosine", "final_frac": 0.0}

    def one_at_a_time() -> None:
        for j in jobs:
            m = init(j.seed)
            T.train_student(m, j.split, j.spec, teacher_logits=j.teacher_logits, **kw)

    rows = []
    variants = [(th, 1) for th in a.threads] + [(1, w) for w in a.workers if w > 1]
    for th, w in variants:
        torch.set_num_threads(th)
        S.train_stacked(jobs[: 2 * w], **{**kw, "epochs": 1}, workers=w)  # warm-up (and, with workers, start the pool)
        ws, cs, l0s, l1s = _timed(lambda w=w: S.train_stacked(jobs, **kw, workers=w))
        wo, co, l0o, l1o = _timed(one_at_a_time) if not a.skip_one_at_a_time and w == 1 else (math.nan, math.nan, math.nan, math.nan)
        row = {"threads": th, "workers": w, "K": len(jobs), "epochs": a.epochs, "one_at_a_time_wall_s": round(wo, 2), "one_at_a_time_cpu_s": round(co, 2),
               "stacked_wall_s": round(ws, 2), "stacked_cpu_s": round(cs, 2), "wall_ratio": round(wo / ws, 3), "cpu_ratio": round(co / cs, 3),
               "load_before_after": [round(l0s, 2), round(l1s, 2), round(l0o, 2), round(l1o, 2)], "ncpu": os.cpu_count()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ref = next((r for r in rows if r["threads"] == 1 and r["workers"] == 1), None)
    print(f"{'threads':>7} {'workers':>7} {'K':>3} {'one wall/cpu s':>16} {'stacked wall/cpu s':>19} {'wall ratio':>10} {'cpu ratio':>9} "
          f"{'1x1 stack / this, wall':>22} {'cpu':>5}")
    for r in rows:
        rw, rc = (ref["stacked_wall_s"] / r["stacked_wall_s"], ref["stacked_cpu_s"] / r["stacked_cpu_s"]) if ref else (math.nan, math.nan)
        print(f"{r['threads']:>7} {r['workers']:>7} {r['K']:>3} {r['one_at_a_time_wall_s']:>7.1f}/{r['one_at_a_time_cpu_s']:<8.1f} "
              f"{r['stacked_wall_s']:>9.1f}/{r['stacked_cpu_s']:<9.1f} {r['wall_ratio']:>10.2f} {r['cpu_ratio']:>9.2f} {rw:>22.2f} {rc:>5.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
