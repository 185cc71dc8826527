"""A run you can trust: bad values refused before work, checkpoints verified, one writer per
folder, resume refused on changed data, and the folder (not the name) as the run's identity."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
import typing
from pathlib import Path

import pytest
from conftest import micro_overrides
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcit.cli import main
from mcit.config import RunConfig, config_help, load_config, scheduler_names
from mcit.errors import CheckpointError, ConfigError, DataError
from mcit.runner import run
from mcit.train.checkpoint import load_stage, save_stage


def _numeric_keys(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, type]]:
    """(dotted key, int or float) of every numeric key of the config tree."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out += _numeric_keys(kind, f"{prefix}{f.name}.")
            continue
        numeric = [t for t in (typing.get_args(kind) or (kind,)) if t in (int, float)]
        if numeric:
            out.append((f"{prefix}{f.name}", numeric[0]))
    return out


NUMERIC_KEYS = _numeric_keys()


def test_the_tree_has_the_numeric_keys_the_checks_cover():
    keys = dict(NUMERIC_KEYS)
    assert {"train.batch_size", "train.lr", "eval.max_new_tokens", "data.train_per_task"} <= set(
        keys
    )
    assert "model.backbone.feature_cache_mb" in keys and len(keys) >= 18


VALUES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 0.5, 2**40]),
)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from([k for k, _ in NUMERIC_KEYS]), value=VALUES)
def test_every_numeric_value_loads_in_range_or_is_refused_naming_its_key(key, value):
    text = {float("inf"): ".inf", float("-inf"): "-.inf"}.get(value, repr(value))
    try:
        config = load_config(None, [f"{key}={text}"])
    except ConfigError as err:
        assert f"{key}: " in str(err)
        return
    field = _field(key)
    loaded = _get(config, key)
    assert loaded == value or (isinstance(value, float) and loaded == float(value))
    bounds = field.metadata["bounds"]
    assert bounds is not None and bounds.problem(loaded) is None


def _field(key: str) -> dataclasses.Field:
    cls = RunConfig
    parts = key.split(".")
    for part in parts[:-1]:
        cls = typing.get_type_hints(cls)[part]
    return next(f for f in dataclasses.fields(cls) if f.name == parts[-1])


def _get(config, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=0", "train.batch_size: 0 must be at least 1"),
        ("train.grad_accum=0", "train.grad_accum: 0 must be at least 1"),
        ("train.lr=-1", "train.lr: -1.0 must be greater than 0"),
        ("train.lr=nan", "train.lr: nan must be a finite number"),
        ("train.epochs=0", "train.epochs: 0.0 must be greater than 0"),
        ("train.max_steps_per_task=-1", "train.max_steps_per_task: -1 must be at least 1"),
        ("train.scheduler=bogus", "train.scheduler: 'bogus' is not one of ['linear'"),
        ("train.scheduler=reduce_lr_on_plateau", "train.scheduler: 'reduce_lr_on_plateau'"),
        ("train.warmup_ratio=1.5", "train.warmup_ratio: 1.5 must be at most 1"),
        ("eval.batch_size=0", "eval.batch_size: 0 must be at least 1"),
        ("eval.max_new_tokens=0", "eval.max_new_tokens: 0 must be at least 1"),
        ("data.train_per_task=0", "data.train_per_task: 0 must be at least 1"),
        ("data.test_per_task=0", "data.test_per_task: 0 must be at least 1"),
        ("seed=-3", "seed: -3 must be at least 0"),
        ("model.backbone.device=gpu", "model.backbone.device: 'gpu' is not one of auto"),
        ("model.backbone.dtype=fp8", "model.backbone.dtype: 'fp8' is not one of"),
        ("name=a/b", "name: 'a/b' is not a folder name"),
    ],
)
def test_each_measured_bad_value_is_one_clear_line(override, message, capsys):
    assert main(["run", "--quiet", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mcit run: error: defaults: ") and message in err
    assert "\n" not in err


def test_every_scheduler_mcit_accepts_builds_and_steps():
    import torch
    from transformers import get_scheduler

    for name in scheduler_names():
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=1, num_training_steps=4)
        for _ in range(4):
            optimizer.step()
            scheduler.step()


def test_help_config_lists_every_key_with_its_range(capsys):
    assert main(["run", "--help-config"]) == 0
    out = capsys.readouterr().out
    for key, _ in NUMERIC_KEYS:
        assert f"\n{key} = " in f"\n{out}", key
    assert "train.batch_size = 16\n    training samples per step and process [>= 1]" in out
    assert "method.args.r = 128\n    LoRA rank (CoIN: 128) [>= 1]" in out  # the default method's
    assert main(["run", "--help-config", "method.name=modalprompt"]) == 0
    out = capsys.readouterr().out
    assert "method.args.top_k = 3\n" in out and "method.args.r =" not in out
    assert len(config_help()) + 10 == out.count("\n    ")  # ModalPrompt has 10 keys


def test_overrides_may_follow_options(micro_backbone_dirs, micro_benchmark, tmp_path):
    first, *rest = micro_overrides(micro_benchmark, tmp_path, **{"train.max_steps_per_task": 1})
    assert main(["run", first, "--quiet", *rest, "name=mixed"]) == 0
    assert (tmp_path / "mixed" / "results.json").is_file()
    with pytest.raises(SystemExit):
        main(["run", "--quiet", "--no-such-flag"])


# ---------------------------------------------------------------------------- accepted values
# Small ranges of every key that changes what a run does: any accepted value must give a run
# that trains and scores (never a hang, a traceback or a silent no-op).
RUN_VALUES = {
    "train.epochs": st.floats(0.01, 3.0),
    "train.max_steps_per_task": st.integers(1, 3),
    "train.batch_size": st.integers(1, 6),
    "train.grad_accum": st.integers(1, 2),
    "train.lr": st.floats(1e-6, 1.0),
    "train.weight_decay": st.floats(0.0, 1.0),
    "train.warmup_ratio": st.floats(0.0, 1.0),
    "train.max_grad_norm": st.floats(0.0, 5.0),
    "train.log_every": st.integers(1, 50),
    "train.scheduler": st.sampled_from(scheduler_names()),
    "eval.batch_size": st.integers(1, 7),
    "eval.max_new_tokens": st.integers(1, 30),
    "data.train_per_task": st.integers(1, 16),
    "data.test_per_task": st.integers(1, 6),
}


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    choice=st.sampled_from(sorted(RUN_VALUES)).flatmap(
        lambda k: st.tuples(st.just(k), RUN_VALUES[k])
    )
)
def test_an_accepted_value_gives_a_run_that_trains_and_scores(
    micro_backbone_dirs, micro_benchmark, choice
):
    key, value = choice
    with tempfile.TemporaryDirectory() as out:
        config = load_config(
            None,
            micro_overrides(
                micro_benchmark,
                Path(out),
                **{"train.max_steps_per_task": 2, "data.order": "[gqa]", key: value},
            ),
        )
        results = run(config, progress=False)
    (stage,) = results.stages
    assert stage.train_steps >= 1 and stage.train_samples_seen >= 1
    (score,) = results.matrix[0]
    assert 0.0 <= score <= 100.0


# ---------------------------------------------------------------------------- the run folder
def _run(bench, out, stop=None, **extra):
    config = load_config(None, micro_overrides(bench, out, **extra))
    return run(config, progress=False, stop_after_stage=stop), out / config.run_name


def test_a_run_that_fails_before_its_first_stage_does_not_block_a_corrected_one(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    with pytest.raises(DataError, match="nosuchtask"):
        _run(micro_benchmark, tmp_path, name="r", **{"data.order": "[nosuchtask]"})
    assert not (tmp_path / "r" / "config.yaml").exists()
    results, run_dir = _run(micro_benchmark, tmp_path, name="r", **{"data.order": "[gqa]"})
    assert results.complete and (run_dir / "config.yaml").is_file()


def test_the_folder_is_the_runs_identity(micro_backbone_dirs, micro_benchmark, tmp_path):
    whole, _ = _run(micro_benchmark, tmp_path / "a", name="whole")
    _, first = _run(micro_benchmark, tmp_path / "b", stop=1, name="before")
    moved = tmp_path / "elsewhere" / "after"
    moved.parent.mkdir()
    shutil.move(first, moved)
    resumed, _ = _run(micro_benchmark, tmp_path / "elsewhere", name="after")
    assert resumed.matrix == whole.matrix and resumed.run == "after"
    attempts = [
        json.loads(line)
        for line in (moved / "logs" / "train.jsonl").read_text().splitlines()
        if '"event"' in line
    ]
    assert [a["finished_stages"] for a in attempts] == [0, 1]


def test_a_second_writer_is_refused_at_once_with_the_first_ones_pid(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    import subprocess
    import sys

    run_dir = tmp_path / "coin-micro-finetune-lora"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from mcit.files import exclusive_folder\n"
            f"with exclusive_folder(Path({str(run_dir)!r})):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(ConfigError, match=rf"another process \(pid {holder.pid}\) is writing"):
            _run(micro_benchmark, tmp_path)
        assert time.monotonic() - started < 5  # at once, not after loading anything
    finally:
        holder.kill()
        holder.wait()
    _run(micro_benchmark, tmp_path, **{"data.order": "[gqa]"})  # the lock died with its holder


def test_old_runs_resume_format_1_checkpoints_and_no_fingerprints(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    whole, _ = _run(micro_benchmark, tmp_path / "whole")
    _, run_dir = _run(micro_benchmark, tmp_path / "old", stop=1)
    # Make the run look like one from before this version: a format-1 method.json (the extra
    # state alone) and a manifest without data fingerprints.
    manifest = run_dir / "stage_1" / "method.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text())["extra"]))
    results = json.loads((run_dir / "results.json").read_text())
    del results["manifest"]["data_fingerprints"], results["trains"]
    (run_dir / "results.json").write_text(json.dumps(results))
    resumed, _ = _run(micro_benchmark, tmp_path / "old")
    assert resumed.matrix == whole.matrix
    assert json.loads((run_dir / "results.json").read_text())["trains"] is True  # filled in


def test_a_checkpoint_of_an_unknown_format_is_refused(tmp_path):
    stage = _saved_stage(tmp_path)
    manifest = stage / "method.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 7}))
    with pytest.raises(CheckpointError, match=r"method.json, field 'format': 7; this mcit reads 2"):
        load_stage(stage)


def test_resume_refuses_a_benchmark_that_changed(micro_backbone_dirs, micro_benchmark, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(micro_benchmark, bench)
    _run(bench, tmp_path, stop=1)
    test_file = bench / "gqa" / "test.jsonl"
    first, *rest = test_file.read_text().splitlines()
    record = json.loads(first)
    record["answer"] = record["answers"][0] = "something else"  # one reference edited
    test_file.write_text("\n".join([json.dumps(record), *rest]) + "\n")
    with pytest.raises(ConfigError, match=r"the benchmark changed .*gqa \(test\)"):
        _run(bench, tmp_path)


# ---------------------------------------------------------------------------- checkpoints
def _saved_stage(tmp_path: Path) -> Path:
    import torch

    stage = tmp_path / "stage_1"
    save_stage(stage, {"w": torch.arange(64, dtype=torch.float32)}, {"seen": [1, 2]})
    return stage


def test_a_checkpoint_loads_back_verified(tmp_path):
    tensors, extra = load_stage(_saved_stage(tmp_path))
    assert tensors["w"].tolist() == list(range(64)) and extra == {"seen": [1, 2]}


def test_a_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    stage = _saved_stage(tmp_path)
    path = stage / "method.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=rf"{path}: truncated or replaced .*delete {stage}"):
        load_stage(stage)


def test_a_bit_flip_behind_an_intact_header_is_refused(tmp_path):
    stage = _saved_stage(tmp_path)
    path = stage / "method.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the tensor bytes: safetensors alone would load it
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path}: its content changed .*sha256"):
        load_stage(stage)


def test_a_damaged_checkpoint_stops_a_resume_with_one_line(
    micro_backbone_dirs, micro_benchmark, tmp_path, capsys
):
    _, run_dir = _run(micro_benchmark, tmp_path, stop=1)
    path = run_dir / "stage_1" / "method.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    assert main(["run", "--quiet", *micro_overrides(micro_benchmark, tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{path}: its content changed" in err and f"delete {run_dir}" in err
    assert "\n" not in err


def test_a_results_file_with_a_score_out_of_range_is_one_line(
    micro_backbone_dirs, micro_benchmark, tmp_path, capsys
):
    _, run_dir = _run(micro_benchmark, tmp_path, **{"data.order": "[gqa]"})
    path = run_dir / "results.json"
    results = json.loads(path.read_text())
    results["matrix"][0][0] = 150.0  # an exact-match score cannot pass 100
    path.write_text(json.dumps(results))
    overrides = micro_overrides(micro_benchmark, tmp_path, **{"data.order": "[gqa]"})
    assert main(["run", "--quiet", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"mcit run: error: {path}: row for stage 1") and "150.0 is outside" in err


def test_validate_flags_training_records_longer_than_the_models_max_length(
    micro_backbone_dirs, micro_benchmark, tmp_path, capsys
):
    import yaml

    from mcit.data.collate import Collator
    from mcit.models.backbone import load_backbone
    from mcit.runner import load_stream

    tree = load_config(None, micro_overrides(micro_benchmark, tmp_path))
    collate = Collator(load_backbone(tree.model.backbone))
    config = tmp_path / "short.yaml"
    lengths = {}
    for task in load_stream(tree):
        lengths[task.name] = [collate.length(s) for s in task.train]
    limit = sorted(lengths["scienceqa"])[len(lengths["scienceqa"]) // 2]
    expected = sum(n > limit for ns in lengths.values() for n in ns)
    config.write_text(
        yaml.safe_dump(
            {"model": {"backbone": {"max_length": limit, "tiny": tree.model.backbone.tiny}}}
        )
    )
    assert main(["data", "validate", str(micro_benchmark), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"lengths: {expected} training record(s) longer than max_length {limit}" in out
    assert expected > 0 and out.count("  warning: ") == expected  # <= 16 records a task
    assert "scienceqa/train.json, record id " in out
