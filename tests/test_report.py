"""Reports: tables on hand-computed runs, warnings, rehearsal flags, analyses, figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mcit.cli import main
from mcit.errors import ReportError
from mcit.report.analysis import Analysis, analysis_path, last_stage_analyses, read_analysis
from mcit.report.report import write_report
from mcit.report.runs import load_runs, setting_differences
from mcit.report.tables import rehearsal_note

TASKS = ["A", "B", "C"]
MANIFEST = {
    "seed": 0,
    "eval_batch_size": 4,
    "data_counts": {t: {"train": 16, "test": 6} for t in TASKS},
}


def make_run(
    root: Path,
    method: str,
    matrix: list,
    single: bool = False,
    rehearsal_free: bool = True,
    manifest: dict | None = None,
    seconds: tuple[float, float] = (10.0, 2.0),
    params: tuple[int, int] = (100, 10_000),
) -> Path:
    """A run folder as `mcit run` leaves it (results.json, config.yaml), with hand-set numbers."""
    stage_tasks = [TASKS] if single else [[t] for t in TASKS[: len(matrix)]]
    results = {
        "version": 1,
        "run": f"bench-{method}",
        "benchmark": "bench",
        "method": method,
        "rehearsal_free": rehearsal_free,
        "tasks": TASKS,
        "stages": [
            {
                "stage": s + 1,
                "name": "+".join(st),
                "tasks": st,
                "train_steps": 3,
                "train_seconds": seconds[0],
                "eval_seconds": seconds[1],
                "trainable_parameters": params[0],
                "total_parameters": params[1],
            }
            for s, st in enumerate(stage_tasks)
        ],
        "matrix": matrix,
        "manifest": manifest or MANIFEST,
    }
    run_dir = root / method
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "config.yaml").write_text("seed: 0\ntrain: {max_steps_per_task: 3, batch_size: 4}\n")
    return run_dir


# finetune:  stage 1: 90 - -; stage 2: 95 80 -; stage 3: 75 50 60 (test_continual.py's matrix)
#   DirectT 90 80 60 (mean 76.67); ContinualT 75 50 60 (mean 61.67); CAA 85 50 - (mean 67.5)
#   MA 90, 87.5, 61.67 (mean 79.72); BWT -, 5, -22.5 (mean -8.75)
# replay (not rehearsal-free): 80 - -; 70 60 -; 70 50 40
#   DirectT 80 60 40 (mean 60); ContinualT 70 50 40 (mean 53.33); CAA 70 50 - (mean 60)
#   MA 80, 65, 53.33; BWT -, -10, mean(70-80, 50-60) = -10
# multitask (single stage): 60 30 45 -> DirectT = ContinualT, MA 45 under stage 3
FINETUNE = [[90, None, None], [95, 80, None], [75, 50, 60]]
REPLAY = [[80, None, None], [70, 60, None], [70, 50, 40]]
JOINT = [[60, 30, 45]]


@pytest.fixture
def three_runs(tmp_path: Path) -> list[Path]:
    return [
        make_run(tmp_path / "runs", "finetune", FINETUNE),
        make_run(tmp_path / "runs", "replay", REPLAY, rehearsal_free=False, seconds=(20.0, 3.0)),
        make_run(tmp_path / "runs", "multitask", JOINT, single=True, params=(500, 10_000)),
    ]


def _table(md: str, heading: str) -> list[list[str]]:
    """The body rows (cells) of the first Markdown table after `heading`."""
    lines = md.split(heading, 1)[1].splitlines()
    start = next(k for k, x in enumerate(lines) if x.startswith("|"))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append(line)
    return [[c.strip() for c in x.strip("|").split(" | ")] for x in block[2:]]


def test_report_tables_hold_the_hand_computed_numbers(three_runs, tmp_path: Path) -> None:
    report = write_report(three_runs, tmp_path / "out")
    md = report.path.read_text()
    per_task = _table(md, "## Per task")
    assert per_task == [
        ["finetune", "DirectT", "90.00", "80.00", "60.00", "76.67"],
        ["finetune", "ContinualT", "75.00", "50.00", "60.00", "61.67"],
        ["finetune", "CAA", "85.00", "50.00", "–", "67.50"],
        ["replay †", "DirectT", "80.00", "60.00", "40.00", "60.00"],
        ["replay †", "ContinualT", "70.00", "50.00", "40.00", "53.33"],
        ["replay †", "CAA", "70.00", "50.00", "–", "60.00"],
        ["multitask", "DirectT", "60.00", "30.00", "45.00", "45.00"],
        ["multitask", "ContinualT", "60.00", "30.00", "45.00", "45.00"],
        ["multitask", "CAA", "–", "–", "–", "–"],
    ]
    per_stage = _table(md, "## Per stage")
    assert per_stage == [
        ["finetune", "MA", "90.00", "87.50", "61.67", "79.72"],
        ["finetune", "BWT", "–", "5.00", "-22.50", "-8.75"],
        ["replay †", "MA", "80.00", "65.00", "53.33", "66.11"],
        ["replay †", "BWT", "–", "-10.00", "-10.00", "-10.00"],
        ["multitask", "MA", "–", "–", "45.00", "45.00"],
        ["multitask", "BWT", "–", "–", "–", "–"],
    ]
    summary = _table(md, "## Summary")
    assert summary[0][:5] == ["finetune", "yes", "3", "61.67", "79.72"]
    assert summary[1][:3] == ["replay †", "no", "3"]
    assert "† not rehearsal-free: keeps samples of earlier tasks (replay)" in md
    efficiency = _table(md, "## Efficiency")
    # finetune: 3 stages x (10 s + 2 s); multitask: one stage, 500 of 10,000 parameters
    assert efficiency[0] == [
        "finetune",
        "3",
        "9",
        "30.0",
        "6.0",
        "36.0",
        "100",
        "10,000",
        "1.000 %",
    ]
    assert efficiency[2] == [
        "multitask",
        "1",
        "3",
        "10.0",
        "2.0",
        "12.0",
        "500",
        "10,000",
        "5.000 %",
    ]
    assert report.warnings == [] and "Warning" not in md
    for png in (
        "stages_ma_bwt",
        "matrix_finetune",
        "matrix_replay",
        "matrix_multitask",
        "efficiency",
    ):
        assert f"(plots/{png}.png)" in md
        assert (tmp_path / "out" / "plots" / f"{png}.png").is_file()


def _is_real_figure(path: Path, min_size: tuple[int, int] = (300, 200)) -> None:
    image = np.asarray(Image.open(path).convert("RGB"))
    height, width, _ = image.shape
    assert width >= min_size[0] and height >= min_size[1]
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, colour map, lines: not one flat colour
    assert image.std() > 20


def test_figures_are_non_trivial_pngs(three_runs, tmp_path: Path) -> None:
    report = write_report(three_runs, tmp_path / "out")
    assert len(report.figures) == 5
    for path in report.figures:
        _is_real_figure(path)


def test_settings_that_differ_are_a_visible_warning(tmp_path: Path) -> None:
    other = {**MANIFEST, "seed": 1, "eval_batch_size": 8}
    runs = [
        make_run(tmp_path, "finetune", FINETUNE),
        make_run(tmp_path, "replay", REPLAY, manifest=other),
    ]
    report = write_report(runs, tmp_path / "out")
    md = report.path.read_text()
    assert "⚠ Warning: these runs differ in their settings" in md
    assert "> - manifest eval_batch_size: finetune = 4; replay = 8" in md
    assert "> - manifest seed: finetune = 0; replay = 1" in md
    assert report.warnings == setting_differences(load_runs(runs))
    assert len(report.warnings) == 2


def test_runs_of_different_streams_are_refused(tmp_path: Path) -> None:
    a = make_run(tmp_path, "finetune", FINETUNE)
    b = make_run(tmp_path, "replay", REPLAY)
    results = json.loads((b / "results.json").read_text())
    results["tasks"] = ["A", "C", "B"]
    results["stages"] = [{**s, "tasks": [t]} for s, t in zip(results["stages"], "ACB", strict=True)]
    (b / "results.json").write_text(json.dumps(results))
    with pytest.raises(ReportError, match=r"replay: its tasks \['A', 'C', 'B'\] differ from"):
        write_report([a, b], tmp_path / "out")
    with pytest.raises(ReportError, match="not a run folder"):
        write_report([tmp_path / "nothing"], tmp_path / "out")


def test_zero_shot_run_gives_fwt_to_the_others(tmp_path: Path) -> None:
    # finetune evaluated every task after every stage (eval.all_tasks):
    #   a12 = 30, a23 = 20; zero-shot b = 10, 25, 12 -> FWT = mean(30 - 25, 20 - 12) = 6.5
    full = [[90, 30, 10], [95, 80, 20], [75, 50, 60]]
    runs = [
        make_run(tmp_path, "finetune", full),
        make_run(tmp_path, "zero-shot", [[10, 25, 12]], single=True),
    ]
    loaded = load_runs(runs)
    assert loaded[0].metrics.summary.fwt == 6.5
    assert loaded[1].metrics.summary.fwt is None
    md = write_report(runs, tmp_path / "out").path.read_text()
    assert "FWT uses the scores of zero-shot as b_i" in md
    assert _table(md, "## Summary")[0][-1] == "6.50"


def test_two_runs_of_one_method_are_labelled_by_run(tmp_path: Path) -> None:
    a = make_run(tmp_path / "x", "finetune", FINETUNE)
    b = make_run(tmp_path / "y", "finetune", REPLAY)
    c = make_run(tmp_path / "z", "replay", REPLAY)
    # Both finetune runs are named "bench-finetune": their folders tell them apart.
    runs = load_runs([a, b, c])
    assert [r.label for r in runs] == [f"bench-finetune ({a})", f"bench-finetune ({b})", "replay"]
    results = json.loads((b / "results.json").read_text())
    (b / "results.json").write_text(json.dumps({**results, "run": "finetune-slow"}))
    assert [r.label for r in load_runs([a, b])] == ["bench-finetune", "finetune-slow"]
    # Alone in a report, an ablation keeps its name; a run name that adds only a prefix does not.
    assert [r.label for r in load_runs([b])] == ["finetune-slow"]
    assert [r.label for r in load_runs([a])] == ["finetune"]


def test_a_reconstructions_ablations_share_one_footnote(tmp_path: Path) -> None:
    full = make_run(tmp_path / "x", "fwd-prompt", FINETUNE)
    ablation = make_run(tmp_path / "y", "fwd-prompt", REPLAY)
    results = json.loads((ablation / "results.json").read_text())
    (ablation / "results.json").write_text(json.dumps({**results, "run": "fwd-prompt-no-residual"}))
    plain = make_run(tmp_path / "z", "finetune", FINETUNE)
    runs = load_runs([full, ablation, plain])
    assert [r.display for r in runs] == [
        "bench-fwd-prompt ‡",
        "fwd-prompt-no-residual ‡",
        "finetune",
    ]
    assert rehearsal_note(runs) == (
        "‡ bench-fwd-prompt, fwd-prompt-no-residual: a reconstruction from the paper's "
        "description (its code is not public); docs/methods/fwd-prompt.md marks each choice."
    )


# ------------------------------------------------------------------------------ analyses
def _similarity() -> Analysis:
    return Analysis(
        title="Task × prototype similarity",
        row_label="test samples of task",
        col_label="prototype of task",
        rows=TASKS,
        cols=TASKS,
        values=[[0.91, 0.12, 0.05], [0.2, 0.85, None], [0.1, 0.3, 0.77]],
        fmt=".2f",
    )


def _save(analysis: Analysis, run_dir: Path, stage: int, name: str) -> None:
    path = analysis_path(run_dir, stage, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(analysis.to_json()))


def test_last_stage_analyses_are_rendered(three_runs, tmp_path: Path) -> None:
    run = three_runs[0]
    _save(_similarity(), run, 2, "similarity")
    latest = _similarity()
    latest.title = "Prompt selection share"
    _save(latest, run, 3, "selection")
    found = last_stage_analyses(run)
    assert [(a.name, a.stage, a.title) for a in found] == [
        ("selection", 3, "Prompt selection share")
    ]
    report = write_report(three_runs, tmp_path / "out")
    md = report.path.read_text()
    assert "## Method analyses (last stage)" in md and "### finetune — after stage 3" in md
    assert "(plots/analysis_finetune_selection.png)" in md
    assert "analysis_finetune_similarity" not in md  # stage 2 is not the last
    _is_real_figure(tmp_path / "out/plots/analysis_finetune_selection.png")
    assert read_analysis(analysis_path(run, 3, "selection")).values[1][2] is None


def test_per_stage_analysis_values_are_tabulated(three_runs, tmp_path: Path) -> None:
    path = three_runs[0] / "results.json"
    results = json.loads(path.read_text())
    results["stages"][1]["analysis"] = {"selection_accuracy_top1": 0.875}
    results["stages"][2]["analysis"] = {"selection_accuracy_top1": 0.5, "k": 2}
    path.write_text(json.dumps(results))
    md = write_report(three_runs, tmp_path / "out").path.read_text()
    assert _table(md, "Values the methods recorded after each stage") == [
        ["finetune", "selection_accuracy_top1", "–", "0.875", "0.500"],
        ["finetune", "k", "–", "–", "2.000"],
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"title": 3}, r"field 'title': 3 is not a string"),
        ({"rows": []}, r"field 'rows': \[\] is not a non-empty list"),
        ({"values": [[1, 2, 3]]}, r"field 'values': 1 rows, expected 3"),
        ({"values": [[1, 2, 3], [1, 2], [1, 2, 3]]}, r"field 'values\[1\]': 2 entries, expected 3"),
        ({"values": [[1, 2, 3], [1, "x", 3], [1, 2, 3]]}, r"field 'values\[1\]\[1\]': 'x' is not"),
        ({"fmt": ".2q"}, r"field 'fmt': '.2q' is not a valid format spec"),
    ],
)
def test_bad_analysis_files_name_file_and_field(tmp_path: Path, change: dict, message: str) -> None:
    path = analysis_path(tmp_path, 1, "sim")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**_similarity().to_json(), **change}))
    with pytest.raises(ReportError, match=message) as exc:
        read_analysis(path)
    assert str(exc.value).startswith(str(path))


# ------------------------------------------------------------------------------ bench, CLI
def test_bench_files_are_rendered_with_their_tables_and_figures(
    three_runs, bench_file: Path, tmp_path: Path
) -> None:
    """A run's bench.json and an explicit --bench file each get the bench renderer's section,
    in that order (explicit first), with their own scaling figure; the numbers in the tables
    are the file's."""
    bench = json.loads(bench_file.read_text())
    (three_runs[0] / "bench.json").write_text(json.dumps(bench))
    extra = tmp_path / "extra-bench.json"
    extra.write_text(json.dumps(bench))
    out = tmp_path / "out"
    md = write_report(three_runs, out, bench=extra).path.read_text()
    sections = md.split("## Efficiency benchmark (`mcit bench`)")[1:]
    assert len(sections) == 2
    assert f"From `{extra}`." in sections[0]
    assert f"From `{three_runs[0] / 'bench.json'}`." in sections[1]
    for section in sections:
        assert "### Parameters and training" in section and "### Inference after 2 tasks" in section
        assert "```json" not in section  # rendered, not dumped
    # Each file's scaling figure is its own PNG, linked relative to the report.
    assert "](plots/bench-scaling.png)" in sections[0]
    assert "](plots/bench-scaling-2.png)" in sections[1]
    for name in ("bench-scaling.png", "bench-scaling-2.png"):
        png = out / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    # ModalPrompt's row carries the file's trainable share.
    pct = bench["methods"]["modalprompt"]["parameters"]["trainable_pct"]
    row = next(x for x in sections[0].splitlines() if x.startswith("| modalprompt |"))
    assert f"| {pct:.3g} |" in row
    assert (
        "## Efficiency benchmark"
        not in write_report(three_runs[1:], tmp_path / "o2").path.read_text()
    )


def test_a_bench_file_off_the_schema_is_a_report_error_naming_the_field(
    three_runs, tmp_path: Path
) -> None:
    bad = tmp_path / "bad-bench.json"
    bad.write_text(json.dumps({"tokens_per_second": 123.5}))
    with pytest.raises(ReportError, match=r"bad-bench\.json: field '.+' is missing"):
        write_report(three_runs, tmp_path / "out", bench=bad)


def test_a_bench_file_with_a_broken_optional_part_is_a_one_line_report_error(
    three_runs, bench_file: Path, tmp_path: Path
) -> None:
    bench = json.loads(bench_file.read_text())
    del bench["scaling"]["batch"]
    broken = tmp_path / "broken-bench.json"
    broken.write_text(json.dumps(bench))
    with pytest.raises(ReportError, match=r"broken-bench\.json: does not follow the bench schema"):
        write_report(three_runs, tmp_path / "out", bench=broken)


def test_mcit_report_cli(three_runs, tmp_path: Path, capsys) -> None:
    assert main(["report", *map(str, three_runs)]) == 0  # default: the runs' parent folder
    assert (three_runs[0].parent / "report.md").is_file()
    assert "wrote" in capsys.readouterr().out
    assert main(["report", str(three_runs[0]), "--out", str(tmp_path / "one")]) == 0
    assert (tmp_path / "one" / "plots" / "matrix_finetune.png").is_file()
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcit report: error:") and "not a run folder" in err


def test_matrix_colour_scale_stretches_past_100_for_cider(tmp_path: Path, monkeypatch) -> None:
    # A captioning task (CIDEr ×100, as CoIN reports it) can score past 100: the heatmaps share
    # one colour scale, stretched to the largest score; accuracy-only reports keep 0-100.
    import mcit.report.report as report_module

    scales: dict[str, tuple[float, str]] = {}
    real_heatmap = report_module.heatmap

    def spy(path, *args, **kwargs):
        scales[Path(path).name] = (kwargs["vmax"], kwargs["colorbar_label"])
        return real_heatmap(path, *args, **kwargs)

    monkeypatch.setattr(report_module, "heatmap", spy)
    captions = make_run(tmp_path, "lwf", [[90, None, None], [95, 132.5, None], [75, 118.0, 60]])
    results = json.loads((captions / "results.json").read_text())
    results["task_metrics"] = {"A": "vqa", "B": "cider", "C": "exact"}
    (captions / "results.json").write_text(json.dumps(results))
    md = write_report([make_run(tmp_path, "finetune", FINETUNE), captions], tmp_path / "out")
    stretched = (132.5, "score (CIDEr ×100 past 100)")
    assert scales == {"matrix_finetune.png": stretched, "matrix_lwf.png": stretched}
    text = md.path.read_text()
    assert "Scores are 0-100; CIDEr ×100 up to 1000." in text
    assert _table(text, "## Summary")[1][3] == "84.33"  # (75 + 118 + 60) / 3
    scales.clear()
    plain = write_report([make_run(tmp_path / "acc", "finetune", FINETUNE)], tmp_path / "out2")
    assert scales == {"matrix_finetune.png": (100.0, "score (0-100)")}
    assert "Scores are 0-100." in plain.path.read_text()


def test_per_modality_table_holds_the_hand_computed_numbers(tmp_path: Path) -> None:
    """TASKS[0] and TASKS[2] are audio, TASKS[1] image (finetune's matrix): audio final
    mean(75, 60) = 67.5, its BWT 75 − 90 = −15 (the last task left out); image final 50, BWT
    50 − 80 = −30. Without `task_modalities`, or with one modality, no such section."""
    run = make_run(tmp_path / "runs", "finetune", FINETUNE)
    results = json.loads((run / "results.json").read_text())
    plain = write_report([run], tmp_path / "plain").path.read_text()
    assert "## Per modality" not in plain
    results["task_modalities"] = {TASKS[0]: "audio", TASKS[1]: "image", TASKS[2]: "audio"}
    (run / "results.json").write_text(json.dumps(results))
    rows = _table(write_report([run], tmp_path / "out").path.read_text(), "## Per modality")
    assert rows == [
        ["finetune", "final", "67.50", "50.00"],
        ["finetune", "BWT", "-15.00", "-30.00"],
    ]
