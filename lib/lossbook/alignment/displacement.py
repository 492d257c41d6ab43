"""Single-token likelihood displacement over token pairs and prompt seeds, and the table that summarises it.

Razin et al. (2025), "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization",
ICLR 2025 (arXiv 2410.08847), §3 / Table 1: for a pair (y+, y−) and a seed s, preference training (DPO, IPO, …)
on *one* prompt whose SFT answer is y+, 100 full-batch steps; a run is *stable* when its loss never rose. The
displacement of a run is the max-drop of the preferred probability,

    drop = max_{t < t'} π_t(y+|x) − π_{t'}(y+|x),

and the probability mass it moves is *benign* (tokens of y+'s meaning group) or *catastrophic* (the other
group). `displacement_runs` repeats `lossbook.alignment.preference.single_token_displacement_run` over pairs
and seeds; `displacement_table` gives one row per pair over its stable runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from lossbook import repro
from lossbook.alignment.preference import PreferenceConfig, single_token_displacement_run
from lossbook.alignment.world import SyntheticWorld, single_token_preference_data
from lossbook.tracking import MetricLogger

Runs = dict[tuple[str, str], list[dict[str, Any]]]
"""(y+, y−) -> one result dict of `single_token_displacement_run` per seed (its "history" dropped)."""


def meaning_groups(world: SyntheticWorld, token: str) -> tuple[list[int], list[int]]:
    """(ids of the same meaning group, ids of the opposite group) for an answer token of the persona world."""
    if world.answer_group(token) == "agree":
        return world.agree_ids, world.disagree_ids
    return world.disagree_ids, world.agree_ids


def displacement_runs(
    world: SyntheticWorld,
    reference: nn.Module,
    cfg: PreferenceConfig,
    pairs: Sequence[tuple[str, str]],
    n_seeds: int,
    *,
    seed: int,
    early_steps: int,
    device: str | torch.device = "cpu",
    name: str = "",
    log_curves: bool = True,
) -> Runs:
    """Razin et al.'s §3 protocol for every pair (y+, y−) and seed s < `n_seeds`, starting from `reference`.

    Run s trains on the s-th of `world.single_token_prompts(y+, n_seeds, seed=seed)` (prompts whose SFT answer
    is y+, so π(y+) starts high) after `repro.seed_everything(seed + s)`; `early_steps` is the "early change" of
    ln π(z) for the Thm 2 check. Seed 0 of each pair logs its per-step curves to the active run under
    ``{name}/{y+}_{y−}/`` (unless `log_curves` is False). The per-step "history" of each run is dropped (the
    trajectories are kept).
    """
    out: Runs = {}
    for yp, ym in pairs:
        prompts = world.single_token_prompts(yp, n_seeds, seed=seed)
        same, opp = meaning_groups(world, yp)
        runs = []
        for s in range(n_seeds):
            repro.seed_everything(seed + s)
            data = single_token_preference_data(world, [prompts[s]], yp, ym)
            logger = MetricLogger(prefix=f"{name}/{yp}_{ym}/") if s == 0 and log_curves else None
            r = single_token_displacement_run(reference, data, world.stoi[yp], world.stoi[ym], same, opp, cfg,
                                              early_steps=early_steps, device=device, logger=logger)
            r.pop("history")
            runs.append(r)
        out[(yp, ym)] = runs
    return out


def _from_to(start: list[float], end: list[float]) -> str:
    """"a→b": the means of the start and end values, two decimals."""
    return f"{np.mean(start):.2f}→{np.mean(end):.2f}"


def displacement_table(world: SyntheticWorld, results: Runs, drop_threshold: float) -> pd.DataFrame:
    """One row per pair over its stable runs (Razin et al. Table 1's columns and ours).

    Columns: `pair`, `similar` (y+ and y− in one meaning group), `stable runs` ("k/n"), `frac drop>=thr` (share of
    stable runs with drop ≥ `drop_threshold`), `mean drop`, `drop min..max`, `π(y+) from→to (mean)` (the
    endpoints of the max-drop), `benign mass t0→T`, `catastr. mass t0→T`, `top gainers (count)` (the four tokens
    most often among a run's top-3 gainers), `gainer kinds`, `median ρ (Thm 2)` and `Thm 1 score` (mean). A pair
    without a stable run has only `pair`, `similar` and `stable runs`.
    """
    rows = []
    for (yp, ym), runs in results.items():
        similar = world.answer_group(yp) == world.answer_group(ym)
        st = [r for r in runs if r["stable"]]
        if not st:
            rows.append({"pair": f"{yp}/{ym}", "similar": similar, "stable runs": f"0/{len(runs)}"})
            continue
        drops = np.array([r["max_drop"] for r in st])
        tops = Counter(world.itos[z] for r in st for z in r["top"])
        kinds = Counter(k for r in st for k in r["top_kind"])
        rows.append({
            "pair": f"{yp}/{ym}",
            "similar": similar,
            "stable runs": f"{len(st)}/{len(runs)}",
            "frac drop>=thr": float(np.mean(drops >= drop_threshold)),
            "mean drop": float(np.mean(drops)),
            "drop min..max": f"{np.min(drops):.2f}..{np.max(drops):.2f}",
            "π(y+) from→to (mean)": _from_to([r["drop_from_to"][0] for r in st], [r["drop_from_to"][1] for r in st]),
            "benign mass t0→T": _from_to([r["benign"][0] for r in st], [r["benign"][-1] for r in st]),
            "catastr. mass t0→T": _from_to([r["catastrophic"][0] for r in st], [r["catastrophic"][-1] for r in st]),
            "top gainers (count)": ", ".join(f"{t}({c})" for t, c in tops.most_common(4)),
            "gainer kinds": dict(kinds),
            "median ρ (Thm 2)": float(np.median([r["rho"] for r in st])),
            "Thm 1 score": float(np.mean([r["thm1"] for r in st])),
        })
    return pd.DataFrame(rows)
