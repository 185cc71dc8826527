"""configs/coin/: the papers' CoIN runs on LLaVA-1.5-7B. Each file parses, keeps its sourced
values, and builds and trains its method for two steps on a llava-hf directory made by
transformers alone (conftest's `hf_llava_dir`), with coin-mini data, by overrides alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mcit.config import load_config
from mcit.methods.base import build_method, method_names
from mcit.runner import run
from mcit.train.checkpoint import load_stage

CONFIGS = sorted((Path(__file__).parent.parent / "configs" / "coin").glob("*.yaml"))
# MoInCL is MICL's method (image, audio, video): CoIN is images only (configs/micl-mini/).
NOT_ON_COIN = {"moincl"}
LORA_METHODS = {"finetune-lora", "moelora", "multitask", "o-lora", "lwf", "ewc", "replay"}


def test_every_method_has_a_coin_config_named_after_it():
    names = {path.stem: load_config(path, []).method.name for path in CONFIGS}
    assert all(stem == name for stem, name in names.items())
    assert set(names.values()) == set(method_names()) - NOT_ON_COIN


@pytest.mark.parametrize(
    "name, lr, epochs, batch, accum, extra",
    [
        ("finetune-lora", 2e-4, 1.0, 14, 8, {"r": 128, "alpha": 256, "train_projector": True}),
        ("moelora", 2e-4, 1.0, 14, 8, {"r": 128, "experts": 8, "train_projector": True}),
        ("multitask", 2e-4, 1.0, 14, 8, {"r": 128, "alpha": 256, "train_projector": True}),
        ("modalprompt", 2e-4, 10.0, 32, 1, {"prompt_length": 10, "top_k": 3}),
    ],
)
def test_the_papers_hyper_parameters(name, lr, epochs, batch, accum, extra):
    """The values of the authors' scripts (CoIN for LoRA and MoELoRA, ModalPrompt's own), on
    LLaVA-1.5-7B in bf16 with gradient checkpointing and CLIP-L/336 for guidance. Their
    DeepSpeed file's optimizer and WarmupLR scheduler override the flags' projector lr and
    cosine schedule: one lr, warmed up then constant."""
    config = load_config(Path(CONFIGS[0].parent, f"{name}.yaml"), [])
    train, backbone = config.train, config.model.backbone
    assert (train.lr, train.epochs, train.batch_size, train.grad_accum) == (
        lr,
        epochs,
        batch,
        accum,
    )
    assert (train.scheduler, train.warmup_ratio, train.weight_decay) == (
        "constant_with_warmup",
        0.03,
        0.0,
    )
    assert train.projector_lr is None
    assert {k: config.method.args[k] for k in extra} == extra
    assert (backbone.name, backbone.dtype, backbone.gradient_checkpointing) == (
        "hf",
        "bfloat16",
        True,
    )
    assert "clip-vit-large-patch14-336" in backbone.clip_path
    assert config.data.order == "coin" and backbone.max_length == 2048


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_coin_config_trains_two_steps_on_a_transformers_llava(
    path, micro_backbone_dirs, micro_benchmark, hf_llava_dir, tmp_path
):
    _, clip_dir = micro_backbone_dirs
    overrides = [
        f"data.benchmark={micro_benchmark}",
        "data.order=[gqa]",
        "data.test_per_task=2",
        f"model.backbone.path={hf_llava_dir}",
        f"model.backbone.clip_path={clip_dir}",
        "train.max_steps_per_task=2",
        "train.batch_size=2",
        "train.grad_accum=1",
        "eval.batch_size=2",
        "eval.max_new_tokens=4",
        f"output_dir={tmp_path}",
    ]
    config = load_config(path, overrides)
    # The frozen model in bf16; `finetune` trains all of it, so it loads float32 weights.
    dtype = "float32" if config.method.name == "finetune" else "bfloat16"
    assert config.model.backbone.dtype == dtype and config.model.backbone.gradient_checkpointing
    results = run(config, progress=False)
    assert results.complete and results.matrix[-1][0] is not None
    stage = results.stages[0]
    assert stage.train_steps == (0 if config.method.name == "zero-shot" else 2)
    if config.method.name != "zero-shot":
        assert stage.trainable_parameters > 0 and stage.final_loss is not None
        # LoRA's B starts at zero: two steps through the checkpointed bf16 layers moved it.
        saved, _ = load_stage(tmp_path / config.run_name / "stage_1")
        lora_b = [v for k, v in saved.items() if "lora_B" in k]
        assert all(v.abs().sum() > 0 for v in lora_b)
        assert bool(lora_b) == (config.method.name in LORA_METHODS)


def _projector_run(micro_benchmark, hf_llava_dir, *extra: str):
    from mcit.data.collate import Collator
    from mcit.models.backbone import load_backbone
    from mcit.runner import load_stream, make_accelerator
    from mcit.train.trainer import RunLogger, Trainer

    config = load_config(
        CONFIGS[0].parent / "finetune-lora.yaml",
        [
            f"data.benchmark={micro_benchmark}",
            "data.order=[gqa]",
            f"model.backbone.path={hf_llava_dir}",
            "method.args.r=4",
            "train.batch_size=2",
            "train.grad_accum=1",
            "train.max_steps_per_task=1",
            "train.scheduler=constant",
            "train.warmup_ratio=0",
            *extra,
        ],
    )
    backbone = load_backbone(config.model.backbone)
    method = build_method(config.method.name, backbone, config.method.args)
    before = {k: v.detach().clone() for k, v in method.method_state().items()}
    trainer = Trainer(make_accelerator(config), config.train, RunLogger(Path("."), False), False)
    trainer.train_stage(method, 0, load_stream(config)[0].train, Collator(backbone), seed=0)
    after = method.method_state()
    steps = {k: (after[k].float() - before[k].float()).abs() for k in before}
    return method, config, steps


def test_projector_trains_in_float32_at_its_own_learning_rate(micro_benchmark, hf_llava_dir):
    """CoIN's LoRA runs train LLaVA's projector beside the LoRA: with `train_projector` it is the
    method's (saved with it) and float32 even on a bf16 model, so AdamW's steps are not lost to
    rounding; `train.projector_lr` is the lr it moves by (Adam's first step is ≈ lr per weight)."""
    method, _, steps = _projector_run(
        micro_benchmark,
        hf_llava_dir,
        "model.backbone.dtype=bfloat16",
        "train.lr=1e-2",
        "train.projector_lr=2e-5",
    )
    projector = [k for k in steps if "multi_modal_projector" in k]
    assert len(projector) == 4  # two linears, weight and bias
    assert all(p.dtype == torch.float32 for p in method.backbone.projector.parameters())
    assert method.backbone.model.lm_head.weight.dtype == torch.bfloat16  # the frozen rest
    moved = torch.cat([steps[k].flatten() for k in projector])
    assert (moved > 0).float().mean() > 0.9  # in bf16, most of these steps would round away
    assert 1e-5 < moved.median() < 3e-5
    lora_b = torch.cat([v.flatten() for k, v in steps.items() if "lora_B" in k])
    assert 5e-3 < lora_b.median() < 1.5e-2


def test_without_the_switch_the_projector_is_frozen_and_weights_in_bf16_are_refused(
    micro_benchmark, hf_llava_dir
):
    from mcit.errors import ConfigError

    with pytest.warns(UserWarning, match="projector_lr is set but .* does not train"):
        _, _, steps = _projector_run(
            micro_benchmark, hf_llava_dir, "method.args.train_projector=false",
            "train.projector_lr=1e-3",
        )  # fmt: skip
    assert not any("multi_modal_projector" in k for k in steps)
    with pytest.raises(ConfigError, match=r"'finetune' would train .* half precision.*float32"):
        _projector_run(
            micro_benchmark, hf_llava_dir, "method.name=finetune", "method.args={}",
            "model.backbone.dtype=bfloat16",
        )  # fmt: skip
