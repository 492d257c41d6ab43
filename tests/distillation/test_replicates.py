"""Distillation under the replication protocol: per-replicate teachers, softness, paired tables, guards."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from lossbook import replicate
from lossbook.distillation import replicates as rep
from lossbook.distillation import train as distill
from lossbook.models.mlp import MLP
from lossbook.train.loop import Fit


def test_teacher_softness_uniform_and_confident() -> None:
    y = torch.tensor([0, 1, 2, 3])
    u = rep.teacher_softness(torch.zeros(4, 5), y, (1.0, 4.0))
    assert u["p(target) T=1"] == pytest.approx(0.2) and u["entropy T=4"] == pytest.approx(math.log(5))
    assert u["logit spread"] == 0.0 and u["non-target mass T=1"] == pytest.approx(0.8)
    z = 20.0 * torch.nn.functional.one_hot(y, 5).double()
    c = rep.teacher_softness(z, y, (1.0, 4.0))
    assert c["accuracy"] == 1.0 and c["p(target) T=1"] > 0.9999 and c["logit spread"] == pytest.approx(20.0)
    # a higher temperature leaves more mass on the non-target classes: exp(5)/(exp(5) + 4) at T = 4
    assert c["p(target) T=4"] == pytest.approx(math.exp(5) / (math.exp(5) + 4)) and c["non-target mass T=4"] > c["non-target mass T=1"]


def _fit(val: list[float], best: int | None = None) -> Fit:
    f = Fit(curves={"val_acc": val, "train_acc": val, "test_acc": val})
    f.best_epoch = best or int(np.argmax(val)) + 1
    return f


def test_converged_guard_reads_every_run() -> None:
    ok = {("a", 0): _fit([0.1 * i for i in range(5)] + [0.5] * 5), ("a", 1): _fit([0.2, 0.6] + [0.5] * 8)}
    g = rep.converged_guard(ok, "a", [0, 1])
    assert g.passed and "[6, 2] of 10" in g.detail and g.name == "converged_a"
    late = {**ok, ("a", 2): _fit([0.1 * i for i in range(10)])}  # best at the last epoch: still improving
    g = rep.converged_guard(late, "a", [0, 1, 2])
    assert not g.passed and "seeds [2]" in g.fix and "20 epochs" in g.fix


def _frame() -> pd.DataFrame:
    rows = []
    for s, (a, b, va, vb) in enumerate([(0.70, 0.68, 0.71, 0.69), (0.72, 0.69, 0.70, 0.72), (0.71, 0.70, 0.72, 0.70)]):
        rows += [{"method": "a", "seed": s, "test_acc": a, "best_val_acc": va, "train_acc": 0.9, "best_epoch": 5 + s, "epochs": 10},
                 {"method": "b", "seed": s, "test_acc": b, "best_val_acc": vb, "train_acc": 1.0, "best_epoch": 3, "epochs": 10}]
    return pd.DataFrame(rows[::-1])  # seed order scrambled: pairing must be by seed, not by row


def test_paired_diffs_method_table_and_selection() -> None:
    df = _frame()
    d = rep.paired_diffs(df, "a", "b")
    assert d == pytest.approx([0.02, 0.03, 0.01])
    with pytest.raises(KeyError):
        rep.paired_diffs(df[~((df.method == "b") & (df.seed == 2))], "a", "b")
    t = rep.method_table(df)
    v = np.array([0.70, 0.72, 0.71])
    assert t.loc["a", "mean"] == pytest.approx(0.71) and t.loc["a", "n"] == 3
    assert t.loc["a", "ci95"] == pytest.approx(sps.t.ppf(0.975, 2) * v.std(ddof=1) / math.sqrt(3))
    o = replicate.mean_ci_rule(v, 0.0)
    assert t.loc["a", "ci95"] == pytest.approx(o.ci.high - o.statistic)  # the same t-interval as the claims' rule
    assert t.loc["a", "best epoch / budget"] == "5–7 / 10" and t.loc["b", "train_acc"] == 1.0
    assert rep.select_on_validation(df, ["a", "b"]) == "a"  # mean val 0.7100 vs 0.7033; test is never read
    assert math.isnan(rep.t_halfwidth([0.5]))


def test_kd_gradient_table_approaches_logit_matching() -> None:
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(64, 10, generator=g), 2 * torch.randn(64, 10, generator=g)
    tab = rep.kd_gradient_table(zs, zt, [1.0, 10.0, 100.0, 1000.0])
    rel = tab["rel. distance to centred-logit grad"].to_numpy()
    assert np.all(np.diff(rel) < 0) and rel[-1] < 1e-2
    assert tab["mean|unscaled KL grad|"].iloc[0] / tab["mean|unscaled KL grad|"].iloc[-1] > 1e5


def test_replicates_have_their_own_data_and_teacher(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path))
    tcfg = {"arch": "mlp", "arch_kwargs": {"hidden": (16,)}, "epochs": 2, "lr": 5e-2, "optimizer": "sgd", "weight_decay": 5e-4, "schedule": "cosine"}
    reps = [rep.make_replicate("mnist1d", s, num_samples=400, n_train=120, teacher=tcfg) for s in (0, 1)]
    assert reps[0].data_seed == 0 and not torch.equal(reps[0].split.x_test, reps[1].split.x_test)  # fresh draws, test included
    assert not torch.equal(reps[0].teacher_train_logits, reps[1].teacher_train_logits)
    assert reps[0].teacher["config"]["schedule"] == "cosine" and reps[0].teacher["config"]["data"]["data_seed"] == 0
    assert len(list((tmp_path / "teacher").glob("*.pt"))) == 2
    canon = rep.make_replicate("mnist1d", 0, fresh_data=False, num_samples=400, n_train=120, teacher=tcfg)
    assert canon.data_seed is None and not torch.equal(canon.split.x_test, reps[0].split.x_test)
    methods = {"ce": distill.LossSpec("ce"), "kd": distill.LossSpec("kd", ce_weight=0.1, kd_weight=0.9)}
    kw = {"make_student": lambda: MLP(40, 10, hidden=(8,)), "lr": 1e-2, "batch_size": 64, "schedule": "cosine", "progress": False}
    kept: dict = {}
    df, res = rep.run_replicates(reps, methods, epochs=3, models=kept, **kw)
    assert set(kept) == set(res) and isinstance(kept[("kd", 1)], MLP)
    assert len(df) == 4 and set(df.data_seed) == {0, 1} and (df.epochs == 3).all()
    assert res[("ce", 0)].curves["lr"][-1] < res[("ce", 0)].curves["lr"][0]  # the schedule reached the students
    b = rep.budget_sweep(reps[:1], lambda e: methods, [2, 3], done=df, **kw)
    assert sorted(b.epochs.unique()) == [2, 3] and len(b) == 4  # seed 0 only: budget 2 run, budget 3 reused
    reused = b[b.epochs == 3].set_index("method")["seconds"]
    assert reused["ce"] == df[(df.method == "ce") & (df.seed == 0)]["seconds"].item()


def test_default_teacher_config_keeps_its_cache_key(tmp_path, monkeypatch) -> None:
    # optimizer / schedule enter the key only when set, so teachers cached before they existed still hit
    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path))
    split = rep.load_dataset("mnist1d", num_samples=300, n_train=60)
    t = distill.get_teacher(split, {"name": "x"}, arch="mlp", arch_kwargs={"hidden": (8,)}, epochs=1, lr=1e-2)
    assert "optimizer" not in t["config"] and "schedule" not in t["config"]
    t2 = distill.get_teacher(split, {"name": "x"}, arch="mlp", arch_kwargs={"hidden": (8,)}, epochs=1, lr=1e-2, optimizer="sgd")
    assert t2["config"]["optimizer"] == "sgd" and not torch.equal(t["logits"]["train"], t2["logits"]["train"])


def test_format_outcome() -> None:
    o = replicate.mean_ci_rule([0.01, 0.02, 0.03], 0.0)
    half = sps.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert rep.format_outcome(o) == f"+2.00 pp [{100 * (0.02 - half):+.2f}, {100 * (0.02 + half):+.2f}]"
    assert rep.format_outcome(o, 1.0, "", 3).startswith("+0.020 [")


def test_settled_guard_reads_the_sign_at_half_the_budget() -> None:
    rows = [{"method": m, "seed": s, "epochs": e, "test_acc": acc}
            for s in (0, 1) for e, (a, b) in {50: (0.60, 0.65), 100: (0.70, 0.68), 200: (0.72, 0.69)}.items() for m, acc in (("a", a), ("b", b))]
    df = pd.DataFrame(rows)
    g = rep.settled_guard(df, "a", "b", 200)
    assert g.passed and "+2.00 pp at 100 epochs, +3.00 pp at 200" in g.detail
    g = rep.settled_guard(df, "a", "b", 100)  # at 50 a trailed b: the ordering flipped between 50 and 100
    assert not g.passed and "400" not in g.fix and "200 epochs" in g.fix
    assert not rep.settled_guard(df, "a", "b", 400).passed  # no run at that budget


def test_budget_curves_plots_one_line_per_method() -> None:
    from lossbook.distillation import plots

    df = pd.DataFrame([{"method": m, "seed": s, "epochs": e, "test_acc": 0.5 + 0.001 * e + 0.01 * s}
                       for m in ("a", "b") for s in (0, 1) for e in (25, 50, 100)])
    fig = plots.budget_curves(df, ["a", "b"], teacher_acc=0.9)
    ax = fig.axes[0]
    assert len(ax.lines) >= 2 and "teacher 90.0%" in ax.get_title() and [t.get_text() for t in ax.get_xticklabels()] == ["25", "50", "100"]


def test_t2_gradient_norms_scale_as_inverse_T_squared() -> None:
    # a linear student z = W x: the soft-target gradient in W is X^T (p_s^T − p_t^T) / (T B), which tends to
    # X^T (z̄_s − z̄_t) / (C T² B) (Hinton et al. eq. 4); its norm times T² tends to that limit's norm
    g = torch.Generator().manual_seed(0)
    x, zt = torch.randn(64, 5, generator=g), 3 * torch.randn(64, 4, generator=g)
    y = torch.randint(0, 4, (64,), generator=g)
    lin = torch.nn.Linear(5, 4, bias=False)
    with torch.no_grad():
        lin.weight.normal_(generator=g)
    tab = rep.t2_gradient_norms(lin, x, y, zt, [1.0, 10.0, 1e3, 1e4])
    zs = lin(x).detach()
    limit = ((zs - zs.mean(1, keepdim=True)) - (zt - zt.mean(1, keepdim=True))).t() @ x / (4 * 64)
    assert tab.loc[1e4, "|grad soft|"] * 1e8 == pytest.approx(limit.norm().item(), rel=1e-3)
    assert rep.loglog_slope([1e3, 1e4], tab.loc[[1e3, 1e4], "|grad soft|"]) == pytest.approx(-2.0, abs=1e-3)
    hard = torch.autograd.grad(torch.nn.functional.cross_entropy(lin(x), y), [lin.weight])[0].norm().item()
    assert tab["|grad hard|"].iloc[0] == pytest.approx(hard)
    assert tab.loc[10.0, "rel. contribution"] == pytest.approx(100 * tab.loc[10.0, "rel. contribution unscaled"])
    assert rep.loglog_slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
