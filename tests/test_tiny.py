"""The embedded tiny base: real HF directories, built by the recipe, cached, with a model card."""

import json

import torch
from conftest import MICRO_TINY
from safetensors.torch import load_file
from transformers import CLIPModel, LlavaForConditionalGeneration

from mcit.data.synthetic import pretrain
from mcit.models.efficientnet_lite import (
    EfficientNetLiteConfig,
    EfficientNetLiteModel,
    imagenet_weights_path,
    load_imagenet_weights,
)
from mcit.models.tiny import TinyConfig
from mcit.pretrain.recipes import RECIPES
from mcit.pretrain.shipped import cache_dir as base_cache_dir
from mcit.pretrain.shipped import ensure_tiny_backbone


def test_micro_backbone_is_a_plain_llava_hf_directory(micro_backbone_dirs):
    llava_dir, clip_dir = micro_backbone_dirs
    llava = LlavaForConditionalGeneration.from_pretrained(llava_dir)
    clip = CLIPModel.from_pretrained(clip_dir)
    assert llava.config.vision_feature_layer == -1
    assert llava.config.vision_feature_select_strategy == "full"  # a conv map has no CLS
    assert llava.config.text_config.hidden_size == MICRO_TINY["lm_hidden"]
    assert llava.config.vision_config.model_type == "mcit_efficientnet_lite"
    assert clip.config.text_config.eos_token_id != 2  # CLIP's legacy argmax pooling stays off
    # The tower is the ImageNet EfficientNet-Lite0, frozen through pre-training: its weights
    # are the package checkpoint's, bit for bit.
    fresh = EfficientNetLiteModel(EfficientNetLiteConfig(**_tower_args()))
    load_imagenet_weights(fresh, imagenet_weights_path())
    saved = load_file(llava_dir / "model.safetensors")
    tower = {k.split("vision_tower.", 1)[1]: v for k, v in saved.items() if "vision_tower." in k}
    assert tower.keys() == fresh.state_dict().keys()
    assert all(torch.equal(tower[k], v) for k, v in fresh.state_dict().items())


def _tower_args() -> dict:
    micro = RECIPES["micro"]
    return {
        "num_blocks": micro.vision_blocks,
        "group": micro.vision_group,
        "image_size": micro.vision_image_size,
    }


def test_cache_is_keyed_by_config_and_reused(micro_backbone_dirs, cache_dir):
    config = RECIPES["micro"]
    root = base_cache_dir(config)
    assert root.parent.parent == cache_dir
    card = json.loads((root / "model_card.json").read_text())
    assert card["recipe"] == "micro" and card["config"]["lm_hidden"] == MICRO_TINY["lm_hidden"]
    assert set(card["seconds"]) == {"tokenizer", "clip", "audio", "features", "llava", "probe"}
    assert (root / "MODEL_CARD.md").read_text().startswith("# mcit tiny base (micro)")
    probe = card["probe"]
    skills = probe["skills"]
    # Every skill of the mixture but the description (scored by CIDEr) is probed, each a share
    # in [0, 100]; "where" is the IoU > 0.5 share, and the mean is theirs.
    assert set(skills) == ({*pretrain.TEMPLATES, "photo_read"} - {"describe"})
    assert all(0.0 <= v <= 100.0 for v in skills.values())
    assert probe["skills_mean"] == round(sum(skills.values()) / len(skills), 2)
    assert skills["where"] == probe["where_iou50"] and probe["captions_cider"] >= 0.0
    stamp = (root / "DONE").stat().st_mtime_ns
    assert ensure_tiny_backbone(config, progress=False) == micro_backbone_dirs
    assert (root / "DONE").stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = RECIPES["micro"].__class__(**{**card["config"], "seed": 1})
    assert base_cache_dir(other) != root


def test_the_default_base_ships_inside_the_package_and_loads_as_llava_hf(cache_dir):
    from mcit.config import BackboneConfig
    from mcit.models.backbone import load_backbone
    from mcit.pretrain.recipes import DEFAULT_RECIPE
    from mcit.pretrain.shipped import shipped_base

    root = shipped_base(RECIPES[DEFAULT_RECIPE])
    assert root is not None and root.parent.name == "base" and root.parent.parent.name == "mcit"
    card = json.loads((root / "model_card.json").read_text())
    # A base whose audio encoder was added later keeps that stage's fields in its own record.
    config = {**card["config"], **card.get("audio_stage", {}).get("config", {})}
    # Fields added to TinyConfig since the base was built take their defaults (a card's config
    # has only the fields of its day).
    assert card["recipe"] == DEFAULT_RECIPE and TinyConfig(**config) == RECIPES[DEFAULT_RECIPE]
    assert (root / "audio" / "model.safetensors").is_file()
    sizes = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert sizes <= 50 * 2**20  # shipped files stay under 50 MB
    # The default config loads it from the package (nothing is built into the cache), with the
    # frozen EfficientNet-Lite tower: 16 image tokens of 448.
    backbone = load_backbone(BackboneConfig())
    assert backbone.clip_path == str(root / "clip")
    assert backbone.num_image_tokens == 16 and backbone.vision_tower.config.hidden_size == 448
    assert not base_cache_dir(RECIPES[DEFAULT_RECIPE]).exists()
    assert card["probe"]["skills"]["read"] >= 90.0  # the shipped base reads (measured 97.5)
