"""Four measurements of a tiny base behind README's "why ModalPrompt learns less" and docs/base.md.

1. The base's LM loss (nats per answer token) on each task's training answers before any
   training, with and without a fresh ModalPrompt prompt in front (the base of `--recipe`:
   shipped, or built into mcit's cache).
2. A ridge probe on the frozen vision tower's tokens: how many held-out single-shape boxes it
   places at IoU > 0.5 (is the box in the features, or lost in the LM?).
3. Seen against held-out: exact match, per skill, on the first turn of the base's own first
   `--seen` training conversations (regenerated from the recipe's seed), beside the held-out
   probe of its model card. A skill low on both is not learned at all; high on seen pictures
   and low on new ones is memorised.
4. One attention lookup over the frozen tower's tokens, trained alone: "the colour of the
   <shape>" in scenes of one to seven shapes (the mixture's own scenes), held-out accuracy. It
   sets what the tokens carry beside what the LM makes of them (the `color_of` skill).

    .venv/bin/python scripts/base-diagnostics.py [--tasks gqa,vqav2,scienceqa] [--pictures 3000]
        [--seen 1200] [--base DIR --recipe NAME]   # DIR: a built base (default: the shipped one)
        [--lookup 8000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge

from mcit.config import BackboneConfig, ChatFormat, load_config
from mcit.data.collate import Collator
from mcit.data.synthetic.pretrain import TEMPLATES, pretrain_instructions
from mcit.data.synthetic.pretrain import _shapes as _mixture_shapes
from mcit.data.synthetic.scene import background_color, render_objects, scatter
from mcit.data.synthetic.vocab import COLOR_NAMES, SHAPES
from mcit.evaluation.scorers import score_predictions
from mcit.methods.base import build_method
from mcit.models.backbone import load_backbone, load_llava_dir
from mcit.pretrain.probe import generate_answers, picture_files, single_turn_samples
from mcit.pretrain.recipes import DEFAULT_RECIPE, recipe
from mcit.pretrain.shipped import shipped_dir
from mcit.runner import load_stream


def answer_losses(tasks: list[str], samples: int, recipe_name: str) -> None:
    config = load_config(
        "configs/coin-mini/modalprompt-paper.yaml",  # input prompts, as the README's figures
        [
            f"data.order=[{','.join(tasks)}]",
            f"data.train_per_task={samples}",
            f"model.backbone.recipe={recipe_name}",
        ],
    )
    backbone = load_backbone(config.model.backbone)
    collate = Collator(backbone)
    base = build_method("zero-shot", backbone, {})
    prompted = build_method("modalprompt", backbone, config.method.args)
    torch.manual_seed(0)
    for s, task in enumerate(load_stream(config)):
        batch = collate(task.train[:samples]).to(backbone.device)
        prompted.begin_task(s, task)
        prompted.eval()
        with torch.no_grad():
            plain, with_prompt = base(batch).loss.item(), prompted(batch).parts["lm"]
        print(f"{task.name:10s} LM loss {plain:.2f} (base), {with_prompt:.2f} (fresh prompt)")
        prompted.end_task(s, task, [])


@torch.no_grad()
def tower_tokens(backbone, images) -> torch.Tensor:
    """(pictures, tokens, width): the frozen tower's tokens of `images`, read from PNG files as
    a benchmark's pictures are."""
    with tempfile.TemporaryDirectory() as folder:
        paths = picture_files(images, folder)
        features = [
            backbone.vision_features(backbone.pixel_values(paths[start : start + 250])).float()
            for start in range(0, len(paths), 250)
        ]
    return torch.cat(features)


def box_probe(pictures: int) -> None:
    backbone = load_backbone(BackboneConfig(name="tiny"))
    rng = random.Random(0)
    images, boxes = [], []
    while len(images) < pictures:
        objs = scatter(rng, [(rng.choice(SHAPES), rng.choice(COLOR_NAMES))], side_range=(0.14, 0.3))
        if objs is not None:
            images.append(render_objects(64, objs, background_color(rng)).image())
            boxes.append(objs[0].box)
    x, y = tower_tokens(backbone, images).reshape(pictures, -1).numpy(), np.array(boxes)
    cut = pictures * 5 // 6
    predicted = Ridge(alpha=100).fit(x[:cut], y[:cut]).predict(x[cut:])
    truth = y[cut:]
    ix = np.clip(
        np.minimum(predicted[:, 2], truth[:, 2]) - np.maximum(predicted[:, 0], truth[:, 0]), 0, None
    )
    iy = np.clip(
        np.minimum(predicted[:, 3], truth[:, 3]) - np.maximum(predicted[:, 1], truth[:, 1]), 0, None
    )
    inter = ix * iy
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = inter / (area(predicted) + area(truth) - inter)
    print(
        f"ridge probe, {pictures - cut} held-out single shapes: IoU > 0.5 for "
        f"{100 * (iou > 0.5).mean():.1f} %, mean coordinate error {np.abs(predicted - truth).mean():.3f}"
    )


class ColourLookup(torch.nn.Module):
    """The shape word's embedding queries the projected tokens once; the read value names the
    colour (one attention head, as one LM layer would have)."""

    def __init__(self, width: int, hidden: int = 256):
        super().__init__()
        self.project = torch.nn.Sequential(
            torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)
        )
        self.query = torch.nn.Embedding(len(SHAPES), hidden)
        self.key = torch.nn.Linear(hidden, hidden)
        self.value = torch.nn.Linear(hidden, hidden)
        self.read = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, len(COLOR_NAMES)),
        )

    def forward(self, tokens: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        t = self.project(tokens)
        scores = torch.einsum("bd,btd->bt", self.query(shape), self.key(t)) / t.shape[-1] ** 0.5
        return self.read(torch.einsum("bt,btd->bd", scores.softmax(-1), self.value(t)))


def lookup_probe(pictures: int, steps: int = 1500) -> None:
    backbone = load_backbone(BackboneConfig(name="tiny"))
    rng = random.Random(1)
    images, rows = [], []
    while len(images) < pictures:
        objs = _mixture_shapes(rng)
        if objs is None:
            continue
        for o in objs:
            if sum(x.shape == o.shape for x in objs) == 1:
                rows.append((len(images), SHAPES.index(o.shape), COLOR_NAMES.index(o.color)))
        images.append(render_objects(64, objs, background_color(rng)).image())
    tokens = tower_tokens(backbone, images)
    index = torch.tensor(rows)
    held_out = index[:, 0] >= pictures * 4 // 5
    train, test = index[~held_out], index[held_out]
    torch.manual_seed(0)
    probe = ColourLookup(tokens.shape[-1])
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = train[torch.randint(len(train), (64,))]
        loss = torch.nn.functional.cross_entropy(
            probe(tokens[batch[:, 0]], batch[:, 1]), batch[:, 2]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        right = probe(tokens[test[:, 0]], test[:, 1]).argmax(-1) == test[:, 2]
    print(
        f"one attention lookup on the frozen tokens, {len(test)} held-out 'colour of the <shape>' "
        f"questions ({pictures} scenes, {steps} steps of 64): {100 * right.float().mean():.1f} %"
    )


def _skill_of(question: str) -> str:
    """The mixture skill whose template produced `question`."""
    for skill, template in TEMPLATES.items():
        pattern = re.escape(template)
        for field in re.findall(r"{(\w+)}", template):
            pattern = pattern.replace(re.escape("{" + field + "}"), ".+")
        if re.fullmatch(pattern, question):
            return skill
    return "other"


@torch.no_grad()
def seen_versus_held_out(base: Path, recipe_name: str, conversations: int) -> None:
    config = recipe(recipe_name)
    backbone = load_llava_dir(
        base / "llava",
        BackboneConfig(name="tiny"),
        clip_dir=str(base / "clip"),
        chat=ChatFormat(system=""),
    )
    collate = Collator(backbone)
    records = pretrain_instructions(
        conversations, config.seed + 2, config.image_size, config.answer_style
    )
    first_turns = [turns[0] for _, turns in records]
    skills = [_skill_of(user) for user, _ in first_turns]
    with tempfile.TemporaryDirectory() as folder:
        paths = picture_files([image for image, _ in records], folder)
        rows = [
            (path, user, answer) for path, (user, answer) in zip(paths, first_turns, strict=True)
        ]
        samples = single_turn_samples(rows, "seen")
        answers = generate_answers(backbone, collate, samples, "seen")
    exact = score_predictions("exact", answers, [s.references for s in samples])
    held = json.loads((base / "model_card.json").read_text())["probe"]["exact_match"]
    by_skill: dict[str, list[float]] = {}
    for skill, score in zip(skills, exact, strict=True):
        by_skill.setdefault(skill, []).append(score)
    print("| skill | seen in training (questions) | held-out probe |\n| --- | --: | --: |")
    for skill, scores in sorted(by_skill.items()):
        seen = 100 * sum(scores) / len(scores)
        print(f"| {skill} | {seen:.1f} ({len(scores)}) | {held.get(skill, '–')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="gqa,vqav2,scienceqa", help="tasks (empty: skip)")
    parser.add_argument("--samples", type=int, default=32, help="training answers per task")
    parser.add_argument(
        "--pictures", type=int, default=3000, help="pictures for the box probe (0: skip)"
    )
    parser.add_argument(
        "--lookup", type=int, default=0, help="scenes for the lookup probe (0: skip)"
    )
    parser.add_argument("--seen", type=int, default=1200, help="training conversations (0: skip)")
    parser.add_argument("--base", type=Path, help="a built base folder (default: the shipped one)")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help="the recipe that built --base")
    args = parser.parse_args()
    if args.tasks:
        answer_losses(args.tasks.split(","), args.samples, args.recipe)
    if args.pictures:
        box_probe(args.pictures)
    if args.lookup:
        lookup_probe(args.lookup)
    if args.seen:
        seen_versus_held_out(args.base or shipped_dir(args.recipe), args.recipe, args.seen)


if __name__ == "__main__":
    main()
