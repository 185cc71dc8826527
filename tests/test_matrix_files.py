"""Accuracy matrices from results.json and CSV files, metrics.json, and `mcit metrics`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mcit.cli import main
from mcit.errors import MatrixError
from mcit.evaluation.continual import compute_metrics
from mcit.evaluation.matrix_files import (
    load_accuracy_matrix,
    matrix_from_results,
    read_matrix_csv_full,
    read_results_json,
    write_run_metrics,
    write_single_task_file,
    zero_shot_scores,
)

# The three-task matrix of test_continual.py, with its hand-computed metrics:
#            A     B     C
# stage 1:  90    30    10
# stage 2:  95    80    20
# stage 3:  75    50    60
TASKS = ["A", "B", "C"]
THREE = [[90, 30, 10], [95, 80, 20], [75, 50, 60]]


def results_dict(matrix, tasks=TASKS, stage_tasks=None, method="finetune", **extra) -> dict:
    stage_tasks = stage_tasks or [[t] for t in tasks[: len(matrix)]]
    return {
        "run": f"r-{method}",
        "benchmark": "bench",
        "method": method,
        "rehearsal_free": True,
        "tasks": tasks,
        "stages": [
            {"stage": s + 1, "name": "+".join(st), "tasks": st} for s, st in enumerate(stage_tasks)
        ],
        "matrix": matrix,
        **extra,
    }


def write_results(path: Path, results: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(results))
    return path / "results.json"


# ------------------------------------------------------------------------------ results.json
def test_results_json_gives_the_same_metrics_as_the_matrix(tmp_path: Path) -> None:
    path = write_results(tmp_path / "run", results_dict(THREE))
    m = read_results_json(path)
    assert (m.tasks, m.complete, m.single_stage, m.method) == (TASKS, True, False, "finetune")
    assert m.metrics() == compute_metrics(TASKS, THREE)
    assert read_results_json(tmp_path / "run").metrics() == m.metrics()  # the run folder too
    assert m.metrics()["summary"]["forgetting"] == 25.0  # hand-computed in test_continual.py


def test_partial_run_covers_the_finished_stages(tmp_path: Path) -> None:
    # After stage 2 of 3: tasks A, B only.
    # direct A 90, B 80; final A 95, B 80; CAA A = a21 = 95, B undefined
    # MA: 90, (95 + 80) / 2 = 87.5; mean MA 88.75; BWT_2 = 95 - 90 = +5
    # forgetting: max(a11) - a21 = 90 - 95 = -5 (A improved)
    # FWT with b = [-, 25, 12]: a12 - b2 = 30 - 25 = 5 (only i = 2 is in the prefix)
    m = matrix_from_results(results_dict(THREE[:2]))
    assert not m.complete and m.stages_done == 2
    out = m.with_zero_shot([None, 25, 12]).metrics()
    assert out["tasks"] == ["A", "B"]
    assert out["per_task"] == [
        {"task": "A", "direct": 90.0, "final": 95.0, "caa": 95.0, "alone_gap": None},
        {"task": "B", "direct": 80.0, "final": 80.0, "caa": None, "alone_gap": None},
    ]
    assert out["summary"] == {
        "final_ma": 87.5,
        "mean_ma": 88.75,
        "final_bwt": 5.0,
        "mean_bwt": 5.0,
        "mean_caa": 95.0,
        "forgetting": -5.0,
        "fwt": 5.0,
        "mean_alone_gap": None,
    }


def test_single_stage_run_is_measured_once() -> None:
    # Multi-task: one stage over A, B, C with scores 60, 30, 45 -> MA 45; direct = final.
    results = results_dict([[60, 30, 45]], stage_tasks=[TASKS], method="multitask")
    m = matrix_from_results(results)
    assert m.single_stage and m.complete
    assert m.metrics() == {
        "tasks": TASKS,
        "per_task": [
            {"task": "A", "direct": 60.0, "final": 60.0, "caa": None, "alone_gap": None},
            {"task": "B", "direct": 30.0, "final": 30.0, "caa": None, "alone_gap": None},
            {"task": "C", "direct": 45.0, "final": 45.0, "caa": None, "alone_gap": None},
        ],
        "per_stage": [{"stage": 1, "task": "A+B+C", "ma": 45.0, "bwt": None}],
        "summary": {
            "final_ma": 45.0,
            "mean_ma": 45.0,
            "final_bwt": None,
            "mean_bwt": None,
            "mean_caa": None,
            "forgetting": None,
            "fwt": None,
            "mean_alone_gap": None,
        },
    }


@pytest.mark.parametrize(
    ("results", "message"),
    [
        (
            results_dict(THREE, stage_tasks=[["A"], ["C"], ["B"]]),
            r"stages\[1\] \(stage 2\) trains \['C'\], expected \['B'\].*'C' is task 3: at stage "
            r"2 its column is above the diagonal",
        ),
        (
            results_dict([[90, 30, 10], [95, 120, 20]]),
            r"row for stage 2 \(task 'B'\), column 'B': 120 is outside 0-100",
        ),
        (
            results_dict([[90, 30, 10], [None, 80, 20]]),
            r"row for stage 2 \(task 'B'\), column 'A': missing score",
        ),
        (
            results_dict([[90, 30, 10], [95, "x", 20]]),
            r"row for stage 2 \(task 'B'\), column 'B': 'x' is not a number",
        ),
        (
            results_dict([[90, 30], [95, 80, 20]]),
            r"row for stage 1 \(task 'A'\): 2 entries, expected 3",
        ),
        (
            results_dict([[60, None, 45]], stage_tasks=[TASKS], method="multitask"),
            r"row for stage 1 \(A\+B\+C\), column 'B': missing score",
        ),
        ({**results_dict(THREE), "stages": []}, r"0 entries in 'stages' but 3 rows in 'matrix'"),
        (results_dict([]), r"no finished stage yet"),
        ({"tasks": TASKS, "matrix": THREE}, r"no 'stages' field"),
    ],
)
def test_results_json_errors_name_stage_and_column(tmp_path: Path, results, message) -> None:
    path = write_results(tmp_path, results)
    with pytest.raises(MatrixError, match=message) as exc:
        read_results_json(path)
    assert str(exc.value).startswith(str(path))


def test_results_json_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"tasks": ["A"],\n "matrix": [[1]] "stages": []}')
    with pytest.raises(
        MatrixError,
        match=r"results.json: not valid JSON \(line 2, column 18: Expecting ',' delimiter\)$",
    ):
        read_results_json(path)
    with pytest.raises(MatrixError, match=r"expected a \.csv accuracy matrix"):
        load_accuracy_matrix(tmp_path / "matrix.txt")


# ------------------------------------------------------------------------------ CSV
def test_csv_zero_shot_row_gives_fwt(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("stage,A,B,C\nA,90,30,10\nzero-shot,,25,12\nB,95,80,20\nC,75,50,60\n")
    m = read_matrix_csv_full(path)
    assert m.zero_shot == [None, 25.0, 12.0]
    # FWT = mean(a12 - b2, a23 - b3) = mean(30 - 25, 20 - 12) = 6.5
    assert m.metrics()["summary"]["fwt"] == 6.5
    assert load_accuracy_matrix(path).metrics() == m.metrics()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stage,A,B\nzero-shot,1,\nzero-shot,1,\nA,1,\nB,2,3\n", r"line 3: a second 'zero-shot'"),
        ("stage,A,B\nzero-shot,1,200\nA,1,\nB,2,3\n", r"line 2, column 3 \('B'\): 200.0 is out"),
        ("stage,A,zero-shot\nA,1,\nzero-shot,2,3\n", r"line 1, column 3: 'zero-shot' is reserved"),
        (
            "stage,A,B,C\nA,1,,\nC,2,3,4\nB,1,2,3\n",
            r"line 3, column 1 \(stage\): 'C', expected 'B'.*'C' is task 3 of the header: at "
            r"stage 2 it is not learned yet, its column is above the diagonal",
        ),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(MatrixError, match=message):
        read_matrix_csv_full(path)


# ------------------------------------------------------------------------------ zero-shot, metrics.json
def test_zero_shot_scores_are_matched_by_task_name() -> None:
    zs = matrix_from_results(
        results_dict([[5, 25, 12]], tasks=["C", "B", "A"], stage_tasks=[TASKS], method="zero-shot")
    )
    assert zero_shot_scores(zs, TASKS) == [12.0, 25.0, 5.0]
    # The run says whether its method trains; a run that trains gives no b_i.
    joint = matrix_from_results(
        results_dict([[5, 25, 12]], stage_tasks=[TASKS], method="multitask", trains=True)
    )
    with pytest.raises(MatrixError, match="a 'multitask' run, not a zero-shot run"):
        zero_shot_scores(joint, TASKS)


def test_an_older_results_file_without_trains_is_judged_by_the_registered_method(
    tmp_path: Path, capsys
) -> None:
    # results.json from before 'trains' was recorded: `mcit metrics --zero-shot` asks the
    # method registry whether that run's method trains.
    path = write_results(tmp_path / "run", results_dict(THREE))
    joint = write_results(
        tmp_path / "joint", results_dict([[5, 25, 12]], stage_tasks=[TASKS], method="multitask")
    )
    assert matrix_from_results(json.loads(joint.read_text())).trains is None
    assert main(["metrics", str(path), "--zero-shot", str(joint)]) == 2
    assert "a 'multitask' run, not a zero-shot run" in capsys.readouterr().err


def test_write_run_metrics(tmp_path: Path) -> None:
    results = results_dict(THREE[:1])
    assert write_run_metrics(tmp_path, results) == json.loads(
        (tmp_path / "metrics.json").read_text()
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["summary"]["final_ma"] == 90.0
    # A score the metrics reject (an accuracy above 100) warns instead of stopping the run,
    # and the previous stage's metrics.json does not stay behind as if it were current.
    with pytest.warns(UserWarning, match=r"metrics.json not written: .*150 is outside 0-100"):
        assert write_run_metrics(tmp_path, results_dict([[90, 30, 10], [95, 150, 20]])) is None
    assert not (tmp_path / "metrics.json").exists()


THREE_CIDER = [[90, None, None], [95, 132.5, None], [75, 118.0, 60]]


def test_cider_tasks_may_score_past_100_and_accuracy_tasks_may_not(tmp_path: Path) -> None:
    # CIDEr ×100 (CoIN's scale) lies in 0-1000: task B is captioning, A and C are accuracies.
    task_metrics = {"A": "vqa", "B": "cider", "C": "exact"}
    matrix = THREE_CIDER
    metrics = write_run_metrics(tmp_path, results_dict(matrix, task_metrics=task_metrics))
    assert metrics is not None
    assert [t["direct"] for t in metrics["per_task"]] == [90.0, 132.5, 60.0]
    assert metrics["summary"]["final_ma"] == pytest.approx((75 + 118 + 60) / 3)
    assert metrics["per_stage"][1]["bwt"] == 5.0
    # The same matrix without the metrics (a CSV, an older results.json) is out of range.
    with pytest.raises(MatrixError, match=r"stage 2 \(task 'B'\), column 'B': 132.5 is outside"):
        matrix_from_results(results_dict(matrix))
    # The ceiling follows the column's metric: 132.5 for the accuracy task A is refused.
    swapped = {"A": "cider", "B": "vqa", "C": "exact"}
    with pytest.raises(MatrixError, match=r"column 'B': 132.5 is outside 0-100"):
        matrix_from_results(results_dict(matrix, task_metrics=swapped))
    with pytest.raises(MatrixError, match=r"column 'B': 1200.0 is outside 0-1000"):
        matrix_from_results(
            results_dict([[90, None, None], [95, 1200.0, None]], task_metrics=task_metrics)
        )
    with pytest.raises(MatrixError, match="field 'task_metrics': no metric for task 'C'"):
        matrix_from_results(results_dict(matrix, task_metrics={"A": "vqa", "B": "cider"}))
    with pytest.raises(MatrixError, match="field 'task_metrics': expected an object"):
        matrix_from_results(results_dict(matrix, task_metrics=["vqa", "cider", "exact"]))
    # A single-stage (multi-task) run's row is checked with the same ranges.
    joint = results_dict([[60, 130, 45]], stage_tasks=[TASKS], method="multitask")
    assert matrix_from_results({**joint, "task_metrics": task_metrics}).metrics()["summary"][
        "final_ma"
    ] == pytest.approx(235 / 3)
    with pytest.raises(MatrixError, match="column 'B': 130 is outside 0-100"):
        matrix_from_results(joint)


def test_cider_past_100_in_the_run_summary_and_with_a_zero_shot_run(tmp_path, capsys) -> None:
    from mcit.cli import _print_summary

    task_metrics = {"A": "vqa", "B": "cider", "C": "exact"}
    _print_summary(matrix_from_results(results_dict(THREE_CIDER, task_metrics=task_metrics)))
    assert capsys.readouterr().out.startswith("final_ma: 84.33  mean_ma: ")
    # A CSV matrix knows no metrics; FWT's b_i from a zero-shot run with a CIDEr task at 120
    # takes that run's ranges. FWT = mean(a12 - b2, a23 - b3) = mean(30 - 120, 20 - 12) = -41.
    csv = tmp_path / "m.csv"
    csv.write_text("stage,A,B,C\nA,90,30,10\nB,95,80,20\nC,75,50,60\n")
    zero = write_results(
        tmp_path / "zs",
        results_dict(
            [[1, 120, 12]], stage_tasks=[TASKS], method="zero-shot", task_metrics=task_metrics
        ),
    )
    assert main(["metrics", str(csv), "--json", "--zero-shot", str(zero)]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["fwt"] == -41.0


# ------------------------------------------------------------------------------ mcit metrics
def test_mcit_metrics_json_on_results_and_csv(tmp_path: Path, capsys) -> None:
    results = results_dict(THREE, eval_all_tasks=True)
    path = write_results(tmp_path / "run", results)
    assert main(["metrics", str(path), "--json"]) == 0
    expected = compute_metrics(TASKS, THREE)
    assert json.loads(capsys.readouterr().out) == expected

    csv = tmp_path / "m.csv"
    csv.write_text("stage,A,B,C\nA,90,30,10\nB,95,80,20\nC,75,50,60\n")
    assert main(["metrics", str(csv), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected

    zero = write_results(
        tmp_path / "zs", results_dict([[1, 25, 12]], stage_tasks=[TASKS], method="zero-shot")
    )
    assert main(["metrics", str(path), "--json", "--zero-shot", str(zero)]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["fwt"] == 6.5


def test_mcit_metrics_readable_table(tmp_path: Path, capsys) -> None:
    path = write_results(tmp_path / "run", results_dict(THREE))
    assert main(["metrics", str(path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "3: C         75.00  50.00  60.00" in lines  # the matrix
    assert "A       90.00       75.00  85.00" in lines  # task A: DirectT, ContinualT, CAA
    assert "3      C     61.67  -22.50" in lines  # stage 3: MA, BWT
    assert "forgetting (Chaudhry)   25.00" in lines
    assert "FWT                         –" in lines
    assert "negative means forgetting" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stage,A,B\nA,1,\nB,2,x\n", r"m.csv, line 3, column 3 \('B'\): 'x' is not a number"),
        ("stage,A,B\nA,1,\nB,2\n", r"m.csv, line 3: 2 cells, expected 3"),
        ("stage,A,B\nA,1,\nB,2,101\n", r"m.csv, line 3, column 3 \('B'\): .*outside 0-100"),
    ],
)
def test_mcit_metrics_errors_are_one_line(tmp_path: Path, capsys, text: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    assert main(["metrics", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcit metrics: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err)
    assert "Traceback" not in err


def test_a_run_folder_with_single_task_scores_shows_the_alone_gap(tmp_path: Path, capsys) -> None:
    # DirectT of THREE: A 90, B 80, C 60; learned alone: 90, 85, 70 -> gaps 0, -5, -10, mean -7.5.
    path = write_results(tmp_path / "run", results_dict(THREE))
    write_single_task_file(path.parent, {"A": 90.0, "B": 85.0, "C": 70.0}, {})
    assert main(["metrics", str(path.parent), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [x["alone_gap"] for x in out["per_task"]] == [0.0, -5.0, -10.0]
    assert out["summary"]["mean_alone_gap"] == -7.5
    assert main(["metrics", str(path.parent)]) == 0
    text = capsys.readouterr().out
    assert "alone gap" in text and "mean alone gap (tasks 2..T)   -7.50" in text
    (path.parent / "single-task.json").write_text(
        json.dumps({"version": 1, "scores": {"A": "high"}, "references": {}})
    )
    assert main(["metrics", str(path.parent)]) == 2
    assert "single-task.json, field 'scores.A': 'high' is not a number" in capsys.readouterr().err


def test_mcit_metrics_into_a_reader_that_leaves_early_is_no_traceback(tmp_path: Path) -> None:
    """`mcit metrics … | head -1`: the pipe closes after one line; mcit ends quietly with
    128 + SIGPIPE, as a killed writer would, and prints nothing to stderr."""
    import subprocess
    import sys

    csv = tmp_path / "m.csv"
    width = 200  # a table of about 300 kB, far more than a pipe's buffer holds
    names = [f"task{i:02d}" for i in range(width)]
    rows = [",".join([n, *("50" for _ in names)]) for n in names]
    csv.write_text("\n".join(["stage," + ",".join(names), *rows]) + "\n")
    code = f"import sys; from mcit.cli import main; sys.exit(main(['metrics', {str(csv)!r}]))"
    reader = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    first = reader.stdout.readline()
    reader.stdout.close()  # the reader leaves, as `head -1` does
    stderr = reader.stderr.read() if reader.stderr else ""
    assert reader.wait(timeout=120) == 141, stderr
    assert first.startswith("Accuracy matrix")
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
