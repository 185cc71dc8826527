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
        ("moelora", 2e-4, 1.0, 14, 8, {"r": 128, "alpha": 256, "experts": 8}),
        ("modalprompt", 2e-4, 10.0, 32, 1, {"prompt_length": 10, "top_k": 3}),
    ],
)
def test_the_papers_hyper_parameters(name, lr, epochs, batch, accum, extra):
    """The values of the authors' scripts (CoIN for LoRA and MoELoRA, ModalPrompt's own), on
    LLaVA-1.5-7B in bf16 with gradient checkpointing and CLIP-L/336 for guidance."""
    config = load_config(Path(CONFIGS[0].parent, f"{name}.yaml"), [])
    train, backbone = config.train, config.model.backbone
    assert (train.lr, train.epochs, train.batch_size, train.grad_accum) == (
        lr,
        epochs,
        batch,
        accum,
    )
    assert (train.scheduler, train.warmup_ratio, train.weight_decay) == ("cosine", 0.03, 0.0)
    assert train.projector_lr == (None if name == "modalprompt" else 2e-5)
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
    assert (
        config.model.backbone.dtype == "bfloat16" and config.model.backbone.gradient_checkpointing
    )
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


def test_projector_trains_at_its_own_learning_rate(micro_benchmark, hf_llava_dir, tmp_path):
    """CoIN's LoRA runs train LLaVA's projector beside the LoRA, at mm_projector_lr: with
    `train_projector` the projector is the method's (saved with it), and AdamW holds it in a
    group of its own at `train.projector_lr`."""
    from mcit.data.collate import Collator
    from mcit.models.backbone import load_backbone
    from mcit.runner import load_stream, make_accelerator
    from mcit.train.trainer import RunLogger, Trainer, parameter_groups

    config = load_config(
        CONFIGS[0].parent / "finetune-lora.yaml",
        [
            f"data.benchmark={micro_benchmark}",
            "data.order=[gqa]",
            f"model.backbone.path={hf_llava_dir}",
            "model.backbone.dtype=float32",
            "method.args.r=4",
            "train.batch_size=2",
            "train.grad_accum=1",
            "train.max_steps_per_task=2",
            "train.projector_lr=1e-3",
            "train.lr=1e-2",
        ],
    )
    backbone = load_backbone(config.model.backbone)
    method = build_method("finetune-lora", backbone, config.method.args)
    projector = dict(backbone.projector.named_parameters())
    before = {k: v.detach().clone() for k, v in projector.items()}
    groups = parameter_groups(method, method.trainable_parameters(), config.train)
    assert [g.get("lr") for g in groups] == [None, 1e-3]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in projector.values()}
    assert all(
        "lora_" in n
        for n, p in method.named_parameters()
        if p.requires_grad and id(p) in {id(q) for q in groups[0]["params"]}
    )
    task = load_stream(config)[0]
    trainer = Trainer(make_accelerator(config), config.train, RunLogger(tmp_path, False), False)
    trainer.train_stage(method, 0, task.train, Collator(backbone), seed=0)
    state = method.method_state()
    for key, value in projector.items():
        assert f"backbone.model.model.multi_modal_projector.{key}" in state
        assert not torch.equal(before[key], value.detach())
    # Without the switch the projector stays frozen and out of the method's state.
    plain = build_method("finetune-lora", load_backbone(config.model.backbone), {"r": 4})
    assert not any("multi_modal_projector" in k for k in plain.method_state())
    assert len(parameter_groups(plain, plain.trainable_parameters(), config.train)) == 1
