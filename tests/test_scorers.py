"""Worked examples for every answer scorer (docs/metrics-and-reports.md, "Answer scoring")."""

from __future__ import annotations

import math

import pytest

from mcit.data.sample import METRICS
from mcit.evaluation.scorers import (
    CORPUS_METRICS,
    SCORERS,
    box_iou,
    cider_d,
    normalize_vqa_answer,
    parse_box,
    parse_option,
    score_answer,
    score_predictions,
    tokenize_caption,
)

# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def test_registry_covers_every_metric_name() -> None:
    assert set(SCORERS) == set(METRICS)
    assert CORPUS_METRICS.issubset(SCORERS)


def test_unknown_metric_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown metric 'bleu'") as exc:
        score_answer("bleu", "x", ["x"])
    for name in METRICS:
        assert name in str(exc.value)
    with pytest.raises(ValueError, match="known metrics: vqa, exact"):
        score_predictions("bleu", ["x"], [["x"]])


def test_cider_is_corpus_level_only() -> None:
    with pytest.raises(ValueError, match="corpus-level"):
        score_answer("cider", "a cat", ["a cat"])


def test_empty_references_and_length_mismatch_are_errors() -> None:
    with pytest.raises(ValueError, match="no reference"):
        score_answer("exact", "yes", [])
    with pytest.raises(ValueError, match="2 predictions but 1 reference lists"):
        score_predictions("exact", ["a", "b"], [["a"]])
    with pytest.raises(TypeError):
        score_answer("exact", "yes", "yes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# vqa: official normalisation and soft accuracy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("two", "2"),  # number words -> digits (manualMap)
        ("Two.", "2"),  # lower case; final period stripped
        ("none", "0"),  # manualMap: "none" counts as zero
        ("ten", "10"),
        ("the red car", "red car"),  # articles removed
        ("An Apple", "apple"),
        ("a", ""),
        ("yes.", "yes"),  # period not followed by a digit is removed
        ("3.5", "3.5"),  # period followed by a digit is kept
        ("5.", "5"),
        ("1,000", "1000"),  # comma between digits: every punctuation mark is deleted
        ("1,000 dogs!", "1000 dogs"),
        ("yes, it is", "yes it is"),  # ", " touches a space: deleted
        ("yes,it", "yes it"),  # otherwise replaced by a space
        ("a,b", "b"),  # -> "a b" -> article "a" dropped
        ("black/white", "black white"),
        ("hi - there", "hi there"),
        ("dont", "don't"),  # official contractions table
        ("isnt", "isn't"),
        ("whats", "what's"),
        ("it's", "it's"),  # apostrophe is not in the punctuation list
        ("  Yes\n", "yes"),
        ("left:", "left:"),  # ':' is not in the official punctuation list either
    ],
)
def test_normalize_vqa_answer(raw: str, normalised: str) -> None:
    assert normalize_vqa_answer(raw) == normalised


# Ten references with k of them equal to the prediction. Leaving out one of the k matching
# references leaves k-1 matches, leaving out one of the 10-k others leaves k, so
#   acc = (k * min(1, (k-1)/3) + (10-k) * min(1, k/3)) / 10
#   k=0: 0
#   k=1: (1*0   + 9*1/3) / 10 = 3/10 = 0.3
#   k=2: (2*1/3 + 8*2/3) / 10 = (2/3 + 16/3) / 10 = 6/10 = 0.6
#   k=3: (3*2/3 + 7*1)   / 10 = (2 + 7) / 10 = 0.9
#   k=4: (4*1   + 6*1)   / 10 = 1.0
#   k=10: 1.0
@pytest.mark.parametrize(
    ("k", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]
)
def test_vqa_soft_accuracy_ten_references(k: int, expected: float) -> None:
    # The matching references are spelt in ways the normalisation maps to "2".
    spellings = ["two", "2", "Two.", "2 ", "the two", "two!", "2", "2", "2", "2"]
    refs = spellings[:k] + ["3"] * (10 - k)
    assert score_answer("vqa", "Two", refs) == pytest.approx(expected, abs=1e-12)


def test_vqa_soft_accuracy_by_enumeration() -> None:
    # Cross-check the closed form against a literal leave-one-out loop on a mixed set.
    refs = ["red", "Red.", "red", "dark red", "maroon", "red", "the red", "crimson", "red", "x"]
    pred = normalize_vqa_answer("RED")
    gts = [normalize_vqa_answer(r) for r in refs]
    accs = [min(1, sum(g == pred for g in gts[:i] + gts[i + 1 :]) / 3) for i in range(10)]
    # k = 6 matching ("red" x4, "Red.", "the red") -> every subset keeps >= 5 -> 1.0
    assert sum(accs) / 10 == 1.0
    assert score_answer("vqa", "RED", refs) == 1.0


def test_vqa_fewer_references() -> None:
    # Two references, both matching: each leave-one-out subset has 1 match -> 1/3.
    assert score_answer("vqa", "cat", ["cat", "the cat"]) == pytest.approx(1 / 3)
    # Three references, two matching: subsets leaving out a match have 1 (1/3), the other 2
    # (2/3): (1/3 + 1/3 + 2/3) / 3 = 4/9.
    assert score_answer("vqa", "cat", ["cat", "cat", "dog"]) == pytest.approx(4 / 9)
    # One reference: exact match after normalisation.
    assert score_answer("vqa", "Two.", ["2"]) == 1.0
    assert score_answer("vqa", "three", ["2"]) == 0.0


# --------------------------------------------------------------------------------------------
# exact
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "refs", "expected"),
    [
        ("Yes.", ["yes"], 1.0),  # case and one final '.' ignored
        ("  YES  ", ["yes"], 1.0),  # surrounding whitespace ignored
        ("yes", ["Yes."], 1.0),  # the same on the reference side
        ("yes..", ["yes"], 0.0),  # only one final '.'
        ("yes sir", ["yes"], 0.0),
        ("unanswerable", ["unanswerable"], 1.0),  # an ordinary answer (VizWiz)
        ("blue", ["red", "Blue"], 1.0),  # any reference
        ("", ["yes"], 0.0),
    ],
)
def test_exact(pred: str, refs: list[str], expected: float) -> None:
    assert score_answer("exact", pred, refs) == expected


# --------------------------------------------------------------------------------------------
# option (ScienceQA)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),  # exact letter
        (" b ", "B"),  # exact letter, any case, stripped
        ("B.", "B"),  # leading "X."
        ("C. a red ball", "C"),
        ("c) red", "C"),  # leading "X)"
        ("(D) blue", "D"),  # leading "(X)"
        ("The answer is B.", "B"),  # first single-character upper-case word
        ("Answer: (E)", "E"),
        ("a cat", None),  # lower-case "a" is the article, never option A
        ("Blue", None),  # "B" of "Blue" is not a single-character word
        ("", None),
        ("42", None),
    ],
)
def test_parse_option(text: str, letter: str | None) -> None:
    assert parse_option(text) == letter


def test_parse_option_restricted_letters() -> None:
    # The pronoun "I" is a single upper-case letter word; restricting the options skips it.
    assert parse_option("I think it is C") == "I"
    assert parse_option("I think it is C", options="ABCDE") == "C"
    assert parse_option("F", options="ABCDE") is None


def test_score_option() -> None:
    assert score_answer("option", "B", ["B"]) == 1.0
    assert score_answer("option", "B. blue", ["B"]) == 1.0
    assert score_answer("option", "The answer is C", ["B"]) == 0.0
    assert score_answer("option", "no idea", ["B"]) == 0.0  # unparseable -> 0
    assert score_answer("option", "I think it is C", ["C"], options="ABCDE") == 1.0


# --------------------------------------------------------------------------------------------
# contains (ImageNet)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "label", "expected"),
    [
        ("This is a Golden Retriever.", "golden retriever", 1.0),  # label in prediction
        ("retriever", "golden retriever", 1.0),  # prediction in label
        ("golden  retriever", "Golden Retriever", 1.0),  # case and whitespace
        ("labrador", "golden retriever", 0.0),
        ("", "golden retriever", 0.0),  # empty prediction is wrong in mcit
        ("   ", "golden retriever", 0.0),
        (".", "golden retriever", 0.0),
    ],
)
def test_contains(pred: str, label: str, expected: float) -> None:
    assert score_answer("contains", pred, [label]) == expected


def test_contains_coin_quirk() -> None:
    # CoIN: `text in pred or pred in text` on raw strings: "" is in every label, and the
    # comparison is case-sensitive.
    assert score_answer("contains", "", ["golden retriever"], coin_quirk=True) == 1.0
    assert (
        score_answer("contains", "Golden Retriever", ["golden retriever"], coin_quirk=True) == 0.0
    )
    assert (
        score_answer("contains", "a golden retriever", ["golden retriever"], coin_quirk=True) == 1.0
    )


# --------------------------------------------------------------------------------------------
# iou (grounding)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("[0.1, 0.2, 0.5, 0.6]", (0.1, 0.2, 0.5, 0.6)),
        ("[0.1,0.2,0.5,0.6]", (0.1, 0.2, 0.5, 0.6)),
        ("0.1, 0.2, 0.5, 0.6", (0.1, 0.2, 0.5, 0.6)),  # no brackets
        ("[0.1, 0.2, 0.5, 0.6", (0.1, 0.2, 0.5, 0.6)),  # missing closing bracket
        ("0.1 0.2 0.5 0.6", (0.1, 0.2, 0.5, 0.6)),  # spaces only
        ("  [ 0.1 ,0.2 , 0.5,0.6 ] ", (0.1, 0.2, 0.5, 0.6)),
        ("box: (0.1, 0.2, 0.5, 0.6) and 0.9", (0.1, 0.2, 0.5, 0.6)),  # first four numbers
        ("[.1, 1, 1e-1, 1.]", (0.1, 1.0, 0.1, 1.0)),
        ("[-0.1, 0, 0.5, 0.5]", (-0.1, 0.0, 0.5, 0.5)),
        ("[0.1, 0.2, 0.5]", None),  # three numbers
        ("the dog on the left", None),
        ("", None),
    ],
)
def test_parse_box(text: str, box: tuple[float, float, float, float] | None) -> None:
    assert parse_box(text) == box


def test_parse_box_coin_quirk() -> None:
    # CoIN removes the brackets then takes text[1:-1]: "0.1, 0.1, 0.5, 0.55" -> ".1, 0.1, 0.5, 0.5"
    assert parse_box("[0.1, 0.1, 0.5, 0.55]", coin_quirk=True) == (0.1, 0.1, 0.5, 0.5)
    # ... and "0.1, 0.1, 0.5, 0.5" -> ".1, 0.1, 0.5, 0." : y2 becomes 0
    assert parse_box(" [0.1, 0.1, 0.5, 0.5]", coin_quirk=True) == (0.1, 0.1, 0.5, 0.0)
    assert parse_box("0.1 0.1 0.5 0.5", coin_quirk=True) is None  # needs commas
    assert parse_box("[0.1, 0.1, 0.5]", coin_quirk=True) is None


def test_box_iou_by_hand() -> None:
    # [0,0,0.5,1] vs [0,0,0.5,0.5]: intersection 0.25, union 0.5 + 0.25 - 0.25 = 0.5
    assert box_iou((0, 0, 0.5, 1), (0, 0, 0.5, 0.5)) == 0.5
    # [0.25,0.25,0.75,0.75] vs [0.5,0.5,1,1]: intersection 0.0625, union 2*0.25-0.0625 = 0.4375
    assert box_iou((0.25, 0.25, 0.75, 0.75), (0.5, 0.5, 1, 1)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 0.1, 0.1), (0.5, 0.5, 1, 1)) == 0.0  # disjoint
    assert box_iou((0.5, 0.5, 0.1, 0.1), (0, 0, 1, 1)) == 0.0  # degenerate


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        ("[0.25, 0.25, 0.75, 0.75]", 1.0),  # IoU 1
        ("0.25 0.25 0.75 0.75", 1.0),
        # [0.25,0.25,0.75,1] vs ref: intersection 0.25, union 0.375 -> IoU 2/3 > 0.5
        ("[0.25, 0.25, 0.75, 1]", 1.0),
        # [0,0,1,0.75] vs ref: intersection 0.25, union 0.75 -> IoU 1/3
        ("[0, 0, 1, 0.75]", 0.0),
        # [0.25,0.25,0.75,1.25]: intersection 0.25, union 0.5 -> IoU exactly 0.5: not > 0.5
        ("[0.25, 0.25, 0.75, 1.25]", 0.0),
        ("[0.75, 0.25, 0.25, 0.75]", 0.0),  # degenerate (x2 < x1)
        ("[0.25, 0.25, 0.25, 0.75]", 0.0),  # degenerate (zero width)
        ("no box", 0.0),  # unparseable
    ],
)
def test_score_iou(pred: str, expected: float) -> None:
    assert score_answer("iou", pred, ["[0.25, 0.25, 0.75, 0.75]"]) == expected


def test_score_iou_coin_quirk_changes_the_verdict() -> None:
    ref = ["[0.1, 0.1, 0.5, 0.5]"]
    assert score_answer("iou", "[0.1, 0.1, 0.5, 0.5]", ref) == 1.0
    # CoIN's parser reads y2 = 0.0: a degenerate box, wrong.
    assert score_answer("iou", "[0.1, 0.1, 0.5, 0.5]", ref, coin_quirk=True) == 0.0


# --------------------------------------------------------------------------------------------
# cider
# --------------------------------------------------------------------------------------------


def test_tokenize_caption() -> None:
    assert tokenize_caption("A man's riding a horse, isn't he?") == [
        "a", "man", "'s", "riding", "a", "horse", "is", "n't", "he",
    ]  # fmt: skip
    assert tokenize_caption("Two DOGS -- playing... in a t-shirt (3.5 m)!") == [
        "two", "dogs", "playing", "in", "a", "t-shirt", "3.5", "m",
    ]  # fmt: skip
    assert tokenize_caption("") == []


def test_cider_d_worked_example() -> None:
    # Corpus of N = 2 captions, log N = ln 2.
    # Document frequencies over the reference sets: "a" 2; "cat", "dog", "a cat", "a dog" 1.
    # idf = ln 2 - ln df: "a" -> 0, the others -> ln 2.
    # Caption 1 "a cat" vs ref "a cat": 1-gram vectors {a: 0, cat: ln2} on both sides,
    #   cosine (with clipping min(w, w) = w) = 1; 2-grams {a cat: ln2}: 1; no 3- and 4-grams: 0.
    #   Same length -> penalty 1. CIDEr-D = 10 * (1 + 1 + 0 + 0) / 4 / 1 ref = 5.
    # Caption 2 "a dog" vs "a dog": also 5. Corpus score 5.
    corpus, per = cider_d(["a cat", "a dog"], [["a cat"], ["a dog"]])
    assert per == pytest.approx([5.0, 5.0])
    assert corpus == pytest.approx(5.0)
    # Caption 2 "a cat" vs ref "a dog": the shared 1-gram "a" has weight 0, nothing else is
    # shared -> 0. Corpus (5 + 0) / 2 = 2.5.
    corpus, per = cider_d(["a cat", "a cat"], [["a cat"], ["a dog"]])
    assert per == pytest.approx([5.0, 0.0])
    assert corpus == pytest.approx(2.5)


def test_cider_d_length_penalty_and_clipping() -> None:
    # "a cat a cat" vs "a cat" (corpus with "a dog" as the second image, as above):
    # 1-grams hyp {a: 0, cat: 2 ln2}, ref {a: 0, cat: ln2}: clipped dot = min(2ln2, ln2)*ln2
    #   = ln2^2, norms 2 ln2 and ln2 -> 1/2.
    # 2-grams hyp {a cat: 2 ln2, cat a: ln2 (df 0 -> idf ln2)}, ref {a cat: ln2}:
    #   dot = ln2^2, |hyp| = sqrt(5) ln2, |ref| = ln2 -> 1/sqrt(5).
    # 3-, 4-grams: ref has none -> 0. Length difference 2 -> penalty exp(-4/72).
    # CIDEr-D = 10 * exp(-4/72) * (1/2 + 1/sqrt(5)) / 4
    expected = 10 * math.exp(-4 / 72) * (0.5 + 1 / math.sqrt(5)) / 4
    _, per = cider_d(["a cat a cat", "a dog"], [["a cat"], ["a dog"]])
    assert per[0] == pytest.approx(expected, rel=1e-12)


def test_cider_via_score_predictions() -> None:
    scores = score_predictions("cider", ["a cat", "a dog"], [["a cat"], ["a dog"]])
    assert scores == pytest.approx([5.0, 5.0])
    assert cider_d([], []) == (0.0, [])
    with pytest.raises(ValueError, match="sample 1 has no reference"):
        cider_d(["a", "b"], [["a"], []])


CAPTIONS = [
    ("A man riding a horse on a beach.", ["A man rides a brown horse.", "Person on a horse by the sea", "a rider and his horse on the sand"]),
    ("two dogs play in the grass", ["Dogs playing in grass.", "Two dogs running on a field", "a pair of dogs"]),
    ("A plate of food", ["A plate with food on it.", "a dish of pasta and salad"]),
    ("", ["A red bus on the street."]),
    ("a cat on a couch", ["A cat sleeping on a couch.", "cat on sofa", "The cat is lying on the couch"]),
    ("a cat on a couch a cat on a couch", ["a cat on a couch"]),
    ("A woman isn't holding an umbrella.", ["a woman's umbrella in the rain", "A woman holds an umbrella"]),
    ("a kitchen", ["a kitchen with a stove", "an empty kitchen", "a small kitchen"]),
]  # fmt: skip


def test_cider_d_agrees_with_pycocoevalcap() -> None:
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")
    preds = [p for p, _ in CAPTIONS]
    refs = [r for _, r in CAPTIONS]
    ours_corpus, ours = cider_d(preds, refs)
    # pycocoevalcap's `Cider` is CIDEr-D (clipping, Gaussian length penalty, x10); it expects
    # pre-tokenised, space-joined text (its PTBTokenizer needs Java), so feed it our tokens.
    gts = {k: [" ".join(tokenize_caption(r)) for r in rs] for k, rs in enumerate(refs)}
    res = {k: [" ".join(tokenize_caption(p))] for k, p in enumerate(preds)}
    theirs_corpus, theirs = cider_mod.Cider().compute_score(gts, res)
    assert ours_corpus == pytest.approx(float(theirs_corpus), abs=1e-12)
    assert ours == pytest.approx([float(x) for x in theirs], abs=1e-12)
    assert ours_corpus > 0
