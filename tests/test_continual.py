"""Continual metrics on hand-computed matrices (docs/metrics-and-reports.md, "Continual metrics")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcit.errors import MatrixError
from mcit.evaluation.continual import (
    ContinualMetrics,
    compute_continual,
    compute_metrics,
    compute_single_stage,
    validate_matrix,
)
from mcit.evaluation.matrix_files import read_matrix_csv

# --------------------------------------------------------------------------------------------
# one task
# --------------------------------------------------------------------------------------------


def test_one_task() -> None:
    # a[1][1] = 80: direct = final = MA_1 = 80; CAA, BWT, forgetting, FWT undefined.
    out = compute_metrics(["A"], [[80]], zero_shot=[10])
    assert out == {
        "tasks": ["A"],
        "per_task": [{"task": "A", "direct": 80.0, "final": 80.0, "caa": None, "alone_gap": None}],
        "per_stage": [{"stage": 1, "task": "A", "ma": 80.0, "bwt": None}],
        "summary": {
            "final_ma": 80.0,
            "mean_ma": 80.0,
            "final_bwt": None,
            "mean_bwt": None,
            "mean_caa": None,
            "forgetting": None,
            "fwt": None,
            "mean_alone_gap": None,
        },
    }


# --------------------------------------------------------------------------------------------
# two tasks
# --------------------------------------------------------------------------------------------

#            A     B
# stage 1:  80    20   (a12: B before its own stage, used only for FWT)
# stage 2:  60    90
# zero-shot b = [10, 15]
#
# direct:  A = a11 = 80, B = a22 = 90;   final: A = a21 = 60, B = a22 = 90
# CAA:     A = mean(a21) = 60, B = None
# MA:      1: 80;  2: (60 + 90) / 2 = 75
# BWT:     1: None; 2: a21 - a11 = 60 - 80 = -20
# final MA 75; mean MA (80 + 75) / 2 = 77.5; final BWT -20; mean BWT -20; mean CAA 60
# forgetting: max(a11) - a21 = 80 - 60 = 20
# FWT: a12 - b2 = 20 - 15 = 5
TWO = [[80, 20], [60, 90]]


def test_two_tasks() -> None:
    out = compute_metrics(["A", "B"], TWO, zero_shot=[10, 15])
    assert out["per_task"] == [
        {"task": "A", "direct": 80.0, "final": 60.0, "caa": 60.0, "alone_gap": None},
        {"task": "B", "direct": 90.0, "final": 90.0, "caa": None, "alone_gap": None},
    ]
    assert out["per_stage"] == [
        {"stage": 1, "task": "A", "ma": 80.0, "bwt": None},
        {"stage": 2, "task": "B", "ma": 75.0, "bwt": -20.0},
    ]
    assert out["summary"] == {
        "final_ma": 75.0,
        "mean_ma": 77.5,
        "final_bwt": -20.0,
        "mean_bwt": -20.0,
        "mean_caa": 60.0,
        "forgetting": 20.0,
        "fwt": 5.0,
        "mean_alone_gap": None,
    }


def test_two_tasks_fwt_needs_the_unseen_entry_and_zero_shot() -> None:
    assert compute_metrics(["A", "B"], TWO)["summary"]["fwt"] is None
    assert compute_metrics(["A", "B"], TWO, zero_shot=[None, None])["summary"]["fwt"] is None
    no_unseen = [[80, None], [60, 90]]
    out = compute_metrics(["A", "B"], no_unseen, zero_shot=[10, 15])
    assert out["summary"]["fwt"] is None
    assert out["summary"]["final_ma"] == 75.0  # the rest does not need the upper triangle


# --------------------------------------------------------------------------------------------
# three tasks
# --------------------------------------------------------------------------------------------

#            A     B     C
# stage 1:  90    30    10
# stage 2:  95    80    20
# stage 3:  75    50    60
# zero-shot b = [None, 25, 12]   (b_1 is never needed)
#
# direct:  A = 90, B = 80, C = 60;   final: A = 75, B = 50, C = 60
# CAA:     A = mean(a21, a31) = (95 + 75) / 2 = 85;  B = mean(a32) = 50;  C = None
# MA:      1: 90;  2: (95 + 80) / 2 = 87.5;  3: (75 + 50 + 60) / 3 = 185/3 = 61.666...
# BWT:     2: a21 - a11 = 95 - 90 = +5
#          3: mean(a31 - a11, a32 - a22) = mean(75 - 90, 50 - 80) = mean(-15, -30) = -22.5
# final MA 185/3; mean MA = (90 + 87.5 + 185/3) / 3 = (1065/6 + 370/6) / 3 = 1435/18 = 79.722...
# final BWT -22.5; mean BWT = (5 + -22.5) / 2 = -8.75; mean CAA = (85 + 50) / 2 = 67.5
# forgetting (Chaudhry, stage 3): A: max(a11, a21) - a31 = 95 - 75 = 20; B: max(a22) - a32 =
#   80 - 50 = 30 -> mean 25 (differs from -BWT_3 = 22.5 because A peaked at stage 2)
# FWT: mean(a12 - b2, a23 - b3) = mean(30 - 25, 20 - 12) = mean(5, 8) = 6.5
TASKS3 = ["A", "B", "C"]
THREE = [[90, 30, 10], [95, 80, 20], [75, 50, 60]]
ZERO3 = [None, 25, 12]


def test_three_tasks() -> None:
    out = compute_metrics(TASKS3, THREE, zero_shot=ZERO3)
    assert out["tasks"] == TASKS3
    assert out["per_task"] == [
        {"task": "A", "direct": 90.0, "final": 75.0, "caa": 85.0, "alone_gap": None},
        {"task": "B", "direct": 80.0, "final": 50.0, "caa": 50.0, "alone_gap": None},
        {"task": "C", "direct": 60.0, "final": 60.0, "caa": None, "alone_gap": None},
    ]
    stages = out["per_stage"]
    assert [(s["stage"], s["task"], s["bwt"]) for s in stages] == [
        (1, "A", None),
        (2, "B", 5.0),
        (3, "C", -22.5),
    ]
    assert [s["ma"] for s in stages] == pytest.approx([90.0, 87.5, 185 / 3])
    summary = out["summary"]
    assert summary["final_ma"] == pytest.approx(61.666666666666664)
    assert summary["mean_ma"] == pytest.approx(79.72222222222223)  # 1435/18
    assert summary["final_bwt"] == -22.5
    assert summary["mean_bwt"] == -8.75
    assert summary["mean_caa"] == 67.5
    assert summary["forgetting"] == 25.0
    assert summary["fwt"] == 6.5
    json.dumps(out)  # JSON-able as is


def test_three_tasks_fwt_missing_zero_shot_entry() -> None:
    assert compute_metrics(TASKS3, THREE, zero_shot=[None, 25, None])["summary"]["fwt"] is None


def test_dataclass_result_and_numeric_types() -> None:
    res = compute_continual(("A", "B"), ((80, 20), (60.0, 90)))
    assert isinstance(res, ContinualMetrics)
    assert res.summary.final_ma == 75.0
    assert res.per_task[0].final == 60.0 and isinstance(res.per_task[0].final, float)
    assert res.to_dict() == compute_metrics(["A", "B"], TWO)


# --------------------------------------------------------------------------------------------
# single-stage runs (multi-task, zero-shot)
# --------------------------------------------------------------------------------------------


def test_single_stage_run() -> None:
    # One stage over A, B with scores 40, 70: every task learned at stage 1, so
    # direct = final = a[1][i]; MA_1 = (40 + 70) / 2 = 55 = final MA = mean MA; nothing else.
    res = compute_single_stage(["A", "B"], [40, 70], "A+B")
    assert res.to_dict() == {
        "tasks": ["A", "B"],
        "per_task": [
            {"task": "A", "direct": 40.0, "final": 40.0, "caa": None, "alone_gap": None},
            {"task": "B", "direct": 70.0, "final": 70.0, "caa": None, "alone_gap": None},
        ],
        "per_stage": [{"stage": 1, "task": "A+B", "ma": 55.0, "bwt": None}],
        "summary": {
            "final_ma": 55.0,
            "mean_ma": 55.0,
            "final_bwt": None,
            "mean_bwt": None,
            "mean_caa": None,
            "forgetting": None,
            "fwt": None,
            "mean_alone_gap": None,
        },
    }
    # With one task it is the one-task stream of test_one_task.
    assert compute_single_stage(["A"], [80], "A").to_dict() == compute_metrics(["A"], [[80]])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([40], r"row for stage 1 \(joint\): 1 entries, expected 2"),
        ([40, None], r"row for stage 1 \(joint\), column 'B': missing score"),
        ([40, 101], r"row for stage 1 \(joint\), column 'B': 101 is outside 0-100"),
        (["40", 1], r"row for stage 1 \(joint\), column 'A': '40' is not a number"),
    ],
)
def test_single_stage_errors(row: list, message: str) -> None:
    with pytest.raises(MatrixError, match=message):
        compute_single_stage(["A", "B"], row)


def test_partial_matrix_is_accepted_only_when_asked() -> None:
    validate_matrix(TASKS3, THREE[:2], partial=True)
    with pytest.raises(MatrixError, match="no row for stage 3"):
        validate_matrix(TASKS3, THREE[:2])
    with pytest.raises(MatrixError, match=r"row for stage 2 \(task 'B'\), column 'A': missing"):
        validate_matrix(TASKS3, [[1, None, None], [None, 2, None]], partial=True)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def test_upper_triangle_may_be_missing() -> None:
    validate_matrix(TASKS3, [[90, None, None], [95, 80, None], [75, 50, 60]])


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (
            [[90, 30, 10], [95, 80], [75, 50, 60]],
            r"row for stage 2 \(task 'B'\): 2 entries, expected 3",
        ),
        (
            [[90, 30, 10], [95, "80", 20], [75, 50, 60]],
            r"row for stage 2 \(task 'B'\), column 'B': '80' is not a number",
        ),
        (
            [[90, 30, 10], [95, 80, 20], [75, True, 60]],
            r"row for stage 3 \(task 'C'\), column 'B': True is not a number",
        ),
        (
            [[90, 30, 10], [95, 80, 20], [75, 50, 100.5]],
            r"row for stage 3 \(task 'C'\), column 'C': 100.5 is outside 0-100",
        ),
        (
            [[-1, 30, 10], [95, 80, 20], [75, 50, 60]],
            r"row for stage 1 \(task 'A'\), column 'A': -1 is outside 0-100",
        ),
        (
            [[90, 30, 10], [95, 80, 20], [float("nan"), 50, 60]],
            r"row for stage 3 \(task 'C'\), column 'A': nan is outside 0-100",
        ),
        (
            [[90, 30, 10], [None, 80, 20], [75, 50, 60]],
            r"row for stage 2 \(task 'B'\), column 'A': missing score",
        ),
        (
            [[90, 30, 10], [95, 80, 20], [75, 50, None]],
            r"row for stage 3 \(task 'C'\), column 'C': missing score",
        ),
        ([[90, 30, 10], [95, 80, 20]], r"2 rows, expected 3: no row for stage 3 \('C'\)"),
        (
            [[90, 30, 10], [95, 80, 20], [75, 50, 60], [1, 2, 3]],
            r"row 4: the matrix has 4 rows, expected 3",
        ),
    ],
)
def test_validate_matrix_errors(matrix: list, message: str) -> None:
    with pytest.raises(MatrixError, match=message):
        validate_matrix(TASKS3, matrix)
    with pytest.raises(ValueError):  # MatrixError is a ValueError
        compute_metrics(TASKS3, matrix)


def test_validate_matrix_error_attributes() -> None:
    with pytest.raises(MatrixError) as exc:
        validate_matrix(TASKS3, [[90, 30, 10], [None, 80, 20], [75, 50, 60]])
    assert (exc.value.stage, exc.value.column) == (2, "A")


def test_bad_task_list_and_zero_shot() -> None:
    with pytest.raises(MatrixError, match="empty"):
        validate_matrix([], [])
    with pytest.raises(MatrixError, match="'A' appears twice"):
        validate_matrix(["A", "A"], [[1, 2], [3, 4]])
    with pytest.raises(MatrixError, match="zero-shot scores: 2 entries, expected 3"):
        compute_metrics(TASKS3, THREE, zero_shot=[1, 2])
    with pytest.raises(MatrixError, match="zero-shot score of 'B': 120 is outside 0-100"):
        compute_metrics(TASKS3, THREE, zero_shot=[None, 120, 3])


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.csv"
    path.write_text(text)
    return path


def test_read_matrix_csv(tmp_path: Path) -> None:
    path = _write(tmp_path, "stage,A,B,C\nA,90,30,10\nB, 95 ,80,\nC,75,50,60\n\n")
    tasks, matrix = read_matrix_csv(path)
    assert tasks == TASKS3
    assert matrix == [[90.0, 30.0, 10.0], [95.0, 80.0, None], [75.0, 50.0, 60.0]]
    # a23 not evaluated -> FWT (needs a12 and a23) undefined; everything else as in test_three_tasks.
    out = compute_metrics(tasks, matrix, zero_shot=ZERO3)
    assert out["summary"]["fwt"] is None
    assert out["summary"]["forgetting"] == 25.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty file"),
        ("task,A,B\nA,1,\nB,2,3\n", r"line 1, column 1: header starts with 'task'"),
        ("stage,A,A\nA,1,\nA,2,3\n", r"line 1, column 3: task 'A' appears twice"),
        ("stage,A,B\nA,1\nB,2,3\n", r"line 2: 2 cells, expected 3"),
        ("stage,A,B\nB,1,\nA,2,3\n", r"line 2, column 1 \(stage\): 'B', expected 'A'"),
        ("stage,A,B\nA,1,\nB,2,x\n", r"line 3, column 3 \('B'\): 'x' is not a number"),
        ("stage,A,B\nA,1,\nB,2,101\n", r"line 3, column 3 \('B'\): .*101.0 is outside 0-100"),
        ("stage,A,B\nA,1,\nB,,3\n", r"line 3, column 2 \('A'\): .*missing score"),
        ("stage,A,B\n\nA,1,\n\nB,,3\n", r"line 5, column 2 \('A'\): .*missing score"),
        ("stage,A,B\nA,1,\n", r"1 stage rows after the header, expected 2; missing stage 2"),
        ("stage,A,B\nA,1,\nB,2,3\nB,2,3\n", r"line 4: more stage rows than tasks"),
    ],
)
def test_read_matrix_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(MatrixError, match=message) as exc:
        read_matrix_csv(path)
    assert str(exc.value).startswith(str(path))


def test_read_matrix_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MatrixError, match="cannot read"):
        read_matrix_csv(tmp_path / "nope.csv")


def test_alone_gap_by_hand() -> None:
    # DirectT = 80 (A), 90 (B); learned alone s = 80, 95: gap = 0 and −5; the mean leaves
    # task 1 out (learned from the base both ways): −5.
    out = compute_metrics(["A", "B"], TWO, single_task=[80, 95])
    assert [x["alone_gap"] for x in out["per_task"]] == [0.0, -5.0]
    assert out["summary"]["mean_alone_gap"] == -5.0
    missing = compute_metrics(["A", "B"], TWO, single_task=[80, None])
    assert missing["per_task"][1]["alone_gap"] is None
    assert missing["summary"]["mean_alone_gap"] is None
    with pytest.raises(MatrixError, match="single-task score of 'B': .*outside 0-100"):
        compute_metrics(["A", "B"], TWO, single_task=[80, 150])
    with pytest.raises(MatrixError, match="single-task scores: 1 entries, expected 2"):
        compute_metrics(["A", "B"], TWO, single_task=[80])
