"""The EfficientNet-Lite0 vision tower and the backbone's cache of frozen-tower features."""

import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel

from mcit.config import BackboneConfig
from mcit.models.backbone import load_backbone
from mcit.models.efficientnet_lite import (
    EfficientNetLiteConfig,
    EfficientNetLiteModel,
    block_specs,
    imagenet_weights_path,
    load_imagenet_weights,
)


def test_every_block_of_lite0_maps_onto_the_imagenet_checkpoint():
    full = EfficientNetLiteModel(EfficientNetLiteConfig(num_blocks=16, group=1, image_size=224))
    load_imagenet_weights(full, imagenet_weights_path())
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    # Every weight of the stem and the 16 MBConv blocks comes from the checkpoint (only the
    # 1280-channel head and the classifier are left out).
    left_out = {k.split(".")[0] for k in state if k not in full.state_dict()}
    assert left_out == {"_conv_head", "_bn1", "_fc"}
    assert len(block_specs()) == 16


def test_tokens_are_cells_grouped_by_space_to_depth():
    config = EfficientNetLiteConfig(num_blocks=11, group=2, image_size=128)
    assert (config.hidden_size, config.patch_size) == (448, 32)  # 112 x 2 x 2; 16 tokens
    model = EfficientNetLiteModel(config)
    grid = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    tokens = model.tokens(grid)
    assert tokens.shape == (2, 4, 12)
    # Token 1 is the top-right 2 x 2 block of cells, (row, column) major and channel minor.
    assert tokens[0, 1].reshape(2, 2, 3)[:, :, 0].tolist() == [[2.0, 3.0], [6.0, 7.0]]
    with pytest.raises(ValueError, match="not a multiple"):
        EfficientNetLiteConfig(num_blocks=11, group=2, image_size=80)


def test_the_tower_is_registered_and_keeps_imagenet_batch_statistics():
    config = AutoConfig.for_model("mcit_efficientnet_lite", num_blocks=3, image_size=32)
    model = AutoModel.from_config(config)
    assert isinstance(model, EfficientNetLiteModel)
    load_imagenet_weights(model, imagenet_weights_path())
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    before = model(x).last_hidden_state
    model.train()  # as when a method trains the model around it
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(model(x).last_hidden_state, before)
    # No batch statistics: a sample alone gives its features in the batch (to float rounding).
    assert torch.allclose(model(x[:1]).last_hidden_state, before[:1], atol=1e-4)


def test_frozen_tower_features_are_cached_by_content(micro_backbone_dirs, tmp_path):
    from conftest import MICRO_TINY

    backbone = load_backbone(BackboneConfig(tiny=MICRO_TINY))
    paths = []
    for i, color in enumerate(["red", "blue", "red"]):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (64, 64), color).save(path)
        paths.append(str(path))
    pixels = backbone.pixel_values(paths)
    calls = []
    tower = backbone._tower
    backbone._tower = lambda px: calls.append(len(px)) or tower(px)  # count tower images
    cached = backbone.vision_features(pixels)
    assert calls == [2]  # images 0 and 2 have the same content: one tower pass for both
    assert torch.allclose(cached, tower(pixels), atol=1e-6)
    backbone.vision_features(pixels)
    assert calls == [2]  # all three from the cache
    backbone.clear_feature_cache()  # what `mcit bench` does before each timed call
    backbone.vision_features(pixels)
    assert calls == [2, 2]
    # With the cache off (or a trained tower) every call runs the tower.
    backbone.config.feature_cache_mb = 0
    backbone.vision_features(pixels)
    assert calls == [2, 2, 3]
