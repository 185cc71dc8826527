"""Tests of the coin-mini generators, the pre-training mixture and the on-disk writer."""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mcit.data.synthetic import coin_mini, pretrain, scene, vocab
from mcit.data.synthetic.common import OPTION_ANSWER, SHORT_ANSWER, UNANSWERABLE_HINT
from mcit.data.synthetic.tasks import TASKS

N = 200  # examples per task for the distribution checks (about 0.2 s per task)
VQA_NUMBERS = {w: str(i) for i, w in enumerate(vocab.NUMBER_WORDS)}


@pytest.fixture(scope="module")
def examples() -> dict[str, list]:
    return {name: spec.generate(N, random.Random(7), 64, "test") for name, spec in TASKS.items()}


def _png(img: Image.Image) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _strip_instruction(question: str) -> str:
    """The question proper, without CoIN's instruction lines or the listed options."""
    return question.split("\n")[0]


def _vqa_norm(answer: str) -> str:
    a = answer.lower().strip()
    return VQA_NUMBERS.get(a, a)


# --- generators ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TASKS))
def test_generator_is_deterministic_and_seeded(name: str) -> None:
    gen = TASKS[name].generate
    a, b = gen(6, random.Random(1), 64), gen(6, random.Random(1), 64)
    c = gen(6, random.Random(2), 64)
    assert [(e.question, e.answer, e.references) for e in a] == [
        (e.question, e.answer, e.references) for e in b
    ]
    assert [_png(e.image) for e in a] == [_png(e.image) for e in b]
    assert [_png(e.image) for e in a] != [_png(e.image) for e in c]


def test_every_record_is_well_formed(examples: dict[str, list]) -> None:
    for name, exs in examples.items():
        assert len(exs) == N
        for e in exs:
            assert e.image.size == (64, 64) and e.image.mode == "RGB", name
            assert "<image>" not in e.question and e.question.strip(), name
            assert e.answer and e.answer in e.references, name
            assert e.template and _strip_instruction(e.question), name
            assert e.turns == [(e.question, e.answer)]


def test_scienceqa_format(examples: dict[str, list]) -> None:
    for e in examples["scienceqa"]:
        lines = e.question.split("\n")
        assert lines[-1] == OPTION_ANSWER
        options = lines[1:-1]
        assert 2 <= len(options) <= 5
        assert [o[:3] for o in options] == [f"{vocab.LETTERS[i]}. " for i in range(len(options))]
        assert len({o[3:] for o in options}) == len(options)  # no repeated option
        assert e.answer in vocab.LETTERS[: len(options)]


def test_grounding_boxes_parse_and_are_tight() -> None:
    exs = TASKS["grounding"].generate(60, random.Random(3), 64)
    for e in exs:
        assert re.fullmatch(r"\[\d\.\d\d, \d\.\d\d, \d\.\d\d, \d\.\d\d\]", e.answer)
        x1, y1, x2, y2 = json.loads(e.answer)
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
        assert e.question.startswith(
            "Please provide the bounding box coordinate of the region this sentence describes: the "
        )
    # The box is the drawn object's: render each shape alone and measure its pixels.
    for shape in vocab.SHAPES:
        box = (0.2, 0.3, 0.6, 0.7)
        canvas = scene.Canvas(64, (128, 128, 128))
        canvas.shape(shape, (250, 0, 0), box)
        img = canvas.image()
        drawn = img.point(lambda v: 255 if v > 200 else 0).getchannel("R").getbbox()
        assert drawn is not None
        assert all(abs(d - b * 64) <= 1.5 for d, b in zip(drawn, box, strict=True)), shape


def test_vqa_tasks_have_ten_mostly_agreeing_references(examples: dict[str, list]) -> None:
    for name in ("textvqa", "vqav2"):
        some_disagree = False
        for e in examples[name]:
            assert len(e.references) == 10
            agree = sum(_vqa_norm(r) == _vqa_norm(e.answer) for r in e.references)
            assert agree >= 7, (name, e.references)  # the right answer always scores 1.0
            some_disagree |= agree < 10
        assert some_disagree, name  # annotators are not all identical
    for e in examples["vqav2"]:
        if "How many" in e.question:
            assert e.answer.isdigit()  # numbers as digits, as VQA normalises them


def test_vizwiz_unanswerable_share_and_instruction(examples: dict[str, list]) -> None:
    exs = examples["vizwiz"]
    share = sum(e.answer == "unanswerable" for e in exs) / len(exs)
    assert 0.2 <= share <= 0.3
    for e in exs:
        assert e.question.endswith(UNANSWERABLE_HINT + SHORT_ANSWER)
    # Unanswerable photos are varied pictures, not one constant image a model could memorise.
    bad = [_png(e.image) for e in exs if e.answer == "unanswerable"]
    assert len(set(bad)) == len(bad)


def test_imagenet_labels_cannot_be_gamed_by_contains(examples: dict[str, list]) -> None:
    classes = vocab.IMAGENET_CLASSES
    assert 10 <= len(classes) <= 16
    for a, b in combinations(classes, 2):
        assert a not in b and b not in a, (a, b)
    assert {e.answer for e in examples["imagenet"]} == set(classes)


def test_answer_vocabularies(examples: dict[str, list]) -> None:
    words = set(vocab.COLOR_NAMES) | set(vocab.SHAPES)
    gqa = words | {"yes", "no", "left", "right", "above", "below"}
    assert {e.answer for e in examples["gqa"]} <= gqa
    ocr = set(vocab.TITLE_WORDS) | set(vocab.AUTHOR_NAMES) | set(vocab.GENRES) | {"Yes", "No"}
    assert {e.answer for e in examples["ocrvqa"]} <= ocr
    assert {e.answer for e in examples["textvqa"]} <= set(vocab.SIGN_WORDS)
    # The word lists of different reading tasks do not overlap (case-insensitive).
    lists = [vocab.SIGN_WORDS, vocab.PRODUCT_WORDS, vocab.TITLE_WORDS, vocab.AUTHOR_NAMES]
    for a, b in combinations(lists, 2):
        assert not {w.lower() for w in a} & {w.lower() for w in b}


def test_answer_distributions_are_not_degenerate(examples: dict[str, list]) -> None:
    # Overall most common answer, and the most common answer within a question template (what
    # a model that reads only the text could learn). Yes/no templates are balanced to 50 %.
    overall_limit = {"scienceqa": 0.4, "vizwiz": 0.3}
    for name, exs in examples.items():
        top = Counter(e.answer for e in exs).most_common(1)[0][1] / len(exs)
        assert top <= overall_limit.get(name, 0.3), (name, top)
        per_template: dict[str, Counter] = defaultdict(Counter)
        for e in exs:
            per_template[e.template][e.answer] += 1
        for template, counts in per_template.items():
            share = counts.most_common(1)[0][1] / sum(counts.values())
            binary = len(counts) == 2
            assert share <= (0.56 if binary else 0.45), (name, template, counts)


def test_tasks_are_distinct(examples: dict[str, list]) -> None:
    for a, b in combinations(TASKS, 2):
        assert not set(TASKS[a].templates) & set(TASKS[b].templates), (a, b)
        qa = {_strip_instruction(e.question) for e in examples[a]}
        qb = {_strip_instruction(e.question) for e in examples[b]}
        assert not qa & qb, (a, b, qa & qb)
        va, vb = {e.answer for e in examples[a]}, {e.answer for e in examples[b]}
        assert va != vb and len(va & vb) / len(va | vb) < 0.7, (a, b)


def test_digit_splits_are_disjoint() -> None:
    for label in range(10):
        train, test = scene.digit_indices(label, "train"), scene.digit_indices(label, "test")
        assert train and test and not set(train) & set(test)


# --- pre-training mixture ----------------------------------------------------------------------


def test_pretraining_is_deterministic_and_seeded() -> None:
    a, b = pretrain.pretrain_captions(5, seed=1), pretrain.pretrain_captions(5, seed=1)
    assert [t for _, t in a] == [t for _, t in b]
    assert [_png(i) for i, _ in a] == [_png(i) for i, _ in b]
    c = pretrain.pretrain_captions(5, seed=2)
    assert [_png(i) for i, _ in a] != [_png(i) for i, _ in c]
    x, y = pretrain.pretrain_instructions(5, seed=1), pretrain.pretrain_instructions(5, seed=1)
    assert [t for _, t in x] == [t for _, t in y]


def test_pretraining_phrasings_are_disjoint_from_tasks(examples: dict[str, list]) -> None:
    task_templates = {t for spec in TASKS.values() for t in spec.templates}
    assert not set(pretrain.TEMPLATES.values()) & task_templates
    convs = pretrain.pretrain_instructions(150, seed=3, image_size=64)
    task_questions = {_strip_instruction(e.question) for exs in examples.values() for e in exs}
    task_answers = {e.answer for exs in examples.values() for e in exs}
    users = Counter()
    for image, turns in convs:
        assert image.size == (64, 64)
        assert 1 <= len(turns) <= 3
        for user, assistant in turns:
            assert "<image>" not in user
            assert user not in task_questions
            users[user.split(" ")[0]] += 1
            # Full sentences, never a task's bare answer.
            assert assistant.endswith(".") and len(assistant.split()) >= 3, assistant
            assert assistant not in task_answers
    assert len(users) >= 8  # many kinds of instruction, not one
    captions = pretrain.pretrain_captions(40, seed=3, image_size=64)
    assert all(text and image.size == (64, 64) for image, text in captions)
    # Mostly distinct (a digit or an unreadable photo has few possible descriptions).
    assert len({text for _, text in captions}) >= 0.8 * len(captions)


# --- the benchmark on disk ----------------------------------------------------------------------


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cm") / "coin-mini"
    return coin_mini.generate_coin_mini(out, seed=5, train_size=6, test_size=4, progress=False)


def test_generate_coin_mini_writes_the_format(written: Path) -> None:
    meta = yaml.safe_load((written / "benchmark.yaml").read_text())
    assert meta["name"] == "coin-mini"
    assert [t["name"] for t in meta["tasks"]] == list(coin_mini.COIN_MINI_ORDER)
    assert meta["orders"]["default"] == list(coin_mini.COIN_MINI_ORDER)
    for t in meta["tasks"]:
        assert set(t) == {
            "name",
            "metric",
            "modality",
            "train",
            "test",
            "media_root",
            "description",
        }
        assert t["metric"] == coin_mini.TASK_METRICS[t["name"]]
        root = written / t["media_root"]
        train = json.loads((written / t["train"]).read_text())
        test = [json.loads(line) for line in (written / t["test"]).read_text().splitlines()]
        assert len(train) == 6 and len(test) == 4
        for r in train:
            assert set(r) == {"id", "image", "conversations"}
            human, gpt = r["conversations"]
            assert human["from"] == "human" and gpt["from"] == "gpt"
            assert human["value"].startswith("<image>\n") and human["value"].count("<image>") == 1
            assert gpt["value"]
        for r in test:
            assert set(r) == {"question_id", "image", "text", "answer", "answers"}
            assert "<image>" not in r["text"] and r["answer"] in r["answers"]
            if t["metric"] == "vqa":
                assert len(r["answers"]) == 10
        ids = [r["id"] for r in train] + [r["question_id"] for r in test]
        assert len(set(ids)) == len(ids)
        images = [r["image"] for r in train + test]
        assert len(set(images)) == len(images)
        contents = set()
        for rel in images:
            with Image.open(root / rel) as im:
                assert im.size == (64, 64) and im.mode == "RGB"
                contents.add(im.tobytes())
        assert len(contents) == len(images)  # train and test pictures never coincide


def test_generate_coin_mini_is_deterministic_and_order_independent(
    written: Path, tmp_path: Path
) -> None:
    again = coin_mini.generate_coin_mini(
        tmp_path / "a", seed=5, train_size=6, test_size=4, progress=False
    )
    assert _tree(again) == _tree(written)
    one = coin_mini.generate_coin_mini(
        tmp_path / "b", seed=5, order=["gqa"], train_size=6, test_size=4, progress=False
    )
    assert _tree(one / "gqa") == _tree(written / "gqa")
    other = coin_mini.generate_coin_mini(
        tmp_path / "c", seed=6, order=["gqa"], train_size=6, test_size=4, progress=False
    )
    assert _tree(other / "gqa") != _tree(written / "gqa")


def test_generate_coin_mini_overwrites_only_its_own_folders(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    kw = {"order": ["ocrvqa"], "train_size": 2, "test_size": 1, "progress": False}
    coin_mini.generate_coin_mini(out, seed=1, **kw)
    coin_mini.generate_coin_mini(out, seed=2, **kw)  # an earlier coin-mini is replaced
    assert json.loads((out / "coin-mini.json").read_text())["seed"] == 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a coin-mini folder"):
        coin_mini.generate_coin_mini(foreign, **kw)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="task order"):
        coin_mini.generate_coin_mini(tmp_path / "x", order=["gqa", "nope"], progress=False)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temporary folders are cleaned up


def test_corpus_covers_every_generated_word(examples: dict[str, list]) -> None:
    corpus = coin_mini.corpus_text(seed=0)
    known = set(re.findall(r"[A-Za-z]+|\d", "\n".join(corpus)))
    texts = [t for exs in examples.values() for e in exs for t in (e.question, *e.references)]
    for _, turns in pretrain.pretrain_instructions(60, seed=11):
        texts += [t for turn in turns for t in turn]
    texts += [t for _, t in pretrain.pretrain_captions(60, seed=11)]
    missing = set(re.findall(r"[A-Za-z]+|\d", "\n".join(texts))) - known
    assert not missing


def test_skill_probe_asks_every_skill_equally_with_its_own_template() -> None:
    probe = pretrain.skill_probe(3, seed=5)
    counts = Counter(skill for skill, *_ in probe)
    assert counts == {skill: 3 for skill in [*pretrain.TEMPLATES, "photo_read"]}
    for skill, image, user, answer in probe:
        assert image.size == (64, 64) and answer.endswith(".")
        template = pretrain.TEMPLATES["read" if skill == "photo_read" else skill]
        pattern = re.sub(r"\\\{\w+\\\}", ".+", re.escape(template))
        assert re.fullmatch(pattern, user), (skill, user)


def test_referent_value_answers_name_the_referent_then_the_same_facts() -> None:
    """The referent-value style asks the same questions about the same pictures as the sentence
    style; each answer puts the value right after the words naming what is looked up, and its
    decision agrees with the sentence answer."""
    rv = "referent-value"
    seen = Counter()
    for i in range(300):
        p = pretrain.picture(random.Random(i), 64)
        if not p.objs:
            continue
        sentence = pretrain.turns_for(p, random.Random(1000 + i))
        direct = pretrain.turns_for(p, random.Random(1000 + i), rv)
        assert [(k, u) for k, u, _ in sentence] == [(k, u) for k, u, _ in direct]
        by_name = {o.name: o for o in p.objs}
        for (skill, user, said), (_, _, answer) in zip(sentence, direct, strict=True):
            seen[skill] += 1
            decided = pretrain.decision(skill, answer, rv)
            assert pretrain.decision(skill, said, "sentence") == said
            if skill == "color_of":
                shape = user.removeprefix("Tell me the color of the ").rstrip(".")
                (o,) = [o for o in p.objs if o.shape == shape]
                assert answer == f"The {shape} {o.color}." and said.endswith(f" {o.color}.")
            elif skill == "shape_of":
                color = user.removeprefix("Name the shape that is ").rstrip(".")
                (o,) = [o for o in p.objs if o.color == color]
                assert answer == f"The {color} {o.shape}."
            elif skill.startswith("option_"):
                letter, value = re.fullmatch(r"Option \((\w)\): (\w+)\.", said).groups()
                assert answer.endswith(f" {value} {letter}.") and f"({letter}) {value}" in user
            elif skill == "count":
                n = re.search(r"\d+", said).group()
                assert re.fullmatch(rf"[A-Z][a-z]+ {n}\.", answer)
            elif skill == "contains":
                assert answer.endswith(" yes." if said.startswith("Yes") else " no.")
            elif skill == "where":
                o = by_name[user.removeprefix("Where is the ").rstrip("?")]
                numbers = [int(v) for v in answer.rstrip(".").split()[-4:]]
                assert answer.startswith(f"The {o.name} ")
                assert numbers == [round(100 * min(max(v, 0), 1)) for v in o.box]
            elif skill in ("left_of", "higher"):
                assert decided == ("yes" if said.startswith("Yes") else "no")
                a, b = re.fullmatch(
                    r"Is the (.+) (?:left of|higher than) the (.+)\?", user
                ).groups()
                axis = "cx" if skill == "left_of" else "cy"
                values = [round(100 * getattr(by_name[x], axis)) for x in (a, b)]
                assert answer.startswith(f"The {a} {values[0]}, the {b} {values[1]}, ")
                assert (values[0] < values[1]) == (decided == "yes")
            elif skill in pretrain.CHAIN_SKILLS:  # bigger, furthest, highest: an object's name
                assert said.startswith(decided.replace("the", "The", 1) + " is ")
            else:  # reading, covers, photos and the rest keep their sentences
                assert answer == said
    assert all(seen[skill] >= 10 for skill in pretrain.CHAIN_SKILLS + ("where", "color_of"))


def test_answer_styles_are_validated_where_a_config_names_them() -> None:
    from mcit.models import tiny

    assert tiny.ANSWER_STYLES == pretrain.ANSWER_STYLES
    with pytest.raises(ValueError, match="answer_style: 'terse' is not one of"):
        tiny.TinyConfig(answer_style="terse")
    with pytest.raises(ValueError, match="answer style 'terse'"):
        pretrain.pretrain_instructions(1, style="terse")
    # The referent-value corpus has the words and numbers its answers use.
    corpus = set(
        re.findall(r"[A-Za-z]+|\d+", "\n".join(coin_mini.corpus_text(0, "referent-value")))
    )
    for _, turns in pretrain.pretrain_instructions(60, seed=11, style="referent-value"):
        for _, answer in turns:
            assert set(re.findall(r"[A-Za-z]+|\d+", answer)) <= corpus, answer


def test_short_answers_state_the_sentence_value_after_a_request_unlike_the_tasks(
    examples: dict[str, list],
) -> None:
    """With a short-answer share, the same conversations are asked, a share of their skill turns
    ending with a request for a short answer and answered "Answer: <value>.", the value being the
    one the sentence states; the requests and the form are none of coin-mini's."""
    plain = pretrain.pretrain_instructions(400, seed=4)
    mixed = pretrain.pretrain_instructions(400, seed=4, short_answers=0.5)
    shortened, kept = Counter(), 0
    for (image, turns), (image2, turns2) in zip(plain, mixed, strict=True):
        assert image.tobytes() == image2.tobytes() and len(turns) == len(turns2)
        for (user, said), (user2, answer) in zip(turns, turns2, strict=True):
            if user2 == user:
                assert answer == said
                kept += 1
                continue
            question, request = user2.rsplit("\n", 1)
            assert question == user and request in pretrain.TERSE_REQUESTS
            value = re.fullmatch(r"Answer: (.+)\.", answer).group(1)
            assert value in said or value.capitalize() in said, (said, answer)
            shortened[request] += 1
    assert set(shortened) == set(pretrain.TERSE_REQUESTS)
    assert 0.4 < sum(shortened.values()) / (sum(shortened.values()) + kept) < 0.6
    # every skill but the description has a short form, read off its sentence
    for skill, _, _, answer in pretrain.skill_probe(4, seed=9):
        short = pretrain.short_answer(skill, answer)
        assert (short is None) == (skill == "describe"), (skill, answer)
    assert pretrain.short_answer(
        "where", "The red circle spans from (0.1, 0.2) to (0.3, 0.4)."
    ) == ("Answer: (0.1, 0.2) to (0.3, 0.4).")
    assert pretrain.short_answer("left_of", "No, the a is right of the b.") == "Answer: no."
    with pytest.raises(ValueError, match="no short form of the color_of answer"):
        pretrain.short_answer("color_of", "It is red.")
    # unlike every task: no request is a task's instruction, no task answer starts "Answer:"
    questions = "\n".join(e.question for exs in examples.values() for e in exs)
    assert not any(request in questions for request in pretrain.TERSE_REQUESTS)
    assert not any(
        r.startswith("Answer:") for exs in examples.values() for e in exs for r in e.references
    )
    corpus = set(re.findall(r"[A-Za-z]+|\d+", "\n".join(coin_mini.corpus_text(0, "sentence", 0.5))))
    for _, turns in mixed[:80]:
        for user, answer in turns:
            assert set(re.findall(r"[A-Za-z]+|\d+", user + answer)) <= corpus
    from mcit.models import tiny

    with pytest.raises(ValueError, match="short_answers: 1.5 is not a share"):
        tiny.TinyConfig(short_answers=1.5)
    with pytest.raises(ValueError, match="sentence' only"):
        tiny.TinyConfig(short_answers=0.5, answer_style="referent-value")


def test_shape_lookups_answer_every_turn_in_the_referent_value_style() -> None:
    """The lookup phase's conversations: shape scenes only, one to three turns, each answer
    in the referent-value style (never a sentence's "is" or "Yes, ..."),
    the same for a seed and different for another."""
    records = pretrain.shape_lookups(200, seed=3)
    assert [t for _, t in records] == [t for _, t in pretrain.shape_lookups(200, seed=3)]
    assert [t for _, t in records] != [t for _, t in pretrain.shape_lookups(200, seed=4)]
    sentence_forms = re.compile(r" is |^Yes|^No|^I count|^Option|spans")
    asked = Counter()
    for image, turns in records:
        assert image.size == (64, 64) and 1 <= len(turns) <= 3
        for user, answer in turns:
            # counting all shapes names no referent: it keeps its sentence in both styles
            assert user == pretrain.TEMPLATES["count_all"] or not sentence_forms.search(answer)
            skill = next(k for k, v in pretrain.TEMPLATES.items() if _matches(v, user))
            asked[skill] += 1
    assert {"color_of", "shape_of", "where", "left_of", "option_color"} <= set(asked)
    assert "read" not in asked and "describe" not in asked


def _matches(template: str, user: str) -> bool:
    pattern = re.escape(template)
    pattern = re.sub(r"\\\{\w+\\\}", ".+", pattern)
    return re.fullmatch(pattern, user, re.S) is not None


def test_mixture_weights_hard_skills_up() -> None:
    """Reading is asked far more often than a uniform pick over a picture's turns would."""
    rng = random.Random(0)
    weighted, uniform = Counter(), Counter()
    for _ in range(600):
        p = pretrain.picture(rng, 64)
        turns = pretrain.turns_for(p, rng)
        weighted.update(skill for skill, _, _ in pretrain._weighted_pick(rng, turns, 1))
        uniform.update(skill for skill, _, _ in rng.sample(turns, 1))
    assert weighted["read"] > 2 * uniform["read"]
    assert weighted["digit"] > uniform["digit"]


def test_caption_views_are_true_short_facts_of_the_picture() -> None:
    for image, views in pretrain.pretrain_caption_views(40, seed=2):
        assert image.size == (64, 64)
        full, *short = views
        assert short and all(len(v) <= len(full) for v in short)
        for view in short:
            if view.startswith("a sign that says "):
                assert full.startswith(view)


def _blind_score(name: str, key) -> float:
    """Score of the best answer a model that never sees the image could give: the most common
    training answer of the test question's `key` (its exact text, or its template)."""
    from mcit.evaluation.scorers import score_predictions

    spec = TASKS[name]
    train = spec.generate(600, random.Random(1), 64, "train")
    test = spec.generate(150, random.Random(2), 64, "test")
    by_key: dict[str, Counter] = defaultdict(Counter)
    for e in train:
        by_key[key(e)][e.answer] += 1
    overall = Counter(e.answer for e in train)
    guesses = [(by_key.get(key(e)) or overall).most_common(1)[0][0] for e in test]
    scores = score_predictions(spec.metric, guesses, [e.references or [e.answer] for e in test])
    return 100 * sum(scores) / len(scores)


@pytest.mark.parametrize("name", list(TASKS))
def test_no_task_is_solvable_without_the_image(name: str) -> None:
    """The blind check: with the image blank, the best a model can do is the answer its
    training data makes most likely for the question (or its template). That stays near chance
    on every task (measured: 3-39; yes/no questions put chance at 50 on part of gqa and vqav2),
    below the 50 that learning a task must reach."""
    blind = max(_blind_score(name, lambda e: e.question), _blind_score(name, lambda e: e.template))
    assert blind <= 45.0, f"{name}: a text-only guess scores {blind:.1f}"
