"""Stacked students: K MLPs trained as one StackedMLP follow their one-at-a-time trajectories."""

from __future__ import annotations

import math

import pytest
import torch

from lossbook.data.classification import Split
from lossbook.distillation import losses as D
from lossbook.distillation import stacked as S
from lossbook.distillation import train as T
from lossbook.models.dual_head import DualHeadStudent
from lossbook.models.mlp import MLP
from lossbook.models.stacked_mlp import StackedMLP


def _blobs(n: int = 200, d: int = 6, c: int = 4, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g) * 2

    def draw(m):
        y = torch.randint(0, c, (m,), generator=g)
        return centres[y] + torch.randn(m, d, generator=g), y

    (xt, yt), (xv, yv), (xs, ys) = draw(n), draw(n // 2), draw(n // 2)
    return Split(xt, yt, xv, yv, xs, ys, c, (d,), "blobs")


def _mlp(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(6, 4, hidden=(16, 12))


def test_stacked_forward_and_state_roundtrip():
    ms = [_mlp(s) for s in range(3)]
    st = StackedMLP.from_models(ms)
    x = torch.randn(3, 5, 6)
    z, f = st(x, return_features=True)
    for j, m in enumerate(ms):
        zj, fj = m(x[j], return_features=True)
        assert torch.allclose(z[j], zj, atol=1e-6) and torch.allclose(f[j], fj, atol=1e-6)
        fresh = _mlp(99)
        fresh.load_state_dict(st.state_dict_of(j))
        assert torch.allclose(fresh(x[j]), zj, atol=1e-6)
    for nonlinear in (False, True):
        duals = [DualHeadStudent(_mlp(s), 4, nonlinear=nonlinear, aux_hidden=8) for s in range(2)]
        for d in duals:
            d.eval()
        sd = StackedMLP.from_models(duals).eval()
        zz, za, _ = sd.forward_both(x[:2])
        for j, d in enumerate(duals):
            a, b, _ = d.forward_both(x[j])
            assert torch.allclose(zz[j], a, atol=1e-6) and torch.allclose(za[j], b, atol=1e-6)
            back = DualHeadStudent(_mlp(7), 4, nonlinear=nonlinear, aux_hidden=8)
            back.load_state_dict(sd.state_dict_of(j))
    with pytest.raises(ValueError):
        StackedMLP.from_models([MLP(6, 4, hidden=(8,), dropout=0.5)])


def test_stacked_batchnorm_uses_each_models_batch():
    # training-mode BatchNorm of the auxiliary head normalises per model; running stats match one-at-a-time
    duals = [DualHeadStudent(_mlp(s), 4, nonlinear=True, aux_hidden=8) for s in range(2)]
    for d in duals:
        d.aux_head[1].p = 0.0
    sd = StackedMLP.from_models(duals)
    sd.aux_dropout = 0.0
    x = torch.randn(2, 16, 6) * torch.tensor([1.0, 5.0]).view(2, 1, 1)
    _, za, _ = sd.forward_both(x)
    for j, d in enumerate(duals):
        _, b, _ = d.forward_both(x[j])
        assert torch.allclose(za[j], b, atol=1e-5)
        assert torch.allclose(sd.state_dict_of(j)["aux_head.2.running_var"], d.aux_head[2].running_var, atol=1e-6)


@pytest.mark.parametrize("kind", ["ce", "ls", "kd", "dkd", "dist", "binary_kl", "binary_kl_norm"])
def test_stacked_loss_terms_equal_loss_terms_per_model(kind):
    g = torch.Generator().manual_seed(1)
    z, za, zt = (torch.randn(3, 8, 5, generator=g) for _ in range(3))
    y = torch.randint(0, 5, (3, 8), generator=g)
    spec = T.LossSpec(kind, ce_weight=0.3, kd_weight=0.7, T=2.0, warmup_epochs=3, aux_head=kind == "binary_kl_norm")
    st = S.stacked_loss_terms(spec, z, za, zt, y, 2)
    for j in range(3):
        ref = T.loss_terms(spec, z[j], za[j], zt[j], y[j], 2)
        assert set(ref) == set(st)
        for name in ref:
            assert torch.allclose(st[name][j], ref[name], atol=1e-6), (kind, name)


def _one_at_a_time(split, spec, zt, seed, init, epochs, **kw):
    m = MLP(6, 4, hidden=(16, 12)) if not isinstance(init, DualHeadStudent) else DualHeadStudent(_mlp(0), 4, nonlinear=False)
    m.load_state_dict(init.state_dict())
    return T.train_student(m, split, spec, teacher_logits=zt, epochs=epochs, lr=1e-2, batch_size=32, seed=seed, **kw), m


def test_stacked_training_equals_one_at_a_time():
    # same init and data -> the same per-epoch losses and accuracies, the same best epoch, the same final weights
    splits = [_blobs(seed=s) for s in (0, 1)]
    teachers = [3 * torch.randn(200, 4, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    specs = [T.LossSpec("ce"), T.LossSpec("kd", ce_weight=0.1, kd_weight=0.9, T=4.0), T.LossSpec("dkd", beta=2.0, warmup_epochs=2),
             T.LossSpec("dist", T=1.0), T.LossSpec("ls", eps=0.1)]
    jobs = [S.StackedJob(splits[r], sp, teachers[r], seed=r, init=_mlp(r)) for r in (0, 1) for sp in specs]
    fits, final = S.train_stacked(jobs, epochs=4, lr=1e-2, batch_size=32, schedule="cosine", final_frac=0.0)
    for j, job in enumerate(jobs):
        ref, m = _one_at_a_time(job.split, job.spec, job.teacher_logits, job.seed, job.init, 4, schedule="cosine", final_frac=0.0)
        for key in ("train_loss", "val_loss", "test_loss", "lr"):
            assert fits[j].curves[key] == pytest.approx(ref.curves[key], abs=1e-5), (j, key)
        for key in ("train_acc", "val_acc", "test_acc"):
            assert fits[j].curves[key] == pytest.approx(ref.curves[key], abs=1.5 / 100), (j, key)  # ≤ 1 example of 100 off by rounding
        assert fits[j].best_epoch == ref.best_epoch
        sd = final.state_dict_of(j)
        assert all(torch.allclose(sd[k_], v, atol=1e-4) for k_, v in m.state_dict().items())


def test_stacked_gradient_alignment_equals_one_at_a_time():
    split, zt = _blobs(seed=2), 3 * torch.randn(200, 4, generator=torch.Generator().manual_seed(3))
    spec = T.LossSpec("binary_kl_norm", ce_weight=1.0, T=2.0, aux_head=True, ga=True)
    inits = [DualHeadStudent(_mlp(s), 4, nonlinear=False) for s in (0, 1)]
    jobs = [S.StackedJob(split, spec, zt, seed=0, init=inits[0]), S.StackedJob(split, T.LossSpec("binary_kl_norm", T=2.0, aux_head=True), zt, seed=0, init=inits[1])]
    fits, _ = S.train_stacked(jobs, epochs=3, lr=1e-2, batch_size=32)
    for j, job in enumerate(jobs):
        m = DualHeadStudent(_mlp(0), 4, nonlinear=False)
        m.load_state_dict(job.init.state_dict())
        ref = T.train_student(m, split, job.spec, teacher_logits=zt, epochs=3, lr=1e-2, batch_size=32, seed=0)
        assert fits[j].curves["train_loss"] == pytest.approx(ref.curves["train_loss"], abs=1e-5)


def test_aligned_grads_project_per_model():
    # model 0 conflicts (KD grad (-1, 1) vs CE grad (1, 0)) and is projected; model 1 has GA off and is summed
    w = torch.zeros(2, 2, requires_grad=True)
    ce = (w * torch.tensor([[1.0, 0.0], [1.0, 0.0]])).sum()
    kd = (w * torch.tensor([[-1.0, 1.0], [-1.0, 1.0]])).sum()
    S._aligned_grads(ce, kd, [w], torch.tensor([True, False]))
    assert torch.allclose(w.grad, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    assert torch.allclose(w.grad[0], D.project_conflicting([torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])]))


def test_gradient_cosines_match_loss_gradient_cosines():
    # per model the same cosines as the one-model reference (train.loss_gradient_cosines on head / body groups)
    split, zt = _blobs(seed=4), 3 * torch.randn(200, 4, generator=torch.Generator().manual_seed(5))
    ms = [_mlp(s) for s in range(3)]
    st = StackedMLP.from_models(ms)
    spec = T.LossSpec("binary_kl", T=2.0)
    xs, ys, zs = (torch.stack([t] * 3) for t in (split.x_train, split.y_train, zt))
    got = S.gradient_cosines(st, xs, ys, zs, spec, n=150)
    for j, m in enumerate(ms):
        ref = T.loss_gradient_cosines(m, split.x_train[:150], split.y_train[:150], zt[:150], lambda z, t: D.binary_kl(z, t, 2.0),
                                      {"head": list(m.head.parameters()), "backbone": list(m.body.parameters())})
        assert got[j]["cos_head"] == pytest.approx(ref["head"], abs=1e-5) and got[j]["cos_backbone"] == pytest.approx(ref["backbone"], abs=1e-5)


def test_cosine_callback_records_every_k_epochs():
    split, zt = _blobs(seed=6), torch.randn(200, 4, generator=torch.Generator().manual_seed(6))
    jobs = [S.StackedJob(split, T.LossSpec("binary_kl", T=2.0), zt, seed=0, init=_mlp(0))]
    fits, _ = S.train_stacked(jobs, epochs=4, lr=1e-2, batch_size=50, epoch_callback=S.cosine_callback(T.LossSpec("binary_kl", T=2.0), every=3, n=64))
    c = fits[0].curves["cos_head"]
    assert len(c) == 4 and not math.isnan(c[0]) and math.isnan(c[1]) and not math.isnan(c[2]) and -1 <= c[2] <= 1


def test_run_replicates_stacked_equals_one_at_a_time():
    # the book's entry point: the same rows (selected-epoch accuracies, best epochs) either way
    from lossbook.distillation import replicates as rep

    reps = [rep.Replicate(s, s, _blobs(seed=10 + s), {"logits": {"train": 3 * torch.randn(200, 4, generator=torch.Generator().manual_seed(s))}})
            for s in (0, 1)]
    methods = {"ce": T.LossSpec("ce"), "kd": T.LossSpec("kd", ce_weight=0.1, kd_weight=0.9, T=4.0)}
    kw = {"make_student": lambda: MLP(6, 4, hidden=(16, 12)), "epochs": 3, "lr": 1e-2, "batch_size": 32, "schedule": "cosine", "progress": False}
    a, _ = rep.run_replicates(reps, methods, stacked=True, **kw)
    b, _ = rep.run_replicates(reps, methods, **kw)
    cols = ["method", "seed", "best_epoch", "epochs", "data_seed"]
    assert a[cols].equals(b[cols])
    assert a["test_acc"].to_numpy() == pytest.approx(b["test_acc"].to_numpy(), abs=0.011)
    with pytest.raises(ValueError, match="stacked"):
        rep.run_replicates(reps, methods, epoch_callback=lambda *a_: [], **kw)


def test_stacked_workers_give_the_same_runs_as_one_stack():
    # the stack split over 2 processes: bitwise the same curves (gradient cosines included), best epochs, final weights, logged rows
    from lossbook.tracking import MetricLogger

    splits = [_blobs(seed=s) for s in (0, 1)]
    teachers = [3 * torch.randn(200, 4, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    specs = [T.LossSpec("ce"), T.LossSpec("kd", ce_weight=0.1, kd_weight=0.9, T=4.0), T.LossSpec("dkd", beta=2.0, warmup_epochs=2),
             T.LossSpec("binary_kl", T=2.0)]
    kw = {"epochs": 3, "lr": 1e-2, "batch_size": 32, "schedule": "cosine", "final_frac": 0.0,
          "epoch_callback": S.cosine_callback(T.LossSpec("binary_kl", T=2.0), every=2, n=64)}

    def jobs():
        return [S.StackedJob(splits[r], sp, teachers[r], seed=r, init=_mlp(r), logger=MetricLogger(to_run=False)) for r in (0, 1) for sp in specs[: 3 + r]]

    one, two = jobs(), jobs()  # 7 jobs: chunks of 4 and 3 with different loss groups
    fa, ma = S.train_stacked(one, **kw)
    fb, mb = S.train_stacked(two, workers=2, **kw)
    for j in range(len(one)):
        assert fa[j].curves.keys() == fb[j].curves.keys() and fa[j].best_epoch == fb[j].best_epoch
        for key, v in fa[j].curves.items():
            assert torch.allclose(torch.tensor(v), torch.tensor(fb[j].curves[key]), atol=0, rtol=0, equal_nan=True), (j, key)
        assert all(torch.allclose(v, fb[j].best_state[k_], atol=0, rtol=0) for k_, v in fa[j].best_state.items())
        assert all(torch.allclose(v, mb.state_dict_of(j)[k_], atol=0, rtol=0) for k_, v in ma.state_dict_of(j).items())
        assert one[j].logger.history.keys() == two[j].logger.history.keys()
        assert [s for s, _ in two[j].logger.history["val_acc"]] == [1, 2, 3]
    duals = [S.StackedJob(splits[0], T.LossSpec("binary_kl_norm", ce_weight=1.0, T=2.0, aux_head=True, ga=ga), teachers[0], seed=0,
                          init=DualHeadStudent(_mlp(s), 4, nonlinear=False)) for s, ga in ((0, True), (1, False))]
    fa, _ = S.train_stacked(duals, epochs=2, lr=1e-2, batch_size=32)
    fb, _ = S.train_stacked(duals, epochs=2, lr=1e-2, batch_size=32, workers=2)
    assert all(torch.allclose(torch.tensor(a.curves["train_loss"]), torch.tensor(b.curves["train_loss"]), atol=0, rtol=0) for a, b in zip(fa, fb, strict=True))
    with pytest.raises(ValueError, match="workers"):
        S.train_stacked(duals, epochs=1, lr=1e-2, workers=0)
