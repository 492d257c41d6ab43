"""Data pruning for KD (distillation.pruning): EL2N against a hand computation, subset sizes, nesting, the grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossbook.data.classification import Split
from lossbook.distillation import pruning as P
from lossbook.distillation.train import LossSpec
from lossbook.models.mlp import MLP


def test_el2n_matches_hand_computation():
    # one model, two examples, three classes: softmax by hand, then the Euclidean distance to the one-hot label
    z = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    p1 = [1 / 3, 1 / 3, 1 / 3]
    p2 = [2 / 4, 1 / 4, 1 / 4]
    want = [math.sqrt((p1[0] - 1) ** 2 + p1[1] ** 2 + p1[2] ** 2), math.sqrt(p2[0] ** 2 + p2[1] ** 2 + (p2[2] - 1) ** 2)]
    assert P.el2n(z, y).tolist() == pytest.approx(want, abs=1e-12)
    # two models: the mean of the per-model norms (not the norm of the mean probabilities)
    z2 = torch.stack([z, torch.tensor([[10.0, -10.0, 0.0], [0.0, 0.0, 20.0]], dtype=torch.float64)])
    p_conf = torch.softmax(torch.tensor([[10.0, -10.0, 0.0], [0.0, 0.0, 20.0]], dtype=torch.float64), -1)
    e = torch.nn.functional.one_hot(y, 3).double()
    second = (p_conf - e).norm(dim=1)
    assert P.el2n(z2, y).tolist() == pytest.approx(((torch.tensor(want, dtype=torch.float64) + second) / 2).tolist(), abs=1e-12)
    # range: 0 for a confident correct prediction, sqrt(2) for a confident wrong one
    assert float(P.el2n(torch.tensor([[50.0, 0.0]]), torch.tensor([0]))) == pytest.approx(0.0, abs=1e-12)
    assert float(P.el2n(torch.tensor([[50.0, 0.0]]), torch.tensor([1]))) == pytest.approx(math.sqrt(2), abs=1e-12)


@pytest.mark.parametrize("n", [7, 100, 1001])
@pytest.mark.parametrize("method", P.PRUNE_METHODS)
def test_keep_exactly_round_f_n_and_nested(n, method):
    scores = torch.rand(n, generator=torch.Generator().manual_seed(n))
    prev = None
    for f in (1.0, 0.5, 0.25, 0.1):
        idx = P.keep_indices(n, f, method, seed=3, scores=scores)
        assert len(idx) == max(1, round(f * n))
        assert len(set(idx.tolist())) == len(idx) and idx.min() >= 0 and idx.max() < n
        assert torch.equal(idx, torch.sort(idx).values)
        if prev is not None:
            assert set(idx.tolist()) <= set(prev.tolist())  # nested: a smaller fraction keeps a subset
        prev = idx


def test_keep_deterministic_by_seed_and_ends_of_el2n():
    n = 200
    a = P.keep_indices(n, 0.25, "random", seed=0)
    assert torch.equal(a, P.keep_indices(n, 0.25, "random", seed=0))
    assert not torch.equal(a, P.keep_indices(n, 0.25, "random", seed=1))
    scores = torch.arange(n, dtype=torch.float64)  # example i has score i
    assert P.keep_indices(n, 0.1, "el2n", seed=0, scores=scores).tolist() == list(range(180, 200))  # hardest kept
    assert P.keep_indices(n, 0.1, "el2n_easy", seed=0, scores=scores).tolist() == list(range(20))  # easiest kept
    ties = torch.zeros(10, dtype=torch.float64)
    assert P.keep_indices(10, 0.3, "el2n", seed=0, scores=ties).tolist() == [0, 1, 2]  # ties: lower index first
    with pytest.raises(ValueError):
        P.keep_indices(n, 0.5, "el2n", seed=0)
    with pytest.raises(ValueError):
        P.keep_indices(n, 0.0, "random", seed=0)


def test_kd_spec_is_the_papers_convex_combination():
    assert P.kd_spec(0.0, 4.0) == LossSpec("ce")
    s = P.kd_spec(0.75, 4.0)
    assert (s.kind, s.ce_weight, s.kd_weight, s.T) == ("kd", 0.25, 0.75, 4.0)
    with pytest.raises(ValueError):
        P.kd_spec(1.5, 4.0)


def test_cells_dedupe_full_data_and_names():
    cells = P.grid_cells(["random", "el2n"], [1.0, 0.5], [0.0, 0.5])
    names = [c.name for c in cells]
    assert names == ["full_f1_a0", "full_f1_a0.5", "random_f0.5_a0", "random_f0.5_a0.5", "el2n_f0.5_a0", "el2n_f0.5_a0.5"]
    assert P.Cell("random", 0.1, 0.5, teacher="32").name == "random_f0.1_a0.5_t32"
    assert P.Cell("random", 0.1, 0.0, teacher="32").name == "random_f0.1_a0"  # CE has no teacher


def test_rank_trend_and_selection():
    assert P.rank_trend([1, 0.5, 0.25, 0.1], [0.25, 0.5, 0.75, 1.0]) == pytest.approx(-1.0)
    assert P.rank_trend([1, 0.5, 0.25, 0.1], [0.5, 0.5, 0.5, 0.5]) == 0.0
    import pandas as pd

    df = pd.DataFrame({"method": ["a", "b", "a", "b"], "seed": [0, 0, 1, 1], "alpha": [0.0, 1.0, 0.0, 1.0],
                       "best_val_acc": [0.5, 0.6, 0.7, 0.7], "test_acc": [0.1, 0.2, 0.3, 0.4]})
    sel = P.select_per_replicate(df, ["a", "b"])
    assert sel.loc[0, "method"] == "b" and sel.loc[1, "method"] == "a"  # a tie goes to the first name


def _split(n: int = 60, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 5, generator=g) * 2

    def draw(m):
        y = torch.randint(0, 3, (m,), generator=g)
        return centres[y] + torch.randn(m, 5, generator=g), y

    (xt, yt), (xv, yv), (xs, ys) = draw(n), draw(20), draw(20)
    return Split(xt, yt, xv, yv, xs, ys, 3, (5,), "blobs")


def test_pruned_grid_runs_each_cell_on_its_subset_and_pairs_inits():
    splits = {0: _split(seed=0), 1: _split(seed=1)}
    teachers = {(s, "main"): torch.randn(60, 3, generator=torch.Generator().manual_seed(s)) for s in splits}
    scores = {s: torch.rand(60, generator=torch.Generator().manual_seed(10 + s)) for s in splits}

    def keep(s, prune, f):
        return P.keep_indices(60, f, prune, seed=s, scores=scores[s])

    cells = P.grid_cells(["random", "el2n"], [1.0, 0.5], [0.0, 1.0])
    df, res = P.run_pruned_grid([0, 1], splits, cells, keep, teachers, make_student=lambda: MLP(5, 3, hidden=(8,)), epochs=3,
                                lr=1e-2, T=2.0, batch_size=16, progress=False)
    assert len(df) == 2 * len(cells) and set(res) == {(c.name, s) for c in cells for s in (0, 1)}
    assert df.set_index("method").loc["el2n_f0.5_a1", "n_kept"].tolist() == [30, 30]
    assert df.loc[df["fraction"] == 0.5, "stacked"].unique().tolist() == [2 * 4]  # one stacked model per fraction
    assert all(len(f.curves["val_acc"]) == 3 for f in res.values())
    # the CE run on the full set equals a one-at-a-time run from the replicate's initialisation (paired design)
    from lossbook import repro
    from lossbook.distillation.train import train_student

    repro.seed_everything(1)
    m = MLP(5, 3, hidden=(8,))
    one = train_student(m, splits[1], LossSpec("ce"), teacher_logits=None, epochs=3, lr=1e-2, batch_size=16, seed=1)
    np.testing.assert_allclose(res[("full_f1_a0", 1)].curves["val_loss"], one.curves["val_loss"], rtol=1e-4, atol=1e-5)


def test_subset_profile_counts_classes_and_teacher_errors():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    zt = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 2, 0]), 3).float()
    prof = P.subset_profile(torch.tensor([0, 1, 2, 3]), y, zt, torch.arange(6.0), 3)
    assert prof["n_kept"] == 4 and prof["teacher_acc_on_kept"] == pytest.approx(0.75)
    assert prof["min_class_share_x_C"] == 0.0 and prof["mean_el2n"] == pytest.approx(1.5)
    assert prof["class_entropy"] == pytest.approx(math.log(2) / math.log(3))
