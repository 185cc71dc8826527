"""`mcit compare`: config lookup, one stream/seed/budget for all, a report from real micro runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import micro_overrides
from PIL import Image

from mcit.cli import main
from mcit.compare import compare, find_method_config, prepare_configs
from mcit.errors import ConfigError
from mcit.evaluation.continual import compute_metrics
from mcit.runner import run


def compare_overrides(benchmark: Path) -> list[str]:
    """The micro settings, minus what compare sets itself (output folder, method)."""
    return [
        o
        for o in micro_overrides(benchmark, Path("unused"))
        if not o.startswith(("output_dir=", "method.name="))
    ]


def write_config(root: Path, bench: str, method: str, text: str) -> Path:
    path = root / bench / f"{method}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"method:\n  name: {method}\n{text}")
    return path


# ------------------------------------------------------------------------------ configs
def test_config_lookup_order_and_missing_config(tmp_path: Path) -> None:
    ours = write_config(tmp_path, "coin-mini", "finetune", "seed: 3\n")
    assert find_method_config("coin-mini", "finetune", tmp_path) == ours  # --configs first
    repo = find_method_config("coin-mini", "finetune-lora", tmp_path)  # then ./configs, repo
    assert repo.parts[-3:] == ("configs", "coin-mini", "finetune-lora.yaml") and repo.is_file()
    with pytest.raises(ConfigError, match=r"no config for method 'no-such' on benchmark") as exc:
        find_method_config("coin-mini", "no-such", tmp_path)
    available = str(exc.value).split("available: ", 1)[1].split(", ")
    assert {"finetune", "finetune-lora", "multitask", "zero-shot"} <= set(available)
    assert available == sorted(available)
    with pytest.raises(ConfigError, match="--configs .*: no such directory"):
        find_method_config("coin-mini", "finetune", tmp_path / "nope")


def test_stream_seed_and_budget_come_from_the_first_method(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        "b",
        "finetune-lora",
        "seed: 0\ndata: {benchmark: coin-mini, test_per_task: 6}\n"
        "train: {batch_size: 4, max_steps_per_task: 3, lr: 0.001}\neval: {batch_size: 4}\n",
    )
    write_config(
        tmp_path,
        "b",
        "finetune",
        "seed: 1\ndata: {benchmark: coin-mini, test_per_task: 5}\n"
        "train: {batch_size: 8, max_steps_per_task: 3, lr: 0.0003}\neval: {batch_size: 2}\n",
    )
    log: list[str] = []
    prepared = dict(
        prepare_configs(
            "b",
            ["finetune-lora", "finetune"],
            tmp_path / "out",
            ["train.max_steps_per_task=2", "eval.max_new_tokens=30"],
            tmp_path,
            log=log.append,
        )
    )
    lora, full = prepared["finetune-lora"], prepared["finetune"]
    assert sorted(log) == [
        "[mcit compare] finetune: data.test_per_task = 5 -> 6 (as finetune-lora)",
        "[mcit compare] finetune: eval.batch_size = 2 -> 4 (as finetune-lora)",
        "[mcit compare] finetune: seed = 1 -> 0 (as finetune-lora)",
        "[mcit compare] finetune: train.batch_size = 8 -> 4 (as finetune-lora)",
    ]
    for config in (lora, full):
        assert (config.seed, config.data.test_per_task, config.train.batch_size) == (0, 6, 4)
        assert config.train.max_steps_per_task == 2 and config.eval.max_new_tokens == 30
        assert config.output_dir == str(tmp_path / "out")
    assert (lora.run_name, full.run_name) == ("finetune-lora", "finetune")
    assert (lora.train.lr, full.train.lr) == (0.001, 0.0003)  # a method's own settings stay


def test_reserved_overrides_and_bad_method_lists(tmp_path: Path) -> None:
    for override in ("name=x", "output_dir=y", "method.args.r=4"):
        with pytest.raises(
            ConfigError, match="compare sets the run name, output folder and method"
        ):
            prepare_configs("coin-mini", ["finetune"], tmp_path, [override])
    with pytest.raises(ConfigError, match="finetune given twice"):
        prepare_configs("coin-mini", ["finetune", "finetune"], tmp_path)


def test_a_config_variant_runs_into_its_own_folder(tmp_path: Path) -> None:
    # An ablation config is named after its variant; its method is a registered one.
    write_config(tmp_path, "b", "finetune", "")
    write_config(tmp_path, "b", "finetune-slow", "").write_text(
        "method: {name: finetune}\ntrain: {lr: 0.00001}\n"
    )
    prepared = dict(
        prepare_configs("b", ["finetune", "finetune-slow"], tmp_path / "o", [], tmp_path)
    )
    slow = prepared["finetune-slow"]
    assert (slow.method.name, slow.run_name, slow.train.lr) == ("finetune", "finetune-slow", 1e-5)


# ------------------------------------------------------------------------------ real micro runs
@pytest.fixture(scope="module")
def compared(micro_backbone_dirs, micro_benchmark, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    log: list[str] = []
    result = compare(
        "coin-mini",
        ["finetune-lora", "zero-shot"],
        out_dir=out,
        overrides=compare_overrides(micro_benchmark),
        progress=False,
        log=log.append,
    )
    return result, out, log


def _png_is_real(path: Path) -> None:
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] >= 200 and image.shape[1] >= 300
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50 and image.std() > 20


def test_compare_runs_every_method_and_writes_one_report(compared) -> None:
    result, out, log = compared
    assert result.finished == ["finetune-lora", "zero-shot"] and result.failed == {}
    assert result.report == out / "report.md"
    assert "[mcit compare] (1/2) finetune-lora: running into" in log[0]
    assert any("(2/2) zero-shot: done (1 stages)" in x for x in log)
    lora = json.loads((out / "finetune-lora" / "results.json").read_text())
    zero = json.loads((out / "zero-shot" / "results.json").read_text())
    assert lora["complete"] and zero["complete"] and lora["tasks"] == zero["tasks"]
    assert lora["manifest"]["seed"] == zero["manifest"]["seed"] == 0

    md = result.report.read_text()
    assert "Warning" not in md  # same stream, seed and budget
    expected = compute_metrics(lora["tasks"], lora["matrix"])
    row = next(x for x in md.splitlines() if x.startswith("| finetune-lora | ContinualT |"))
    finals = [f"{x['final']:.2f}" for x in expected["per_task"]]
    assert row.split(" | ")[2:5] == finals
    zero_row = next(x for x in md.splitlines() if x.startswith("| zero-shot | DirectT |"))
    assert zero_row.split(" | ")[2:5] == [f"{v:.2f}" for v in zero["matrix"][0]]
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == [
        "efficiency.png",
        "matrix_finetune-lora.png",
        "matrix_zero-shot.png",
        "stages_ma_bwt.png",
    ]
    for name in pngs:
        assert f"(plots/{name})" in md
        _png_is_real(out / "plots" / name)


def test_runs_write_metrics_json_that_mcit_metrics_reproduces(compared, capsys) -> None:
    _, out, _ = compared
    for method in ("finetune-lora", "zero-shot"):
        saved = json.loads((out / method / "metrics.json").read_text())
        assert main(["metrics", str(out / method / "results.json"), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == saved
    lora = json.loads((out / "finetune-lora" / "results.json").read_text())
    assert json.loads((out / "finetune-lora" / "metrics.json").read_text()) == compute_metrics(
        lora["tasks"], lora["matrix"]
    )


def test_compare_again_resumes_finished_runs(compared, micro_benchmark) -> None:
    result, out, _ = compared
    before = json.loads((out / "finetune-lora" / "results.json").read_text())
    log: list[str] = []
    again = compare(
        "coin-mini",
        ["finetune-lora", "zero-shot"],
        out_dir=out,
        overrides=compare_overrides(micro_benchmark),
        progress=False,
        log=log.append,
    )
    assert again.finished == result.finished
    assert "(1/2) finetune-lora: resuming into" in log[0]
    after = json.loads((out / "finetune-lora" / "results.json").read_text())
    assert (after["matrix"], after["stages"]) == (before["matrix"], before["stages"])


def test_metrics_json_is_written_after_every_stage(
    micro_backbone_dirs, micro_benchmark, tmp_path
) -> None:
    from mcit.config import load_config

    config = load_config(None, micro_overrides(micro_benchmark, tmp_path))
    run(config, progress=False, stop_after_stage=1)
    metrics = json.loads((tmp_path / config.run_name / "metrics.json").read_text())
    results = json.loads((tmp_path / config.run_name / "results.json").read_text())
    assert metrics["tasks"] == ["scienceqa"]
    assert metrics["summary"]["final_ma"] == results["matrix"][0][0]


def test_a_failed_method_does_not_lose_the_others(
    micro_backbone_dirs, micro_benchmark, tmp_path, capsys
) -> None:
    write_config(tmp_path / "configs", "b", "finetune", "  args: {bogus: 1}\n")
    write_config(tmp_path / "configs", "b", "zero-shot", "")
    out = tmp_path / "out"
    argv = ["compare", "--benchmark", "b", "--methods", "finetune,zero-shot"]
    argv += ["--configs", str(tmp_path / "configs"), "--out", str(out), "--quiet"]
    assert main(argv + compare_overrides(micro_benchmark)) == 1
    captured = capsys.readouterr()
    assert (
        "(1/2) finetune: FAILED: ConfigError: method.args: unknown key(s) ['bogus']" in captured.out
    )
    assert "mcit compare: failed: finetune: ConfigError" in captured.err
    assert json.loads((out / "zero-shot" / "results.json").read_text())["complete"] is True
    assert "Traceback" in (out / "finetune" / "error.txt").read_text()
    md = (out / "report.md").read_text()
    assert "**Note:** `finetune` did not finish (ConfigError: method.args: unknown key(s)" in md
    assert "| zero-shot | DirectT |" in md and "| finetune |" not in md


def test_single_task_references_give_each_task_its_alone_gap(
    micro_backbone_dirs, micro_benchmark, tmp_path
) -> None:
    """`--single-task`: every task learned alone from the base, once, reused on a second call;
    task 1's reference repeats the continual run's first stage, so its gap is exactly 0."""
    out, log = tmp_path / "out", []
    overrides = [*compare_overrides(micro_benchmark), "data.order=[gqa, scienceqa]"]
    result = compare(
        "coin-mini",
        ["finetune-lora", "zero-shot"],
        out_dir=out,
        overrides=overrides,
        progress=False,
        log=log.append,
        single_task=True,
    )
    assert result.failed == {}
    lora = json.loads((out / "finetune-lora" / "results.json").read_text())
    single = json.loads((out / "finetune-lora" / "single-task.json").read_text())
    assert set(single["scores"]) == {"gqa", "scienceqa"}
    assert not (out / "zero-shot" / "single-task.json").exists()  # a single-stage run: no gap
    assert single["scores"]["gqa"] == lora["matrix"][0][0]
    (first,) = (out / "single-task").glob("finetune-lora-*/gqa")  # the same first stage, bit
    for name in ("stage_1/method.safetensors", "predictions/stage_1/gqa.jsonl"):  # for bit
        assert (first / name).read_bytes() == (out / "finetune-lora" / name).read_bytes(), name
    gap = lora["matrix"][1][1] - single["scores"]["scienceqa"]
    metrics = json.loads((out / "finetune-lora" / "metrics.json").read_text())
    assert [x["alone_gap"] for x in metrics["per_task"]] == [0.0, gap]
    assert metrics["summary"]["mean_alone_gap"] == gap
    folders = sorted(p.parent.name for p in (out / "single-task").glob("*/*/results.json"))
    assert folders == ["gqa", "scienceqa"]
    md = result.report.read_text()
    row = next(x for x in md.splitlines() if x.startswith("| finetune-lora | alone gap |"))
    assert row.rstrip(" |").split(" | ")[2:] == ["0.00", f"{gap:.2f}", f"{gap:.2f}"]
    assert "Alone gap_i = DirectT_i" in md
    # The references are cached: a second compare reuses both and writes the same scores.
    log.clear()
    compare(
        "coin-mini",
        ["finetune-lora"],
        out_dir=out,
        overrides=overrides,
        progress=False,
        log=log.append,
        single_task=True,
    )
    assert sum("single-task reference" in x and "reusing" in x for x in log) == 2
    assert json.loads((out / "finetune-lora" / "single-task.json").read_text()) == single
