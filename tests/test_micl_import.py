"""`mcit data import micl`: hand-made fixtures in each dataset's official annotation layout,
under MICL's media layout, become a valid mcit benchmark; bad annotations name file, line or
record, and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from mcit.cli import main
from mcit.data.benchmarks import load_benchmark_spec, load_tasks, validate_benchmark
from mcit.data.micl_import import import_micl
from mcit.errors import DataError


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (200, 40, 40)).save(path)


def _wav(path: Path, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(rate // 4, np.float32), rate)


def _mp4(path: Path) -> None:
    import random

    from mcit.data.micl_mini.clips import make_clip, save_mp4

    path.parent.mkdir(parents=True, exist_ok=True)
    save_mp4(make_clip("appears", random.Random(0)), path)


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def make_micl_root(root: Path) -> Path:
    # Flickr30k, Karpathy's split file.
    images = [
        {"filename": f"{k}.jpg", "split": split, "sentences": [{"raw": f"a dog runs {k}"},
                                                              {"raw": f"a dog {k}"}]}
        for k, split in enumerate(["train", "train", "test", "val"])
    ]  # fmt: skip
    _write(root / "flickr30k" / "dataset_flickr30k.json", {"images": images})
    for k in range(4):
        _png(root / "flickr30k" / "flickr30k-images" / f"{k}.jpg")
    # OK-VQA, questions and annotations per COCO split.
    okvqa = root / "coco" / "OK-VQA"
    for coco, ids in (("train2014", [9, 25]), ("val2014", [42])):
        questions = [
            {"image_id": i, "question": f"What sport is played here {i}?", "question_id": i * 10}
            for i in ids
        ]
        answers = [
            {"question_id": i * 10, "answers": [{"answer": "tennis"}, {"answer": "tennis"},
                                                {"answer": "golf"}]}
            for i in ids
        ]  # fmt: skip
        _write(okvqa / f"OpenEnded_mscoco_{coco}_questions.json", {"questions": questions})
        _write(okvqa / f"mscoco_{coco}_annotations.json", {"annotations": answers})
        for i in ids:
            _png(okvqa / coco / f"COCO_{coco}_{i:012d}.jpg")
    # MSR-VTT, the 2016 release's two files.
    msrvtt = root / "MSRVTT"
    _write(msrvtt / "train_val_videodatainfo.json", {
        "videos": [{"video_id": "video0", "split": "train"}, {"video_id": "video1", "split": "validate"}],
        "sentences": [{"video_id": "video0", "caption": "a man sings", "sen_id": 0},
                      {"video_id": "video0", "caption": "someone sings", "sen_id": 1},
                      {"video_id": "video1", "caption": "a cat jumps", "sen_id": 2}],
    })  # fmt: skip
    _write(msrvtt / "test_videodatainfo.json", {
        "videos": [{"video_id": "video7010", "split": "test"}],
        "sentences": [{"video_id": "video7010", "caption": "a car drives", "sen_id": 3}],
    })  # fmt: skip
    for v in ("video0", "video1", "video7010"):
        _mp4(msrvtt / "videos" / "all" / f"{v}.mp4")
    # MSVD-QA, its QA files and the YouTube mapping.
    msvd = root / "MSVD" / "MSVD-QA"
    _write(msvd / "youtube_mapping.txt", "-4wsuPCjDBc_5_15 vid1\nabcDEF_1_9 vid2\n")
    _write(msvd / "train_qa.json", [
        {"answer": "man", "id": 0, "question": "who is singing?", "video_id": 1},
        {"answer": "sing", "id": 1, "question": "what does the man do?", "video_id": 1},
    ])  # fmt: skip
    _write(msvd / "val_qa.json", [])
    _write(msvd / "test_qa.json", [{"answer": "dog", "id": 2, "question": "what runs?",
                                    "video_id": 2}])  # fmt: skip
    _mp4(msvd / "video" / "-4wsuPCjDBc_5_15.mp4")
    _mp4(msvd / "video" / "vid2.mp4")
    # AudioCaps, CSV per split; clips named by audiocap_id (one by youtube_id).
    caps = root / "AudioCaps"
    _write(caps / "train.csv", "audiocap_id,youtube_id,start_time,caption\n"
           "91139,r1nicOVtvkQ,130,A woman talks nearby\n91139,r1nicOVtvkQ,130,A woman speaks\n")  # fmt: skip
    _write(caps / "test.csv", "audiocap_id,youtube_id,start_time,caption\n"
           "103549,7fmOlUlwoNg,20,Rain falls\n")  # fmt: skip
    _wav(caps / "all_audios" / "91139.wav")
    _wav(caps / "all_audios" / "7fmOlUlwoNg.wav")
    # Clotho-AQA, one row per annotator.
    clotho = root / "Clotho-AQA"
    header = "file_name,QuestionText,answer,confidence\n"
    _write(clotho / "clotho_aqa_train.csv", header + "a.wav,Is it raining?,yes,yes\n"
           "a.wav,Is it raining?,yes,maybe\na.wav,Is it raining?,no,yes\n")  # fmt: skip
    _write(clotho / "clotho_aqa_test.csv", header + "b.wav,Is a bird singing?,no,yes\n")
    _wav(clotho / "audio_files" / "a.wav")
    _wav(clotho / "audio_files" / "b.wav")
    return root


@pytest.fixture
def micl_root(tmp_path) -> Path:
    return make_micl_root(tmp_path / "datasets")


def test_the_official_layouts_become_a_valid_benchmark(micl_root, tmp_path):
    out = import_micl(micl_root, tmp_path / "micl")
    assert validate_benchmark(out).ok
    spec = load_benchmark_spec(out)
    assert spec.orders["order1"][0] == "audiocaps" and spec.orders["order2"][0] == "flickr30k"
    tasks = {t.name: t for t in load_tasks(spec, order=[t.name for t in spec.tasks])}
    flickr = tasks["flickr30k"]
    assert flickr.metric == "cider" and len(flickr.train) == 4 and len(flickr.test) == 1
    assert flickr.test[0].references == ["a dog runs 2", "a dog 2"]  # Karpathy's val is unused
    okvqa = tasks["okvqa"]
    assert okvqa.train[0].answer == "tennis" and okvqa.test[0].references == [
        "tennis",
        "tennis",
        "golf",
    ]
    assert okvqa.test[0].media["image"].endswith("val2014/COCO_val2014_000000000042.jpg")
    msrvtt = tasks["msrvtt"]
    assert len(msrvtt.train) == 2 and msrvtt.test[0].references == ["a car drives"]
    msvd = tasks["msvdqa"]
    assert msvd.modality == "video" and msvd.train[0].media["video"].endswith(
        "-4wsuPCjDBc_5_15.mp4"
    )
    assert msvd.test[0].answer == "dog"
    caps = tasks["audiocaps"]
    assert caps.train[0].media["audio"].endswith("all_audios/91139.wav")
    assert caps.test[0].media["audio"].endswith("7fmOlUlwoNg.wav")  # named by youtube_id
    clotho = tasks["clothoaqa"]
    assert clotho.train[0].answer == "yes" and clotho.train[0].turns[0][0] == "Is it raining?"
    assert clotho.test[0].references == ["no"]


def test_the_cli_imports_validates_and_names_a_clip_at_another_rate(micl_root, tmp_path, capsys):
    assert (
        main(["data", "import", "micl", "--root", str(micl_root), "--out", str(tmp_path / "a")])
        == 0
    )
    _wav(micl_root / "Clotho-AQA" / "audio_files" / "b.wav", rate=44100)
    assert (
        main(["data", "import", "micl", "--root", str(micl_root), "--out", str(tmp_path / "b")])
        == 2
    )
    out = capsys.readouterr()
    assert "b.wav" in out.out and "sample rate 44100 Hz, the task's is 16000 Hz" in out.out


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: (r / "flickr30k" / "dataset_flickr30k.json").unlink(),
         r"dataset_flickr30k.json: annotation file not found"),
        (lambda r: _write(r / "flickr30k" / "dataset_flickr30k.json", {"images": [{"split": "train"}]}),
         r"dataset_flickr30k.json, record 0, field 'filename': missing"),
        (lambda r: _write(r / "AudioCaps" / "test.csv", "audiocap_id,youtube_id,caption\n1,x,\n"),
         r"test.csv, record line 2, field 'caption': empty"),
        (lambda r: _write(r / "AudioCaps" / "test.csv", "audiocap_id,youtube_id,caption\n5,y,Rain\n"),
         r"test.csv, record line 2, field 'audiocap_id': no audio file all_audios/5.wav"),
        (lambda r: _write(r / "MSVD" / "MSVD-QA" / "test_qa.json",
                          [{"answer": "a", "id": 0, "question": "q?", "video_id": 9}]),
         r"test_qa.json, record 0, field 'video_id': no video file video/vid9.avi"),
        (lambda r: _write(r / "coco" / "OK-VQA" / "mscoco_val2014_annotations.json", "{"),
         r"mscoco_val2014_annotations.json: not valid JSON \(line 1, column 2: Expecting property name enclosed in double quotes\)$"),
    ],
)  # fmt: skip
def test_bad_annotations_name_file_record_and_field(micl_root, tmp_path, edit, message):
    edit(micl_root)
    with pytest.raises(DataError, match=message):
        import_micl(micl_root, tmp_path / "micl")
    assert not (tmp_path / "micl").exists()  # nothing half-written
