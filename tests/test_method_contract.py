"""The contract every registered method keeps, each rule written once and run for all of them.

A method added by registering (CONTRIBUTING.md) is checked by every rule here without a line of
test code of its own. Per-method test files keep the hand-computed cases of their equations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import typing
from pathlib import Path

import pytest
import torch
from conftest import micro_overrides

from mcit.config import load_config
from mcit.data.collate import Collator
from mcit.data.sample import joint_task, named_stage
from mcit.errors import CheckpointError, ConfigError
from mcit.evaluation.evaluator import predict
from mcit.methods.base import build_method, method_class, method_names
from mcit.models.backbone import load_backbone
from mcit.runner import load_stream, make_accelerator, run
from mcit.train.trainer import RunLogger, Trainer

METHODS = method_names()
ORDER = "[scienceqa, gqa]"


def _config(bench: Path, out: Path, method: str):
    return load_config(
        None,
        micro_overrides(bench, out, method, **{"data.order": ORDER, "train.max_steps_per_task": 2}),
    )


@pytest.fixture(scope="module", params=METHODS)
def finished_run(request, micro_backbone_dirs, micro_benchmark, tmp_path_factory):
    """(method name, config, run folder) of a finished two-task micro run of each method."""
    out = tmp_path_factory.mktemp(f"contract-{request.param}")
    config = _config(micro_benchmark, out, request.param)
    run(config, progress=False)
    return request.param, config, out / config.run_name


def _restored(config, run_dir: Path):
    """A fresh method restored from the run's last stage folder alone."""
    method = build_method(
        config.method.name, load_backbone(config.model.backbone), config.method.args
    )
    last = max(run_dir.glob("stage_*"), key=lambda p: int(p.name.split("_")[1]))
    stages = method.restore(last)  # the checkpoint names its own stages
    method.eval()
    return method, stages, last


def test_restored_from_its_stage_folder_it_answers_as_the_run_did(finished_run):
    name, config, run_dir = finished_run
    method, stages, last = _restored(config, run_dir)
    assert f"stage_{stages}" == last.name
    tasks = load_stream(config)
    answers = predict(
        method,
        [s for t in tasks for s in t.test],
        Collator(method.backbone),
        config.eval,
        progress=False,
    )
    recorded = [
        json.loads(line)["prediction"]
        for t in tasks
        for line in (run_dir / "predictions" / last.name / f"{t.name}.jsonl")
        .read_text()
        .splitlines()
    ]
    assert answers == recorded, name


def test_the_stage_folder_names_its_method_and_args(finished_run, tmp_path):
    """method.json records the registry name and args beside the tensors; a folder restored
    into another method, or the same method with other args, is refused naming what differs."""
    name, config, run_dir = finished_run
    last = max(run_dir.glob("stage_*"), key=lambda p: int(p.name.split("_")[1]))
    saved = json.loads((last / "method.json").read_text())

    def fresh():
        return build_method(name, load_backbone(config.model.backbone), config.method.args)

    assert saved["method"] == fresh().description() and saved["method"]["name"] == name
    for field, value, message in (
        ("name", "another-method", "holds a 'another-method' checkpoint, not"),
        ("args", {**saved["method"]["args"], "unknown_key": 1}, "its method args do not fit"),
    ):
        folder = tmp_path / field
        shutil.copytree(last, folder)
        tampered = {**saved, "method": {**saved["method"], field: value}}
        (folder / "method.json").write_text(json.dumps(tampered))
        with pytest.raises(CheckpointError, match=re.escape(message)):
            fresh().restore(folder)
    # A checkpoint from before an argument existed restores: the argument takes its default.
    if saved["method"]["args"]:
        older = tmp_path / "older"
        shutil.copytree(last, older)
        args = dict(saved["method"]["args"])
        args.pop(sorted(args)[0])
        (older / "method.json").write_text(
            json.dumps({**saved, "method": {**saved["method"], "args": args}})
        )
        fresh().restore(older)


def test_answers_depend_neither_on_the_batch_nor_on_a_task_id(finished_run):
    name, config, run_dir = finished_run
    method, _, _ = _restored(config, run_dir)
    tasks = load_stream(config)
    # Tasks interleaved, so most batches mix them.
    mixed = [s for pair in zip(*(t.test for t in tasks), strict=False) for s in pair]
    collate = Collator(method.backbone)
    eval_config = type(config.eval)
    alone = predict(method, mixed, collate, eval_config(batch_size=1), progress=False)
    batched = predict(method, mixed, collate, eval_config(batch_size=5), progress=False)
    blind = [dataclasses.replace(s, task="") for s in mixed]  # no task name to read
    unnamed = predict(method, blind, collate, eval_config(batch_size=5), progress=False)
    assert alone == batched == unnamed, name


@pytest.mark.parametrize("name", METHODS)
def test_training_leaves_every_frozen_tensor_bit_identical(
    name, micro_backbone_dirs, micro_benchmark, tmp_path
):
    config = _config(micro_benchmark, tmp_path, name)
    method_cls, _ = method_class(name, config.method.args)
    if not method_cls.trains:
        pytest.skip(f"{name} never trains")
    method = build_method(name, load_backbone(config.model.backbone), config.method.args)
    task = joint_task(method.stage_plan(load_stream(config))[0])
    method.begin_task(0, task)
    frozen = {
        key: value.detach().clone()
        for key, value in method.named_parameters()
        if not value.requires_grad
    }
    trained = [p for p in method.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trained]
    trainer = Trainer(make_accelerator(config), config.train, RunLogger(tmp_path, False), False)
    trainer.train_stage(method, 0, task.train, Collator(method.backbone), seed=0)
    method.end_task(0, task, task.train)
    now = dict(method.named_parameters())
    assert frozen and trained, name
    for key, value in frozen.items():
        assert torch.equal(now[key], value), f"{name}: frozen {key} changed"
    assert any(not torch.equal(p, b) for p, b in zip(trained, before, strict=True)), name


@pytest.mark.parametrize("name", METHODS)
def test_begin_and_end_task_need_no_data(name, micro_backbone_dirs, micro_benchmark, tmp_path):
    config = _config(micro_benchmark, tmp_path, name)
    method = build_method(name, load_backbone(config.model.backbone), config.method.args)
    for s, names in enumerate(_names(method.stage_plan(load_stream(config)))):
        method.begin_task(s, named_stage(names))
        method.end_task(s, named_stage(names), [])


def _names(plan) -> list[list[str]]:
    return [[t.name for t in stage] for stage in plan]


@pytest.mark.parametrize("name", METHODS)
def test_every_argument_is_declared_and_a_bad_value_names_its_key(name):
    cls, defaults = method_class(name, {})
    hints = typing.get_type_hints(cls.args_class)
    for f in dataclasses.fields(cls.args_class):
        assert f.metadata.get("help"), f"{name}: method.args.{f.name} has no help text"
        options = typing.get_args(hints[f.name]) or (hints[f.name],)
        numeric = [t for t in options if t in (int, float)]
        kind = numeric[0] if numeric else hints[f.name]
        if numeric:
            assert f.metadata.get("bounds") is not None, f"{name}: {f.name} has no range"
            bad = [-1, math.nan, math.inf] if kind is float else [-1]
            for value in bad:
                with pytest.raises(ConfigError, match=rf"method\.args\.{f.name}: "):
                    method_class(name, {f.name: value})
        with pytest.raises(ConfigError, match=rf"method\.args\.{f.name}: "):
            method_class(name, {f.name: "not a value"} if kind is not str else {f.name: 3})
    with pytest.raises(ConfigError, match=r"method\.args: unknown key\(s\) \['no_such_key'\]"):
        method_class(name, {"no_such_key": 1})
    assert dataclasses.asdict(defaults) == dataclasses.asdict(cls.args_class())
