"""Unpaired BCO / KTO (lossbook.alignment.unpaired): gradients vs autograd, Thm 3/4 in closed form, UDM against a known
density ratio, and the unpaired data construction (disjoint prompts, the requested shift)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from lossbook.alignment import unpaired as U
from lossbook.alignment.refusal import prompt_statement
from lossbook.alignment.world import SyntheticWorld, WorldConfig
from lossbook.alignment.zoo import RunningMean, bco_unpaired_loss, udm_weights
from lossbook.models.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(seed=0))


def _rewards(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lp = (-5 + 2 * torch.randn(n, generator=g, dtype=torch.float64)).requires_grad_(True)
    ref = -5 + 2 * torch.randn(n, generator=g, dtype=torch.float64)
    des = torch.arange(n) % 3 != 0
    return lp, ref, des


def test_bco_unpaired_gradient_matches_closed_form() -> None:
    """∂ℓ/∂log π = −β σ(−(r − δ)) on D⁺ and +β w σ(r − δ) on D⁻ (r = β log-ratio), δ and w constants."""
    lp, ref, des = _rewards()
    beta, delta = 0.3, 0.4
    w = torch.linspace(0.5, 3.0, lp.numel(), dtype=torch.float64)
    bco_unpaired_loss(lp, ref, des, beta=beta, delta=delta, udm_weight=w).sum().backward()
    r = beta * (lp.detach() - ref)
    expected = torch.where(des, -beta * torch.sigmoid(-(r - delta)), beta * w * torch.sigmoid(r - delta))
    torch.testing.assert_close(lp.grad, expected)


def test_running_delta_carries_no_gradient_and_is_the_batch_mean() -> None:
    """The wrapper's running δ (TRL: mean of every reward of the batch) is updated before use and not differentiated."""
    lp, ref, des = _rewards()
    data = U.BinaryData(torch.zeros(1), torch.zeros(1), des, torch.zeros(len(des)), [], [])
    ctx = {"beta": 0.2, "delta_state": RunningMean(), "udm_weight": torch.ones(len(des), dtype=torch.float64)}
    U.UNPAIRED_LOSSES["bco"](lp, ref, data, ctx).backward()
    r = 0.2 * (lp.detach() - ref)
    d = float(r.mean())
    assert ctx["delta_state"].mean == pytest.approx(d)
    expected = torch.where(des, -0.2 * torch.sigmoid(-(r - d)), 0.2 * torch.sigmoid(r - d)) / len(des)
    torch.testing.assert_close(lp.grad, expected)


def test_kto_unpaired_gradient_matches_closed_form_and_z0_is_detached() -> None:
    lp, ref, des = _rewards(seed=1)
    beta = 0.5
    kl = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    U.kto_unpaired_loss(lp, ref, des, beta=beta, kl=kl, desirable_weight=1.5, undesirable_weight=0.7).sum().backward()
    s = lp.detach() - ref
    pd, pu = torch.sigmoid(beta * (s - 0.3)), torch.sigmoid(beta * (0.3 - s))
    expected = torch.where(des, -1.5 * beta * pd * (1 - pd), 0.7 * beta * pu * (1 - pu))
    torch.testing.assert_close(lp.grad, expected)
    assert kl.grad is None


def test_kto_reference_point_is_clamped_at_zero() -> None:
    lp, ref, des = _rewards(seed=2)
    a = U.kto_unpaired_loss(lp, ref, des, beta=0.1, kl=-3.0)
    b = U.kto_unpaired_loss(lp, ref, des, beta=0.1, kl=0.0)
    torch.testing.assert_close(a, b)


def test_thm3_bce_upper_bounds_dpo_for_every_delta() -> None:
    rng = np.random.default_rng(0)
    rw, rl = rng.normal(0, 3, 200), rng.normal(0, 3, 200)
    gaps = U.bce_dpo_gap(rw, rl, np.linspace(-10, 10, 101))
    assert gaps.shape == (101, 200)
    assert (gaps > 0).all()


def test_thm4_argmin_closed_form() -> None:
    """One pair: the bound e^{−(r_w−δ)} + e^{r_l−δ} is smallest at (r_w + r_l)/2; a batch: at ½(log Σe^{r_l} − log Σe^{−r_w})."""
    assert U.bound_argmin_delta([1.3], [-0.4]) == pytest.approx((1.3 - 0.4) / 2)
    rng = np.random.default_rng(1)
    rw, rl = rng.normal(0.5, 1, 50), rng.normal(-0.5, 1, 50)
    grid = np.linspace(-3, 3, 60001)
    bound = np.exp(-(rw[None] - grid[:, None])).sum(1) + np.exp(rl[None] - grid[:, None]).sum(1)
    assert U.bound_argmin_delta(rw, rl) == pytest.approx(grid[np.argmin(bound)], abs=2e-4)
    # and for one pair the exact gap is smallest at the midpoint too (it is symmetric about it)
    g = U.bce_dpo_gap([2.0], [0.0], grid)[:, 0]
    assert grid[np.argmin(g)] == pytest.approx(1.0, abs=2e-4)


def test_excess_gap_is_zero_at_the_grid_argmin() -> None:
    rw, rl = np.array([1.0, 2.0, 0.5]), np.array([-1.0, 0.0, 0.2])
    grid = np.linspace(-2, 3, 501)
    ex = U.excess_gap_at(rw, rl, 0.3, grid)
    again = U.excess_gap_at(rw, rl, ex["delta_min"], grid)
    assert again["rel_excess"] == pytest.approx(0.0, abs=1e-12)
    assert ex["rel_excess"] >= 0 and ex["gap_zero"] >= ex["gap_min"]


def test_udm_weights_recover_the_density_ratio_of_two_gaussians() -> None:
    """x⁺ ~ N(μ, I), x⁻ ~ N(−μ, I): p⁺(x)/p⁻(x) = exp(2 μ·x); the balanced logistic regression recovers it (clipped)."""
    rng = np.random.default_rng(0)
    mu = np.array([0.4, -0.2])
    xp, xn = rng.normal(mu, 1, (4000, 2)), rng.normal(-mu, 1, (4000, 2))
    q = rng.normal(0, 0.7, (300, 2))
    w = udm_weights(xp, xn, q, min_ratio=0.5, max_ratio=10.0).numpy()
    true = np.clip(np.exp(2 * q @ mu), 0.5, 10.0)
    assert np.abs(np.log(w) - np.log(true)).mean() < 0.05
    assert U.udm_quality(w, np.zeros(300), 0.0)["mean_abs_log_err"] == pytest.approx(np.abs(np.log(w)).mean())


def test_unpaired_split_disjoint_prompts_and_requested_shift(world: SyntheticWorld) -> None:
    n, s = 300, 0.8
    d = U.unpaired_split(world, n, shift=s, on="speaker", seed=3)
    pos = {tuple(p) for p, k in zip(d.prompts, d.desirable) if k}
    neg = {tuple(p) for p, k in zip(d.prompts, d.desirable) if not k}
    assert len(pos) == n and len(neg) == n and not pos & neg
    # speakers are uniform on {-1, -½, 0, ½, 1}: E[z | D⁺] = s·E[z²] / (1 + s·E[z]) = s/2, E[z | D⁻] = −s/2
    assert float(d.z[d.desirable].mean()) == pytest.approx(s / 2, abs=0.12)
    assert float(d.z[~d.desirable].mean()) == pytest.approx(-s / 2, abs=0.12)
    # the true ratio of speaker frequencies D⁺/D⁻ follows (1 + s z)/(1 − s z) (checked on the middle speakers, which both sets hold)
    for z in (-0.5, 0.5):
        ratio = float((d.z[d.desirable] == z).sum()) / float((d.z[~d.desirable] == z).sum())
        assert ratio == pytest.approx(float(U.true_density_ratio([z], s)[0]), rel=0.5)
    d0 = U.unpaired_split(world, n, shift=0.0, on="speaker", seed=3)
    assert abs(float(d0.z[d0.desirable].mean())) < 0.12 and abs(float(d0.z[~d0.desirable].mean())) < 0.12
    with pytest.raises(ValueError):
        U.unpaired_split(world, 4, shift=1.0)


def test_unpaired_responses_and_labels(world: SyntheticWorld) -> None:
    """D⁺ rows carry a trait-consistent response (gold group right), D⁻ rows the pair's y_l; labels mark only the response."""
    from lossbook.alignment.refusal import gold_reward

    d = U.unpaired_split(world, 40, shift=0.5, on="trait", seed=1, types=("answer_flip",))
    g = np.array([gold_reward(world, p, r) for p, r in zip(d.prompts, d.responses)])
    assert (g[d.desirable.numpy()] >= 1.0).all() and (g[~d.desirable.numpy()] < 1.0).all()
    for i in range(len(d)):
        resp = [int(t) for t in d.labels[i] if int(t) != -100]
        assert resp == list(d.responses[i])
        # the mismatched sequence keeps the prompt and takes another example's response
        assert d.mismatch_ids[i, : len(d.prompts[i])].tolist() == list(d.prompts[i])
    mis = [[int(t) for t in d.mismatch_labels[i] if int(t) != -100] for i in range(len(d))]
    assert all(m != list(r) or d.responses.count(list(r)) > 1 for m, r in zip(mis, d.responses))


def test_trait_feature_matches_the_judge(world: SyntheticWorld) -> None:
    pairs = world.multi_token_pairs(50, seed=5)
    for p in pairs:
        assert U.prompt_feature(world, p["prompt"], "trait") == prompt_statement(world, p["prompt"])[1]
    with pytest.raises(ValueError):
        U.prompt_feature(world, pairs[0]["prompt"], "length")


def test_paired_split_layout(world: SyntheticWorld) -> None:
    pairs = world.multi_token_pairs(10, seed=2)
    d = U.paired_split(world, pairs)
    assert d.paired and len(d) == 20
    for i in range(10):
        assert d.prompts[i] == d.prompts[i + 10] and d.desirable[i] and not d.desirable[i + 10]


def test_prompt_bow_counts_tokens() -> None:
    e = U.prompt_bow([[1, 2, 2, 5]], 6)
    torch.testing.assert_close(e[0], torch.tensor([0, 1.0, 2.0, 0, 0, 1.0]))


def test_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 30).round(1)
    y = np.r_[np.ones(40), np.zeros(30)]
    assert U.auc(a, b) == pytest.approx(roc_auc_score(y, np.r_[a, b]))


def _tiny(world: SyntheticWorld) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len(), n_layer=1, n_head=2, d_model=16))


@pytest.mark.parametrize("loss", ["bco", "kto"])
def test_train_binary_lowers_its_loss_and_reports(world: SyntheticWorld, loss: str) -> None:
    import copy

    ref = _tiny(world)
    d = U.unpaired_split(world, 16, shift=0.5, seed=0)
    held = U.paired_split(world, world.multi_token_pairs(8, seed=9))
    ref_lp = U.example_logps(ref, held.ids, held.labels).detach()
    mask = U.correct_answer_mask(world, held.prompts[:8])
    h = U.train_binary(copy.deepcopy(ref), ref, d, U.BinaryConfig(loss=loss, lr=3e-3, steps=12, eval_every=4, snapshot_steps=(12,)),
                       evaluate=lambda p: U.heldout_metrics(p, held, ref_lp, 0.1, mask))
    assert h["loss"][-1] < h["loss"][0]
    assert [s for s, _ in h["eval"]] == [0, 4, 8, 12] and 12 in h["snapshots"]
    m0 = h["eval"][0][1]
    assert m0["chosen_dlogp"] == pytest.approx(0.0, abs=1e-5) and 0 <= m0["p_correct"] <= 1
    assert U.read_best(h, "p_correct")["step"] in (0, 4, 8, 12)


def test_paired_losses_refuse_unpaired_data(world: SyntheticWorld) -> None:
    ref = _tiny(world)
    d = U.unpaired_split(world, 4, shift=0.0, seed=0)
    with pytest.raises(ValueError, match="paired"):
        U.train_binary(ref, ref, d, U.BinaryConfig(loss="dpo", steps=1))
    with pytest.raises(KeyError, match="Valid"):
        U.BinaryConfig(loss="bco_unpaird")


@pytest.mark.parametrize("loss", ["bco", "kto"])
def test_resumed_run_equals_one_long_run(world: SyntheticWorld, loss: str) -> None:
    """6 updates = 3 updates + 3 resumed ones, bitwise: Adam moments and the running δ carry over, steps count on."""
    import copy

    ref = _tiny(world)
    d = U.unpaired_split(world, 8, shift=0.5, seed=1)
    held = U.paired_split(world, world.multi_token_pairs(4, seed=3))
    ref_lp = U.example_logps(ref, held.ids, held.labels).detach()
    ev = lambda p: U.heldout_metrics(p, held, ref_lp, 0.1)  # noqa: E731
    cfg = lambda n: U.BinaryConfig(loss=loss, lr=3e-3, steps=n, eval_every=2)  # noqa: E731
    long_p, short_p = copy.deepcopy(ref), copy.deepcopy(ref)
    h6 = U.train_binary(long_p, ref, d, cfg(6), evaluate=ev)
    h3 = U.train_binary(short_p, ref, d, cfg(3), evaluate=ev)
    h33 = U.train_binary(short_p, ref, d, cfg(3), evaluate=ev, resume=h3["resume"])
    for a, b in zip(long_p.state_dict().values(), short_p.state_dict().values()):
        assert torch.equal(a, b)
    assert h3["loss"] + h33["loss"] == h6["loss"] and h3["delta"] + h33["delta"] == h6["delta"]
    assert h33["step"] == [3, 4, 5] and h33["resume"]["step"] == 6
    assert [s for s, _ in h3["eval"] + h33["eval"]] == [0, 2, 3, 4, 6]  # the run's own checkpoints plus each call's end
    assert h33["eval"][-1][1] == h6["eval"][-1][1]
    if loss == "bco":
        assert h6["delta"][-1] != 0.0


def test_plateau_gain_closed_form() -> None:
    """A linear curve has zero second differences; gain = best of the last 10% − best before it; z = gain/σ̂."""
    lin = np.linspace(0.0, 1.0, 11)
    q = U.plateau_gain(lin)
    assert q["window_start"] == 9 and q["gain"] == pytest.approx(0.2) and q["noise"] == pytest.approx(0.0, abs=1e-12) and q["z"] > 1e10  # 1.0 − 0.8
    c = np.array([0.0, 0.5, 0.6, 0.7, 0.70, 0.71, 0.70, 0.71, 0.70, 0.71, 0.70])  # plateau with ±0.005 zig-zag
    q = U.plateau_gain(c)
    d2 = np.diff(c[4:], 2)  # second differences centred at checkpoints 5..9
    assert q["gain"] == pytest.approx(0.0, abs=1e-12)
    assert q["noise"] == pytest.approx(np.sqrt(np.mean(d2**2) / 6)) and q["noise"] == pytest.approx(0.02 / np.sqrt(6))
    peak_late = c.copy()
    peak_late[-1] = 0.72
    assert U.plateau_gain(peak_late)["z"] == pytest.approx(0.01 / U.plateau_gain(peak_late)["noise"])
    rng = np.random.default_rng(0)  # iid noise on a line: σ̂ estimates σ
    est = [U.plateau_gain(np.linspace(0, 1, 401) + rng.normal(0, 0.01, 401))["noise"] for _ in range(50)]
    assert np.mean(est) == pytest.approx(0.01, rel=0.05)
