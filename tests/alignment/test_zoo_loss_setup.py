"""`zoo.loss_setup`: one β and one set of options for every loss, SimPO's own β/γ, a fresh BCO δ per run."""

from __future__ import annotations

import torch

from lossbook.alignment.registry import get_preference_loss
from lossbook.alignment.zoo import RunningMean, loss_setup

OPTS = {"beta": 0.1, "label_smoothing": 0.2, "fdpo_alpha": 0.3, "simpo_beta": 2.0, "simpo_gamma": 1.0}


def test_shared_options_and_extra_override() -> None:
    assert loss_setup("cdpo", **OPTS) == (0.1, {"label_smoothing": 0.2, "alpha": 0.3})
    b, kw = loss_setup("rpo", {"eta": 0.005, "alpha": 0.9}, **OPTS)
    assert b == 0.1 and kw == {"label_smoothing": 0.2, "alpha": 0.9, "eta": 0.005}


def test_simpo_gets_its_own_beta_and_gamma() -> None:
    assert loss_setup("simpo", **OPTS) == (2.0, {"label_smoothing": 0.2, "alpha": 0.3, "gamma": 1.0})


def test_bco_gets_a_fresh_running_mean_each_call() -> None:
    _, a = loss_setup("bco_pair", **OPTS)
    _, b = loss_setup("bco_pair", **OPTS)
    assert isinstance(a["delta_state"], RunningMean) and a["delta_state"] is not b["delta_state"]
    assert a["delta_state"].count == 0


def test_keywords_reach_the_losses() -> None:
    c, r, rc, rr = (torch.tensor([v], dtype=torch.float64) for v in (-1.0, -3.0, -2.0, -1.5))
    lens = {"chosen_len": torch.tensor([4.0], dtype=torch.float64), "rejected_len": torch.tensor([2.0], dtype=torch.float64)}
    for name in ("cdpo", "simpo", "fdpo_alpha", "bco_pair", "dpo"):
        b, kw = loss_setup(name, **OPTS)
        out = get_preference_loss(name)(c, r, rc, rr, beta=b, **lens, **kw)
        assert torch.isfinite(out).all(), name
    # label smoothing changes cDPO, γ changes SimPO: the keywords are read, not dropped
    b, kw = loss_setup("cdpo", **{**OPTS, "label_smoothing": 0.0})
    assert not torch.allclose(get_preference_loss("cdpo")(c, r, rc, rr, beta=b, **kw), get_preference_loss("cdpo")(c, r, rc, rr, beta=0.1, label_smoothing=0.2))
