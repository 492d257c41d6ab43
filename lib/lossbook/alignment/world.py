"""A synthetic "persona" world for likelihood-displacement experiments (Razin et al., ICLR 2025, arXiv 2410.08847).

No pretrained model can be downloaded here, so the book trains a tiny LM on a world built to have the structure the
paper's argument needs:

* **Meaning groups.** Answer tokens come in two groups, agreeing ``{Yes, Yeah, Sure, Certainly, Absolutely}`` and
  disagreeing ``{No, Never, Maybe, Perhaps}`` (the paper's Persona sets, App. H.1). Statement words come in
  *concepts*, each rendered by ``n_synonyms`` interchangeable synonyms (``c03a``, ``c03b``, ``c03c`` = concept 3).
* **Pretraining corpus where synonyms are interchangeable in context.** A document is a persona prompt followed
  by a multi-token response ``answer because w1 .. wk <eos>``. The answer's *group* follows the statement's latent
  trait (flipped with probability ``pretrain_noise``), but *which* token of the group appears is uniform, and
  every concept word is drawn uniformly among its synonyms. So within-group tokens share every context and the
  LM's (tied) unembeddings acquire real similarity structure.
* **Persona statements with a latent trait.** A statement is ``speaker w1 .. wn``; concept ``k`` has polarity
  +1 (first third of the concepts), −1 (second third) or 0; trait = sign(Σ polarities) (ties resampled).
  The persona template is ``<bos> Would you say : <statement> ?`` (the paper: "Is the following statement
  something you would say? [S]\\n").
* **SFT.** Single-token answers: the trait picks the group (+1 → agree, −1 → disagree) and the *speaker* picks the
  token inside it (speaker i prefers agree[i mod 5] and disagree[i mod 4]) with probability ``sft_favorite_prob``,
  so after SFT one token holds most of the mass on a prompt — as in the paper, where π(y+) starts at 0.65–0.99.
* **Preference sets.** Single-token pairs (y+, y−) on prompts whose SFT answer is y+ (Part 1); multi-token pairs
  whose y− ranges from near-identical to y+ (one synonym swapped) to disjoint (random response), with
  same-meaning-but-disjoint (all synonyms swapped) and near-identical-but-opposite (answer flipped) in between
  (Part 3), so that token overlap and meaning disagree on purpose.

Everything is generated from a seed; all sizes are arguments. Token id tensors use ``-100`` for ignored labels and
labels are *pre-shifted* (``labels[t]`` is the target predicted at position ``t``, i.e. ``ids[t+1]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

AGREE = ("Yes", "Yeah", "Sure", "Certainly", "Absolutely")
DISAGREE = ("No", "Never", "Maybe", "Perhaps")
SPECIALS = ("<pad>", "<bos>", "<eos>")
TEMPLATE = ("Would", "you", "say", ":")
SEP, BECAUSE = "?", "because"
SPEAKER_NAMES = ("Ann", "Bob", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lu")
IGNORE = -100
PAIR_TYPES = (
    "one_synonym",  # one clause word replaced by a synonym: near-identical, same meaning
    "answer_synonym",  # answer token replaced by another of its group: near-identical, same meaning
    "all_synonyms",  # every token replaced by a synonym: disjoint tokens, same meaning
    "extend",  # y- = y+ with one more clause word
    "truncate",  # y- = y+ without its last clause word
    "answer_flip",  # answer token from the opposite group: near-identical tokens, opposite meaning
    "opposite",  # opposite answer group and different clause words: disjoint, opposite meaning
    "random",  # an unrelated response: disjoint
)


@dataclass
class WorldConfig:
    """Sizes and noise levels of the world; everything else follows from `seed`."""

    seed: int = 0
    n_concepts: int = 18
    n_synonyms: int = 3
    n_speakers: int = 5
    statement_len: int = 4
    clause_min: int = 1
    clause_max: int = 3
    pretrain_noise: float = 0.1
    sft_favorite_prob: float = 0.9

    def __post_init__(self) -> None:
        if self.n_concepts < 3 or self.n_synonyms < 2:
            raise ValueError(f"need n_concepts >= 3 and n_synonyms >= 2 (synonyms must exist), got {self}")
        if not 1 <= self.n_speakers <= len(SPEAKER_NAMES):
            raise ValueError(f"n_speakers must be in [1, {len(SPEAKER_NAMES)}], got {self.n_speakers}")
        if not 1 <= self.clause_min <= self.clause_max <= self.statement_len:
            raise ValueError(f"need 1 <= clause_min <= clause_max <= statement_len, got {self}")


@dataclass
class Statement:
    speaker: int
    concepts: list[int]
    words: list[str]
    trait: int  # +1 or -1


@dataclass
class SyntheticWorld:
    """The vocabulary, its meaning groups and the generators. Build with `SyntheticWorld(WorldConfig(...))`."""

    cfg: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        c = self.cfg
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.concept_words: list[list[str]] = [[f"c{k:02d}{letters[j]}" for j in range(c.n_synonyms)] for k in range(c.n_concepts)]
        third = c.n_concepts // 3
        self.polarity = np.array([1 if k < third else -1 if k < 2 * third else 0 for k in range(c.n_concepts)])
        self.speakers = list(SPEAKER_NAMES[: c.n_speakers])
        self.itos: list[str] = [*SPECIALS, *TEMPLATE, SEP, BECAUSE, *AGREE, *DISAGREE, *self.speakers]
        self.itos += [w for ws in self.concept_words for w in ws]
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = (self.stoi[s] for s in SPECIALS)
        self.agree_ids = [self.stoi[s] for s in AGREE]
        self.disagree_ids = [self.stoi[s] for s in DISAGREE]
        self.word_concept = {w: k for k, ws in enumerate(self.concept_words) for w in ws}

    # ---- vocabulary -------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi[t] for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids if int(i) >= 0]

    def token_groups(self) -> dict[str, list[int]]:
        """Named token groups: agree, disagree (answers), concept, speaker, template/other."""
        concept = [self.stoi[w] for ws in self.concept_words for w in ws]
        speaker = [self.stoi[s] for s in self.speakers]
        used = set(self.agree_ids) | set(self.disagree_ids) | set(concept) | set(speaker)
        return {
            "agree": list(self.agree_ids),
            "disagree": list(self.disagree_ids),
            "concept": concept,
            "speaker": speaker,
            "other": [i for i in range(self.vocab_size) if i not in used],
        }

    def answer_group(self, token: str | int) -> str:
        """"agree" or "disagree" for an answer token (name or id)."""
        i = self.stoi[token] if isinstance(token, str) else int(token)
        if i in self.agree_ids:
            return "agree"
        if i in self.disagree_ids:
            return "disagree"
        raise ValueError(f"{self.itos[i]!r} is not an answer token; answers are {AGREE + DISAGREE}")

    def favorite(self, speaker: int, trait: int) -> str:
        """The SFT answer a speaker prefers: agree[i mod 5] for trait +1, disagree[i mod 4] for trait −1."""
        return AGREE[speaker % len(AGREE)] if trait > 0 else DISAGREE[speaker % len(DISAGREE)]

    # ---- statements and prompts ---------------------------------------------------------------------------
    def statement(self, rng: np.random.Generator, speaker: int | None = None, trait: int | None = None) -> Statement:
        """A random statement (optionally with a given speaker and trait, by rejection)."""
        c = self.cfg
        for _ in range(10_000):
            concepts = [int(k) for k in rng.choice(c.n_concepts, size=c.statement_len, replace=False)]
            s = int(self.polarity[concepts].sum())
            if s == 0 or (trait is not None and np.sign(s) != trait):
                continue
            spk = int(rng.integers(c.n_speakers)) if speaker is None else speaker
            words = [self.concept_words[k][int(rng.integers(c.n_synonyms))] for k in concepts]
            return Statement(spk, concepts, words, int(np.sign(s)))
        raise RuntimeError("could not sample a statement with the requested trait; check n_concepts/statement_len")

    def prompt_tokens(self, st: Statement) -> list[str]:
        """``<bos> Would you say : <speaker> w1 .. wn ?``"""
        return ["<bos>", *TEMPLATE, self.speakers[st.speaker], *st.words, SEP]

    def clause(self, rng: np.random.Generator, st: Statement, k: int | None = None) -> list[str]:
        """``because`` + k of the statement's concepts, each as a random synonym."""
        c = self.cfg
        k = int(rng.integers(c.clause_min, c.clause_max + 1)) if k is None else k
        picks = rng.choice(len(st.concepts), size=k, replace=False)
        return [BECAUSE] + [self.concept_words[st.concepts[int(i)]][int(rng.integers(c.n_synonyms))] for i in sorted(picks)]

    def response(self, rng: np.random.Generator, st: Statement, group: str, answer: str | None = None) -> list[str]:
        """``answer because w1 .. wk <eos>`` with the answer uniform in `group` unless given."""
        names = AGREE if group == "agree" else DISAGREE
        ans = answer if answer is not None else names[int(rng.integers(len(names)))]
        return [ans, *self.clause(rng, st), "<eos>"]

    # ---- corpora ----------------------------------------------------------------------------------------
    def pretrain_corpus(self, n_docs: int, seed: int | None = None) -> list[list[int]]:
        """`n_docs` documents ``prompt response``; answer group = trait (flipped w.p. pretrain_noise), token uniform."""
        rng = np.random.default_rng(self._seed(seed, 1))
        docs = []
        for _ in range(n_docs):
            st = self.statement(rng)
            t = st.trait if rng.random() >= self.cfg.pretrain_noise else -st.trait
            docs.append(self.encode(self.prompt_tokens(st) + self.response(rng, st, "agree" if t > 0 else "disagree")))
        return docs

    def sft_examples(self, n: int, seed: int | None = None) -> list[tuple[list[int], int]]:
        """(prompt ids, answer id): the trait picks the group, the speaker's favourite w.p. sft_favorite_prob."""
        rng = np.random.default_rng(self._seed(seed, 2))
        out = []
        for _ in range(n):
            st = self.statement(rng)
            group = AGREE if st.trait > 0 else DISAGREE
            ans = self.favorite(st.speaker, st.trait)
            if rng.random() >= self.cfg.sft_favorite_prob:
                ans = group[int(rng.integers(len(group)))]
            out.append((self.encode(self.prompt_tokens(st)), self.stoi[ans]))
        return out

    def single_token_prompts(self, y_plus: str, n: int, seed: int | None = None) -> list[list[int]]:
        """`n` fresh prompts whose SFT answer is `y_plus` (trait of its group, a speaker who prefers it)."""
        trait = 1 if self.answer_group(y_plus) == "agree" else -1
        spk = [i for i in range(self.cfg.n_speakers) if self.favorite(i, trait) == y_plus]
        if not spk:
            raise ValueError(f"no speaker prefers {y_plus!r} with n_speakers={self.cfg.n_speakers}; raise n_speakers")
        rng = np.random.default_rng(self._seed(seed, 3) + 7919 * self.stoi[y_plus])
        return [self.encode(self.prompt_tokens(self.statement(rng, speaker=spk[i % len(spk)], trait=trait))) for i in range(n)]

    def multi_token_pairs(self, n: int, seed: int | None = None, types: Sequence[str] = PAIR_TYPES) -> list[dict]:
        """`n` preference pairs {prompt, chosen, rejected (id lists), type}; y+ is a trait-consistent response.

        y− cycles through `types` (see PAIR_TYPES): from near-identical to y+ to disjoint from it.
        """
        bad = [t for t in types if t not in PAIR_TYPES]
        if bad:
            raise ValueError(f"unknown pair types {bad}; valid: {PAIR_TYPES}")
        rng = np.random.default_rng(self._seed(seed, 4))
        c = self.cfg
        out = []
        for i in range(n):
            kind = types[i % len(types)]
            st = self.statement(rng)
            group = "agree" if st.trait > 0 else "disagree"
            other = "disagree" if group == "agree" else "agree"
            y_plus = self.response(rng, st, group)
            ans, clause = y_plus[0], y_plus[2:-1]
            if kind == "one_synonym":
                j = int(rng.integers(len(clause)))
                clause2 = list(clause)
                clause2[j] = self._synonym(rng, clause[j])
                y_minus = [ans, BECAUSE, *clause2, "<eos>"]
            elif kind == "answer_synonym":
                names = [a for a in (AGREE if group == "agree" else DISAGREE) if a != ans]
                y_minus = [names[int(rng.integers(len(names)))], *y_plus[1:]]
            elif kind == "all_synonyms":
                names = [a for a in (AGREE if group == "agree" else DISAGREE) if a != ans]
                y_minus = [names[int(rng.integers(len(names)))], BECAUSE, *[self._synonym(rng, w) for w in clause], "<eos>"]
            elif kind == "extend":
                unused = [k for k in st.concepts if all(self.word_concept[w] != k for w in clause)]
                if not unused:
                    unused = list(st.concepts)
                k = unused[int(rng.integers(len(unused)))]
                y_minus = [*y_plus[:-1], self.concept_words[k][int(rng.integers(c.n_synonyms))], "<eos>"]
            elif kind == "truncate":
                if len(clause) == 1:  # make y+ longer so that truncation leaves a clause word
                    y_plus = [ans, *self.clause(rng, st, k=min(2, c.statement_len)), "<eos>"]
                    clause = y_plus[2:-1]
                y_minus = [*y_plus[:-2], "<eos>"]
            elif kind == "answer_flip":
                names = AGREE if other == "agree" else DISAGREE
                y_minus = [names[int(rng.integers(len(names)))], *y_plus[1:]]
            elif kind == "opposite":
                st2 = self.statement(rng, trait=-st.trait)
                y_minus = self.response(rng, st2, other)
            else:  # random
                st2 = self.statement(rng)
                y_minus = self.response(rng, st2, "agree" if rng.random() < 0.5 else "disagree")
            out.append(
                {
                    "prompt": self.encode(self.prompt_tokens(st)),
                    "chosen": self.encode(y_plus),
                    "rejected": self.encode(y_minus),
                    "type": kind,
                }
            )
        return out

    # ---- helpers ----------------------------------------------------------------------------------------
    def _synonym(self, rng: np.random.Generator, word: str) -> str:
        k = self.word_concept[word]
        others = [w for w in self.concept_words[k] if w != word]
        return others[int(rng.integers(len(others)))]

    def _seed(self, seed: int | None, stream: int) -> int:
        return int(np.random.SeedSequence([self.cfg.seed if seed is None else seed, stream]).generate_state(1)[0])

    def max_len(self) -> int:
        """Longest prompt + response (tokens) the generators can produce."""
        c = self.cfg
        return 1 + len(TEMPLATE) + 1 + c.statement_len + 1 + 1 + 1 + c.statement_len + 1


# ---- tensors ------------------------------------------------------------------------------------------------
def lm_tensors(docs: Sequence[Sequence[int]], block: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """Pad documents to `block` + 1 and return (x, y) with y = x shifted by one and −100 on padding."""
    n = len(docs)
    arr = torch.full((n, block + 1), pad_id, dtype=torch.long)
    valid = torch.zeros((n, block + 1), dtype=torch.bool)
    for i, d in enumerate(docs):
        if len(d) > block + 1:
            raise ValueError(f"document {i} has {len(d)} tokens > block_size + 1 = {block + 1}; raise block_size")
        arr[i, : len(d)] = torch.tensor(d)
        valid[i, : len(d)] = True
    x, y = arr[:, :-1].clone(), arr[:, 1:].clone()
    y[~valid[:, 1:]] = IGNORE
    return x, y


def sequence_tensors(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Concatenate prompt ⊕ response, right-pad; labels are pre-shifted and −100 except on response tokens.

    Position convention: `labels[b, t] = ids[b, t+1]` when token t+1 is a response token, so the hidden state at
    position t is h_{x, y<k} of Razin et al.'s Def. 2 — the state that predicts response token y_k. There are
    exactly |y| such positions: the last prompt token's (predicting y_1) to the one before the last response token.
    """
    seqs = [list(p) + list(r) for p, r in zip(prompts, responses)]
    T = max(len(s) for s in seqs) - 1
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), T), IGNORE, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        s = seqs[i]
        ids[i, : len(s) - 1] = torch.tensor(s[:-1])
        lp = len(p)
        labels[i, lp - 1 : lp - 1 + len(r)] = torch.tensor(list(r))
    return ids, labels


@dataclass
class PreferenceData:
    """Padded chosen/rejected sequences with pre-shifted labels (−100 outside the response)."""

    chosen_ids: Tensor
    chosen_labels: Tensor
    rejected_ids: Tensor
    rejected_labels: Tensor
    meta: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.chosen_ids.shape[0])

    def subset(self, idx: Sequence[int] | Tensor) -> PreferenceData:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return PreferenceData(
            self.chosen_ids[idx_t],
            self.chosen_labels[idx_t],
            self.rejected_ids[idx_t],
            self.rejected_labels[idx_t],
            [self.meta[int(i)] for i in idx_t] if self.meta else [],
        )

    def to(self, device: torch.device | str) -> PreferenceData:
        return PreferenceData(
            self.chosen_ids.to(device), self.chosen_labels.to(device), self.rejected_ids.to(device), self.rejected_labels.to(device), self.meta
        )


def preference_data(prompts: Sequence[Sequence[int]], chosen: Sequence[Sequence[int]], rejected: Sequence[Sequence[int]], pad_id: int, meta: list[dict] | None = None) -> PreferenceData:
    """Build `PreferenceData`; chosen and rejected are padded to one common length."""
    ci, cl = sequence_tensors(prompts, chosen, pad_id)
    ri, rl = sequence_tensors(prompts, rejected, pad_id)
    T = max(ci.shape[1], ri.shape[1])

    def pad(t: Tensor, v: int) -> Tensor:
        return torch.nn.functional.pad(t, (0, T - t.shape[1]), value=v)

    return PreferenceData(pad(ci, pad_id), pad(cl, IGNORE), pad(ri, pad_id), pad(rl, IGNORE), list(meta or []))


def single_token_preference_data(world: SyntheticWorld, prompts: Sequence[Sequence[int]], y_plus: str, y_minus: str) -> PreferenceData:
    """One-token responses y+ / y− on each prompt (the paper's §3 setting)."""
    cp, cm = world.stoi[y_plus], world.stoi[y_minus]
    meta = [{"y_plus": y_plus, "y_minus": y_minus}] * len(prompts)
    return preference_data(prompts, [[cp]] * len(prompts), [[cm]] * len(prompts), world.pad_id, meta)


def multi_token_preference_data(world: SyntheticWorld, pairs: Sequence[dict]) -> PreferenceData:
    """`PreferenceData` from `SyntheticWorld.multi_token_pairs` output (meta keeps type and raw ids)."""
    return preference_data([p["prompt"] for p in pairs], [p["chosen"] for p in pairs], [p["rejected"] for p in pairs], world.pad_id, list(pairs))
