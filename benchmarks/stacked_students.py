"""Stacked students vs one at a time: wall and CPU seconds of training K MLP students of kd_classics' shape.

K jobs (``--methods`` loss specs × ``--replicates`` data draws, each replicate its own batch order) are trained
for ``--epochs`` epochs (a) one at a time with ``distillation.train.train_student`` and (b) as one
``StackedMLP`` with ``distillation.stacked.train_stacked``, in the same process, at each of ``--threads``
torch intra-op thread counts. The data are random signals of MNIST-1D's shape (6400/1600/2000 × 40, 10
classes) with random teacher logits: time does not depend on the values. The ratio one-at-a-time / stacked
(> 1: stacking is faster) and the 1-minute load average before and after each measurement are printed, as JSON
lines and a table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stacked_students.py                 # 7 methods x 4 replicates, 2 epochs
    .venv/bin/python benchmarks/stacked_students.py --threads 1 2 --replicates 2 --epochs 1
"""

from __future__ import annotations

import argparse
import json
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


def _timed(fn) -> tuple[float, float, float, float]:
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0, load0, os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=list(SPECS), choices=list(SPECS))
    ap.add_argument("--replicates", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
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
    for th in a.threads:
        torch.set_num_threads(th)
        S.train_stacked(jobs[:2], **{**kw, "epochs": 1})  # warm-up
        ws, cs, l0s, l1s = _timed(lambda: S.train_stacked(jobs, **kw))
        wo, co, l0o, l1o = _timed(one_at_a_time)
        row = {"threads": th, "K": len(jobs), "epochs": a.epochs, "one_at_a_time_wall_s": round(wo, 2), "one_at_a_time_cpu_s": round(co, 2),
               "stacked_wall_s": round(ws, 2), "stacked_cpu_s": round(cs, 2), "wall_ratio": round(wo / ws, 3), "cpu_ratio": round(co / cs, 3),
               "load_before_after": [round(l0s, 2), round(l1s, 2), round(l0o, 2), round(l1o, 2)], "ncpu": os.cpu_count()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"{'threads':>7} {'K':>3} {'one wall/cpu s':>16} {'stacked wall/cpu s':>19} {'wall ratio':>10} {'cpu ratio':>9}")
    for r in rows:
        print(f"{r['threads']:>7} {r['K']:>3} {r['one_at_a_time_wall_s']:>7.1f}/{r['one_at_a_time_cpu_s']:<8.1f} "
              f"{r['stacked_wall_s']:>9.1f}/{r['stacked_cpu_s']:<9.1f} {r['wall_ratio']:>10.2f} {r['cpu_ratio']:>9.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
