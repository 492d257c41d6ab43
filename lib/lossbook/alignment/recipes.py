"""The alignment family's base-model recipes, named once: the persona world, the tiny GPT, pretraining and SFT.

Every alignment notebook starts from the same pretrained and SFT'd GPT (`lossbook.alignment.sft.pretrained_and_sft`,
cached by config hash under `runs/cache/align_pretrain` and `align_sft`). The checkpoints are shared between
notebooks only if every value that enters the cache key is equal, so the values live here, once, and a notebook
names its recipe with one parameter (``base_recipe = "persona-tiny"``)::

    models = base_models(base_recipe, seed=world_seed, device=dev)   # == pretrained_and_sft(*base_configs(...))

A recipe lists every field of `WorldConfig`, `GPTConfig`, `PretrainConfig` and `SFTConfig` except the seed (the
caller's) and the GPT's vocabulary and context sizes (they follow from the world), so a changed dataclass default
cannot move a recipe's checkpoints. The seed is the same for the world, pretraining and SFT, as the notebooks had it.

- ``persona-tiny``: the notebooks' `default` profile (2-core CPU, minutes with a cold cache);
- ``persona-smoke``: the `smoke` profile (seconds; proves the path, not a meaningful model);
- ``persona-small``: the `full` profile (a GPU: a 4-layer, 128-wide GPT with longer pretraining).

The world and the recipes are built for Razin et al. (2025), "Unintentional Unalignment: Likelihood Displacement
in Direct Preference Optimization", ICLR 2025 (arXiv 2410.08847); see `lossbook.alignment.world`.
"""

from __future__ import annotations

from typing import Any

from lossbook import registry
from lossbook.alignment.sft import PretrainConfig, SFTConfig, cache_keys, pretrained_and_sft
from lossbook.alignment.world import SyntheticWorld, WorldConfig
from lossbook.models.gpt import GPTConfig

BASE_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "persona-tiny": {
        "world": {"n_concepts": 18, "n_synonyms": 3, "n_speakers": 5, "statement_len": 4, "clause_min": 1, "clause_max": 3,
                  "pretrain_noise": 0.1, "sft_favorite_prob": 0.9},
        "gpt": {"n_layer": 2, "n_head": 4, "d_model": 64, "d_ff": None, "dropout": 0.0, "bias": False, "tie_weights": True},
        "pretrain": {"n_docs": 20000, "steps": 1500, "batch_size": 64, "lr": 3.0e-3, "warmup": 50, "weight_decay": 0.1},
        "sft": {"n_examples": 4000, "steps": 300, "batch_size": 64, "lr": 1.0e-3, "weight_decay": 0.0},
    },
    "persona-smoke": {
        "world": {"n_concepts": 18, "n_synonyms": 3, "n_speakers": 5, "statement_len": 4, "clause_min": 1, "clause_max": 3,
                  "pretrain_noise": 0.1, "sft_favorite_prob": 0.9},
        "gpt": {"n_layer": 1, "n_head": 2, "d_model": 16, "d_ff": None, "dropout": 0.0, "bias": False, "tie_weights": True},
        "pretrain": {"n_docs": 400, "steps": 20, "batch_size": 16, "lr": 3.0e-3, "warmup": 50, "weight_decay": 0.1},
        "sft": {"n_examples": 200, "steps": 10, "batch_size": 64, "lr": 1.0e-3, "weight_decay": 0.0},
    },
    "persona-small": {
        "world": {"n_concepts": 18, "n_synonyms": 3, "n_speakers": 5, "statement_len": 4, "clause_min": 1, "clause_max": 3,
                  "pretrain_noise": 0.1, "sft_favorite_prob": 0.9},
        "gpt": {"n_layer": 4, "n_head": 4, "d_model": 128, "d_ff": None, "dropout": 0.0, "bias": False, "tie_weights": True},
        "pretrain": {"n_docs": 50000, "steps": 4000, "batch_size": 128, "lr": 3.0e-3, "warmup": 50, "weight_decay": 0.1},
        "sft": {"n_examples": 8000, "steps": 600, "batch_size": 64, "lr": 1.0e-3, "weight_decay": 0.0},
    },
}
"""Recipe name -> {"world", "gpt", "pretrain", "sft"}: keyword arguments of the four configs (no seeds, no sizes
that follow from the world). `d_ff: None` is GPTConfig's 4·d_model."""


def base_recipe(name: str) -> dict[str, dict[str, Any]]:
    """The recipe called `name`; KeyError naming the valid ones otherwise."""
    return registry.lookup(BASE_RECIPES, name, "alignment base recipe")


def base_configs(name: str, seed: int, gpt_overrides: dict[str, Any] | None = None) -> tuple[WorldConfig, GPTConfig, PretrainConfig, SFTConfig]:
    """The four configs of recipe `name` with `seed` for the world, pretraining and SFT.

    The GPT's `vocab_size` and `block_size` are the world's vocabulary and longest sequence. `gpt_overrides`
    replaces GPT fields of the recipe (e.g. ``{"tie_weights": False}`` for untied embeddings); None (or {}) is
    the recipe itself, so its cache keys are unchanged. Only existing recipe fields may be overridden.
    """
    r = base_recipe(name)
    world_cfg = WorldConfig(seed=seed, **r["world"])
    world = SyntheticWorld(world_cfg)
    gpt = dict(r["gpt"])
    bad = sorted(set(gpt_overrides or {}) - set(gpt))
    if bad:
        raise KeyError(f"gpt_overrides {bad} are not GPT fields of recipe {name!r}; valid: {sorted(gpt)}")
    gpt.update(gpt_overrides or {})
    gpt_cfg = GPTConfig(vocab_size=world.vocab_size, block_size=world.max_len(), **gpt)
    return world_cfg, gpt_cfg, PretrainConfig(**r["pretrain"], seed=seed), SFTConfig(**r["sft"], seed=seed)


def base_cache_keys(name: str, seed: int, gpt_overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The configs the recipe's checkpoints are cached under ({"align_pretrain": ..., "align_sft": ...})."""
    return cache_keys(*base_configs(name, seed, gpt_overrides))


def base_models(
    name: str, seed: int, *, device: Any = "cpu", progress: bool = False, refresh: bool = False, gpt_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`pretrained_and_sft` for recipe `name` and `seed`: {"world", "base", "sft", "pretrain_history",
    "sft_history", "keys"} (models on CPU, eval mode), built or loaded from the cache. `gpt_overrides`: see
    `base_configs` (a world seed is one replicate: its own world, pretraining, SFT and prompts)."""
    return pretrained_and_sft(*base_configs(name, seed, gpt_overrides), device=device, progress=progress, refresh=refresh)
