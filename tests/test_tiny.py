"""The embedded tiny backbone: real HF directories, cached by config, with a held-out report."""

import json

import pytest
from conftest import MICRO_TINY
from transformers import CLIPModel, LlavaForConditionalGeneration

from mcit.data.synthetic import pretrain
from mcit.models.tiny import TinyConfig, ensure_tiny_backbone, tiny_dir


def test_micro_backbone_is_a_plain_llava_hf_directory(micro_backbone_dirs):
    llava_dir, clip_dir = micro_backbone_dirs
    llava = LlavaForConditionalGeneration.from_pretrained(llava_dir)
    clip = CLIPModel.from_pretrained(clip_dir)
    # The last vision layer feeds the projector: with -2 it would get no gradient (DDP breaks).
    assert llava.config.vision_feature_layer == -1
    assert llava.config.text_config.hidden_size == MICRO_TINY["lm_hidden"]
    # The LLaVA vision tower starts from the contrastively trained CLIP tower (then tuned with
    # the LM), and the CLIP directory keeps that tower for guidance features.
    assert clip.config.vision_config.hidden_size == llava.config.vision_config.hidden_size
    assert clip.config.text_config.eos_token_id != 2  # CLIP's legacy argmax pooling stays off


def test_cache_is_keyed_by_config_and_reused(micro_backbone_dirs, cache_dir):
    config = TinyConfig(**MICRO_TINY)
    root = tiny_dir(config)
    report = json.loads((root / "pretrain_report.json").read_text())
    assert report["config"]["lm_hidden"] == MICRO_TINY["lm_hidden"]
    held = report["held_out"]
    skills = held["skills_exact"]
    # Every skill of the mixture is probed, each a share in [0, 100], and the mean is theirs.
    assert set(skills) == {*pretrain.TEMPLATES, "photo_read"}
    assert all(0.0 <= v <= 100.0 for v in skills.values())
    assert held["skills_mean"] == pytest.approx(sum(skills.values()) / len(skills), abs=0.01)
    assert 0.0 <= held["where_iou50"] <= 100.0 and held["captions_cider"] >= 0.0
    assert {e["skill"] for e in held["examples"]} >= {"caption"}
    stamp = (root / "DONE").stat().st_mtime_ns
    assert ensure_tiny_backbone(config, progress=False) == micro_backbone_dirs
    assert (root / "DONE").stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = TinyConfig(**{**MICRO_TINY, "seed": 1})
    assert tiny_dir(other) != root
