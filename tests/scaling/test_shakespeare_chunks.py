"""Shakespeare realism arm of data_repetition: seed-fixed random chunks, nested pools, a disjoint validation set
from the same text, a true single pass (tested on an identity stream, where a token is its own position)."""

import math

import pytest
import torch

from lossbook.scaling.repetition import duplicate_share, stream_windows
from lossbook.scaling.shakespeare import ChunkSplit, conditional_entropy

N, CHUNK = 20_000, 17


def _split(seed=0, n_val=50):
    return ChunkSplit(torch.arange(N), CHUNK, n_val, seed)


def test_validation_disjoint_from_every_pool_and_pools_nested():
    sp = _split()
    val = set(sp.val_windows().flatten().tolist())
    big = sp.windows(sp.train_chunks(sp.n_train))
    assert val.isdisjoint(big.flatten().tolist())
    small = sp.windows(sp.train_chunks(100))
    assert torch.equal(small, big[:100])  # a smaller pool is a prefix of a larger one
    # chunks are whole, consecutive stretches of the stream
    assert torch.equal(big[:, 1:] - big[:, :-1], torch.ones_like(big[:, 1:]))
    # chunk starts are drawn across the whole stream (not a file-order prefix): the first 100 span most of it
    starts = sp.starts(sp.train_chunks(100))
    assert int(starts.min()) < 0.1 * N and int(starts.max()) > 0.9 * N
    with pytest.raises(ValueError):
        sp.train_chunks(sp.n_train + 1)


def test_split_is_seed_fixed_and_seeds_differ():
    a, b, c = _split(3), _split(3), _split(4)
    assert torch.equal(a.val_windows(), b.val_windows()) and torch.equal(a.train_chunks(50), b.train_chunks(50))
    assert not torch.equal(a.val_windows(), c.val_windows())


def test_stream_is_a_true_single_pass_and_pool_gives_exact_epochs():
    sp = _split(1)
    steps, batch = 40, 8
    w = stream_windows(sp.stream_batch_fn(batch, steps), steps)
    assert w.shape == (steps * batch, CHUNK)
    assert w.flatten().unique().numel() == w.numel()  # every token (position) seen exactly once
    assert duplicate_share(w) == 0.0
    for e in (1, 2, 4, 8):
        n = steps * batch // e
        r = stream_windows(sp.repeat_batch_fn(batch, n, seed=2), steps)
        _, counts = torch.unique(r, dim=0, return_counts=True)
        assert counts.min() == counts.max() == e and len(counts) == n
        assert duplicate_share(r) == pytest.approx(1 - 1 / e)
        assert set(r[:, 0].tolist()) == set(sp.windows(sp.train_chunks(n))[:, 0].tolist())  # the pool is the first n chunks


def test_tail_is_unseen_and_disjoint_from_validation():
    sp = _split(2)
    tail = torch.cat([x for x, _ in sp.val_batches(tail=True)]).flatten().tolist()
    val = torch.cat([x for x, _ in sp.val_batches()]).flatten().tolist()
    used = sp.windows(sp.train_chunks(sp.n_train - sp.n_val)).flatten().tolist()
    assert set(tail).isdisjoint(val) and set(tail).isdisjoint(used)


def test_conditional_entropy_closed_forms():
    g = torch.Generator().manual_seed(0)
    iid = torch.randint(0, 4, (200_000,), generator=g)
    assert conditional_entropy(iid, 4, 0) == pytest.approx(math.log(4), abs=1e-3)
    assert conditional_entropy(iid, 4, 1) == pytest.approx(math.log(4), abs=2e-3)  # plug-in bias ~ 12/(2n)
    cyc = torch.arange(1000) % 5  # deterministic given the previous token
    assert conditional_entropy(cyc, 5, 0) == pytest.approx(math.log(5), abs=1e-9)
    assert conditional_entropy(cyc, 5, 1) == pytest.approx(0.0, abs=1e-12)
    # a two-state Markov chain: H(X_t | X_t-1) = binary entropy of the flip probability
    p = 0.2
    flips = (torch.rand(300_000, generator=g) < p).long()
    x = torch.cumsum(flips, 0) % 2
    assert conditional_entropy(x, 2, 1) == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)), abs=3e-3)


def test_chunk_point_accounts_u_and_d_and_refuses_the_unseen_tail(tmp_path, monkeypatch):
    from lossbook.scaling import repetition as R
    from lossbook.scaling.shakespeare import CharCorpus

    monkeypatch.setenv("LOSSBOOK_CACHE_DIR", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    text = "".join("abcdefgh "[int(i)] for i in torch.randint(0, 9, (6000,), generator=g))
    monkeypatch.setattr(R, "_SPLITS", {"corpus": CharCorpus.from_text(text)})
    cfg = {"data": {"seed": 0, "n_val": 20, "pool_windows": 16}, "model": {"n_layer": 1, "d_model": 16, "n_head": 1, "block_size": 15},
           "train": {"steps": 8, "batch_size": 8, "lr": 1e-3, "warmup": 0, "seed": 0, "n_evals": 1}, "device": "cpu"}
    r = R.run_chunk_point(cfg)
    assert r["D"] == 8 * 8 * 15 and r["U"] == 16 * 15  # 4 epochs: U = D / 4 in target tokens
    assert math.isfinite(r["val_loss"]) and math.isfinite(r["unseen_train_loss"])
    s = R.run_chunk_point({**cfg, "data": {**cfg["data"], "pool_windows": 0}})
    assert s["U"] == s["D"]
    with pytest.raises(ValueError, match="unseen"):  # 6000 // 16 = 375 chunks − 2·20 < 50·8 windows
        R.run_chunk_point({**cfg, "data": {**cfg["data"], "pool_windows": 0}, "train": {**cfg["train"], "steps": 50}})
