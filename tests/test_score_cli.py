"""`mcit score`: worked examples of every metric through a predictions file, and bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_scorers import CAPTIONS

from mcit.cli import main
from mcit.evaluation.prediction_files import read_predictions, score_file
from mcit.evaluation.scorers import tokenize_caption

# Hand-scored lines (0-1 per line, x100 in the output).
# vqa, ten references, k matching after the official normalisation -> 0.3 k for k <= 3, 1 for k >= 4
#   number words: "Two" ~ "2", "2", "two"       k = 3 -> 0.9
#   articles:     "a dog" ~ "the dog", "dog"    k = 2 -> 0.6
#   punctuation:  "yes!" ~ "yes."               k = 1 -> 0.3
#   contractions: "dont know" ~ "don't know" x4 k = 4 -> 1.0      vqa mean 2.8 / 4 = 70
# exact: "Yes." = "yes" 1; "  BLUE " = "blue" 1; "yes sir" != "yes" 0  -> 200 / 3
# option: "B. blue" -> B = B 1; "The answer is C" -> C != B 0          -> 50
# contains: "a golden retriever" contains the label 1; "" is wrong 0   -> 50
# iou (reference [0.25, 0.25, 0.75, 0.75]): [0.25, 0.25, 0.75, 1] IoU 2/3 -> 1;
#   [0, 0, 1, 0.75] IoU 1/3 -> 0; "no box" -> 0; the reference given as text, exact -> 1 -> 50
# overall = (280 + 200 + 100 + 100 + 200) / 15 = 880 / 15
BOX = [0.25, 0.25, 0.75, 0.75]
LINES = [
    {"id": "v1", "metric": "vqa", "prediction": "Two", "references": ["2", "2", "two"] + ["3"] * 7},
    {"id": "v2", "metric": "vqa", "prediction": "a dog", "references": ["the dog", "dog"] + ["cat"] * 8},
    {"id": "v3", "metric": "vqa", "prediction": "yes!", "references": ["yes."] + ["no"] * 9},
    {"id": "v4", "metric": "vqa", "prediction": "dont know", "references": ["don't know"] * 4 + ["no"] * 6},
    {"id": "e1", "metric": "exact", "prediction": "Yes.", "references": ["yes"]},
    {"id": "e2", "metric": "exact", "prediction": "  BLUE ", "references": ["blue"]},
    {"id": "e3", "metric": "exact", "prediction": "yes sir", "references": ["yes"]},
    {"id": "o1", "metric": "option", "prediction": "B. blue", "references": ["B"]},
    {"id": "o2", "metric": "option", "prediction": "The answer is C", "references": ["B"]},
    {"id": "c1", "metric": "contains", "prediction": "a golden retriever", "references": ["golden retriever"]},
    {"id": "c2", "metric": "contains", "prediction": "", "references": ["golden retriever"]},
    {"id": 1, "metric": "iou", "prediction": "[0.25, 0.25, 0.75, 1]", "references": [BOX]},
    {"id": 2, "metric": "iou", "prediction": "[0, 0, 1, 0.75]", "references": [BOX]},
    {"id": 3, "metric": "iou", "prediction": "no box", "references": [BOX]},
    {"id": 4, "metric": "iou", "prediction": "0.25 0.25 0.75 0.75", "references": ["[0.25, 0.25, 0.75, 0.75]"]},
]  # fmt: skip


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_score_json_worked_examples(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "p.jsonl", LINES)
    assert main(["score", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"overall", "n", "by_metric"}
    assert out["n"] == 15
    assert out["overall"] == pytest.approx(880 / 15, abs=1e-12)
    by = out["by_metric"]
    assert list(by) == ["vqa", "exact", "option", "contains", "iou"]
    assert by["vqa"] == {"score": pytest.approx(70.0, abs=1e-12), "n": 4}
    assert by["exact"] == {"score": pytest.approx(200 / 3, abs=1e-12), "n": 3}
    assert by["option"] == {"score": 50.0, "n": 2}
    assert by["contains"] == {"score": 50.0, "n": 2}
    assert by["iou"] == {"score": 50.0, "n": 4}
    scores, errors = score_file(path)
    assert not errors
    assert [round(s, 9) for _, s in scores.per_line[:4]] == [90.0, 60.0, 30.0, 100.0]


def test_score_readable_table(tmp_path: Path, capsys) -> None:
    assert main(["score", str(_write(tmp_path / "p.jsonl", LINES))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "vqa                         4          70.00" in lines
    assert "overall (mean over lines)  15          58.67" in lines


def test_cider_over_the_files_captions_agrees_with_pycocoevalcap(tmp_path: Path, capsys) -> None:
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")
    lines = [
        {"id": k, "metric": "cider", "prediction": p, "references": r}
        for k, (p, r) in enumerate(CAPTIONS)
    ]
    # Lines of other metrics are not part of the CIDEr corpus (its document frequencies).
    lines.append({"id": "x", "metric": "exact", "prediction": "a cat", "references": ["a cat"]})
    assert main(["score", str(_write(tmp_path / "c.jsonl", lines)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    gts = {k: [" ".join(tokenize_caption(x)) for x in r] for k, (_, r) in enumerate(CAPTIONS)}
    res = {k: [" ".join(tokenize_caption(p))] for k, (p, _) in enumerate(CAPTIONS)}
    theirs, per_caption = cider_mod.Cider().compute_score(gts, res)
    assert out["by_metric"]["cider"] == {
        "score": pytest.approx(100 * float(theirs), abs=1e-9),
        "n": len(CAPTIONS),
    }
    # overall: the mean over lines of the per-line scores (CIDEr-D x100, exact x100)
    expected = (100 * sum(float(x) for x in per_caption) + 100.0) / (len(CAPTIONS) + 1)
    assert out["overall"] == pytest.approx(expected, abs=1e-9)


def test_bad_lines_are_named_and_the_others_still_scored(tmp_path: Path, capsys) -> None:
    good = LINES[4:7]  # exact: 1, 1, 0
    bad = [
        "not json",
        {"metric": "exact", "prediction": "a", "references": ["a"]},
        {"id": "b3", "metric": "bleu", "prediction": "a", "references": ["a"]},
        {"id": "b4", "metric": "exact", "prediction": 3, "references": ["a"]},
        {"id": "b5", "metric": "exact", "prediction": "a", "references": []},
        {"id": "b6", "metric": "iou", "prediction": "a", "references": [[0.1, 0.2, 1.5, 0.9]]},
        {"id": "b7", "metric": "iou", "prediction": "a", "references": [[0.5, 0.2, 0.1, 0.9]]},
        {"id": "b8", "metric": "iou", "prediction": "a", "references": ["left"]},
        {"id": "e1", "metric": "exact", "prediction": "a", "references": ["a"]},
        {"id": "b10", "metric": "exact", "prediction": "a", "references": ["a", 5]},
    ]
    path = _write(tmp_path / "p.jsonl", [good[0], *bad, good[1], "", good[2]])
    assert main(["score", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["n"] == 3 and out["overall"] == pytest.approx(200 / 3)
    err = captured.err.splitlines()
    expected = [
        "line 2: not valid JSON (column 1: Expecting value)",
        "line 3, field 'id': missing",
        "line 4, field 'metric': unknown metric 'bleu'; known: vqa, exact, option, contains, iou, cider",
        "line 5, field 'prediction': 3 is not a string",
        "line 6, field 'references': [] is not a non-empty list of reference answers",
        "line 7, field 'references[0]': box [0.1, 0.2, 1.5, 0.9] is not normalised to [0, 1]",
        "line 8, field 'references[0]': box [0.5, 0.2, 0.1, 0.9] has no area",
        "line 9, field 'references[0]': 'left' holds no box [x1, y1, x2, y2] (four numbers)",
        "line 10, field 'id': 'e1' already used on line 1",
        "line 11, field 'references[1]': 5 is not a string",
    ]
    assert len(err) == len(expected) + 1
    for line, text in zip(err, expected, strict=False):
        assert line == f"mcit score: error: {path}, {text}"  # whole: nothing cut short
    assert "10 bad line(s) left out" in err[-1]


def test_metric_default_for_mcits_own_predictions(tmp_path: Path, capsys) -> None:
    # mcit's predictions/stage_<t>/<task>.jsonl carry id, prediction, references, score.
    lines = [
        {"id": "g1", "prediction": "Red.", "references": ["red"], "score": 1.0},
        {"id": "g2", "prediction": "blue", "references": ["red"], "score": 0.0},
    ]
    path = _write(tmp_path / "gqa.jsonl", lines)
    assert main(["score", str(path), "--json"]) == 2
    assert "field 'metric': missing" in capsys.readouterr().err
    assert main(["score", str(path), "--json", "--metric", "exact"]) == 0
    assert json.loads(capsys.readouterr().out)["by_metric"] == {"exact": {"score": 50.0, "n": 2}}
    assert main(["score", str(path), "--metric", "bleu"]) == 2
    assert "unknown --metric 'bleu'" in capsys.readouterr().err


def test_unreadable_or_empty_file(tmp_path: Path, capsys) -> None:
    assert main(["score", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["score", str(empty)]) == 2
    assert "no line could be scored" in capsys.readouterr().err
    lines, errors = read_predictions(empty)
    assert lines == [] and errors == []
