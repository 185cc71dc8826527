"""MoInCL: pseudo targets from the frozen previous model, the two KL terms, each ablation switch
alone, weight fusion, and a resumed micl-mini run identical to an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from conftest import micro_overrides
from micro_method import MicroSetup

from mcit.config import load_config
from mcit.data.collate import Collator
from mcit.data.micl_mini.generate import generate_micl_mini
from mcit.data.sample import stream_modalities
from mcit.errors import ConfigError
from mcit.methods.base import build_method
from mcit.methods.moincl import CAPTION_INSTRUCTION, IKD_INSTRUCTIONS, MoinclArgs
from mcit.models.backbone import load_backbone
from mcit.runner import load_stream, run

# captioning (audio) → QA (video): the QA stage gets pseudo captions; then captioning (image)
# after learned QA gets pseudo questions.
ORDER = ["audiocaps", "msvdqa", "flickr30k"]


@pytest.fixture(scope="module")
def micl(tmp_path_factory) -> Path:
    return generate_micl_mini(tmp_path_factory.mktemp("m") / "micl", 0, 8, 3, progress=False)


def _setup(micl: Path, out: Path, **args) -> MicroSetup:
    overrides = [
        *micro_overrides(micl, out, "moincl"),
        f"data.order={ORDER}",
        f"method.args={args}",
    ]
    config = load_config(None, overrides)
    tasks = load_stream(config)
    backbone = load_backbone(config.model.backbone, stream_modalities(tasks))
    set_seed(0)  # the LoRA's initial weights, as the runner seeds them
    method = build_method("moincl", backbone, config.method.args)
    return MicroSetup(method, tasks, Collator(backbone), config)


def _learn(setup: MicroSetup, stage: int, steps: int = 2) -> None:
    task = setup.tasks[stage]
    set_seed(stage)  # dropout draws
    setup.method.begin_task(stage, task)
    setup.train(stage, steps)
    setup.method.end_task(stage, task, task.train)


def _lora(method) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in method.named_parameters() if p.requires_grad}


def test_pseudo_captions_come_from_the_frozen_previous_model(micl, tmp_path):
    setup = _setup(micl, tmp_path)
    method = setup.method
    _learn(setup, 0)
    previous = _lora(method)
    qa = setup.tasks[1]
    method.begin_task(1, qa)
    # The current model moves away from the previous one before any pseudo target is asked for.
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    current = _lora(method)
    drawn = qa.train[:4]
    batch = method.batch_samples(drawn)
    assert batch[:4] == drawn and len(batch) == 4 + method.args.pseudo_num
    pseudo = batch[4:]
    assert [p.media for p in pseudo] == [s.media for s in drawn[:2]]
    assert {p.turns[0][0] for p in pseudo} == {CAPTION_INSTRUCTION.format(noun="video")}
    assert all(torch.equal(current[k], v) for k, v in _lora(method).items())  # swapped back
    # What the previous model says to those prompts, and what the current one says.
    prompts = Collator(method.backbone)(
        [
            type(p)(p.id, p.task, [(p.turns[0][0], "")], [""], "exact", media=p.media)
            for p in pseudo
        ],
        with_answer=False,
    )
    now = method.generate(prompts, max_new_tokens=method.args.pseudo_max_new_tokens)
    with torch.no_grad():
        for name, p in method.named_parameters():
            if name in previous:
                p.copy_(previous[name])
    before = method.generate(prompts, max_new_tokens=method.args.pseudo_max_new_tokens)
    assert [p.answer for p in pseudo] == [a or "." for a in before]
    assert now != before  # the current model would have answered otherwise
    # Asked again, the stage's pseudo answers are the ones already generated.
    assert method.batch_samples(drawn)[4:] == pseudo


def test_pseudo_questions_when_captioning_follows_a_learned_qa_task(micl, tmp_path):
    setup = _setup(micl, tmp_path)
    for stage in (0, 1):
        _learn(setup, stage, steps=1)
    assert setup.method.learned_types == ["caption", "qa"]
    setup.method.begin_task(2, setup.tasks[2])
    pseudo = setup.method.batch_samples(setup.tasks[2].train[:3])[3:]
    assert len(pseudo) == 2 and all(p.id.startswith("pseudo:qa:") for p in pseudo)
    assert all(p.turns[0][0].endswith("?") for p in pseudo)


def test_both_kl_terms_are_zero_when_old_and_new_models_are_equal(micl, tmp_path):
    setup = _setup(micl, tmp_path)
    method = setup.method
    _learn(setup, 0)
    method.begin_task(1, setup.tasks[1])  # the previous model: exactly the current weights
    batch = setup.collate(method.batch_samples(setup.tasks[1].train[:3]))
    method.eval()  # dropout off: the two passes are the same function
    out = method.training_loss(batch)
    assert set(out.parts) == {"lm", "pseudo_kl", "ikd"}
    assert abs(out.parts["pseudo_kl"]) < 1e-6 and abs(out.parts["ikd"]) < 1e-6
    assert out.loss.item() == pytest.approx(out.parts["lm"], abs=1e-5)


def test_each_ablation_switch_changes_only_its_own_part(micl, tmp_path):
    parts = {}
    for name, args in {
        "full": {},
        "no_ptgm": {"ptgm": False},
        "no_ikd": {"ikd": False},
    }.items():
        setup = _setup(micl, tmp_path / name, **args)
        method = setup.method
        _learn(setup, 0, steps=1)
        method.begin_task(1, setup.tasks[1])
        drawn = setup.tasks[1].train[:3]
        samples = method.batch_samples(drawn)
        method.eval()
        parts[name] = (len(samples), method.training_loss(setup.collate(samples)).parts)
    assert parts["full"][0] == parts["no_ikd"][0] == 5 and parts["no_ptgm"][0] == 3
    assert set(parts["no_ptgm"][1]) == {"lm", "ikd"}
    assert set(parts["no_ikd"][1]) == {"lm", "pseudo_kl"}
    # The LM loss of the same batch does not depend on IKD (same samples, same weights).
    assert parts["no_ikd"][1]["lm"] == pytest.approx(parts["full"][1]["lm"], abs=1e-6)


def test_fusion_mixes_the_lora_with_the_previous_one_after_an_epoch(micl, tmp_path):
    setup = _setup(micl, tmp_path, fusion=True, fusion_alpha=0.25)
    method = setup.method
    _learn(setup, 0, steps=1)
    method.begin_task(1, setup.tasks[1])
    old = _lora(method)
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(1.0)
    new = _lora(method)
    method.end_epoch()
    for name, value in _lora(method).items():
        assert torch.allclose(value, 0.75 * old[name] + 0.25 * new[name], atol=1e-6)
    off = _setup(micl, tmp_path / "off")
    _learn(off, 0, steps=1)
    off.method.begin_task(1, off.tasks[1])
    before = _lora(off.method)
    off.method.end_epoch()
    assert all(torch.equal(before[k], v) for k, v in _lora(off.method).items())


def test_a_stage_calls_end_epoch_after_every_pass_and_after_its_last_step(micl, tmp_path):
    setup = _setup(micl, tmp_path)
    calls = []
    setup.method.end_epoch = lambda: calls.append(1)
    setup.method.begin_task(0, setup.tasks[0])
    setup.config.train.epochs = 3.0  # 8 samples, batch 4: a pass is 2 steps
    setup.train(0, steps=5)
    assert len(calls) == 3  # after steps 2 and 4, and after the last (5th)


def test_bad_arguments_name_their_key():
    with pytest.raises(ConfigError, match=r"method.args.ikd_instructions: 17 is more than"):
        MoinclArgs(ikd_instructions=len(IKD_INSTRUCTIONS) + 1)
    with pytest.raises(ConfigError, match=r"method.args.fusion_alpha"):
        MoinclArgs(fusion_alpha=1.5)


def test_a_resumed_micl_run_is_identical_to_an_uninterrupted_one(micl, tmp_path):
    """Killed after stage 2 (pseudo captions), resumed: stage 3 (pseudo questions, from the
    previous model restored from stage 2's folder) gives the same weights and matrix."""

    def config(out: Path):
        return load_config(
            None,
            [
                *micro_overrides(micl, out, "moincl"),
                f"data.order={ORDER}",
                "train.max_steps_per_task=2",
                "eval.max_new_tokens=8",
                "name=r",
            ],
        )

    whole = run(config(tmp_path / "a"), progress=False)
    assert len(run(config(tmp_path / "b"), progress=False, stop_after_stage=2).matrix) == 2
    resumed = run(config(tmp_path / "b"), progress=False)
    assert resumed.matrix == whole.matrix
    assert [s.final_loss for s in resumed.stages] == [s.final_loss for s in whole.stages]
    for stage in (2, 3):
        a = (tmp_path / "a" / "r" / f"stage_{stage}" / "method.safetensors").read_bytes()
        assert (tmp_path / "b" / "r" / f"stage_{stage}" / "method.safetensors").read_bytes() == a
    assert json.loads((tmp_path / "b" / "r" / "stage_3" / "method.json").read_text())


def test_ddp_ranks_stay_identical_through_pseudo_targets_and_ikd(micl, tmp_path):
    """Two ranks, two stages: the second (QA after captioning) generates pseudo captions on
    each rank from its own share of the batch and distils instructions; the LoRA stays
    bit-identical across ranks. The cache starts empty, so the ranks also build the micro base
    (transformers writes weights on rank 0 only: the other rank waits for it)."""
    from test_ddp import run_ddp_worker

    cache = tmp_path / "cache"
    states = run_ddp_worker(micl, tmp_path, cache, "moincl", stages=2, order=ORDER[:2])
    rank0, rank1 = states["moincl"]
    assert rank0["world"] == rank1["world"] == 2
    for key in rank0["after"]:
        assert torch.equal(rank0["after"][key], rank1["after"][key]), key
    assert any(not torch.equal(rank0["before"][k], rank0["after"][k]) for k in rank0["after"])
