"""LLaVA/CoIN file format and benchmark.yaml: exact parsing, precise errors, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from mcit.data.benchmarks import (
    load_benchmark_spec,
    load_tasks,
    register_benchmark,
    resolve_benchmark,
    validate_benchmark,
)
from mcit.data.formats.llava import (
    box_problem,
    load_llava_test,
    load_llava_train,
    write_llava_test,
    write_llava_train,
)
from mcit.data.sample import Sample
from mcit.errors import DataError


def png(path: Path, color: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path)
    return path


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def turn(role: str, value: str) -> dict[str, str]:
    return {"from": role, "value": value}


def train_record(rid: str = "a-1", image: str | None = "img/a.png", answer: str = "B") -> dict:
    record: dict = {"id": rid}
    if image is not None:
        record["image"] = image
    tag = "<image>\n" if image is not None else ""
    record["conversations"] = [turn("human", f"{tag}Which?\nA. red\nB. blue"), turn("gpt", answer)]
    return record


@pytest.fixture
def root(tmp_path: Path) -> Path:
    png(tmp_path / "img/a.png")
    png(tmp_path / "img/b.png", "blue")
    return tmp_path


def load_error(load, path: Path, root: Path, metric: str = "option") -> DataError:
    with pytest.raises(DataError) as info:
        load(path, root, "t", metric)
    return info.value


# --------------------------------------------------------------------------- reading


def test_train_file_reads_exact_samples(root: Path) -> None:
    records = [
        train_record(),
        {
            "id": 7,  # integer ids are allowed and become strings
            "image": "img/b.png",
            "conversations": [
                turn("human", "First?\n<image>"),
                turn("gpt", "one"),
                turn("user", "Second?"),
                turn("assistant", "two"),
            ],
        },
        {"id": "txt", "conversations": [turn("human", "2+2?"), turn("gpt", "4")]},
    ]
    path = write_json(root / "train.json", records)
    samples = load_llava_train(path, root, "sqa", "option")
    assert samples == [
        Sample(
            "a-1",
            "sqa",
            [("Which?\nA. red\nB. blue", "B")],
            ["B"],
            "option",
            {"image": str(root / "img/a.png")},
        ),
        Sample(
            "7",
            "sqa",
            [("First?", "one"), ("Second?", "two")],
            ["two"],
            "option",
            {"image": str(root / "img/b.png")},
        ),
        Sample("txt", "sqa", [("2+2?", "4")], ["4"], "option", {}),
    ]


def test_test_file_json_list_and_jsonl_read_alike(root: Path) -> None:
    records = [
        {"question_id": "q1", "image": "img/a.png", "text": "Colour?", "answer": "red"},
        {
            "question_id": "q2",
            "image": "img/b.png",
            "text": "Colour?",
            "answer": "blue",
            "answers": ["blue", "navy"],
        },
    ]
    as_list = write_json(root / "test.json", records)
    as_lines = root / "test.jsonl"
    as_lines.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    expected = [
        Sample(
            "q1", "vqa", [("Colour?", "red")], ["red"], "vqa", {"image": str(root / "img/a.png")}
        ),
        Sample(
            "q2",
            "vqa",
            [("Colour?", "blue")],
            ["blue", "navy"],
            "vqa",
            {"image": str(root / "img/b.png")},
        ),
    ]
    assert load_llava_test(as_list, root, "vqa", "vqa") == expected
    assert load_llava_test(as_lines, root, "vqa", "vqa") == expected


def test_audio_task_uses_audio_key_and_tag(tmp_path: Path) -> None:
    soundfile.write(str(tmp_path / "a.wav"), np.zeros(160, dtype=np.float32), 16_000)
    rec = {
        "id": "s",
        "audio": "a.wav",
        "conversations": [turn("human", "<audio>\nSay?"), turn("gpt", "hi")],
    }
    path = write_json(tmp_path / "train.json", [rec])
    (sample,) = load_llava_train(path, tmp_path, "asr", "exact", modality="audio")
    assert sample.media == {"audio": str(tmp_path / "a.wav")} and sample.turns == [("Say?", "hi")]
    (tmp_path / "a.wav").write_bytes(b"RIFF....")  # a clip libsndfile cannot read
    with pytest.raises(DataError, match=r"field 'audio': not a readable audio file \(Libsndfile"):
        load_llava_train(path, tmp_path, "asr", "exact", modality="audio")


# --------------------------------------------------------------------------- errors


def assert_names(err: DataError, *parts: str) -> None:
    message = str(err)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_missing_field(root: Path) -> None:
    rec = train_record()
    del rec["conversations"]
    path = write_json(root / "train.json", [train_record("ok"), rec])
    assert_names(
        load_error(load_llava_train, path, root),
        "train.json",
        "index 1",
        "'a-1'",
        "'conversations'",
        "missing",
    )


def test_empty_answer(root: Path) -> None:
    path = write_json(root / "train.json", [train_record(answer="  ")])
    assert_names(
        load_error(load_llava_train, path, root),
        "train.json",
        "'a-1'",
        "conversations[1].value",
        "empty answer",
    )


def test_empty_answer_in_test_file(root: Path) -> None:
    path = root / "test.jsonl"
    path.write_text(
        '{"question_id": "q1", "text": "Q?", "answer": "x"}\n\n{"question_id": "q2", "text": "Q?", "answer": ""}\n'
    )
    assert_names(
        load_error(load_llava_test, path, root),
        "test.jsonl",
        "line 3",
        "'q2'",
        "'answer'",
        "empty answer",
    )


def test_missing_image(root: Path) -> None:
    path = write_json(root / "train.json", [train_record(image="img/nope.png")])
    assert_names(
        load_error(load_llava_train, path, root),
        "train.json",
        "'a-1'",
        "'image'",
        "not found",
        "nope.png",
    )
    # Without media checks the path is taken on trust (fast loads of known-good data).
    (sample,) = load_llava_train(path, root, "t", "option", check_media=False)
    assert sample.media["image"] == str(root / "img/nope.png")


def test_corrupt_image(root: Path) -> None:
    (root / "img/bad.png").write_bytes(b"this is not a png at all")
    path = write_json(root / "train.json", [train_record(image="img/bad.png")])
    assert_names(
        load_error(load_llava_train, path, root),
        "train.json",
        "'a-1'",
        "'image'",
        "not a readable image",
    )


@pytest.mark.parametrize(
    "answer",
    [
        "[0.1, 0.2, 0.3]",
        "[0.5, 0.2, 0.3, 0.4]",
        "[0.1, 0.2, 0.3, 1.5]",
        "box",
        "[0.1, 0.2, 0.3, nan]",
    ],
)
def test_bad_box_for_iou(root: Path, answer: str) -> None:
    path = root / "test.jsonl"
    path.write_text(
        json.dumps({"question_id": "g1", "image": "img/a.png", "text": "Where?", "answer": answer})
        + "\n"
    )
    assert_names(
        load_error(load_llava_test, path, root, metric="iou"),
        "test.jsonl",
        "line 1",
        "'g1'",
        "'answer'",
        "iou",
    )
    load_llava_test(path, root, "t", "exact")  # the same answer is fine for other metrics


def test_good_box_for_iou(root: Path) -> None:
    assert box_problem("[0.1, 0.2, 0.3, 0.4]") is None and box_problem("0,0,1,1") is None
    path = write_json(root / "train.json", [train_record(answer="[0.12,0.3,0.5,0.71]")])
    assert load_llava_train(path, root, "t", "iou")[0].references == ["[0.12,0.3,0.5,0.71]"]


def test_bad_json_names_line(root: Path) -> None:
    path = root / "train.json"
    path.write_text('[\n{"id": "a", "image": "img/a.png",\n "conversations": [}\n]\n')
    assert_names(
        load_error(load_llava_train, path, root),
        "train.json",
        "not valid JSON (line 3, column 20: Expecting value)",
    )


def test_bad_jsonl_line_names_line(root: Path) -> None:
    path = root / "test.jsonl"
    path.write_text('{"question_id": "q1", "text": "Q?", "answer": "x"}\n{"question_id": "q2", \n')
    assert_names(
        load_error(load_llava_test, path, root),
        "test.jsonl",
        "line 2",
        "not valid JSON (column 23: Expecting property name enclosed in double quotes)",
    )


def test_duplicate_id(root: Path) -> None:
    path = write_json(
        root / "train.json", [train_record("x"), train_record("y"), train_record("x")]
    )
    assert_names(
        load_error(load_llava_train, path, root),
        "train.json",
        "index 2",
        "'x'",
        "'id'",
        "duplicate",
        "index 0",
    )


def test_tag_without_media(root: Path) -> None:
    rec = {"id": "t1", "conversations": [turn("human", "<image>\nWhat?"), turn("gpt", "cat")]}
    path = write_json(root / "train.json", [rec])
    assert_names(
        load_error(load_llava_train, path, root), "train.json", "'t1'", "'image'", "<image> tag"
    )


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (
            {
                "id": "m",
                "image": "img/a.png",
                "conversations": [turn("human", "Q?"), turn("gpt", "A")],
            },
            "conversations[0].value",
        ),
        (
            {
                "id": "m",
                "image": "img/a.png",
                "conversations": [turn("human", "<image><image>Q"), turn("gpt", "A")],
            },
            "conversations[0].value",
        ),
        (
            {"id": "m", "conversations": [turn("gpt", "A"), turn("human", "Q")]},
            "conversations[0].from",
        ),
        ({"id": "m", "conversations": [turn("human", "Q")]}, "conversations[0]"),
        ({"id": "m", "conversations": []}, "conversations"),
        ({"id": ["m"], "conversations": [turn("human", "Q"), turn("gpt", "A")]}, "id"),
        (
            {"id": "m", "image": 3, "conversations": [turn("human", "<image>Q"), turn("gpt", "A")]},
            "image",
        ),
        (
            {"id": "m", "audio": "a.wav", "conversations": [turn("human", "Q"), turn("gpt", "A")]},
            "audio",
        ),
    ],
)
def test_malformed_records(root: Path, record: dict, field: str) -> None:
    path = write_json(root / "train.json", [record])
    assert_names(load_error(load_llava_train, path, root), "train.json", "index 0", f"'{field}'")


def test_file_level_errors(root: Path) -> None:
    assert_names(
        load_error(load_llava_train, root / "absent.json", root), "absent.json", "not found"
    )
    path = write_json(root / "train.json", {"id": "a"})
    assert_names(load_error(load_llava_train, path, root), "train.json", "expected a JSON list")


def test_bad_answers_list(root: Path) -> None:
    path = write_json(
        root / "test.json", [{"question_id": "q", "text": "Q", "answer": "a", "answers": ["a", ""]}]
    )
    assert_names(
        load_error(load_llava_test, path, root),
        "test.json",
        "index 0",
        "'q'",
        "'answers[1]'",
        "empty",
    )


def test_errors_list_collects_instead_of_raising(root: Path) -> None:
    bad = train_record("b", answer="")
    path = write_json(
        root / "train.json",
        [train_record("a"), bad, train_record("a"), train_record("c", image="img/x.png")],
    )
    errors: list[DataError] = []
    samples = load_llava_train(path, root, "t", "option", errors=errors)
    assert [s.id for s in samples] == ["a"]
    assert [e.field for e in errors] == ["conversations[1].value", "id", "image"]


# --------------------------------------------------------------------------- writing


def test_round_trip_is_exact(root: Path) -> None:
    train = [
        Sample(
            "a",
            "t",
            [("Which?\nA. x\nB. y", "A")],
            ["A"],
            "option",
            {"image": str(root / "img/a.png")},
        ),
        Sample(
            "b",
            "t",
            [("", "a red square")],
            ["a red square"],
            "option",
            {"image": str(root / "img/b.png")},
        ),
        Sample(
            "c",
            "t",
            [("One?", "1"), ("Two?", "2")],
            ["2"],
            "option",
            {"image": str(root / "img/a.png")},
        ),
        Sample("d", "t", [("Text only, ünïcode?", "yes")], ["yes"], "option", {}),
    ]
    test = [
        Sample("q1", "t", [("Colour?", "red")], ["red"], "vqa", {"image": str(root / "img/a.png")}),
        Sample(
            "q2",
            "t",
            [("Colour?", "blue")],
            ["blue", "navy", "blue"],
            "vqa",
            {"image": str(root / "img/b.png")},
        ),
    ]
    write_llava_train(root / "out/train.json", train, root)
    assert load_llava_train(root / "out/train.json", root, "t", "option") == train
    assert json.loads((root / "out/train.json").read_text())[0]["image"] == "img/a.png"  # relative
    for name in ("test.json", "test.jsonl"):
        write_llava_test(root / "out" / name, test, root)
        assert load_llava_test(root / "out" / name, root, "t", "vqa") == test
    assert sorted(p.name for p in (root / "out").iterdir()) == [
        "test.json",
        "test.jsonl",
        "train.json",
    ]  # no temp files


# --------------------------------------------------------------------------- benchmarks


def make_benchmark(root: Path, yaml_text: str | None = None) -> Path:
    for name in ("alpha", "beta", "gamma"):
        png(root / name / "img/a.png")
        records = [train_record(f"{name}-{i}") for i in range(5)]
        write_json(root / name / "train.json", records)
        tests = [
            {"question_id": f"{name}-t{i}", "image": "img/a.png", "text": "Q?", "answer": "B"}
            for i in range(4)
        ]
        (root / name / "test.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tests))
    if yaml_text is None:
        yaml_text = "name: mini\ntasks:\n" + "".join(
            f"  - {{name: {n}, metric: option, train: {n}/train.json, test: {n}/test.jsonl, media_root: {n}}}\n"
            for n in ("alpha", "beta", "gamma")
        )
        yaml_text += "orders:\n  default: [alpha, beta, gamma]\n  reverse: [gamma, beta, alpha]\n"
    (root / "benchmark.yaml").write_text(yaml_text)
    return root


def test_load_tasks_honours_order_and_limits(tmp_path: Path) -> None:
    spec = load_benchmark_spec(make_benchmark(tmp_path))
    assert spec.name == "mini" and [t.name for t in spec.tasks] == ["alpha", "beta", "gamma"]
    assert spec.tasks[0].media_root == tmp_path / "alpha"
    assert [t.name for t in load_tasks(spec)] == ["alpha", "beta", "gamma"]
    tasks = load_tasks(spec, "reverse", train_limit=2, test_limit=3)
    assert [t.name for t in tasks] == ["gamma", "beta", "alpha"]
    assert [s.id for s in tasks[0].train] == ["gamma-0", "gamma-1"]
    assert [s.id for s in tasks[0].test] == ["gamma-t0", "gamma-t1", "gamma-t2"]
    assert [t.name for t in load_tasks(spec, ["beta"])] == ["beta"]
    with pytest.raises(DataError, match="'orders'.*no order 'nope'"):
        load_tasks(spec, "nope")


@pytest.mark.parametrize(
    ("task_line", "orders", "expected"),
    [
        (
            "{name: a, metric: acc, train: alpha/train.json, test: alpha/test.jsonl}",
            "",
            ["'metric'", "unknown metric 'acc'", "vqa, exact"],
        ),
        (
            "{name: a, metric: exact, train: alpha/nope.json, test: alpha/test.jsonl}",
            "",
            ["'train'", "not found"],
        ),
        ("{name: a, metric: exact, test: alpha/test.jsonl}", "", ["'train'", "missing"]),
        (
            "{name: a, metric: exact, modality: smell, train: alpha/train.json, test: alpha/test.jsonl}",
            "",
            ["'modality'", "smell"],
        ),
        (
            "{name: a, metric: exact, train: alpha/train.json, test: alpha/test.jsonl}",
            "orders: {default: [a, zeta]}",
            ["'orders.default'", "'zeta'"],
        ),
        (
            "{name: alpha, metric: exact, train: alpha/train.json, test: alpha/test.jsonl}\n  - {name: alpha, metric: exact, train: alpha/train.json, test: alpha/test.jsonl}",
            "",
            ["tasks[1]", "'name'", "duplicate"],
        ),
    ],
)
def test_benchmark_yaml_errors_name_the_field(
    tmp_path: Path, task_line: str, orders: str, expected: list[str]
) -> None:
    make_benchmark(tmp_path, f"name: bad\ntasks:\n  - {task_line}\n{orders}\n")
    with pytest.raises(DataError) as info:
        load_benchmark_spec(tmp_path / "benchmark.yaml")
    assert_names(info.value, "benchmark.yaml", *expected)


def test_validate_collects_many_problems(tmp_path: Path) -> None:
    make_benchmark(tmp_path)
    train = json.loads((tmp_path / "beta/train.json").read_text())
    train[1]["conversations"][1]["value"] = ""  # empty answer
    train[3]["image"] = "img/missing.png"  # missing image
    train[4]["id"] = train[0]["id"]  # duplicate id
    write_json(tmp_path / "beta/train.json", train)
    (tmp_path / "gamma/img/a.png").write_bytes(b"garbage")  # corrupt: breaks every gamma record
    report = validate_benchmark(tmp_path)
    by_name = {t.name: t for t in report.tasks}
    assert not report.ok and report.spec_problems == []
    assert (
        by_name["alpha"].train_records,
        by_name["alpha"].test_records,
        by_name["alpha"].problems,
    ) == (5, 4, [])
    beta = by_name["beta"]
    assert beta.train_records == 2 and len(beta.problems) == 3
    assert (
        "'beta-1'" in beta.problems[0]
        and "'beta-3'" in beta.problems[1]
        and "duplicate" in beta.problems[2]
    )
    assert len(by_name["gamma"].problems) == 9 and by_name["gamma"].train_records == 0
    assert "3 problem(s)" in report.format()


def test_resolve_benchmark(tmp_path: Path) -> None:
    make_benchmark(tmp_path)
    register_benchmark("test-fixture-bench", lambda data_dir, seed: tmp_path, replace=True)
    assert resolve_benchmark("test-fixture-bench") == tmp_path
    assert resolve_benchmark(str(tmp_path)) == tmp_path
    with pytest.raises(DataError, match="test-fixture-bench"):
        resolve_benchmark("no-such-benchmark")
