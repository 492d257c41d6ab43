"""LR schedules: closed-form values, warmup, monotone decay, WSD's stable phase and cooldown shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossbook.optim.schedules import lr_curve, lr_multiplier


def test_warmup_linear_then_peak():
    c = lr_curve("cosine", 100, warmup=10)
    np.testing.assert_allclose(c[:10], np.arange(1, 11) / 10)
    assert c[10] == pytest.approx(1.0)


def test_cosine_closed_form_and_floor():
    T, w = 101, 0
    c = lr_curve("cosine", T, warmup=w, final_frac=0.1)
    assert c[0] == pytest.approx(1.0) and c[-1] == pytest.approx(0.1)
    assert c[50] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(c, c[1:]))


def test_wsd_stable_then_decay_shapes():
    T = 100
    for shape, mid in [("linear", 0.5), ("sqrt", 1 - math.sqrt(0.5)), ("cosine", 0.5)]:
        c = lr_curve("wsd", T, warmup=5, decay_frac=0.2, decay_shape=shape)
        assert all(v == 1.0 for v in c[5:80])
        assert c[-1] == pytest.approx(0.0)
        assert c[89] == pytest.approx(mid)  # halfway through the 20-step cooldown (p = 10/20)
        assert all(a >= b for a, b in zip(c[80:], c[81:]))


def test_constant_and_errors():
    assert lr_curve("constant", 5, warmup=2) == [0.5, 1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="schedule"):
        lr_multiplier("linear", 0, 10)
    with pytest.raises(ValueError, match="decay_shape"):
        lr_multiplier("wsd", 9, 10, decay_shape="exp")
