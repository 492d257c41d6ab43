"""DPO preference-step throughput (pairs/s) of `lossbook.alignment.preference` on the dpo_displacement model.

A preference step = one concatenated forward of policy over [chosen; rejected], the DPO loss against precomputed
reference log-probs, backward and an RMSprop update — exactly what `train_preference` does per step. We time
`train_preference` itself (reference pass excluded, as it reports `pairs_per_s`), after one warm-up call, on the
synthetic world's multi-token pairs (prompt ≈ 11 tokens + response 3–7 tokens) and on single-token pairs.

    .venv/bin/python benchmarks/dpo_throughput.py                      # default model, CPU, 1 thread
    .venv/bin/python benchmarks/dpo_throughput.py --d-model 128 --n-layer 4 --device cuda --batch-sizes 32 256 1024

Prints one JSON line per configuration and a table; `--json PATH` also writes them to a file. Weights are random
(throughput does not depend on them); no cache or MLflow run is touched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lossbook.alignment.preference import PreferenceConfig, clone_policy, train_preference
from lossbook.alignment.world import (
    SyntheticWorld,
    WorldConfig,
    multi_token_preference_data,
    single_token_preference_data,
)
from lossbook.models.gpt import GPT, GPTConfig
from lossbook.repro import get_device, seed_everything


def bench(model: GPT, data, batch_size: int, steps: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Median pairs/s over `repeats` timed `train_preference` calls of `steps` mini-batch steps each."""
    if batch_size == 1 or len(data) <= batch_size:  # full batch: `steps` steps on the same pairs
        data = data.subset(range(batch_size))
        cfg = PreferenceConfig(loss="dpo", beta=0.1, lr=1e-5, optimizer="rmsprop", steps=steps)
    else:  # one epoch of `steps` mini-batches
        data = data.subset(range(min(len(data), batch_size * steps)))
        cfg = PreferenceConfig(loss="dpo", beta=0.1, lr=1e-5, optimizer="rmsprop", batch_size=batch_size, epochs=1)
    train_preference(clone_policy(model), model, data, cfg, device=device)  # warm-up
    rates, walls = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        h = train_preference(clone_policy(model), model, data, cfg, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
        rates.append(h["pairs_per_s"])
    return {"pairs_per_s": statistics.median(rates), "steps": h["n_steps"], "wall_s_per_call": statistics.median(walls)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per timed call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU (0 = torch default)")
    ap.add_argument("--json", default="", help="also write the results to this file")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    dev = get_device(args.device)
    world = SyntheticWorld(WorldConfig(seed=0))
    model = GPT(GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len(), n_layer=args.n_layer, n_head=args.n_head, d_model=args.d_model)).to(dev)
    n_max = max(args.batch_sizes) * args.steps
    multi = multi_token_preference_data(world, world.multi_token_pairs(n_max))
    single = single_token_preference_data(world, world.single_token_prompts("No", n_max), "No", "Never")
    rows = []
    for kind, data in (("single-token", single), ("multi-token", multi)):
        for bs in args.batch_sizes:
            r = bench(model, data, bs, args.steps, args.repeats, dev)
            row = {"data": kind, "batch_size": bs, "seq_len": int(data.chosen_ids.shape[1]), "device": str(dev),
                   "threads": torch.get_num_threads(), "d_model": args.d_model, "n_layer": args.n_layer,
                   "params": sum(p.numel() for p in model.parameters()), **r}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'data':<13} {'batch':>5} {'T':>3} {'pairs/s':>10} {'steps/s':>8}")
    for r in rows:
        print(f"{r['data']:<13} {r['batch_size']:>5} {r['seq_len']:>3} {r['pairs_per_s']:>10.0f} {r['pairs_per_s'] / r['batch_size']:>8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
