"""Distillation trainer: loss specs, validation selection, teacher cache, paired multi-seed runs, dual head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbook.data.classification import Split
from lossbook.distillation import losses as D
from lossbook.distillation import train as T
from lossbook.models.dual_head import DualHeadStudent
from lossbook.models.mlp import MLP


def _blobs(n: int = 240, d: int = 6, c: int = 3, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g) * 3

    def draw(m):
        y = torch.randint(0, c, (m,), generator=g)
        return centres[y] + torch.randn(m, d, generator=g), y

    (xt, yt), (xv, yv), (xs, ys) = draw(n), draw(n // 2), draw(n // 2)
    return Split(xt, yt, xv, yv, xs, ys, c, (d,), "blobs")


def test_loss_terms_match_library_losses():
    g = torch.Generator().manual_seed(0)
    z, za, zt = (torch.randn(8, 5, generator=g) for _ in range(3))
    y = torch.randint(0, 5, (8,), generator=g)
    ls = T.loss_terms(T.LossSpec("ls", eps=0.1), z, None, None, y, 1)
    assert torch.allclose(ls["ce"], F.cross_entropy(z, y, label_smoothing=0.1))
    kd = T.loss_terms(T.LossSpec("kd", ce_weight=0.1, kd_weight=0.9, T=4.0), z, None, zt, y, 1)
    assert torch.allclose(kd["ce"], 0.1 * F.cross_entropy(z, y)) and torch.allclose(kd["kd"], 0.9 * D.kd_loss(z, zt, 4.0))
    dkd = T.loss_terms(T.LossSpec("dkd", beta=2.0, warmup_epochs=4), z, None, zt, y, 1)
    assert torch.allclose(dkd["kd"], 0.25 * D.dkd_loss(z, zt, y, 1.0, 2.0, 4.0))  # warm-up 1/4
    aux = T.loss_terms(T.LossSpec("binary_kl_norm", T=2.0, aux_head=True), z, za, zt, y, 1)
    assert torch.allclose(aux["kd"], D.binary_kl_norm(za, zt, 2.0))  # KD goes to the auxiliary head
    with pytest.raises(ValueError):
        T.loss_terms(T.LossSpec("kd"), z, None, None, y, 1)
    with pytest.raises(ValueError):
        T.LossSpec("bogus")


def test_train_student_learns_and_selects_on_validation():
    split = _blobs()
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=(16,))
    r = T.train_student(model, split, T.LossSpec("ce"), teacher_logits=None, epochs=6, lr=1e-2, batch_size=32)
    assert r.curves["val_acc"][-1] > 0.9 and r.test_acc > 0.85
    assert r.best_val_acc == max(r.curves["val_acc"])
    assert r.test_acc == r.curves["test_acc"][r.best_epoch - 1]
    with pytest.raises(ValueError, match="teacher logits"):
        T.train_student(model, split, T.LossSpec("kd"), teacher_logits=None, epochs=1, lr=1e-2)


def test_kd_student_copies_teacher():
    # a student distilled (KD only, no CE) from a teacher that labels by a planted rule reproduces the rule,
    # even though the given labels are pure noise
    split = _blobs(seed=1)
    w = torch.randn(6, 3, generator=torch.Generator().manual_seed(5))
    zt = 5 * split.x_train @ w
    noisy = Split(split.x_train, torch.randint(0, 3, (len(split.y_train),)), split.x_val, (split.x_val @ w).argmax(1),
                  split.x_test, (split.x_test @ w).argmax(1), 3, (6,), "planted")
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=(32,))
    r = T.train_student(model, noisy, T.LossSpec("kd", ce_weight=0.0, T=2.0), teacher_logits=zt, epochs=30, lr=1e-2, batch_size=32)
    assert r.test_acc > 0.85


def test_backward_terms_gradient_alignment():
    w = torch.zeros(2, requires_grad=True)
    ce = (w * torch.tensor([1.0, 0.0])).sum()  # grad (1, 0)
    kd = (w * torch.tensor([-1.0, 1.0])).sum()  # grad (-1, 1): conflicts
    T.backward_terms({"ce": ce, "kd": kd}, [w], ga=True)
    assert torch.allclose(w.grad, torch.tensor([1.0, 1.0]))
    w.grad = None
    T.backward_terms({"ce": (w * torch.tensor([1.0, 0.0])).sum(), "kd": (w * torch.tensor([-1.0, 1.0])).sum()}, [w], ga=False)
    assert torch.allclose(w.grad, torch.tensor([0.0, 1.0]))


def test_teacher_cache_hit_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path))
    split = _blobs()
    kw = dict(arch="mlp", arch_kwargs={"hidden": (8,)}, epochs=2, lr=1e-2)
    t1 = T.get_teacher(split, {"name": "blobs", "seed": 0}, **kw)
    files = list((tmp_path / "teacher").glob("*.pt"))
    assert len(files) == 1
    t2 = T.get_teacher(split, {"name": "blobs", "seed": 0}, **kw)
    assert torch.equal(t1["logits"]["train"], t2["logits"]["train"])
    T.get_teacher(split, {"name": "blobs", "seed": 1}, **kw)  # different data config -> new entry
    assert len(list((tmp_path / "teacher").glob("*.pt"))) == 2
    assert set(t1["logits"]) == {"train", "val", "test"} and t1["logits"]["val"].shape == (120, 3)


def test_run_methods_is_paired_and_compare():
    split = _blobs()
    specs = {"a": T.LossSpec("ce"), "b": T.LossSpec("ce"), "ls": T.LossSpec("ls", eps=0.2)}
    df, res, _ = T.run_methods(split, specs, make_student=lambda: MLP(6, 3, hidden=(8,)), teacher_logits=None,
                               seeds=[0, 1], epochs=2, lr=1e-2, batch_size=64, progress=False)
    assert len(df) == 6
    # same seed -> same init and batch order: identical specs give identical curves
    assert res[("a", 0)].curves == res[("b", 0)].curves
    assert res[("a", 0)].curves != res[("a", 1)].curves
    passed, ci = T.compare(df, "a", "b")
    assert passed is None and ci.diff == 0.0
    summ = T.summarize(df)
    assert list(summ.index) == ["a", "b", "ls"] and (summ["n"] == 2).all()


def test_dual_head_student():
    torch.manual_seed(0)
    m = DualHeadStudent(MLP(6, 3, hidden=(8,)), 3)
    x = torch.randn(4, 6)
    z, za, f = m.forward_both(x)
    assert torch.equal(z, m(x)) and za.shape == (4, 3) and f.shape == (4, 8)
    assert not torch.allclose(z, za)
    ids = {id(p) for p in m.backbone_parameters()}
    assert all(id(p) not in ids for p in m.head.parameters()) and all(id(p) not in ids for p in m.aux_head.parameters())
    nl = DualHeadStudent(MLP(6, 3, hidden=(8,)), 3, nonlinear=True)
    assert nl.forward_both(x)[1].shape == (4, 3)


def test_gradient_cosines_signs():
    torch.manual_seed(0)
    m = MLP(6, 3, hidden=(8,))
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    groups = {"head": list(m.head.parameters()), "backbone": list(m.body.parameters())}
    # KD towards the one-hot labels' own logits: same direction as CE -> cosine > 0
    zt = 10 * F.one_hot(y, 3).float()
    cos = T.loss_gradient_cosines(m, x, y, zt, lambda z, t: D.kd_loss(z, t, 1.0), groups)
    assert cos["head"] > 0.5
    # the negated CE is exactly opposite: cosine −1 on every group
    cos2 = T.loss_gradient_cosines(m, x, y, zt, lambda z, t: -F.cross_entropy(z, y), groups)
    assert cos2["head"] == pytest.approx(-1.0, abs=1e-5) and cos2["backbone"] == pytest.approx(-1.0, abs=1e-5)


def test_linear_probe_on_informative_and_random_features():
    split = _blobs(n=300)
    acc = T.linear_probe(split.x_train, split.y_train, split.x_test, split.y_test)
    assert acc > 0.9
    noise = torch.randn_like(split.x_train), torch.randn_like(split.x_test)
    assert T.linear_probe(noise[0], split.y_train, noise[1], split.y_test) < 0.6


def test_head_diagnostics_on_a_trained_student():
    split = _blobs(n=300)
    torch.manual_seed(0)
    m = MLP(6, 3, hidden=(16,))
    T.train_student(m, split, T.LossSpec("ce"), teacher_logits=None, epochs=5, lr=1e-2, batch_size=32)
    zt = 10 * F.one_hot(split.y_train, 3).float()  # a teacher that agrees with the labels: no conflict
    d = T.head_diagnostics(m, split, zt, lambda z, t: D.kd_loss(z, t, 1.0), probe_steps=100)
    assert set(d) == {"cos head", "cos backbone", "own head", "linear probe"}
    assert d["cos head"] > 0.5 and d["cos backbone"] > 0.5 and d["own head"] > 0.85 and d["linear probe"] > 0.85
    assert m.training  # the train/eval mode is restored
