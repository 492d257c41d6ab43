"""The multi-power law, its baselines and fit (lossbook.scaling.schedule_laws), the schedules it needs, the river-valley toy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import huber as sp_huber

from lossbook.optim.schedules import lr_curve, lr_multiplier
from lossbook.scaling import schedule_laws as sl

P = {"L0": 2.0, "A": 0.5, "alpha": 0.45, "B": 40.0, "C": 2.0, "beta": 0.6, "gamma": 0.65}  # B·η_max = 0.12 at η_max = 3e-3


def official_mpl(p: dict, lrs: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The official `src/evaluation.py` loop, transcribed: pred = L0 + A·S1^-α + B·Σ lr_gap·(1 − (1 + C·η^-γ·(Σ))^-β)."""
    lr_sum = np.cumsum(lrs)
    lr_gap = np.zeros(len(lrs))
    lr_gap[1:] = np.diff(lrs)
    LD = np.array([np.sum(lr_gap[1 : s + 1] * (1 - (1 + p["C"] * lrs[1 : s + 1] ** (-p["gamma"]) * (lr_sum[s] - lr_sum[:s])) ** (-p["beta"])))
                   for s in t])
    return p["L0"] + p["A"] * lr_sum[t] ** (-p["alpha"]) + p["B"] * LD


def test_two_stage_and_exp_schedules():
    c = lr_curve("two_stage", 100, warmup=5, final_frac=0.3, decay_frac=0.5)
    assert c[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert c[5:50] == [1.0] * 45 and c[50:] == [0.3] * 50
    e = lr_curve("wsd", 100, final_frac=0.1, decay_frac=0.2, decay_shape="exp")
    assert e[:80] == [1.0] * 80
    assert e[80:] == pytest.approx([0.1 ** ((i + 1) / 20) for i in range(20)])
    assert e[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        lr_multiplier("wsd", 90, 100, decay_shape="exp", final_frac=0.0)


def test_constant_schedule_has_no_loss_drop_and_is_a_power_law_in_s1():
    lrs = sl.schedule_lrs("constant", 300, 3e-3)
    t = np.arange(0, 300, 7)
    assert np.all(sl.mpl_loss_drop(lrs, t, P["B"], P["C"], P["beta"], P["gamma"]).numpy() == 0.0)
    closed = P["L0"] + P["A"] * (3e-3 * (t + 1)) ** (-P["alpha"])
    np.testing.assert_allclose(sl.mpl_predict(P, lrs, t).numpy(), closed, rtol=1e-13)
    np.testing.assert_allclose(sl.power_predict(P, lrs, t).numpy(), closed, rtol=1e-13)


def test_loss_drop_of_one_step_down_is_the_closed_form():
    """One drop η_a → η_b at step k0: LD(t) = B·(η_a − η_b)·(1 − (C·η_b^(1−γ)·(t − k0 + 1) + 1)^(−β)) for t ≥ k0."""
    lrs = sl.schedule_lrs("two_stage", 200, 3e-3, final_frac=0.3, decay_frac=0.5)
    t = np.arange(0, 200, 3)
    k0, ea, eb = 100, 3e-3, 9e-4
    closed = np.where(t >= k0, P["B"] * (ea - eb) * (1 - (P["C"] * eb ** (1 - P["gamma"]) * (t - k0 + 1) + 1) ** (-P["beta"])), 0.0)
    got = sl.mpl_loss_drop(lrs, t, P["B"], P["C"], P["beta"], P["gamma"]).numpy()
    np.testing.assert_allclose(got, closed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("schedule,kw", [("cosine", {}), ("wsd", {"decay_shape": "linear", "final_frac": 0.1}), ("two_stage", {})])
def test_mpl_matches_the_official_loop(schedule, kw):
    lrs = sl.schedule_lrs(schedule, 400, 3e-3, warmup=20, **kw)
    t = np.arange(25, 400, 11)
    np.testing.assert_allclose(sl.mpl_predict(P, lrs, t).numpy(), official_mpl(P, lrs, t), rtol=1e-12)


def test_momentum_area_closed_form_for_one_step_down():
    lrs = sl.schedule_lrs("two_stage", 200, 1.0, final_frac=0.3, decay_frac=0.5)
    t = np.arange(200)
    lam, k0 = 0.95, 100
    closed = np.where(t >= k0, 0.7 * (1 - lam ** (t - k0 + 1)) / (1 - lam), 0.0)
    np.testing.assert_allclose(sl.momentum_area(lrs, t, lam).numpy(), closed, rtol=1e-12, atol=1e-14)


def test_huber_matches_scipy():
    r = np.linspace(-0.01, 0.01, 41)
    np.testing.assert_allclose(sl.huber(torch.from_numpy(r)).numpy(), sp_huber(1e-3, r), rtol=1e-14)


def _curves(p: dict, noise: float = 0.0, seed: int = 0) -> list[sl.Curve]:
    rng = np.random.default_rng(seed)
    out = []
    for name, sch, kw in [("constant", "constant", {}), ("cosine", "cosine", {}), ("two_stage", "two_stage", {"decay_frac": 0.5})]:
        lrs = sl.schedule_lrs(sch, 400, 3e-3, warmup=20, **kw)
        t = np.arange(29, 400, 20)
        y = sl.mpl_predict(p, lrs, t).numpy() * (1 + noise * rng.standard_normal(t.size))
        out.append(sl.Curve(name, lrs, t, y))
    return out


def test_objective_gradient_matches_finite_differences():
    curves = _curves(P, noise=2e-3)
    _, names = sl.LAWS["mpl"]
    u = sl._to_u(names, {**P, "L0": 1.97, "B": 55.0, "C": 1.2})
    f, g = sl.objective_and_grad("mpl", u, curves, scale=1e6)
    h = 1e-6
    fd = np.array([(sl.objective_and_grad("mpl", u + h * e, curves, scale=1e6)[0] - sl.objective_and_grad("mpl", u - h * e, curves, scale=1e6)[0]) / (2 * h)
                   for e in np.eye(len(u))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * max(1.0, abs(f)))


def test_fit_recovers_planted_parameters_and_predicts_held_out_wsd():
    curves = _curves(P)
    fit = sl.fit_law("mpl", curves)
    assert fit.objective < 1e-9 and not fit.flags
    wsd = sl.schedule_lrs("wsd", 400, 3e-3, warmup=20, decay_shape="linear", final_frac=0.1, decay_frac=0.2)
    t = np.arange(29, 400, 10)
    err = sl.relative_error(fit, sl.Curve("wsd", wsd, t, sl.mpl_predict(P, wsd, t).numpy()))
    assert err["max"] < 1e-4
    for k in ("L0", "A", "alpha"):
        assert fit.params[k] == pytest.approx(P[k], rel=0.05)
    assert fit.params["B"] * (1 - (fit.params["C"] * 1e-3 + 1) ** -fit.params["beta"]) > 0  # a loss drop of the planted sign


def test_power_law_cannot_fit_a_decay_but_momentum_law_is_between():
    curves = _curves(P)
    start, errs = sl.initial_guess(curves), {}
    for law, fixed in [("power", None), ("momentum", {"lam": 0.99}), ("mpl", None)]:
        f = sl.fit_law(law, curves, fixed=fixed, start=start)
        errs[law] = np.mean([sl.relative_error(f, c)["mean"] for c in curves])
    assert errs["mpl"] < errs["momentum"] < errs["power"]
    assert math.isfinite(errs["power"])


def test_river_valley_toy_split_is_exact_at_init_and_decay_removes_the_hill():
    V, det = 16, 0.5
    r0 = sl.river_valley_bigram("constant", steps=1, lr=1e-12, vocab=V, det_frac=det, init_std=0.0, log_every=1)
    # W = 0: every row uniform, so the river part is det·log V, the hill part (KL from uniform) is 0
    assert r0["river"][0] == pytest.approx(det * math.log(V), rel=1e-9)
    assert abs(r0["hill"][0]) < 1e-9
    assert r0["loss"][0] == pytest.approx(math.log(V), rel=1e-9)
    kw = {"decay_frac": 0.3, "decay_shape": "linear", "final_frac": 0.0}
    r = sl.river_valley_bigram("wsd", steps=3000, lr=8.0, vocab=V, det_frac=det, init_std=2.0, log_every=100, schedule_kwargs=kw)
    np.testing.assert_allclose(r["loss"], r["river"] + r["hill"] + (1 - det) * math.log(V), rtol=1e-12)
    assert np.all(r["hill"] >= 0) and r["river"][-1] < r["river"][0]
    i = int(np.searchsorted(r["step"], 2100))
    assert r["hill"][-1] < 0.5 * r["hill"][i]  # the decay removes most of the oscillation


def test_profile_objective_is_minimal_at_the_planted_exponent_and_holds_it_fixed():
    curves = _curves(P)
    start = sl.initial_guess(curves)
    values = [0.2, P["beta"], 2.0]
    prof = sl.profile_objective("mpl", curves, "beta", values, start=start)
    assert [f.params["beta"] for f in prof] == values  # held, not fitted
    assert not any("beta" in fl for f in prof for fl in f.flags)
    obj = [f.objective for f in prof]
    assert obj[1] < 1e-9 < min(obj[0], obj[2])  # noiseless curves: only the planted β fits exactly
    assert prof[1].params["gamma"] == pytest.approx(P["gamma"], rel=0.05)
