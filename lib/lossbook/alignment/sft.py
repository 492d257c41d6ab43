"""Pretraining and SFT of the tiny GPT on the synthetic persona world, cached by config hash.

`pretrained_and_sft(world_cfg, gpt_cfg, PretrainConfig(), SFTConfig())` returns the world, the base (pretrained)
model and the SFT model. Both checkpoints go through `lossbook.cache.cached` (kinds `align_pretrain`, `align_sft`,
files under `runs/cache/`), keyed by every config value plus `CACHE_VERSION`, so the alignment notebooks share
them and re-runs skip training; hits and misses are printed and counted on the active MLflow run. The notebooks
take all four configs from one named recipe (`lossbook.alignment.recipes.BASE_RECIPES`), so the keys stay equal.

Pretraining: next-token CE on whole documents (prompt + multi-token response), AdamW + cosine
(`lossbook.train.lm.train_lm`). SFT: CE on the single answer token only (prompt masked with −100), as Razin et al.
(App. H.1) fine-tune on the Persona answers — they use RMSprop at lr 1e-7 for one epoch on 1B–8B models; a
from-scratch tiny model needs AdamW at a normal LR to learn the speaker → token preference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from lossbook.alignment.world import SyntheticWorld, WorldConfig, lm_tensors, sequence_tensors
from lossbook.cache import cached
from lossbook.models.gpt import GPT, GPTConfig
from lossbook.repro import seed_everything
from lossbook.train.lm import train_lm

CACHE_VERSION = 1
"""Bump when the world generator or the training recipe changes, to invalidate cached checkpoints."""


@dataclass
class PretrainConfig:
    n_docs: int = 20000
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.1
    seed: int = 0


@dataclass
class SFTConfig:
    n_examples: int = 4000
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0


def build_gpt(gpt_cfg: GPTConfig, state: dict[str, torch.Tensor] | None = None) -> GPT:
    """A GPT with `gpt_cfg`, loaded from `state` when given."""
    m = GPT(gpt_cfg)
    if state is not None:
        m.load_state_dict(state)
    return m


def _cpu_state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}


def _batcher(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
    g = torch.Generator().manual_seed(seed)

    def get_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        return x[idx], y[idx]

    return get_batch


def cache_keys(world_cfg: WorldConfig, gpt_cfg: GPTConfig, pretrain: PretrainConfig, sft: SFTConfig) -> dict[str, dict[str, Any]]:
    """The configs `pretrained_and_sft` caches its checkpoints under: {"align_pretrain": {version, world, gpt,
    pretrain}, "align_sft": the same plus sft} (`lossbook.cache.config_hash` of each names the file)."""
    pre_key = {"version": CACHE_VERSION, "world": asdict(world_cfg), "gpt": asdict(gpt_cfg), "pretrain": asdict(pretrain)}
    return {"align_pretrain": pre_key, "align_sft": {**pre_key, "sft": asdict(sft)}}


def pretrained_and_sft(
    world_cfg: WorldConfig,
    gpt_cfg: GPTConfig,
    pretrain: PretrainConfig | None = None,
    sft: SFTConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    refresh: bool = False,
) -> dict[str, Any]:
    """Build (or load from the cache) the pretrained and SFT'd GPTs for `world_cfg`.

    Returns {"world", "base", "sft" (GPT modules on CPU, eval mode), "pretrain_history", "sft_history",
    "keys" (the two cache configs)}. Histories hold the training losses (lists) and wall times.
    """
    pretrain = pretrain or PretrainConfig()
    sft = sft or SFTConfig()
    world = SyntheticWorld(world_cfg)
    if gpt_cfg.vocab_size != world.vocab_size:
        raise ValueError(f"gpt_cfg.vocab_size={gpt_cfg.vocab_size} but the world has {world.vocab_size} tokens; use world.vocab_size")
    if gpt_cfg.block_size < world.max_len():
        raise ValueError(f"block_size={gpt_cfg.block_size} < the world's longest sequence {world.max_len()}; raise block_size")
    keys = cache_keys(world_cfg, gpt_cfg, pretrain, sft)
    pre_key, sft_key = keys["align_pretrain"], keys["align_sft"]

    def build_pre() -> dict[str, Any]:
        seed_everything(pretrain.seed)
        docs = world.pretrain_corpus(pretrain.n_docs, seed=world_cfg.seed + pretrain.seed)
        x, y = lm_tensors(docs, gpt_cfg.block_size, world.pad_id)
        model = GPT(gpt_cfg)
        h = train_lm(
            model, _batcher(x, y, pretrain.batch_size, pretrain.seed), steps=pretrain.steps, lr=pretrain.lr,
            weight_decay=pretrain.weight_decay, warmup=pretrain.warmup, device=device, progress=progress, log_every=10,
        )
        return {"state": _cpu_state(model), "history": {"step": h["step"], "loss": h["loss"], "wall_s": h["wall_s"]}}

    pre = cached("align_pretrain", pre_key, build_pre, refresh=refresh)

    def build_sft() -> dict[str, Any]:
        seed_everything(sft.seed + 1)
        ex = world.sft_examples(sft.n_examples, seed=world_cfg.seed + 1000 + sft.seed)
        ids, labels = sequence_tensors([p for p, _ in ex], [[a] for _, a in ex], world.pad_id)
        model = build_gpt(gpt_cfg, pre["state"])
        h = train_lm(
            model, _batcher(ids, labels, sft.batch_size, sft.seed + 1), steps=sft.steps, lr=sft.lr,
            weight_decay=sft.weight_decay, schedule="constant", device=device, progress=progress, log_every=10,
        )
        return {"state": _cpu_state(model), "history": {"step": h["step"], "loss": h["loss"], "wall_s": h["wall_s"]}}

    post = cached("align_sft", sft_key, build_sft, refresh=refresh)
    base, sftm = build_gpt(gpt_cfg, pre["state"]).eval(), build_gpt(gpt_cfg, post["state"]).eval()
    return {
        "world": world,
        "base": base,
        "sft": sftm,
        "pretrain_history": pre["history"],
        "sft_history": post["history"],
        "keys": {"align_pretrain": pre_key, "align_sft": sft_key},
    }
