"""End-to-end runs on the micro backbone and micro coin-mini: results, resume, freezing."""

import json

import pytest
import torch
import yaml
from conftest import micro_overrides

from mcit.config import load_config
from mcit.errors import ConfigError
from mcit.methods.base import method_names
from mcit.runner import run
from mcit.train.checkpoint import load_stage


def _run(bench, out, method="finetune-lora", stop=None, **extra):
    config = load_config(None, micro_overrides(bench, out, method, **extra))
    return run(config, progress=False, stop_after_stage=stop), out / config.run_name


def test_three_task_run_writes_complete_results(micro_backbone_dirs, micro_benchmark, tmp_path):
    results, run_dir = _run(micro_benchmark, tmp_path, **{"method.args": "{r: 4, alpha: 8}"})
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["tasks"] == ["scienceqa", "gqa", "grounding"]
    assert saved["complete"] is True
    matrix = saved["matrix"]
    assert len(matrix) == 3
    for t, row in enumerate(matrix):
        for i, value in enumerate(row):
            if i <= t:
                assert isinstance(value, float) and 0.0 <= value <= 100.0
            else:
                assert value is None  # unseen tasks are not evaluated by default
    for s, stage in enumerate(saved["stages"], start=1):
        assert stage["train_steps"] == 3 and stage["trainable_parameters"] > 0
        assert (run_dir / f"stage_{s}" / "method.safetensors").is_file()
        for task in saved["tasks"][:s]:
            lines = (
                (run_dir / "predictions" / f"stage_{s}" / f"{task}.jsonl").read_text().splitlines()
            )
            assert len(lines) == 6
            record = json.loads(lines[0])
            assert set(record) == {"id", "prediction", "references", "score"}
    # Each task's metric, which sets its score range (CIDEr ×100 may pass 100).
    assert saved["task_metrics"] == {"scienceqa": "option", "gqa": "exact", "grounding": "iou"}
    manifest = saved["manifest"]
    assert manifest["packages"]["torch"].startswith("2.13.0")
    assert manifest["data_counts"]["gqa"] == {"train": 16, "test": 6}
    assert (run_dir / "config.yaml").is_file() and (run_dir / "logs" / "train.jsonl").is_file()
    # The stage-1 score of a task is the mean of its per-sample scores, in 0-100.
    scores = [
        json.loads(x)["score"]
        for x in (run_dir / "predictions/stage_1/scienceqa.jsonl").read_text().splitlines()
    ]
    assert matrix[0][0] == pytest.approx(100 * sum(scores) / len(scores))


@pytest.mark.parametrize("method", method_names())
def test_killed_after_stage_one_and_resumed_gives_the_same_matrix(
    method, micro_backbone_dirs, micro_benchmark, tmp_path
):
    full, _ = _run(micro_benchmark, tmp_path / "full", method)
    partial, run_dir = _run(micro_benchmark, tmp_path / "resumed", method, stop=1)
    assert len(partial.matrix) == 1
    resumed, _ = _run(micro_benchmark, tmp_path / "resumed", method)
    assert resumed.matrix == full.matrix
    assert [s.final_loss for s in resumed.stages] == [s.final_loss for s in full.stages]


def test_resume_refuses_a_different_config(micro_backbone_dirs, micro_benchmark, tmp_path):
    _run(micro_benchmark, tmp_path, stop=1)
    with pytest.raises(ConfigError, match=r"train\.lr: saved 0\.001, now 0\.5.*train\.lr=0\.001"):
        _run(micro_benchmark, tmp_path, **{"train.lr": 0.5})


def test_a_run_saved_before_a_config_key_existed_still_resumes(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    """Keys added to the config since a run was made take their defaults when it resumes."""
    _, run_dir = _run(micro_benchmark, tmp_path, stop=1)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    del saved["data"]["validation_per_task"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    results, _ = _run(micro_benchmark, tmp_path)
    assert len(results.matrix) == 3


def test_lora_trains_only_lora_and_finetune_leaves_vision_alone(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    from mcit.config import BackboneConfig, ChatFormat
    from mcit.models.backbone import load_llava_dir

    llava_dir, clip_dir = micro_backbone_dirs
    base = load_llava_dir(
        llava_dir, BackboneConfig(), str(clip_dir), ChatFormat()
    ).model.state_dict()
    _, lora_dir = _run(micro_benchmark, tmp_path / "lora", "finetune-lora")
    lora_state, _ = load_stage(lora_dir / "stage_3")
    assert lora_state and all("lora_" in k for k in lora_state)
    first, _ = load_stage(lora_dir / "stage_1")
    assert any(not torch.equal(first[k], lora_state[k]) for k in lora_state)

    _, ft_dir = _run(micro_benchmark, tmp_path / "ft", "finetune")
    ft_state, _ = load_stage(ft_dir / "stage_3")
    assert not any("vision_tower" in k for k in ft_state)
    changed = [
        k
        for k in ft_state
        if k.startswith("backbone.model.")
        and not torch.equal(ft_state[k], base[k.removeprefix("backbone.model.")])
    ]
    assert any("language_model" in k for k in changed) and any(
        "multi_modal_projector" in k for k in changed
    )


def test_zero_shot_and_multitask_are_single_stage(micro_backbone_dirs, micro_benchmark, tmp_path):
    zero, _ = _run(micro_benchmark, tmp_path, "zero-shot")
    assert len(zero.matrix) == 1 and None not in zero.matrix[0]
    assert zero.stages[0].train_steps == 0 and zero.stages[0].name == "no training"
    assert zero.trains is False
    joint, _ = _run(micro_benchmark, tmp_path, "multitask")
    assert len(joint.matrix) == 1 and None not in joint.matrix[0]
    assert joint.stages[0].name == "scienceqa+gqa+grounding" and joint.trains is True


def test_evaluation_does_not_depend_on_batch_size(micro_backbone_dirs, micro_benchmark, tmp_path):
    from mcit.data.collate import Collator
    from mcit.evaluation.evaluator import predict
    from mcit.methods.base import build_method
    from mcit.models.backbone import load_backbone
    from mcit.runner import load_stream

    config = load_config(None, micro_overrides(micro_benchmark, tmp_path))
    tasks = load_stream(config)
    backbone = load_backbone(config.model.backbone)
    method = build_method("zero-shot", backbone)
    samples = [s for t in tasks for s in t.test]
    collate = Collator(backbone)
    one = predict(
        method, samples, collate, type(config.eval)(batch_size=1, max_new_tokens=8), progress=False
    )
    many = predict(
        method, samples, collate, type(config.eval)(batch_size=7, max_new_tokens=8), progress=False
    )
    assert one == many


def test_resume_with_a_missing_checkpoint_is_a_clear_error(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    _, run_dir = _run(micro_benchmark, tmp_path, stop=1)
    (run_dir / "stage_1" / "method.safetensors").unlink()
    with pytest.raises(ConfigError, match="stage_1: results.json records 1 finished"):
        _run(micro_benchmark, tmp_path)


def test_too_short_generation_budget_is_warned(micro_backbone_dirs, micro_benchmark, tmp_path):
    from mcit.evaluation.evaluator import check_answer_budget
    from mcit.models.backbone import load_backbone
    from mcit.runner import load_stream

    config = load_config(None, micro_overrides(micro_benchmark, tmp_path))
    grounding = next(t for t in load_stream(config) if t.name == "grounding")
    tokenizer = load_backbone(config.model.backbone).tokenizer
    with pytest.warns(UserWarning, match="task grounding: its longest reference takes"):
        longest = check_answer_budget(grounding, tokenizer, 6)
    assert longest > 6
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_answer_budget(grounding, tokenizer, longest)


def test_validation_split_holds_out_training_records_and_never_reads_test(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    """data.validation_per_task: each task trains on all but N training records drawn at random
    (seeded) and is evaluated on exactly those N (their answer the one reference); its test
    records are unused."""
    from mcit.runner import hold_out_validation, load_stream

    config = load_config(None, micro_overrides(micro_benchmark, tmp_path))
    full = load_stream(config)
    results, run_dir = _run(
        micro_benchmark,
        tmp_path,
        "zero-shot",
        **{"data.validation_per_task": 5, "data.order": "[scienceqa, gqa]"},
    )
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["manifest"]["eval_split"] == "validation"
    assert saved["manifest"]["data_counts"]["gqa"] == {"train": 11, "test": 5}
    by_name = {t.name: t for t in full}
    for task in ("scienceqa", "gqa"):
        records = [
            json.loads(x)
            for x in (run_dir / "predictions" / "stage_1" / f"{task}.jsonl")
            .read_text()
            .splitlines()
        ]
        held = hold_out_validation([by_name[task]], 5, seed=0)[0].test
        assert [r["id"] for r in records] == [s.id for s in held]
        train_ids = [s.id for s in by_name[task].train]
        positions = [train_ids.index(s.id) for s in held]
        assert positions == sorted(positions) and positions != list(range(11, 16))  # not the tail
        assert [r["references"] for r in records] == [[s.answer] for s in held]
        assert not {r["id"] for r in records} & {s.id for s in by_name[task].test}
    # The split is a function of the seed and the task, not of the order or the other tasks.
    (gqa,) = hold_out_validation([by_name["gqa"]], 5, seed=0)
    pair = hold_out_validation([by_name["scienceqa"], by_name["gqa"]], 5, seed=0)
    assert [s.id for s in pair[1].test] == [s.id for s in gqa.test]
    assert [s.id for s in hold_out_validation([by_name["gqa"]], 5, seed=1)[0].test] != [
        s.id for s in gqa.test
    ]
    # The report says where its scores come from.
    from mcit.report.report import write_report

    md = write_report([run_dir], tmp_path / "report").path.read_text()
    assert "all runs: on held-out training records (data.validation_per_task" in md
    with pytest.raises(ConfigError, match=r"data\.validation_per_task: 16 leaves no training"):
        load_stream(
            load_config(
                None, micro_overrides(micro_benchmark, tmp_path, **{"data.validation_per_task": 16})
            )
        )
    # Refused when the config loads, before any data is read.
    with pytest.raises(ConfigError, match=r"data\.validation_per_task: 0 must be at least 1"):
        load_config(
            None, micro_overrides(micro_benchmark, tmp_path, **{"data.validation_per_task": 0})
        )
