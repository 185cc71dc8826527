"""micl-mini as a whole: six tasks (image, video, audio × captioning, QA) with MICL's two orders,
written deterministically, validated, registered by name, and refused in one clear line by the
image-only backbones until a multimodal one exists."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mcit.cli import main
from mcit.data.benchmarks import load_benchmark_spec, load_tasks, validate_benchmark
from mcit.data.micl_mini.generate import ORDERS, TASKS, generate_micl_mini


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def micl(tmp_path_factory) -> Path:
    return generate_micl_mini(tmp_path_factory.mktemp("m") / "micl", 0, 6, 3, progress=False)


def test_six_tasks_two_orders_every_modality_and_metric(micl):
    report = validate_benchmark(micl)
    assert report.ok, report.format()
    spec = load_benchmark_spec(micl)
    assert spec.orders == ORDERS and [t.name for t in spec.tasks] == list(TASKS)
    kinds = {(t.modality, t.metric) for t in spec.tasks}
    assert kinds == {(m, k) for m in ("image", "video", "audio") for k in ("cider", "vqa")}
    tasks = load_tasks(spec, order="order2")
    assert [t.name for t in tasks] == ORDERS["order2"]
    for task in tasks:
        assert len(task.train) == 6 and len(task.test) == 3
        assert all(task.modality in s.media for s in task.train + task.test)
        if task.metric == "cider":  # several references per caption
            assert all(len(s.references) == 3 for s in task.test)


def test_the_same_seed_writes_the_same_bytes(micl, tmp_path):
    again = generate_micl_mini(tmp_path / "again", 0, 6, 3, progress=False)
    other = generate_micl_mini(tmp_path / "other", 1, 6, 3, progress=False)
    assert _digests(again) == _digests(micl) != _digests(other)


def test_the_cli_generates_it_and_refuses_an_order(tmp_path, capsys):
    assert (
        main(["data", "generate", "micl-mini", "--out", str(tmp_path / "m"), "--size", "2,1"]) == 0
    )
    assert validate_benchmark(tmp_path / "m").ok
    assert (
        main(["data", "generate", "micl-mini", "--out", str(tmp_path / "n"), "--order", "a"]) == 2
    )
    assert "--order: micl-mini writes all six tasks" in capsys.readouterr().err


def test_it_is_registered_by_name(micl):
    from mcit.data.benchmarks import resolve_benchmark
    from mcit.data.builtin import register_builtin_benchmarks

    register_builtin_benchmarks()
    assert resolve_benchmark("micl-mini", data_dir=micl, seed=0) == micl  # there: not rewritten


def _blind_score(name: str, key) -> float:
    """The best score without the media: each test question answered with the most common
    training answer of its `key` (the question's text, or its template)."""
    import random
    from collections import Counter, defaultdict

    from mcit.evaluation.scorers import score_predictions

    kind = TASKS[name]
    train = kind.generate(300, random.Random(1))
    test = kind.generate(100, random.Random(2))
    by_key: dict[str, Counter] = defaultdict(Counter)
    for e in train:
        by_key[key(e)][e.answer] += 1
    overall = Counter(e.answer for e in train)
    guesses = [(by_key.get(key(e)) or overall).most_common(1)[0][0] for e in test]
    scores = score_predictions(kind.metric, guesses, [e.references for e in test])
    return 100 * sum(scores) / len(scores)


@pytest.mark.parametrize("name", list(TASKS))
def test_no_task_is_solvable_without_its_media(name):
    """The blind check: a model that never sees (or hears) the media can at best give the
    answer its training data makes most likely for the question. QA stays at chance (two to
    five answers per question: ≤ 50), captioning far below what a learned task reaches (CIDEr
    of one caption for every clip; finetune-lora reaches 66–344 on the default run)."""
    blind = max(_blind_score(name, lambda e: e.question), _blind_score(name, lambda e: e.template))
    limit = 50.0 if TASKS[name].metric != "cider" else 40.0
    assert blind <= limit, f"{name}: a guess without the media scores {blind:.1f}"
