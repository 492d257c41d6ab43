"""The named base-model recipes: every field spelled out, and the cache keys of the checkpoints they name pinned."""

from __future__ import annotations

from dataclasses import fields

import pytest

from lossbook.alignment.recipes import BASE_RECIPES, base_cache_keys, base_configs, base_models
from lossbook.alignment.sft import PretrainConfig, SFTConfig
from lossbook.alignment.world import SyntheticWorld, WorldConfig
from lossbook.cache import config_hash
from lossbook.models.gpt import GPTConfig

# config_hash of the pretrain and SFT cache keys, computed (seed 0) from the notebooks' ten copied parameters before
# the recipes existed: default profile -> persona-tiny, smoke -> persona-smoke, full -> persona-small. A change
# here means every cached alignment checkpoint is rebuilt and the notebooks' numbers may move.
PINNED = {
    "persona-tiny": ("b7c2798c8bc5991d", "a4a2fc398e999961"),
    "persona-smoke": ("c876993e574a63e2", "410564419f14a682"),
    "persona-small": ("7961d92613da28fe", "ee2e94bda332c2f5"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_cache_keys_pinned_to_the_pre_recipe_hashes(name: str) -> None:
    keys = base_cache_keys(name, seed=0)
    assert (config_hash(keys["align_pretrain"]), config_hash(keys["align_sft"])) == PINNED[name]


def test_every_recipe_is_pinned_and_spells_out_every_field() -> None:
    assert set(BASE_RECIPES) == set(PINNED)
    want = {
        "world": {f.name for f in fields(WorldConfig)} - {"seed"},
        "gpt": {f.name for f in fields(GPTConfig)} - {"vocab_size", "block_size"},
        "pretrain": {f.name for f in fields(PretrainConfig)} - {"seed"},
        "sft": {f.name for f in fields(SFTConfig)} - {"seed"},
    }
    for name, recipe in BASE_RECIPES.items():
        assert {k: set(v) for k, v in recipe.items()} == want, name


def test_base_configs_use_one_seed_and_the_worlds_sizes() -> None:
    world_cfg, gpt_cfg, pre, sft = base_configs("persona-tiny", seed=3)
    assert world_cfg.seed == pre.seed == sft.seed == 3
    world = SyntheticWorld(world_cfg)
    assert (gpt_cfg.vocab_size, gpt_cfg.block_size) == (world.vocab_size, world.max_len())
    assert (gpt_cfg.n_layer, gpt_cfg.n_head, gpt_cfg.d_model, gpt_cfg.d_ff) == (2, 4, 64, 256)
    assert (pre.n_docs, pre.steps, pre.batch_size, pre.lr, sft.n_examples, sft.steps, sft.lr) == (20000, 1500, 64, 3e-3, 4000, 300, 1e-3)
    # another seed is another checkpoint
    assert config_hash(base_cache_keys("persona-tiny", 3)["align_pretrain"]) != PINNED["persona-tiny"][0]


def test_unknown_recipe_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="persona-tiny"):
        base_configs("persona-tnyi", seed=0)


def test_base_models_builds_then_hits_the_cache(capsys: pytest.CaptureFixture[str]) -> None:
    first = base_models("persona-smoke", seed=0)
    assert first["keys"] == base_cache_keys("persona-smoke", 0)
    assert first["sft"].cfg.d_model == 16 and len(first["pretrain_history"]["loss"]) > 0
    capsys.readouterr()
    again = base_models("persona-smoke", seed=0)
    assert capsys.readouterr().out.count("cache hit") == 2
    for a, b in zip(first["sft"].state_dict().values(), again["sft"].state_dict().values(), strict=True):
        assert a.equal(b)
