"""`mcit data import coin`: CoIN's instruction files and image tree, in exactly the layout of
CoIN's scripts, become a valid mcit benchmark scored by CoIN's rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mcit.cli import main
from mcit.data.benchmarks import load_benchmark_spec, load_tasks, validate_benchmark
from mcit.data.coin_import import ORDER, TASKS, import_coin
from mcit.errors import DataError

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (200, 10, 10)).save(path)


# Two records a task: (image path under cl_dataset, question, answer); ScienceQA's second record
# is text-only, as ScienceQA's questions without a picture are in CoIN.
IMAGES = {
    "ScienceQA": ("ScienceQA/images/train/1/image.png", "ScienceQA/images/test/7/image.png"),
    "TextVQA": ("TextVQA/train_images/a1.jpg", "TextVQA/train_images/b2.jpg"),
    "ImageNet": (
        "ImageNet_withlabel/train/n01514668/n01514668_1.JPEG",
        "ImageNet_withlabel/val/ILSVRC2012_val_00000001.JPEG",
    ),
    "GQA": ("./GQA/images/2354786.jpg", "./GQA/images/n161313.jpg"),
    "VizWiz": ("VizWiz/train/VizWiz_train_00000000.jpg", "VizWiz/val/VizWiz_val_00000000.jpg"),
    "Grounding": (
        "COCO2014/train2014/COCO_train2014_000000000009.jpg",
        "COCO2014/train2014/COCO_train2014_000000580957.jpg",
    ),
    "VQAv2": (
        "COCO2014/train2014/COCO_train2014_000000000009.jpg",
        "COCO2014/val2014/COCO_val2014_000000000042.jpg",
    ),
    "OCRVQA": ("OCR-VQA/images/0001.jpg", "OCR-VQA/images/0002.jpg"),
}


def _coin(root: Path, instructions: str = "Instructions_Original") -> Path:
    """A CoIN checkout in miniature: playground/<set>/<Task>/ and cl_dataset/."""
    sets = root / "playground" / instructions
    images = root / "cl_dataset"
    for task, (train_image, test_image) in IMAGES.items():
        for relative in (train_image, test_image):
            _image(images / relative.removeprefix("./"))
        human = "<image>\nWhat is it?\n" + SHORT
        train = [
            {
                "id": f"{task}-0",
                "image": train_image,
                "conversations": [
                    {"from": "human", "value": human},
                    {"from": "gpt", "value": "Red"},
                    {"from": "human", "value": "And its shape?\n" + SHORT},
                    {"from": "gpt", "value": "square"},
                ],
            }
        ]
        if task == "Grounding":  # its answers are boxes
            for turn in train[0]["conversations"][1::2]:
                turn["value"] = "[0.12, 0.3, 0.5, 0.71]"
        if task == "ScienceQA":
            train.append(
                {
                    "id": "2",
                    "conversations": [
                        {"from": "human", "value": "Which is a noun?\nA. run\nB. dog\n" + LETTER},
                        {"from": "gpt", "value": "B"},
                    ],
                }
            )
        _write(sets / task / "train.json", train)
        test = {"question_id": 7, "image": test_image, "text": "What is it?\n" + SHORT}
        if task == "Grounding":
            test["text"] = (
                "Please provide the bounding box coordinate of the region this sentence describes: the red one"
            )
            test["answer_bbox"] = "[0.125, 0.25, 0.5, 0.75]"
            test["size"] = [640, 480]
        else:
            test["answer"] = {"ScienceQA": "A", "TextVQA": "stop"}.get(task, "Red")
        second = {
            "question_id": "q2",
            "text": "Which is a noun?\nA. run\nB. dog\n" + LETTER,
            "answer": "B",
        }
        if task == "ScienceQA":
            tests = [
                dict(test, text="<image>\nContext: a sign.\nWhich?\nA. x\nB. y\n" + LETTER),
                second,
            ]
        elif task == "GQA":
            tests = [test, dict(test, question_id="gq9", image=train_image)]
        else:
            tests = [test]
        _write(sets / task / TASKS[task.lower()].evaluated_on, tests)
    _write(images / "ScienceQA" / "problems.json", {"7": {"answer": 1}, "q2": {"answer": 1}})
    ten = ["stop"] * 6 + ["stop sign"] * 4
    _write(
        images / "TextVQA" / "TextVQA_0.5.1_val.json",
        {"data": [{"question_id": 7, "answers": ten}]},
    )
    _write(
        images / "GQA" / "testdev_balanced_questions.json",
        {"7": {"answer": "red", "isBalanced": True}, "gq9": {"answer": "no", "isBalanced": False}},
    )
    return root


@pytest.fixture
def coin_root(tmp_path: Path) -> Path:
    return _coin(tmp_path / "CoIN")


def test_coin_becomes_a_valid_benchmark_scored_by_its_ground_truth(coin_root, tmp_path):
    done = import_coin(coin_root, tmp_path / "coin")
    assert done.instructions == coin_root / "playground" / "Instructions_Original"
    assert done.notes == ["gqa: 1 unbalanced GQA questions left out, as CoIN's eval_gqa.py does"]
    spec = load_benchmark_spec(tmp_path / "coin")
    assert spec.default_order == ORDER == [
        "scienceqa", "textvqa", "imagenet", "gqa", "vizwiz", "grounding", "vqav2", "ocrvqa",
    ]  # fmt: skip
    assert {t.name: t.metric for t in spec.tasks} == {
        "scienceqa": "option", "textvqa": "vqa", "imagenet": "contains", "gqa": "exact",
        "vizwiz": "exact", "grounding": "iou", "vqav2": "exact", "ocrvqa": "exact",
    }  # fmt: skip
    # The training files are read where they are, not copied.
    assert spec.task("gqa").train == done.instructions / "GQA" / "train.json"
    report = validate_benchmark(tmp_path / "coin")
    assert report.ok, report.format()
    tasks = {t.name: t for t in load_tasks(spec)}
    science = tasks["scienceqa"]
    # problems.json's answer index 1 is "B", whatever the test file's own `answer` says.
    assert [s.references for s in science.test] == [["B"], ["B"]]
    assert science.test[0].media and not science.test[1].media  # a text-only question
    assert "<image>" not in science.test[0].turns[0][0]
    assert len(science.train) == 2 and not science.train[1].media
    assert len(tasks["gqa"].train[0].turns) == 2  # multi-turn training records kept
    assert tasks["textvqa"].test[0].references == ["stop"] * 6 + ["stop sign"] * 4
    assert [s.references for s in tasks["gqa"].test] == [["red"]]  # the unbalanced one is out
    assert tasks["grounding"].test[0].references == ["[0.125, 0.25, 0.5, 0.75]"]
    assert tasks["vqav2"].test[0].references == ["Red"]
    assert tasks["gqa"].test[0].media["image"].endswith("GQA/images/n161313.jpg")


def test_the_second_instruction_set_is_found_under_its_names(tmp_path):
    root = _coin(tmp_path / "CoIN", "Instructions_Diverse")
    done = import_coin(root, tmp_path / "t2", instruction_set="type2")
    assert done.instructions.name == "Instructions_Diverse"
    with pytest.raises(
        DataError,
        match=r"no 'original' instruction folder \(looked for playground/Instructions_Original",
    ):
        import_coin(root, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_without_the_original_annotations_the_test_answers_are_used_and_said(coin_root, tmp_path):
    for f in (
        "ScienceQA/problems.json",
        "TextVQA/TextVQA_0.5.1_val.json",
        "GQA/testdev_balanced_questions.json",
    ):
        (coin_root / "cl_dataset" / f).unlink()
    done = import_coin(coin_root, tmp_path / "coin")
    assert [n.split(":")[0] for n in done.notes] == ["scienceqa", "textvqa", "gqa"]
    assert all("scored against the test file's own 'answer'" in n for n in done.notes)
    tasks = {t.name: t for t in load_tasks(load_benchmark_spec(tmp_path / "coin"))}
    assert tasks["scienceqa"].test[0].references == ["A"]
    assert tasks["textvqa"].test[0].references == ["stop"]


def _set(root: Path) -> Path:
    return root / "playground" / "Instructions_Original"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: (_set(r) / "OCRVQA" / "train.json").unlink(),
         r"OCRVQA/train.json: training file not found"),
        (lambda r: _write(_set(r) / "VizWiz" / "val.json", [{"image": "x.jpg", "text": "q", "answer": "a"}]),
         r"VizWiz/val.json, record index 0, field 'question_id': missing"),
        (lambda r: _write(_set(r) / "VQAv2" / "val.json", [{"question_id": 1, "image": "x.jpg", "text": "q", "answer": ""}]),
         r"VQAv2/val.json, record index 0, field 'answer': expected a non-empty string"),
        (lambda r: _write(_set(r) / "Grounding" / "test.json", [{"question_id": 1, "image": "x.jpg", "text": "q", "answer_bbox": "[0.1, 0.2, 0.3]"}]),
         r"Grounding/test.json, record index 0, field 'answer_bbox': expected four numbers"),
        (lambda r: _write(_set(r) / "ScienceQA" / "test.json", [{"question_id": 99, "text": "q", "answer": "A"}]),
         r"ScienceQA/test.json, record index 0, field 'question_id': '99' is not in problems.json"),
        (lambda r: _write(_set(r) / "ImageNet" / "test.json", "[{"),
         r"ImageNet/test.json: not valid JSON \(line 1, column 3: Expecting property name enclosed in double quotes\)$"),
        (lambda r: _write(_set(r) / "GQA" / "test.json", {"question_id": 1}),
         r"GQA/test.json: expected a JSON array of records, got dict"),
        (lambda r: _write(r / "cl_dataset" / "ScienceQA" / "problems.json", {"7": {"answer": "B"}}),
         r"problems.json, record problem 7, field 'answer': expected an option index, got 'B'"),
    ],
)  # fmt: skip
def test_bad_files_name_file_record_and_field(coin_root, tmp_path, edit, message):
    edit(coin_root)
    with pytest.raises(DataError, match=message):
        import_coin(coin_root, tmp_path / "coin")
    assert not (tmp_path / "coin").exists()  # nothing half-written


def test_the_cli_imports_validates_and_names_a_missing_image(coin_root, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["data", "import", "coin", "--root", str(coin_root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "grounding  1 test records" in printed and f"wrote {out}" in printed
    assert yaml.safe_load((out / "benchmark.yaml").read_text())["name"] == "coin"
    (coin_root / "cl_dataset" / "OCR-VQA" / "images" / "0002.jpg").unlink()
    assert (
        main(["data", "import", "coin", "--root", str(coin_root), "--out", str(tmp_path / "b")])
        == 2
    )
    assert "0002.jpg" in capsys.readouterr().out
    args = ["data", "import", "micl", "--root", str(coin_root), "--out", str(tmp_path / "c")]
    with pytest.raises(SystemExit, match="--instructions and --images are for coin"):
        main([*args, "--instructions", "type2"])
