"""Two measurements of the shipped tiny base behind README's "why ModalPrompt learns less".

1. The base's LM loss (nats per answer token) on each task's training answers before any
   training, with and without a fresh ModalPrompt prompt in front.
2. A ridge probe on the frozen vision tower's tokens: how many held-out single-shape boxes it
   places at IoU > 0.5 (is the box in the features, or lost in the LM?).

    .venv/bin/python scripts/base-diagnostics.py [--tasks gqa,vqav2,scienceqa] [--pictures 3000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge

from mcit.config import BackboneConfig, load_config
from mcit.data.collate import Collator
from mcit.data.synthetic.scene import background_color, render_objects, scatter
from mcit.data.synthetic.vocab import COLOR_NAMES, SHAPES
from mcit.methods.base import build_method
from mcit.models.backbone import load_backbone
from mcit.runner import load_stream


def answer_losses(tasks: list[str], samples: int) -> None:
    config = load_config(
        "configs/coin-mini/modalprompt.yaml",
        [f"data.order=[{','.join(tasks)}]", f"data.train_per_task={samples}"],
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


def box_probe(pictures: int) -> None:
    backbone = load_backbone(BackboneConfig(name="tiny"))
    rng = random.Random(0)
    images, boxes = [], []
    while len(images) < pictures:
        objs = scatter(rng, [(rng.choice(SHAPES), rng.choice(COLOR_NAMES))], side_range=(0.14, 0.3))
        if objs is not None:
            images.append(render_objects(64, objs, background_color(rng)).image())
            boxes.append(objs[0].box)
    features = []
    with tempfile.TemporaryDirectory() as folder:
        for start in range(0, pictures, 250):
            paths = []
            for i, image in enumerate(images[start : start + 250]):
                path = Path(folder) / f"{start + i}.png"
                image.save(path)
                paths.append(str(path))
            with torch.no_grad():
                tokens = backbone.vision_features(backbone.pixel_values(paths))
            features.append(tokens.reshape(len(paths), -1).float().numpy())
    x, y = np.concatenate(features), np.array(boxes)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="gqa,vqav2,scienceqa")
    parser.add_argument("--samples", type=int, default=32, help="training answers per task")
    parser.add_argument("--pictures", type=int, default=3000, help="pictures for the box probe")
    args = parser.parse_args()
    answer_losses(args.tasks.split(","), args.samples)
    box_probe(args.pictures)


if __name__ == "__main__":
    main()
