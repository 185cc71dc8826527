"""Per-answer scoring of model predictions (docs/metrics-and-reports.md, "Answer scoring").

Every metric name of `mcit.data.sample.METRICS` has one scorer here:

========== ======================================================================= ==========
name       rule                                                                    score
========== ======================================================================= ==========
vqa        VQA soft accuracy with the official VQA answer normalisation (TextVQA)  0, 1/3 …
exact      case-insensitive exact match, one final '.' ignored (GQA, VizWiz, ...)  0 or 1
option     ScienceQA option letter                                                 0 or 1
contains   label in prediction or prediction in label (ImageNet)                   0 or 1
iou        IoU of the predicted and the reference box > 0.5 (REC grounding)       0 or 1
cider      CIDEr-D, corpus-level (captioning)                                      0 .. 10
========== ======================================================================= ==========

Per-sample scores are in [0, 1] except CIDEr-D, whose per-caption values lie in [0, 10] (the
×10 of CIDEr-D); the caller scales task scores to 0-100 (CIDEr: ×100, as CoIN reports it).

`score_answer` scores one prediction against its references (the per-sample metrics);
`score_predictions` scores a whole test set and is the only entry point for `cider`, whose
document frequencies come from the references of the whole corpus.

Where CoIN's evaluation scripts have quirks, mcit scores correctly by default and offers the
quirk behind ``coin_quirk=True`` for reproduction (docs/metrics-and-reports.md, "CoIN's quirks").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "CORPUS_METRICS",
    "SCORERS",
    "box_iou",
    "cider_d",
    "normalize_vqa_answer",
    "parse_box",
    "parse_option",
    "score_answer",
    "score_contains",
    "score_exact",
    "score_iou",
    "score_option",
    "score_predictions",
    "score_vqa",
    "tokenize_caption",
]

# ---------------------------------------------------------------------------------------------
# vqa: the official VQA answer normalisation (GT-Vision-Lab/VQA, vqaEval.py, tables verbatim)
# ---------------------------------------------------------------------------------------------

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip
# The official "manualMap": number words to digits ("none" counts as zero).
_MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = ("a", "an", "the")
# Verbatim from vqaEval.py. "(?!<=\d)" is a typo there for the look-behind "(?<!\d)"; as written
# it is a look-ahead that never fails, so the pattern removes every '.' not followed by a digit
# ("yes." -> "yes", "1.5" kept, "5." -> "5"). We keep the official behaviour.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PUNCT = (
    ";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip
# vqaEval.py calls `periodStrip.sub("", text, re.UNICODE)`: the flag lands in the `count`
# argument, so at most re.UNICODE == 32 periods are removed. Kept for fidelity.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def _process_punctuation(text: str) -> str:
    """vqaEval.processPunctuation: drop or space out punctuation, then strip periods.

    A punctuation mark is deleted when it touches a space anywhere in the answer, or when the
    answer contains a comma between two digits ("1,000" -> "1000"); otherwise it becomes a
    space ("black/white" -> "black white"). Every test is made on the *input* text.
    """
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def _process_digit_article(text: str) -> str:
    """vqaEval.processDigitArticle: lower case, number words to digits, drop articles,
    restore contractions ("dont" -> "don't"), collapse whitespace."""
    words = []
    for word in text.lower().split():
        word = _MANUAL_MAP.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(s: str) -> str:
    """Normalise an answer as the official VQA evaluation does (vqaEval.py).

    Newlines and tabs become spaces, surrounding whitespace is stripped, then
    `processPunctuation` and `processDigitArticle` are applied:

    >>> normalize_vqa_answer("Two.")
    '2'
    >>> normalize_vqa_answer("the dog")
    'dog'
    >>> normalize_vqa_answer("1,000")
    '1000'
    >>> normalize_vqa_answer("dont")
    "don't"

    The official script applies only `processPunctuation` to the ground truth, because the
    VQA annotations are already normalised; mcit normalises the references in full as well (as
    the TextVQA/EvalAI evaluator does), which is the same on normalised annotations and right
    on raw ones.
    """
    s = s.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(s))


def score_vqa(prediction: str, references: Sequence[str]) -> float:
    """VQA soft accuracy (TextVQA).

    With n ≥ 2 references (VQA/TextVQA: ten annotators), the score is the mean over the n
    leave-one-out subsets of ``min(1, matches / 3)``, where ``matches`` counts the references
    of the subset equal to the prediction after `normalize_vqa_answer`. With ten references
    and k matching ones this is ``(k·min(1, (k−1)/3) + (10−k)·min(1, k/3)) / 10``: 0.3, 0.6,
    0.9 and 1.0 for k = 1, 2, 3 and ≥ 4. With one reference: exact match after normalisation.
    """
    refs = _check_references(references)
    pred = normalize_vqa_answer(prediction)
    gts = [normalize_vqa_answer(r) for r in refs]
    if len(gts) == 1:
        return 1.0 if pred == gts[0] else 0.0
    k = sum(1 for g in gts if g == pred)
    # Leaving out one of the k matching references leaves k - 1 matches; leaving out one of
    # the others leaves k. Same as enumerating the subsets, without the quadratic loop.
    n = len(gts)
    return (k * min(1.0, (k - 1) / 3) + (n - k) * min(1.0, k / 3)) / n


# ---------------------------------------------------------------------------------------------
# exact
# ---------------------------------------------------------------------------------------------


def _normalize_exact(s: str) -> str:
    s = s.strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    return s.lower()


def score_exact(prediction: str, references: Sequence[str]) -> float:
    """Case-insensitive exact match (GQA, VizWiz, VQAv2, OCR-VQA).

    Surrounding whitespace and one final '.' are ignored on both sides; the prediction is
    right if it equals any reference. "unanswerable" is an ordinary answer.
    """
    refs = _check_references(references)
    pred = _normalize_exact(prediction)
    return 1.0 if any(pred == _normalize_exact(r) for r in refs) else 0.0


# ---------------------------------------------------------------------------------------------
# option (ScienceQA)
# ---------------------------------------------------------------------------------------------

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LEADING_OPTION = re.compile(r"^\(?([A-Za-z])[.)](?:\s|$)")
_WORD_STRIP = "()[]{}.,:;!?\"'*"


def parse_option(s: str, options: str = _UPPER) -> str | None:
    """Parse an option letter from a ScienceQA answer .

    In order: the whole (stripped) answer is one letter ("B", "b"); else a leading "X." or
    "X)" (also "(X)") followed by a space or the end ("B. blue", "b) blue"); else the first
    whitespace-separated word that is a single *upper-case* letter once surrounding
    punctuation is removed ("The answer is B." -> "B"). Upper case only in that last rule, so
    the article "a" is never read as option A. Returns the upper-case letter, or None when
    nothing parses. `options` restricts the letters accepted (default A-Z); a letter outside
    it is skipped in the word rule and yields None in the first two rules.

    CoIN's eval_science_qa.py differs slightly: it takes the first ``\\b\\w\\b`` match in
    any case (so "a cat" gives "A" and "it's" gives "S").
    """
    text = s.strip()
    allowed = options.upper()
    if len(text) == 1 and text.isascii() and text.isalpha():
        letter = text.upper()
        return letter if letter in allowed else None
    m = _LEADING_OPTION.match(text)
    if m:
        letter = m.group(1).upper()
        return letter if letter in allowed else None
    for word in text.split():
        word = word.strip(_WORD_STRIP)
        if len(word) == 1 and word in _UPPER and word in allowed:
            return word
    return None


def score_option(prediction: str, references: Sequence[str], options: str = _UPPER) -> float:
    """1 if the option letter parsed from the prediction equals the reference letter, else 0.

    The reference is parsed the same way (so "B" and "B." both mean B); an unparseable
    prediction scores 0. `options` restricts the letters read from the prediction (see
    `parse_option`; e.g. "ABCDE" for ScienceQA, so that the pronoun "I" is skipped).
    """
    refs = _check_references(references)
    pred = parse_option(prediction, options=options)
    if pred is None:
        return 0.0
    return 1.0 if any(pred == parse_option(r) for r in refs) else 0.0


# ---------------------------------------------------------------------------------------------
# contains (ImageNet)
# ---------------------------------------------------------------------------------------------


def _normalize_label(s: str) -> str:
    s = " ".join(s.lower().split())
    if s.endswith("."):
        s = s[:-1].rstrip()
    return s


def score_contains(prediction: str, references: Sequence[str], coin_quirk: bool = False) -> float:
    """ImageNet rule: right iff the label is contained in the prediction or the
    prediction in the label, after lower-casing, collapsing whitespace and dropping one final
    '.'. An empty prediction (or label) is wrong.

    CoIN's eval_ImagetNet.py compares the raw strings case-sensitively with
    ``text in pred or pred in text``; since ``"" in label`` is always true, it counts an
    empty prediction as correct. ``coin_quirk=True`` reproduces that comparison exactly.
    """
    refs = _check_references(references)
    if coin_quirk:
        return 1.0 if any(r in prediction or prediction in r for r in refs) else 0.0
    pred = _normalize_label(prediction)
    if not pred:
        return 0.0
    for ref in refs:
        label = _normalize_label(ref)
        if label and (label in pred or pred in label):
            return 1.0
    return 0.0


# ---------------------------------------------------------------------------------------------
# iou (REC grounding)
# ---------------------------------------------------------------------------------------------

Box = tuple[float, float, float, float]
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_box(s: str, coin_quirk: bool = False) -> Box | None:
    """Parse a box ``[x1, y1, x2, y2]``: the first four numbers of the text.

    Tolerates missing brackets, spaces, other separators and surrounding text
    ("[0.1,0.2, 0.5 ,0.6]", "0.1 0.2 0.5 0.6", "box: (0.1, 0.2, 0.5, 0.6)"). Returns None if
    fewer than four numbers are found. The box is returned as parsed, even if degenerate.

    ``coin_quirk=True`` reproduces CoIN's eval_grounding.py parser: strip one leading space,
    delete the brackets, then drop the first *and the last* character (``text[1:-1]``), split
    on ',' and require exactly four floats. The dropped first character is usually the
    harmless leading "0" of "0.xx"; the dropped last character is the last digit of y2.
    """
    if coin_quirk:
        text = s[1:] if s.startswith(" ") else s
        text = text.replace("[", "").replace("]", "")
        try:
            values = [float(x) for x in text[1:-1].split(",")]
        except ValueError:
            return None
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            return None
        return (values[0], values[1], values[2], values[3])
    found = _NUMBER.findall(s)
    if len(found) < 4:
        return None
    x1, y1, x2, y2 = (float(v) for v in found[:4])
    return (x1, y1, x2, y2)


def _degenerate(box: Box) -> bool:
    x1, y1, x2, y2 = box
    return not all(math.isfinite(v) for v in box) or x2 <= x1 or y2 <= y1


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes in continuous coordinates
    (no +1 pixel convention, as the boxes are normalised to [0, 1]). 0 for degenerate boxes."""
    if _degenerate(a) or _degenerate(b):
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_iou(
    prediction: str, references: Sequence[str], coin_quirk: bool = False, threshold: float = 0.5
) -> float:
    """REC grounding: 1 iff IoU(predicted box, reference box) > 0.5.

    Boxes are ``[x1, y1, x2, y2]`` normalised to [0, 1] of the image padded to a square (IoU
    is scale-invariant, so no image size is needed). An unparseable or degenerate box
    (x2 ≤ x1 or y2 ≤ y1) scores 0. ``coin_quirk`` applies CoIN's parser to the prediction
    (see `parse_box`); references are always parsed correctly.
    """
    refs = _check_references(references)
    pred = parse_box(prediction, coin_quirk=coin_quirk)
    if pred is None or _degenerate(pred):
        return 0.0
    for ref in refs:
        box = parse_box(ref)
        if box is not None and box_iou(pred, box) > threshold:
            return 1.0
    return 0.0


# ---------------------------------------------------------------------------------------------
# cider: CIDEr-D (Vedantam et al. 2015), as pycocoevalcap's `Cider` computes it
# ---------------------------------------------------------------------------------------------

# PTB-like tokenisation. pycocoevalcap runs Stanford's PTBTokenizer (Java, lower case) and then
# drops the punctuation tokens; we approximate it in Python: clitics split off as PTB does
# ("don't" -> "do n't", "dog's" -> "dog 's"), words kept whole with inner '-', '.', '/'
# ("t-shirt", "3.5"), every other punctuation character removed.
_NT = re.compile(r"(?<=[^\W_])n't\b")
_CAPTION_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|[^\W_]+(?:[-./][^\W_]+)*")


def tokenize_caption(s: str) -> list[str]:
    """PTB-like caption tokenisation: lower case, clitics split, punctuation removed.

    >>> tokenize_caption("A man's riding a horse, isn't he?")
    ['a', 'man', "'s", 'riding', 'a', 'horse', 'is', "n't", 'he']
    """
    text = _NT.sub(" n't", s.lower().replace("’", "'"))
    return _CAPTION_TOKEN.findall(text)


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i : i + k])] += 1
    return counts


def _tfidf(
    counts: Counter[tuple[str, ...]], df: Counter[tuple[str, ...]], log_n_images: float, n: int
) -> tuple[list[dict[tuple[str, ...], float]], list[float]]:
    """tf-idf vectors per n-gram order and their L2 norms (idf = log N − log max(1, df))."""
    vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
    norm = [0.0] * n
    for gram, tf in counts.items():
        w = float(tf) * (log_n_images - math.log(max(1.0, float(df.get(gram, 0)))))
        vec[len(gram) - 1][gram] = w
        norm[len(gram) - 1] += w * w
    return vec, [math.sqrt(x) for x in norm]


def cider_d(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    n: int = 4,
    sigma: float = 6.0,
    tokenize: Callable[[str], list[str]] | None = tokenize_caption,
) -> tuple[float, list[float]]:
    """CIDEr-D of a corpus of captions: ``(corpus_score, per_caption_scores)``, ×1 scale.

    For each caption c with references S (Vedantam et al., CVPR 2015, with the CIDEr-D
    changes):
    ``CIDEr-D(c, S) = 10 / |S| · Σ_{s∈S} 1/n Σ_{k=1..n} e^{−(ℓ_c − ℓ_s)² / 2σ²} ·
    ⟨min(g_k(c), g_k(s)), g_k(s)⟩ / (‖g_k(c)‖ ‖g_k(s)‖)`` where ``g_k`` is the tf-idf vector
    of the k-grams (tf = count in the sentence, idf = log(N) − log(max(1, df)), N = number of
    captions in the corpus, df = number of captions whose reference set contains the n-gram),
    the ``min`` is CIDEr-D's clipping of the candidate weights, σ = 6 and n = 4. The corpus
    score is the mean of the per-caption scores. Identical to pycocoevalcap's `Cider` (which is
    CIDEr-D, the variant of the COCO caption server), including its "length", which counts
    bigrams: ``ℓ − 1`` differs from the word count only for an empty sentence, whose terms are
    0 anyway, so the word count is used here.

    `tokenize` (default `tokenize_caption`) is applied to predictions and references; pass
    None for already tokenised, space-separated text. CoIN reports CIDEr ×100.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"cider: {len(predictions)} predictions but {len(references)} reference lists"
        )
    for idx, refs in enumerate(references):
        if len(refs) == 0:
            raise ValueError(f"cider: sample {idx} has no reference caption")
    if not predictions:
        return 0.0, []

    def tok(s: str) -> list[str]:
        return tokenize(s) if tokenize is not None else s.split()

    test_counts = [_ngram_counts(tok(p), n) for p in predictions]
    ref_counts = [[_ngram_counts(tok(r), n) for r in refs] for refs in references]

    df: Counter[tuple[str, ...]] = Counter()
    for refs in ref_counts:
        df.update({gram for counts in refs for gram in counts})
    log_n_images = math.log(float(len(predictions)))

    scores: list[float] = []
    for test, refs in zip(test_counts, ref_counts, strict=True):
        vec, norm = _tfidf(test, df, log_n_images, n)
        length = sum(c for g, c in test.items() if len(g) == 1)
        total = 0.0
        for ref in refs:
            vec_r, norm_r = _tfidf(ref, df, log_n_images, n)
            length_r = sum(c for g, c in ref.items() if len(g) == 1)
            penalty = math.exp(-((length - length_r) ** 2) / (2 * sigma**2))
            for k in range(n):
                val = sum(
                    min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec[k].items()
                )
                if norm[k] != 0 and norm_r[k] != 0:
                    val /= norm[k] * norm_r[k]
                total += val * penalty
        scores.append(total / n / len(refs) * 10.0)
    return sum(scores) / len(scores), scores


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------

SCORERS: dict[str, Callable[..., Any]] = {
    "vqa": score_vqa,
    "exact": score_exact,
    "option": score_option,
    "contains": score_contains,
    "iou": score_iou,
    "cider": cider_d,
}
"""Metric name -> scorer. Per-sample scorers take ``(prediction, references, **options)`` and
return a float in [0, 1]; "cider" maps to the corpus-level `cider_d`."""

CORPUS_METRICS = frozenset({"cider"})
"""Metrics that can only be computed over a whole test set (use `score_predictions`)."""


def _check_references(references: Sequence[str]) -> Sequence[str]:
    if isinstance(references, str):
        raise TypeError("references must be a list of strings, not a string")
    if len(references) == 0:
        raise ValueError("no reference answer to score against")
    return references


def _scorer(metric: str) -> Callable[..., Any]:
    try:
        return SCORERS[metric]
    except KeyError:
        known = ", ".join(SCORERS)
        raise ValueError(f"unknown metric {metric!r}; known metrics: {known}") from None


def score_answer(metric: str, prediction: str, references: Sequence[str], **options: Any) -> float:
    """Score one prediction against its references with a per-sample metric.

    `options` go to the scorer (e.g. ``coin_quirk=True`` for "iou" and "contains").
    Raises ValueError for an unknown metric, for "cider" (corpus-level: use
    `score_predictions`) and for an empty reference list.
    """
    scorer = _scorer(metric)
    if metric in CORPUS_METRICS:
        raise ValueError(
            f"metric {metric!r} is corpus-level and cannot score one answer; use score_predictions"
        )
    return float(scorer(prediction, references, **options))


def score_predictions(
    metric: str,
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    **options: Any,
) -> list[float]:
    """Per-sample scores of a whole test set (CIDEr-D computed over the corpus).

    The task score is the mean of the returned list (×100 for the 0-100 scale); for "cider"
    that mean is the corpus CIDEr-D.
    """
    scorer = _scorer(metric)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if metric in CORPUS_METRICS:
        _, per_sample = scorer(predictions, references, **options)
        return [float(x) for x in per_sample]
    return [float(scorer(p, r, **options)) for p, r in zip(predictions, references, strict=True)]
