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


MICL = Path(__file__).parents[1] / "configs" / "micl-mini"
MICL_LORA = ["finetune-lora", "multitask", "lwf", "ewc", "replay", "moincl"]


@pytest.mark.parametrize("path", sorted(MICL.glob("*.yaml")), ids=lambda p: p.stem)
def test_micl_mini_configs_parse_and_share_one_budget(path):
    """Every micl-mini config: a registered method, finetune-lora's data, evaluation and
    budget (prompt methods: their own lr); the projections train (MICL's model) for every
    method that trains; the LoRA methods' r 16 on every linear (configs/micl-mini/README.md),
    and MICL's r 8 on q, v in the `-paper-lora` configs."""
    config = load_config(path)
    reference = load_config(MICL / "finetune-lora.yaml")
    cls, args = method_class(config.method.name, config.method.args)
    assert path.stem.startswith(cls.name)
    assert asdict(config.data) == asdict(reference.data) and config.data.order == "order1"
    assert asdict(config.eval) == asdict(reference.eval) and config.seed == reference.seed
    train, ref_train = asdict(config.train), asdict(reference.train)
    train.pop("lr"), ref_train.pop("lr")
    assert train == ref_train
    assert config.model.backbone.train_media_projections is cls.trains
    if path.stem.endswith("-paper-lora"):
        assert (args.r, args.alpha, args.dropout) == (8, 32, 0.1)
        assert args.target_modules == ["q_proj", "v_proj"]
    elif cls.name in MICL_LORA:
        assert (args.r, args.alpha, len(args.target_modules)) == (16, 32, 7)


@pytest.mark.parametrize(
    "ablation, switch",
    [("moincl-no-ptgm", {"ptgm": False}), ("moincl-no-ikd", {"ikd": False}),
     ("moincl-fusion", {"fusion": True})],
)  # fmt: skip
def test_moincl_ablations_differ_from_moincl_in_their_switch_only(ablation, switch):
    full = asdict(method_class("moincl", load_config(MICL / "moincl.yaml").method.args)[1])
    other = asdict(method_class("moincl", load_config(MICL / f"{ablation}.yaml").method.args)[1])
    assert {k: v for k, v in other.items() if full[k] != v} == switch


MODALPROMPT_CHANGES = {
    "modalprompt": {"prompt_depth": "every-layer", "top_k": 1},  # the default at this scale
    "modalprompt-L5": {"prompt_length": 5},
    "modalprompt-L20": {"prompt_length": 20},
    "modalprompt-k1": {"top_k": 1},
    "modalprompt-k2": {"top_k": 2},
    "modalprompt-k4": {"top_k": 4},
    "modalprompt-guidance-image": {"guidance_lambda": 1.0, "prototype_loss_weight_text": 0.0},
    "modalprompt-guidance-text": {"guidance_lambda": 0.0, "prototype_loss_weight_image": 0.0},
    "modalprompt-no-fusion": {"fusion": False},
    "modalprompt-no-selection": {"selection": False},
    "modalprompt-no-fusion-no-selection": {"fusion": False, "selection": False},
}


def test_modalprompt_configs_each_change_only_their_keys_of_the_papers_setting():
    """modalprompt-paper.yaml holds the paper's setting (the method's own defaults); the
    default config and every ablation change only their own keys of it, on the same budget."""
    reference = load_config(CONFIGS / "modalprompt-paper.yaml")
    cls, paper = method_class("modalprompt", reference.method.args)
    assert asdict(paper) == asdict(cls.args_class())
    assert {p.stem for p in CONFIGS.glob("modalprompt*.yaml")} == {
        "modalprompt-paper",
        *MODALPROMPT_CHANGES,
    }
    for stem, changes in MODALPROMPT_CHANGES.items():
        config = load_config(CONFIGS / f"{stem}.yaml")
        _, args = method_class("modalprompt", config.method.args)
        assert asdict(args) == {**asdict(paper), **changes}, stem
        for section in ("data", "model", "train", "eval"):
            assert asdict(getattr(config, section)) == asdict(getattr(reference, section))
        assert config.seed == reference.seed
