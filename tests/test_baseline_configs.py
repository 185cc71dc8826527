"""The baselines' coin-mini configs: each parses, and each has finetune-lora's budget (stream,
seed, steps, batch, evaluation) so that `mcit compare` compares like with like."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from mcit.config import load_config
from mcit.methods.base import method_class

CONFIGS = Path(__file__).parents[1] / "configs" / "coin-mini"
BASELINES = ["moelora", "o-lora", "lwf", "ewc", "replay"]


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_config_parses_and_matches_the_lora_budget(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    reference = load_config(CONFIGS / "finetune-lora.yaml")
    assert config.method.name == name
    cls, args = method_class(name, config.method.args)
    assert cls.name == name
    for section in ("data", "model", "train", "eval"):
        assert asdict(getattr(config, section)) == asdict(getattr(reference, section)), section
    assert config.seed == reference.seed
    # LoRA-based baselines keep finetune-lora's rank and scale (MoELoRA: in total over experts).
    assert (args.r, args.alpha) == (16, 32)


PROMPT_BASELINES = ["l2p", "progressive-prompts"]


@pytest.mark.parametrize("name", PROMPT_BASELINES)
def test_prompt_baseline_config_parses_and_matches_modalprompts_budget(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    reference = load_config(CONFIGS / "modalprompt.yaml")
    assert config.method.name == name
    cls, args = method_class(name, config.method.args)
    assert cls.name == name
    # Prompt tuning's budget: modalprompt's data, backbone, steps, batch, lr 1e-2 and evaluation.
    for section in ("data", "model", "train", "eval"):
        assert asdict(getattr(config, section)) == asdict(getattr(reference, section)), section
    assert config.seed == reference.seed and config.train.lr == 0.01
    assert asdict(args) == asdict(cls.args_class())  # the shipped YAML is the documented default
