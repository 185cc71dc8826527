"""The closed vocabularies the coin-mini generators draw from.

Every word a generator can render or answer comes from a list here, so the tiny model's
tokenizer can be trained on a corpus that provably covers them (`coin_mini.corpus_text`), and
so the tests can check that the lists of different tasks do not overlap: a model that learned to
read the TextVQA signs gets no free answers on the OCR-VQA covers or the VizWiz labels.
"""

from __future__ import annotations

# Eight well-separated colours (names are the answers; RGB is what is drawn). The background is
# a jittered neutral grey, far enough from all eight, white and black included.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (222, 38, 38),
    "green": (36, 168, 64),
    "blue": (40, 84, 232),
    "yellow": (246, 222, 36),
    "purple": (150, 58, 196),
    "orange": (250, 140, 24),
    "white": (250, 250, 250),
    "black": (24, 24, 24),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
PLURALS: dict[str, str] = {s: s + "es" if s.endswith("s") else s + "s" for s in SHAPES}

# Number words, as VQA annotators sometimes type them ("three" normalises to "3").
NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)

# TextVQA: words on signs in a street-like scene (3-7 letters).
SIGN_WORDS: tuple[str, ...] = (
    "apple",
    "bread",
    "stop",
    "exit",
    "open",
    "hotel",
    "cafe",
    "bank",
    "taxi",
    "bus",
    "zoo",
    "gym",
    "shop",
    "pizza",
    "music",
    "movie",
    "beach",
    "farm",
    "school",
    "market",
    "museum",
    "bakery",
    "salon",
    "sale",
    "danger",
    "police",
    "bikes",
    "sushi",
    "tacos",
    "books",
)

# VizWiz: words on grocery labels photographed by a blind user.
PRODUCT_WORDS: tuple[str, ...] = (
    "milk",
    "soup",
    "rice",
    "tea",
    "salt",
    "jam",
    "beans",
    "sugar",
    "flour",
    "honey",
    "corn",
    "pasta",
    "cocoa",
    "juice",
    "oats",
    "soda",
    "tuna",
    "peas",
    "chips",
    "candy",
)

# OCR-VQA: title words and author surnames on book covers (answers keep the cover's case).
TITLE_WORDS: tuple[str, ...] = (
    "Moon",
    "River",
    "Winter",
    "Secret",
    "Dragon",
    "Ocean",
    "Garden",
    "Shadow",
    "Island",
    "Castle",
    "Forest",
    "Summer",
    "Stone",
    "Storm",
    "Mirror",
    "Crown",
    "Tiger",
    "Desert",
    "Echo",
    "Harbor",
    "Meadow",
    "Raven",
    "Ember",
    "Frost",
)
AUTHOR_NAMES: tuple[str, ...] = (
    "Lee",
    "Park",
    "Smith",
    "Brown",
    "Khan",
    "Lopez",
    "Rossi",
    "Kim",
    "Chen",
    "Ali",
    "Moore",
    "Evans",
    "Silva",
    "Novak",
    "Weber",
    "Sato",
    "Grant",
    "Hayes",
    "Ortiz",
    "Young",
)

# OCR-VQA genres and the icon printed on the cover that gives each away.
GENRE_ICONS: dict[str, str] = {
    "Comedy": "smiley",
    "Romance": "heart",
    "Fantasy": "moon",
    "Sports": "ball",
    "Travel": "sun",
    "Mystery": "question",
}
GENRES: tuple[str, ...] = tuple(GENRE_ICONS)

# ImageNet: ten handwritten-digit classes (real scikit-learn digits) and six drawn objects.
# No class name is a substring of another, so the `contains` metric cannot be gamed by one
# answer matching several classes ("seven" vs "seventeen", "digit" vs "digit seven").
DIGIT_CLASSES: tuple[str, ...] = NUMBER_WORDS[:10]
DRAWINGS: tuple[str, ...] = ("house", "tree", "flower", "boat", "clock", "fish")
IMAGENET_CLASSES: tuple[str, ...] = DIGIT_CLASSES + DRAWINGS

# Option letters of the ScienceQA-style multiple choice.
LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E")
